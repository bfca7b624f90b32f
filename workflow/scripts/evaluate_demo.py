"""Rule evaluate_demo: precision per label and S/N bin against the demo's truth."""

import os
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
os.dup2(sys.stderr.fileno(), 2)  # C-level messages (TensorFlow, HDF5) too

from gaiacnn.pipeline import run_evaluation, setup_logging  # noqa: E402

setup_logging()
run_evaluation(
    snakemake.input.catalogue,  # noqa: F821
    snakemake.input.truth,  # noqa: F821
    snakemake.input.model,  # noqa: F821
    snakemake.output.precision,  # noqa: F821
    labels=snakemake.params.labels,  # noqa: F821
    branches=snakemake.params.branches,  # noqa: F821
    snr_edges=snakemake.params.snr_edges,  # noqa: F821
    gaia_source=snakemake.input.gaia_source,  # noqa: F821
    shift_out=snakemake.output.shift,  # noqa: F821
)
