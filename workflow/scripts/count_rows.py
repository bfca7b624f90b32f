"""Checkpoint count_rows: the number of stars of one arrays file (it sets the shards)."""

import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821

from gaiacnn.pipeline import run_count_rows, setup_logging  # noqa: E402

setup_logging()
run_count_rows(snakemake.input[0], snakemake.output[0])  # noqa: F821
