"""Rule gaia_query: the selection table of every RVS star from the Gaia archive."""

from gaiacnn import job

j = job.start()
from gaiacnn import archive  # noqa: E402

archive.run_gaia_query(j.params.gaia, j.output[0])
