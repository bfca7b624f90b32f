"""The noise-free observables of a star and the noise models (S/N, errors)."""

from __future__ import annotations

import math

import numpy as np

from gaiacnn.constants import (
    RVS_N_PIXELS,
)
from gaiacnn.demo.physics.constants import (
    MAG_PER_NATS,
    MIN_FLUX,
    PARALLAX_ZERO_POINT_MAS,
    TRANSIT_SIGMAS_FOR_LIMIT,
)
from gaiacnn.demo.physics.params import DEFAULT_PARAMS, _with_defaults
from gaiacnn.demo.physics.rvs import _rvs_flux
from gaiacnn.demo.physics.xp import _grvs, _photometry, _xp_coefficients, xp_basis


# ==========================================================================================
# public deterministic model
# ==========================================================================================
def _single_labels(truth: dict[str, np.ndarray], secondary: bool = False) -> dict[str, np.ndarray]:
    n = np.asarray(truth["teff"]).size
    vsini = np.asarray(truth.get("vsini_kms", np.full(n, 3.0)), dtype=np.float64)
    if not secondary:
        return {
            "teff": truth["teff"],
            "logg": truth["logg"],
            "m_h": truth["m_h"],
            "alpha_m": truth["alpha_m"],
            "fe_h": truth["fe_h"],
            "mass": truth["mass"],
            "vsini_kms": vsini,
        }
    return {
        "teff": truth["teff2"],
        "logg": truth["logg2"],
        "m_h": truth["m_h"],
        "alpha_m": truth["alpha_m"],
        "fe_h": truth["fe_h"],
        "mass": truth["mass2"],
        "vsini_kms": vsini,
    }


def _spectrum(
    truth: dict[str, np.ndarray], params: dict, lum_ratio: np.ndarray | None = None
) -> np.ndarray:
    n = np.asarray(truth["teff"]).size
    rv = np.asarray(truth.get("rv_shift_kms", np.zeros(n)), dtype=np.float64)
    flux = _rvs_flux(_single_labels(truth), rv, params)
    is_bin = np.asarray(truth.get("is_binary", np.zeros(n, bool)), bool)
    if np.any(is_bin):
        b = np.flatnonzero(is_bin)
        if lum_ratio is None:
            lum_ratio = _photometry(truth, params)["lum_ratio"]
        sub = {k: np.asarray(v)[b] for k, v in truth.items() if np.ndim(v) == 1}
        f2 = _rvs_flux(_single_labels(sub, secondary=True), rv[b] + sub["rv2_kms"], params)
        r = lum_ratio[b][:, None]
        flux[b] = (flux[b] + r * f2) / (1.0 + r)
    return np.maximum(flux, MIN_FLUX)


def noise_free_observables(
    truth: dict[str, np.ndarray], params: dict = DEFAULT_PARAMS
) -> dict[str, np.ndarray]:
    """Deterministic forward model of one set of stars.

    Args:
        truth: per-star arrays (n,) -- teff, logg, m_h, alpha_m, fe_h, mass, distance_pc,
            a_v, rv_shift_kms, optionally vsini_kms (default 3 km/s) and, for binaries,
            is_binary, teff2, logg2, mass2, rv2_kms.
    Returns:
        flux (n, 2401) float64 normalised RVS flux without noise or NaN; bp, rp (n, 55) XP
        coefficients [e-/s-like]; g, bp_mag, rp_mag, grvs [mag]; parallax_mas (n,) including
        the DR3 zero point (-0.017 mas); lum_ratio (n,) RVS-band flux ratio secondary/primary;
        bp_counts, rp_counts (n, m) the band spectra [e-/s per SED bin] that were projected.
    """
    params = _with_defaults(params)
    phot = _photometry(truth, params)
    flux = _spectrum(truth, params, phot["lum_ratio"])
    mags = {"g": phot["g"], "bp": phot["bp"], "rp": phot["rp"]}
    xp = _xp_coefficients(phot["sed"], mags, params)
    return {
        "flux": flux,
        "bp": xp["bp"],
        "rp": xp["rp"],
        "bp_counts": xp["bp_counts"],
        "rp_counts": xp["rp_counts"],
        "g": phot["g"],
        "bp_mag": phot["bp"],
        "rp_mag": phot["rp"],
        "grvs": _grvs(phot["bp"], phot["rp"], params),
        "parallax_mas": 1000.0 / np.asarray(truth["distance_pc"], np.float64)
        + PARALLAX_ZERO_POINT_MAS,
        "lum_ratio": phot["lum_ratio"],
    }


