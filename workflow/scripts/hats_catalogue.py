"""Rule hats_catalogue: the Parquet catalogue as a HATS-partitioned copy (gaiacnn.hats)."""

from gaiacnn import job

j = job.start()
from gaiacnn import hats  # noqa: E402

hats.run_hats_catalogue(j.input[0], j.output[0])
