"""Rule tsne_place (scalable mode): place one shard of observed spectra into every map."""

import os
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
os.dup2(sys.stderr.fileno(), 2)  # C-level messages too

from gaiacnn.pipeline import run_tsne_place, setup_logging  # noqa: E402

setup_logging()
run_tsne_place(
    snakemake.input.observed,  # noqa: F821
    snakemake.input.index,  # noqa: F821
    list(snakemake.input.models),  # noqa: F821
    snakemake.output[0],  # noqa: F821
    shard=int(snakemake.wildcards.shard),  # noqa: F821
    tsne_cfg=snakemake.params.tsne,  # noqa: F821
)
