"""Rule tsne_reference (scalable mode): the reference map and its saved embedding."""

import os
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
os.dup2(sys.stderr.fileno(), 2)  # C-level messages too

from gaiacnn.pipeline import run_tsne_reference, setup_logging  # noqa: E402

setup_logging()
run_tsne_reference(
    snakemake.input.graph,  # noqa: F821
    snakemake.output.model,  # noqa: F821
    snakemake.output.map,  # noqa: F821
    perplexity=float(snakemake.wildcards.perplexity),  # noqa: F821
    tsne_cfg=snakemake.params.tsne,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
)
