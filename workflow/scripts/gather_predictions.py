"""Rule gather_predictions: one member's prediction shards of one sample as one file."""

import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821

from gaiacnn.pipeline import run_gather_predictions, setup_logging  # noqa: E402

setup_logging()
run_gather_predictions(list(snakemake.input.shards), snakemake.output[0])  # noqa: F821
