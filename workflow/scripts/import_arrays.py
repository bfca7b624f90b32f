"""Rule import_arrays: validate a user's HDF5 file and bring it into results/arrays."""

from gaiacnn import job

j = job.start()
from gaiacnn import arrays  # noqa: E402

arrays.run_import_arrays(
    j.input[0],
    j.output.arrays,
    j.output.report,
    sample_name=j.wildcards.sample,
    **j.kwargs(),
)
