"""Rule select_samples: crossmatch, cuts and the cut report."""

import os
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
os.dup2(sys.stderr.fileno(), 2)  # C-level messages (TensorFlow, HDF5) too

from gaiacnn.pipeline import run_selection, setup_logging  # noqa: E402

setup_logging()
run_selection(
    snakemake.input.gaia,  # noqa: F821
    snakemake.input.allstar,  # noqa: F821
    snakemake.output.training,  # noqa: F821
    snakemake.output.observed,  # noqa: F821
    snakemake.output.report,  # noqa: F821
    snakemake.params.selection,  # noqa: F821
    snakemake.params.labels,  # noqa: F821
)
