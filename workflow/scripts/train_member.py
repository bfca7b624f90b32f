"""Rule train_member: train one ensemble member (split x seed)."""

import os
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
os.dup2(sys.stderr.fileno(), 2)  # C-level messages (TensorFlow, HDF5) too
sys.stdout = sys.stderr  # Keras prints its epoch lines to stdout

from gaiacnn.pipeline import run_train_member, setup_logging  # noqa: E402

setup_logging()
run_train_member(
    snakemake.input[0],  # noqa: F821
    snakemake.output.model,  # noqa: F821
    split=snakemake.wildcards.split,  # noqa: F821
    seed=snakemake.wildcards.seed,  # noqa: F821
    labels=snakemake.params.labels,  # noqa: F821
    branches=snakemake.params.branches,  # noqa: F821
    arch=snakemake.params.arch,  # noqa: F821
    training=snakemake.params.training,  # noqa: F821
    xp_input=snakemake.params.xp_input,  # noqa: F821
    phot_input=snakemake.params.phot_input,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
)
