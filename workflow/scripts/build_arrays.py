"""Rule build_arrays: one sample's HDF5 arrays from the raw store."""

from gaiacnn import job

j = job.start()
from gaiacnn import arrays  # noqa: E402

arrays.run_build_arrays(
    j.input.raw,
    j.input.gaia,
    j.input.sample,
    j.output[0],
    sample_name=j.wildcards.sample,
    **j.kwargs(),
)
