"""Rule gaia_spectra: RVS spectra and XP coefficients of the selected stars (DataLink)."""

import os
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
os.dup2(sys.stderr.fileno(), 2)

from gaiacnn.pipeline import run_gaia_spectra, setup_logging  # noqa: E402

setup_logging()
run_gaia_spectra(
    [snakemake.input.training, snakemake.input.observed],  # noqa: F821
    snakemake.params.gaia,  # noqa: F821
    snakemake.output[0],  # noqa: F821
    snakemake.params.provenance,  # noqa: F821
)
