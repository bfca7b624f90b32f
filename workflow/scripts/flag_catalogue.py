"""Rule flag_catalogue: the catalogue with the boundary flag (the paper's 8 digits + inputs)."""

from gaiacnn import job

j = job.start()
from gaiacnn import flags  # noqa: E402

flags.run_flag_catalogue(
    j.input.labels,
    j.input.tsne,
    j.input.model,
    j.output.fits,
    dict(j.output.items()).get("csv"),
    parquet_out=dict(j.output.items()).get("parquet"),
    **j.kwargs(),
)
