"""Rule gaia_spectra: RVS spectra and XP coefficients of the selected stars (DataLink)."""

from gaiacnn import job

j = job.start()
from gaiacnn import archive  # noqa: E402

archive.run_gaia_spectra(
    [j.input.training, j.input.observed], j.params.gaia, j.output[0], j.params.provenance
)
