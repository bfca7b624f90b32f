"""Rule evaluate_demo: precision per label and S/N bin against the demo's truth."""

from gaiacnn import job

j = job.start()
from gaiacnn import evaluation  # noqa: E402

evaluation.run_evaluation(
    j.input.catalogue,
    j.input.truth,
    j.input.model,
    j.output.precision,
    **j.kwargs(gaia_source=j.input.gaia_source, shift_out=j.output.shift),
)
