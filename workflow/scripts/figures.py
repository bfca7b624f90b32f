"""Rule figures: every validation figure the data allows, and their index."""

import os
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
os.dup2(sys.stderr.fileno(), 2)  # C-level messages too

from gaiacnn.pipeline import run_figures, setup_logging  # noqa: E402

setup_logging()
run_figures(
    dict(snakemake.input.items()),  # noqa: F821
    snakemake.output[0],  # noqa: F821
    figures_cfg=snakemake.params.figures,  # noqa: F821
    snr_edges=snakemake.params.snr_edges,  # noqa: F821
)
