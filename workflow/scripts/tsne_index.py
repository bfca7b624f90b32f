"""Rule tsne_index (scalable mode): the reference spectra's neighbour index for placement."""

import os
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
os.dup2(sys.stderr.fileno(), 2)  # C-level messages too

from gaiacnn.pipeline import run_tsne_index, setup_logging  # noqa: E402

setup_logging()
run_tsne_index(
    snakemake.input.training,  # noqa: F821
    snakemake.input.observed,  # noqa: F821
    snakemake.output[0],  # noqa: F821
    tsne_cfg=snakemake.params.tsne,  # noqa: F821
)
