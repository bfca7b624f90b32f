"""The tunable parameters (:data:`DEFAULT_PARAMS`) and small shared helpers."""

from __future__ import annotations

import copy
import functools
import math

import numpy as np

from gaiacnn.constants import (
    RVS_RESOLVING_POWER,
    RVS_WAVELENGTH_MIN_NM,
    RVS_WAVELENGTH_STEP_NM,
    rvs_wavelength_nm,
)
from gaiacnn.demo.physics.constants import THETA_NUM

DEFAULT_PARAMS: dict = {
    # rvs_spec_sig_to_noise floor of published DR3 spectra (paper Fig. 1)
    "snr_floor": 15.0,
    "population": {
        # fractions of n per population (OOD ones are for the observed sample only)
        "fractions": {
            "thin_disc": 0.66,
            "thick_disc": 0.24,
            "halo": 0.03,
            "ob_star": 0.02,
            "m_giant": 0.02,
            "cool_dwarf": 0.02,
            "binary": 0.01,
        },
        "giant_fraction": 0.70,  # log g < 3.5 among thin/thick/halo stars
        "red_clump_fraction_of_giants": 0.35,  # disc giants in the clump (none in the halo)
        "subgiant_fraction_of_dwarfs": 0.30,
        "binary_fraction_of_dwarfs": 0.03,  # in-population unresolved binaries (RUWE > 1.4)
        "thin_disc": {
            "m_h_mean": -0.05,
            "m_h_sigma": 0.22,  # dex, at R0
            "m_h_gradient_dex_per_kpc": -0.06,
            "alpha_at_solar": 0.02,
            "alpha_slope": -0.08,  # [a/M] = a0 + slope*[M/H]
            "alpha_sigma": 0.02,
            "giant_mass_median": 1.3,
            "giant_mass_lnsigma": 0.3,  # Msun
        },
        "thick_disc": {
            "m_h_mean": -0.5,
            "m_h_sigma": 0.25,
            "m_h_gradient_dex_per_kpc": 0.0,
            "alpha_plateau": 0.26,
            "alpha_knee_m_h": -0.7,  # plateau below the knee
            "alpha_slope_above_knee": -0.17,  # d[a/M]/d[M/H] above the knee
            "alpha_sigma": 0.025,
            "giant_mass_median": 1.0,
            "giant_mass_lnsigma": 0.15,
        },
        "halo": {
            "m_h_mean": -1.4,
            "m_h_sigma": 0.5,
            "m_h_min": -2.5,
            "m_h_max": -0.5,
            "alpha_mean": 0.30,
            "alpha_sigma": 0.05,
            "giant_mass_median": 0.85,
            "giant_mass_lnsigma": 0.1,
        },
        "m_h_limits": [-2.5, 0.5],  # dex, clip of all [M/H]
        "fe_h_scatter": 0.03,  # [Fe/H] = [M/H] + N(0, this)
        "dwarf_teff_mean": 5700.0,
        "dwarf_teff_sigma": 550.0,  # K
        "dwarf_teff_limits": [4300.0, 6800.0],
        "dwarf_logg_sigma": 0.08,
        "subgiant_logg_limits": [3.5, 4.1],
        "rgb_logg_limits": [1.0, 3.45],
        "rgb_teff_at_logg25": 4650.0,  # K, solar [M/H]
        "rgb_teff_per_logg": 380.0,  # K/dex
        "rgb_teff_per_m_h": -300.0,  # K/dex (metal-poor giants are hotter)
        "rgb_teff_sigma": 70.0,
        "rc_teff_mean": 4800.0,
        "rc_teff_sigma": 60.0,
        "rc_teff_per_m_h": -150.0,
        "rc_logg_mean": 2.45,
        "rc_logg_sigma": 0.06,
        "vsini_median_kms": 3.0,
        "vsini_lnsigma": 0.4,
        "ob_star": {
            "teff_limits": [10000.0, 30000.0],
            "logg_limits": [3.5, 4.3],
            "vsini_median_kms": 120.0,
            "vsini_lnsigma": 0.5,
            "scale_height_kpc": 0.1,
        },
        "m_giant": {"teff_limits": [3200.0, 3900.0], "logg_limits": [0.0, 1.2]},
        "cool_dwarf": {
            "teff_limits": [3300.0, 4100.0],
            "logg_limits": [4.6, 5.0],
            "max_distance_pc": 200.0,
        },
        "binary": {"primary_teff_limits": [4800.0, 6000.0], "mass_ratio_limits": [0.6, 1.0]},
        "binaries": {
            "mass_ratio_limits": [0.3, 1.0],  # in-population binaries
            "relative_rv_kms": [20.0, 80.0],  # |v2 - v1| uniform in this range
            "ruwe_limits": [1.4, 6.0],  # log-uniform
        },
    },
    "galaxy": {
        "thin_disc": {"scale_length_kpc": 2.6, "scale_height_kpc": 0.3},
        "thick_disc": {"scale_length_kpc": 2.0, "scale_height_kpc": 0.9},
        "halo": {"power_law_index": 3.5, "flattening_q": 0.7, "core_radius_kpc": 1.0},
        "dust": {
            "a_v_per_kpc": 0.8,  # mag/kpc in the plane
            "scale_height_kpc": 0.12,
            "lnsigma": 0.3,  # lognormal star-to-star scatter
            "a_rvs_per_a_v": 0.56,  # A(858 nm)/A_V for the visibility limit
        },
        "bright_limit_grvs": 2.5,  # brighter stars saturate (no RVS spectrum)
    },
    "spectrum": {
        "microturbulence_kms": [1.0, 0.25],  # xi = a + b (4.5 - log g), km/s
        "rv_shift_sigma_kms": 1.0,  # residual RV shift (fraction of a 3.49 km/s pixel)
        "paschen_log_eta_peak": 0.3,  # log10 central optical depth of P13 at the peak
        "paschen_teff_peak": 9500.0,  # K
        "paschen_log_width_cool": 0.117,  # dex in log Teff (cool side, steep)
        "paschen_log_width_hot": 0.5,  # dex in log Teff (hot side, slow)
        "paschen_log_damping": -0.8,
        "ion_fade_teff": {"Ca II": 11000.0, "Cr II": 14000.0, "V II": 12000.0},  # K
        "tio_tau_ref": 0.04,  # TiO optical depth scale at tio_teff_ref
        "tio_teff_ref": 3900.0,  # K
        "tio_teff_scale": 200.0,  # K (e-folding toward cooler Teff)
        "tio_teff_off": 4200.0,  # K, no TiO above this
        "nitrogen_dredge_up": [0.15, 0.25],  # [N/M] = a + b (mass - 1) in giants, dex
        "nitrogen_dredge_up_max": 0.8,
        "nan_edges": {
            "p_zero": 0.6,  # probability of no NaN pixel at an edge
            "max_pixels": 40,  # otherwise uniform in 1..max_pixels
        },
    },
    "sed": {
        "blanketing_tau": 0.35,  # blue line blanketing optical depth, solar star at 320 nm
        "blanketing_scale_nm": 100.0,  # e-folding length toward the red, nm
        "blanketing_teff_power": 3.0,  # tau ~ (Teff_sun / Teff)^p
        "blanketing_alpha_weight": 0.5,  # tau ~ 10^([M/H] + w [alpha/M])
        "balmer_jump_peak_mag": 1.3,
        "balmer_jump_teff_peak": 9500.0,
        "balmer_jump_log_width": 0.15,
        "balmer_jump_logg_coeff": 0.2,  # BJ *= 1 + c (4 - log g)
        "tio_sed_tau_scale": 0.5,  # SED TiO depth relative to the RVS TiO optical depth
        "sun_abs_mag": {"g": 4.67, "bp": 5.03, "rp": 4.21},  # solar M_G, BP-RP = 0.82
        "electron_zero_point": {"g": 25.69, "bp": 25.34, "rp": 24.76},  # mag for 1 e-/s
    },
    "photometry": {
        "grvs_colour_terms": [-0.04, -0.10],  # G_RVS = G_RP + a + b (BP - RP)
        "exposure_s": {"g": 1600.0, "bp": 180.0, "rp": 180.0},  # effective, all transits
        "background_e_per_s": {"g": 200.0, "bp": 2000.0, "rp": 2000.0},
        "relative_floor": {"g": 0.0006, "bp": 0.0013, "rp": 0.0010},
        "xp_exposure_s": 180.0,
        "xp_background_e_per_s": 50.0,  # per basis function
    },
    "astrometry": {
        "parallax_sigma_mas": [0.015, 0.03],  # sigma = a + b 10^(0.2 (G - 15))
        "ruwe_lnsigma": 0.1,
    },
    # An observed field unlike the training stars (identity by default): a star drawn at
    # distance d is placed at distance_factor x d on the same line of sight, seen by a
    # survey that reaches distance_factor times farther at the same S/N (its S/N law moved
    # by 5 log10 distance_factor mag), with a_v_factor x the extinction drawn at d, its
    # parallax error x parallax_error_factor and its RVS S/N x snr_factor.  Distance and
    # extinction are thus separate knobs.  The demo survey's ``shift`` section sets it.
    "observed_shift": {
        "distance_factor": 1.0,
        "a_v_factor": 1.0,
        "parallax_error_factor": 1.0,
        "snr_factor": 1.0,
    },
    # Gaia DR3 radial_velocity_error [km/s] written to gaia_source (radial_velocity_error:
    # eVrad = sqrt(floor^2 + (at_snr_ref * snr_ref / snr * hot * lognormal scatter)^2), hot
    # = (Teff / hot_teff)^hot_power above hot_teff, else 1).  Katz et al. 2023 (A&A 674, A5,
    # Gaia DR3 radial velocities): median formal precision 1.3 km/s at G_RVS = 12 and
    # 6.4 km/s at G_RVS = 14, larger for hot stars (few, broad lines); 0.11 km/s is the
    # calibration floor DR2/DR3 add in quadrature (Katz et al. 2019; 2023).  The demo's
    # median S/N at G_RVS = 12 is snr.snr_at_ref = 20, so 1.3 km/s at S/N 20; the 1/S/N law
    # then gives ~6.5 km/s at S/N 4 (G_RVS ~ 14), as DR3.  Drawn from its own generator: no
    # other demo value depends on it; enabled false writes no such column (a survey
    # without it).  Not tied to the spectra's residual shift spectrum.rv_shift_sigma_kms.
    "rv_error": {
        "enabled": True,
        "at_snr_ref_kms": 1.3,  # km/s at S/N = snr_ref
        "snr_ref": 20.0,
        "floor_kms": 0.11,  # km/s, in quadrature
        "hot_teff": 7000.0,  # K
        "hot_power": 2.0,
        "lnsigma": 0.25,  # star-to-star scatter (transits, crowding, template mismatch)
    },
    "snr": {
        "snr_at_ref": 20.0,  # median rvs_spec_sig_to_noise at G_RVS = grvs_ref
        "grvs_ref": 12.0,
        "background_ratio": 1.0,  # background / source counts at grvs_ref
        "transit_lnsigma": 0.3,  # lognormal scatter (number of transits, crowding)
        "candidate_selection_slope": 0.15,  # extra weight 10^(-s (G_RVS - grvs_ref))
    },
}