# ==========================================================================================
# noise models
# ==========================================================================================
def _median_snr(grvs: np.ndarray, params: dict) -> np.ndarray:
    """Median rvs_spec_sig_to_noise vs G_RVS: photon + background law (n,)."""
    s = params["snr"]
    f = 10.0 ** (-0.4 * (np.asarray(grvs) - s["grvs_ref"]))
    b = s["background_ratio"]
    return s["snr_at_ref"] * f / np.sqrt((f + b) / (1.0 + b))


def _grvs_detection_limit(params: dict) -> float:
    """Faintest G_RVS at which the S/N floor is reachable (+TRANSIT_SIGMAS scatter)."""
    grid = np.linspace(2.0, 20.0, 3601)
    boost = math.exp(TRANSIT_SIGMAS_FOR_LIMIT * params["snr"]["transit_lnsigma"])
    boost *= params["observed_shift"]["snr_factor"]
    ok = _median_snr(grid, params) * boost >= params["snr_floor"]
    return float(grid[ok].max())


def _flux_over_error(mag: np.ndarray, band: str, params: dict) -> np.ndarray:
    ph = params["photometry"]
    rate = 10.0 ** (0.4 * (params["sed"]["electron_zero_point"][band] - mag))
    t = ph["exposure_s"][band]
    rel2 = (
        ph["relative_floor"][band] ** 2
        + 1.0 / (rate * t)
        + ph["background_e_per_s"][band] / (rate**2 * t)
    )
    return 1.0 / np.sqrt(rel2)


def _nan_edges(rng: np.random.Generator, n: int, params: dict) -> tuple[np.ndarray, np.ndarray]:
    ne = params["spectrum"]["nan_edges"]
    lead = np.where(rng.random(n) < ne["p_zero"], 0, rng.integers(1, ne["max_pixels"] + 1, n))
    trail = np.where(rng.random(n) < ne["p_zero"], 0, rng.integers(1, ne["max_pixels"] + 1, n))
    return lead, trail


def _observe(
    rng: np.random.Generator,
    truth: dict[str, np.ndarray],
    model: dict[str, np.ndarray],
    snr: np.ndarray,
    transit_factor: np.ndarray,
    params: dict,
) -> dict[str, np.ndarray]:
    """Add noise to the noise-free model; returns the ``observed`` dict (float32)."""
    n = snr.size
    flux_true = model["flux"]
    sigma = np.sqrt(flux_true) / snr[:, None]
    flux = flux_true + sigma * rng.standard_normal(flux_true.shape)
    lead, trail = _nan_edges(rng, n, params)
    pix = np.arange(RVS_N_PIXELS)[None, :]
    bad = (pix < lead[:, None]) | (pix >= RVS_N_PIXELS - trail[:, None])
    flux[bad] = np.nan
    sigma = np.where(bad, np.nan, sigma)

    ph = params["photometry"]
    out: dict[str, np.ndarray] = {
        "flux": flux.astype(np.float32),
        "flux_error": sigma.astype(np.float32),
        "snr": snr.astype(np.float32),
    }
    for band in ("bp", "rp"):
        _, basis = xp_basis(band)
        var = (model[band + "_counts"] @ basis**2 + ph["xp_background_e_per_s"]) / (
            ph["xp_exposure_s"] * transit_factor[:, None]
        )
        err = np.sqrt(var)
        out[band + "_coefficients"] = (model[band] + err * rng.standard_normal(err.shape)).astype(
            np.float32
        )
        out[band + "_coefficient_errors"] = err.astype(np.float32)
    for band, key in (("g", "g"), ("bp", "bp_mag"), ("rp", "rp_mag")):
        foe = _flux_over_error(model[key], band, params) * np.sqrt(transit_factor)
        mag = model[key] + MAG_PER_NATS / foe * rng.standard_normal(n)
        out[f"phot_{band}_mean_mag"] = mag.astype(np.float32)
        out[f"phot_{band}_mean_flux_over_error"] = foe.astype(np.float32)
    ast = params["astrometry"]
    is_bin = np.asarray(truth["is_binary"], bool)
    ruwe = np.exp(ast["ruwe_lnsigma"] * rng.standard_normal(n))
    lo, hi = params["population"]["binaries"]["ruwe_limits"]
    ruwe_bin = np.exp(rng.uniform(math.log(lo), math.log(hi), n))
    ruwe = np.where(is_bin, ruwe_bin, ruwe)
    a, b = ast["parallax_sigma_mas"]
    plx_err = (a + b * 10.0 ** (0.2 * (model["g"] - 15.0))) / np.sqrt(transit_factor)
    plx_err = plx_err * np.where(is_bin, ruwe, 1.0)
    plx_err = plx_err * params["observed_shift"]["parallax_error_factor"]
    out["parallax"] = (model["parallax_mas"] + plx_err * rng.standard_normal(n)).astype(np.float32)
    out["parallax_error"] = plx_err.astype(np.float32)
    out["ruwe"] = ruwe.astype(np.float32)
    return out
