"""Rule select_samples: crossmatch, cuts and the cut report."""

from gaiacnn import job

j = job.start()
from gaiacnn import selection  # noqa: E402

selection.run_selection(
    j.input.gaia,
    j.input.allstar,
    j.output.training,
    j.output.observed,
    j.output.report,
    **j.kwargs(),
)
