"""Spectra: the continuum windows and the NaN filling of the RVS spectra (Sect. 2.1); the
normalisation of the XP spectra that the model's XP branch, the t-SNE and the figures share;
the photometry branch's input forms."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from gaiacnn.constants import CONTINUUM_WINDOWS_NM, NAN_FILL_QUANTILE
from gaiacnn.layout import (
    PARALLAX_DATASET,
    PARALLAX_ERROR_DATASET,
    PHOT_DATASETS,
    PHOT_INPUTS,
    XP_COEFFICIENT_DATASETS,
    XP_SAMPLED_DATASET,
)


def window_mask(wavelength_nm: np.ndarray, windows_nm: Sequence[Sequence[float]]) -> np.ndarray:
    """Boolean mask (P,) of the pixels inside any of the closed intervals ``windows_nm`` [nm]."""
    wl = np.asarray(wavelength_nm, dtype=float)
    mask = np.zeros(wl.shape, dtype=bool)
    for lo, hi in windows_nm:
        mask |= (wl >= lo - 1e-9) & (wl <= hi + 1e-9)
    return mask


def fill_nan_pixels(
    flux: np.ndarray,
    wavelength_nm: np.ndarray,
    windows_nm: Sequence[Sequence[float]] = CONTINUUM_WINDOWS_NM,
    quantile: float = NAN_FILL_QUANTILE,
) -> tuple[np.ndarray, np.ndarray]:
    """Replace NaN pixels by the upper quartile of the continuum-window flux (Sect. 2.1).

    ``flux`` is (n, P) normalised flux on ``wavelength_nm`` (P,).  For each spectrum
    the ``quantile`` (Q3 = 0.75) of its finite pixels inside ``windows_nm`` replaces
    its non-finite pixels.  A spectrum with no finite pixel in the windows (possible
    on another survey's grid) falls back to the quantile of all its finite pixels.

    Returns ``(filled, n_filled)``: a float32 copy and the number of pixels filled
    per spectrum (n,).  Raises ``ValueError`` naming the rows that have no finite
    pixel at all: such a spectrum carries no information and must not be invented.
    """
    flux = np.asarray(flux, dtype=np.float32)
    if flux.ndim != 2:
        raise ValueError(f"flux must be (n, P), got shape {flux.shape}")
    bad = ~np.isfinite(flux)
    n_filled = bad.sum(axis=1)
    out = flux.copy()
    rows = np.nonzero(n_filled)[0]
    if rows.size == 0:
        return out, n_filled
    empty = rows[n_filled[rows] == flux.shape[1]]
    if empty.size:
        raise ValueError(f"{empty.size} spectra have no finite pixel (rows {empty[:5].tolist()})")
    mask = window_mask(wavelength_nm, windows_nm)
    sub = flux[rows][:, mask] if mask.any() else np.full((rows.size, 1), np.nan, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "All-NaN slice": handled below
        level = np.nanquantile(sub, quantile, axis=1)
    fallback = ~np.isfinite(level)
    if fallback.any():
        level[fallback] = np.nanquantile(flux[rows[fallback]], quantile, axis=1)
    block = out[rows]
    block[bad[rows]] = np.repeat(level.astype(np.float32), n_filled[rows])
    out[rows] = block
    return out, n_filled


def normalise_xp(bp: np.ndarray, rp: np.ndarray) -> np.ndarray:
    """BP / BP[:, 0] and RP / RP[:, 0] concatenated: (n, M) + (n, M) -> (n, 2M) float64.

    The first coefficient corresponds to the 15th magnitude (Sect. 3.1, Andrae et al. 2023b).
    A zero first coefficient gives non-finite values, refused by the callers.
    """
    bp = np.asarray(bp, dtype=np.float64)
    rp = np.asarray(rp, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.concatenate([bp / bp[:, :1], rp / rp[:, :1]], axis=1)


def normalise_sampled(flux: np.ndarray, flux_kind: str) -> np.ndarray:
    """XP sampled flux (n, K) -> the XP branch's input before min-max scaling, float64.

    ``flux_kind`` "absolute" (W m-2 nm-1, GaiaXPy's ``calibrate``): each spectrum divided
    by its own mean over the K samples, which takes out the brightness (1e-19 to 1e-13
    across a survey) and keeps the shape; "normalised": the survey's own normalisation,
    kept as it is.  A mean <= 0 gives non-finite values, refused by the callers.
    """
    flux = np.asarray(flux, dtype=np.float64)
    if flux_kind == "normalised":
        return flux
    if flux_kind != "absolute":
        raise ValueError(f"flux_kind {flux_kind!r}: absolute or normalised")
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = flux.mean(axis=1, keepdims=True)
        return np.where(mean > 0, flux / mean, np.nan)


def xp_features(
    block: Mapping[str, np.ndarray], xp_input: str | None, flux_kind: str | None = None
) -> np.ndarray:
    """The XP spectra of a row chunk as the XP branch reads them, before min-max scaling:
    normalised coefficients (n, 2M) (:func:`normalise_xp`; ``xp_input`` "coefficients") or
    normalised sampled flux (n, K) (:func:`normalise_sampled`; "sampled", ``flux_kind``)."""
    if xp_input == "sampled":
        return normalise_sampled(block[XP_SAMPLED_DATASET], str(flux_kind))
    return normalise_xp(block[XP_COEFFICIENT_DATASETS[0]], block[XP_COEFFICIENT_DATASETS[1]])


def parallax_withheld(block: Mapping[str, np.ndarray], snr_min: float) -> np.ndarray:
    """(n,) bool: stars whose parallax the "intrinsic_withheld" input withholds, those whose
    parallax / parallax_error is below ``snr_min`` or not finite (an error ≤ 0 included)."""
    plx = np.asarray(block[PARALLAX_DATASET], np.float64)
    err = np.asarray(block[PARALLAX_ERROR_DATASET], np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(err > 0, plx / err, np.nan)
    return ~(np.isfinite(snr) & (snr >= snr_min))


def phot_features(
    block: Mapping[str, np.ndarray],
    columns: Sequence[str],
    phot_input: str,
    withheld_snr: float | None = None,
) -> np.ndarray:
    """The photometry branch's input (n, k) float64, before scaling.

    "magnitudes" (the paper, Sect. 3.1): the ``columns`` as stored (G, BP, RP [mag],
    parallax [mas]).  "intrinsic" (not in the paper): BP − RP and G − RP [mag], then, where
    ``columns`` has the parallax, asinh(ℓ) with ℓ = parallax · 10^(0.2 G) / 100 mas =
    10^(0.2 M_G) (M_G without extinction).  ℓ does not depend on the star's distance, only
    on its luminosity, and stays finite and unbiased for a noisy or negative parallax (a
    magnitude would not); asinh compresses the giants-to-dwarfs range like a logarithm.
    "intrinsic_with_error" adds asinh(σ_ℓ), σ_ℓ the error of ℓ from the parallax error.
    It lets the network tell a precise parallax from a noisy one, but σ_ℓ also tells it
    how far a star is (the training stars with large σ_ℓ are the distant giants), which
    biases log g where the observed stars are farther than the training ones
    (docs/shift.md), so it is not the default.
    "intrinsic_withheld": BP − RP, G − RP, asinh(ℓ) and w, where w = 1 marks a star whose
    parallax S/N is below ``withheld_snr`` (:func:`parallax_withheld`; its asinh(ℓ) is set
    to 0) and w = 0 the others: a parallax noisier than any the network trained on is not
    used, and the network, trained with some parallaxes withheld at random
    (``model.training.withhold_parallax_fraction``), knows it is missing.  w says nothing
    of the star's distance in training, where it is random.
    """
    if phot_input == "magnitudes":
        return np.stack([np.asarray(block[c], dtype=np.float64) for c in columns], axis=1)
    if phot_input not in PHOT_INPUTS:
        raise ValueError(f"unknown phot_input {phot_input!r}")
    g, bp, rp = (np.asarray(block[c], dtype=np.float64) for c in PHOT_DATASETS)
    feats = [bp - rp, g - rp]
    if PARALLAX_DATASET in columns:
        scale = 10.0 ** (0.2 * g) / 100.0
        with np.errstate(invalid="ignore"):
            lum = np.arcsinh(np.asarray(block[PARALLAX_DATASET], np.float64) * scale)
        if phot_input == "intrinsic_withheld":
            if withheld_snr is None:
                raise ValueError("phot_input intrinsic_withheld needs withheld_snr")
            w = parallax_withheld(block, withheld_snr)
            feats += [np.where(w, 0.0, lum), w.astype(np.float64)]
            return np.stack(feats, axis=1)
        feats.append(lum)
        if phot_input == "intrinsic_with_error":
            error = np.asarray(block[PARALLAX_ERROR_DATASET], np.float64)
            feats.append(np.arcsinh(error * scale))
    return np.stack(feats, axis=1)
