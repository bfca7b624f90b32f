"""Rule predict_member: one member's labels for one shard of one sample, streamed in chunks."""

import os
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
os.dup2(sys.stderr.fileno(), 2)  # C-level messages (TensorFlow, HDF5) too

from gaiacnn.pipeline import run_predict_member, setup_logging  # noqa: E402

setup_logging()
run_predict_member(
    snakemake.input.model,  # noqa: F821
    snakemake.input.arrays,  # noqa: F821
    snakemake.input.rows,  # noqa: F821
    snakemake.output[0],  # noqa: F821
    shard=int(snakemake.wildcards.shard),  # noqa: F821
    prediction_cfg=snakemake.params.prediction,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
)