# ==========================================================================================
# helpers
# ==========================================================================================
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _theta(teff: np.ndarray) -> np.ndarray:
    return THETA_NUM / np.asarray(teff, dtype=np.float64)


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, val in override.items():
        if isinstance(val, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], val)
        else:
            out[key] = val
    return out


def merge_params(overrides: dict | None) -> dict:
    """:data:`DEFAULT_PARAMS` with ``overrides`` (``config["demo"]["physics"]``) merged in.

    Raises ``ValueError`` naming the first key path that :data:`DEFAULT_PARAMS` lacks, so a
    typo in the configuration cannot be silently ignored.
    """

    def check(base: dict, over: dict, prefix: str) -> None:
        for key, val in over.items():
            if key not in base:
                raise ValueError(
                    f"demo.physics.{prefix}{key} is not a parameter of the demo "
                    "physics (see gaiacnn.demo.physics.DEFAULT_PARAMS)"
                )
            if isinstance(val, dict) and isinstance(base[key], dict):
                check(base[key], val, f"{prefix}{key}.")

    check(DEFAULT_PARAMS, overrides or {}, "")
    return _with_defaults(overrides or None)


def _with_defaults(params: dict | None) -> dict:
    if params is None or params is DEFAULT_PARAMS:
        return DEFAULT_PARAMS
    return _merge(DEFAULT_PARAMS, params)


@functools.lru_cache(maxsize=1)
def _rvs_grid() -> np.ndarray:
    grid = rvs_wavelength_nm()
    grid.setflags(write=False)
    return grid


def _lsf_sigma_nm(wavelength_nm: float) -> float:
    return wavelength_nm / RVS_RESOLVING_POWER / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def _pixel(wavelength_nm: float) -> float:
    return (wavelength_nm - RVS_WAVELENGTH_MIN_NM) / RVS_WAVELENGTH_STEP_NM


def _nitrogen_enhancement(logg: np.ndarray, mass: np.ndarray, params: dict) -> np.ndarray:
    """[N/M] from first dredge-up: zero on the main sequence, rising with mass in giants."""
    a, b = params["spectrum"]["nitrogen_dredge_up"]
    giant_weight = np.clip((3.8 - logg) / 0.6, 0.0, 1.0)
    n_enh = np.clip(a + b * (mass - 1.0), 0.0, params["spectrum"]["nitrogen_dredge_up_max"])
    return giant_weight * n_enh
