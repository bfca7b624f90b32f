"""Rule tsne_gather (scalable mode): one perplexity's reference map and the
stars every shard placed into it, as one map."""

import os
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
os.dup2(sys.stderr.fileno(), 2)  # C-level messages too

from gaiacnn.pipeline import run_tsne_gather, setup_logging  # noqa: E402

setup_logging()
run_tsne_gather(
    snakemake.input.reference,  # noqa: F821
    list(snakemake.input.shards),  # noqa: F821
    snakemake.output[0],  # noqa: F821
    perplexity=float(snakemake.wildcards.perplexity),  # noqa: F821
)
