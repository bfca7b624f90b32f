"""Rule figures: every validation figure the data allows, and their index."""

from gaiacnn import job

j = job.start()
from gaiacnn.figures import render  # noqa: E402

render.run_figures(
    dict(j.input.items()),
    j.output[0],
    figures_cfg=j.params.figures,
    snr_edges=j.params.snr_edges,
)
