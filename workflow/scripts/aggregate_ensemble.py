"""Rule aggregate_ensemble: mean, e_*, running dispersion, sigma_*; the catalogue."""

from gaiacnn import job

j = job.start()
from gaiacnn import ensemble  # noqa: E402

ensemble.run_aggregate(
    j.input.training,
    j.input.observed,
    {"training": j.input.training_arrays, "observed": j.input.observed_arrays},
    j.output.fits,
    j.output.model,
    **j.kwargs(),
)
