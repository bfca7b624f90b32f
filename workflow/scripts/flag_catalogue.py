"""Rule flag_catalogue: the catalogue with the boundary flag (the paper's 8 digits + inputs)."""

import os
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
os.dup2(sys.stderr.fileno(), 2)  # C-level messages too

from gaiacnn.pipeline import run_flag_catalogue, setup_logging  # noqa: E402

setup_logging()
run_flag_catalogue(
    snakemake.input.labels,  # noqa: F821
    snakemake.input.tsne,  # noqa: F821
    snakemake.input.model,  # noqa: F821
    snakemake.output.fits,  # noqa: F821
    snakemake.output.csv,  # noqa: F821
    labels=snakemake.params.labels,  # noqa: F821
    input_digit=snakemake.params.input_digit,  # noqa: F821
)
