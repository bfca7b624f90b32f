"""Rule gaia_query: the selection table of every RVS star from the Gaia archive."""

import os
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
os.dup2(sys.stderr.fileno(), 2)

from gaiacnn.pipeline import run_gaia_query, setup_logging  # noqa: E402

setup_logging()
run_gaia_query(snakemake.params.gaia, snakemake.output[0])  # noqa: F821
