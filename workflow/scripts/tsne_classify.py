"""Rule tsne_classify: training-like in all maps, per observed star."""

import os
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
os.dup2(sys.stderr.fileno(), 2)  # C-level messages too

from gaiacnn.pipeline import run_tsne_classify, setup_logging  # noqa: E402

setup_logging()
run_tsne_classify(
    list(snakemake.input.maps),  # noqa: F821
    snakemake.input.observed,  # noqa: F821
    snakemake.output[0],  # noqa: F821
)
