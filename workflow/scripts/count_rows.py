"""Checkpoint count_rows: the number of stars of one arrays file (it sets the shards)."""

from gaiacnn import job

j = job.start(c_level=False)
from gaiacnn import arrays  # noqa: E402

arrays.run_count_rows(j.input[0], j.output[0])
