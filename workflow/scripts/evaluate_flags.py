"""Rule evaluate_flags (demo): the t-SNE digit of the flag against the true populations."""

import os
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
os.dup2(sys.stderr.fileno(), 2)  # C-level messages too

from gaiacnn.pipeline import run_flag_evaluation, setup_logging  # noqa: E402

setup_logging()
run_flag_evaluation(
    snakemake.input.catalogue,  # noqa: F821
    snakemake.input.truth,  # noqa: F821
    snakemake.output.tsne,  # noqa: F821
    model_json=snakemake.input.model,  # noqa: F821
    inputs_out=snakemake.output.inputs,  # noqa: F821
)
