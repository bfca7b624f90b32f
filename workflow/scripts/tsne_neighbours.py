"""Rule tsne_neighbours: the neighbour graph shared by the t-SNE maps of every perplexity."""

import os
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
os.dup2(sys.stderr.fileno(), 2)  # C-level messages too

from gaiacnn.pipeline import run_tsne_neighbours, setup_logging  # noqa: E402

setup_logging()
run_tsne_neighbours(
    snakemake.input.training,  # noqa: F821
    snakemake.input.observed,  # noqa: F821
    snakemake.output[0],  # noqa: F821
    mode=snakemake.params.mode,  # noqa: F821
    tsne_cfg=snakemake.params.tsne,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
)
