"""Rule demo_survey: generate the offline demo survey."""

import os
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
os.dup2(sys.stderr.fileno(), 2)  # C-level messages (TensorFlow, HDF5) too

from gaiacnn.pipeline import run_demo_survey, setup_logging  # noqa: E402

setup_logging()
run_demo_survey(
    snakemake.params.demo,  # noqa: F821
    snakemake.output.gaia,  # noqa: F821
    snakemake.output.allstar,  # noqa: F821
    snakemake.output.raw,  # noqa: F821
    snakemake.output.truth,  # noqa: F821
)
