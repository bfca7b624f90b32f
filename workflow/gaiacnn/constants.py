"""Fixed facts of the Gaia DR3 data products and of the paper's method.

Everything a user may want to change is a config key (``config/config.yaml``,
validated by ``config/schema.yaml``); the values here are the paper's defaults
and the instrument's fixed grid, each citing Guiglion et al. 2024 (A&A 682, A9).
``tests/test_config.py`` checks that the config defaults equal these values.
"""

from __future__ import annotations

import numpy as np

# --- Gaia DR3 RVS mean spectra (Sect. 2.1) -----------------------------------
RVS_WAVELENGTH_MIN_NM = 846.0  # first pixel, nm (Sect. 2.1)
RVS_WAVELENGTH_MAX_NM = 870.0  # last pixel, nm (Sect. 2.1)
RVS_WAVELENGTH_STEP_NM = 0.01  # pixel size, nm (Sect. 2.1)
RVS_N_PIXELS = 2401  # pixels per spectrum (Sect. 2.1)
RVS_RESOLVING_POWER = 11_500.0  # R = lambda / FWHM (Sect. 2.1, Katz et al. 2023)

# Continuum windows whose upper quartile replaces NaN pixels, nm (Sect. 2.1).
CONTINUUM_WINDOWS_NM: tuple[tuple[float, float], ...] = (
    (847.5, 849.5),
    (856.1, 858.2),
    (862.7, 864.8),
)
NAN_FILL_QUANTILE = 0.75  # "upper quartile (Q3)" (Sect. 2.1)

# --- Gaia DR3 XP continuous spectra (Sect. 2.3) -------------------------------
XP_N_COEFFICIENTS = 55  # per band, BP and RP (Sect. 2.3)

# --- Labels (Sect. 2.4) --------------------------------------------------------
# HDF5 name -> (APOGEE DR17 allStar column, unit, TeX-ish display name)
PAPER_LABELS: dict[str, tuple[str, str, str]] = {
    "teff": ("TEFF", "K", "T_eff"),
    "logg": ("LOGG", "dex", "log g"),
    "m_h": ("M_H", "dex", "[M/H]"),
    "alpha_m": ("ALPHA_M", "dex", "[alpha/M]"),
    "fe_h": ("FE_H", "dex", "[Fe/H]"),
}

# --- Training sample cuts (Sect. 2.5) -------------------------------------------
TRAINING_MIN_RVS_SNR = 30.0  # rvs_spec_sig_to_noise >= 30 (Sect. 2.5)
TRAINING_MAX_PARALLAX_RELATIVE_ERROR = 0.2  # parallax_error / parallax < 20 % (Sect. 2.5)
TRAINING_MAX_RUWE = 1.4  # RUWE < 1.4 (Sect. 2.5)


def training_cuts() -> dict[str, float]:
    """The paper's training-sample cuts as ``config["selection"]["training"]`` holds them."""
    return {
        "min_rvs_snr": TRAINING_MIN_RVS_SNR,
        "max_parallax_relative_error": TRAINING_MAX_PARALLAX_RELATIVE_ERROR,
        "max_ruwe": TRAINING_MAX_RUWE,
    }


# --- The paper's sample sizes, quoted beside a run's own (Sect. 2.5, 5.1, 9) ------
# The training sample (Sect. 2.5); 75 % of it, 33 585 stars, trains one member (Sect. 3.2).
PAPER_TRAINING_STARS = 44_780
PAPER_OBSERVED_STARS = 841_300  # the observed sample (Sect. 2.5)
PAPER_TRAINING_LIKE = 669_572  # observed spectra training-like in all four t-SNE maps (Sect. 5.1)
PAPER_RECOMMENDED = 644_287  # observed stars with flag_boundary "00000000" (Sect. 9)
# The training sample's G range (Table 1, Sect. 2.6: "7 < G < 14.2"), the one value of
# Table 1 the paper's text gives; the workflow computes every limit from its own sample.
PAPER_TRAINING_G_RANGE = (7.0, 14.2)  # mag
# The paper's headline precision: the dispersion of CNN - APOGEE over its training sample
# (Sect. 3.3; its "0.11 K" for log g is dex) [K, dex].
PAPER_TRAINING_DISPERSION = {"teff": 59.0, "logg": 0.11, "m_h": 0.07, "alpha_m": 0.04, "fe_h": 0.07}


def paper_fraction(count: int) -> str:
    """``count`` of the paper's observed sample, as the logs quote it: "669 572 of 841 300,
    79.6 %"."""
    share = 100.0 * count / PAPER_OBSERVED_STARS

    def spaced(n: int) -> str:
        return f"{n:,}".replace(",", " ")

    return f"{spaced(count)} of {spaced(PAPER_OBSERVED_STARS)}, {share:.1f} %"


# --- APOGEE DR17 ASPCAPFLAG bits (Sect. 2.4; ARCHIVE_NOTES) -------------------
ASPCAPFLAG_STAR_WARN_BIT = 7
ASPCAPFLAG_STAR_BAD_BIT = 23
EXTRATARG_DUPLICATE_BIT = 4

# --- HDF5 interchange layout (SPEC stage 3) ----------------------------------
LAYOUT_SCHEMA_VERSION = "1.0"


def rvs_wavelength_nm() -> np.ndarray:
    """The DR3 RVS pixel grid in nm: 846.00, 846.01, ..., 870.00 (2401 values)."""
    return np.round(RVS_WAVELENGTH_MIN_NM + RVS_WAVELENGTH_STEP_NM * np.arange(RVS_N_PIXELS), 6)


def label_unit(name: str) -> str:
    """Unit of label ``name`` (``teff`` in K; abundances and log g in dex); errors alike."""
    base = name.removesuffix("_err")
    return PAPER_LABELS[base][1] if base in PAPER_LABELS else "dex"
