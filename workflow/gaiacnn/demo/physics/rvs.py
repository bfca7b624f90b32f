"""RVS spectra: line strengths, profiles (LSF, Doppler, damping) and the flux."""

from __future__ import annotations

import functools
import math

import numpy as np

from gaiacnn.constants import (
    RVS_N_PIXELS,
    RVS_WAVELENGTH_STEP_NM,
)
from gaiacnn.demo.physics.constants import (
    AMU,
    BROAD_VSINI_KMS,
    C_KMS,
    CN_DISSOCIATION_COEFF,
    CORE_WINDOW_SIGMAS,
    DAMPING_GAMMA_NM,
    DAMPING_GRAVITY_COEFF,
    H_MINUS_EV,
    H_N3_EV,
    HOT_CONTINUUM_TEFF,
    ION_GRAVITY_COEFF,
    K_B,
    LINE_DEPTH_MAX,
    LOG_ETA_CLIP,
    MIN_WINDOW_NM,
    MOLECULE_DEPTH_MAX,
    NEGLIGIBLE_ETA,
    PASCHEN_GAMMA_LOGG_COEFF,
    PASCHEN_GAMMA_NM,
    PASCHEN_STARK_SIGMA_NM,
    PASCHEN_WINDOW_NM,
    REF_LOGG,
    REF_TEFF,
    THETA_NUM,
    TIO_RIPPLE_AMPLITUDE,
    TIO_RIPPLE_PERIOD_NM,
)
from gaiacnn.demo.physics.linelist import LINE_TABLE, PASCHEN_LINES, TIO_BANDS
from gaiacnn.demo.physics.params import (
    DEFAULT_PARAMS,
    _lsf_sigma_nm,
    _nitrogen_enhancement,
    _pixel,
    _rvs_grid,
    _sigmoid,
    _theta,
    _with_defaults,
)


# ==========================================================================================
# RVS spectra
# ==========================================================================================
def line_log_eta(labels: dict[str, np.ndarray], params: dict = DEFAULT_PARAMS) -> np.ndarray:
    """log10 central line-to-continuum optical depth of every LINE_TABLE line.

    Args:
        labels: teff [K], logg [dex], m_h, alpha_m, fe_h [dex], mass [Msun]; shape (n,).
    Returns:
        (n_lines, n) float64.
    """
    params = _with_defaults(params)
    teff = np.asarray(labels["teff"], dtype=np.float64)
    logg = np.asarray(labels["logg"], dtype=np.float64)
    d_theta = _theta(teff) - THETA_NUM / REF_TEFF
    d_logg = logg - REF_LOGG
    abund = {
        "fe": np.asarray(labels["fe_h"], dtype=np.float64),
        "alpha": np.asarray(labels["m_h"]) + np.asarray(labels["alpha_m"]),
        "metal": np.asarray(labels["m_h"], dtype=np.float64),
        "nitrogen": np.asarray(labels["m_h"])
        + _nitrogen_enhancement(logg, np.asarray(labels["mass"]), params),
    }
    fade = params["spectrum"]["ion_fade_teff"]
    # above ~7000 K hydrogen bound-free opacity (n = 3, 12.09 eV) takes over from H-
    theta_sw = THETA_NUM / HOT_CONTINUUM_TEFF
    hot_continuum = -(H_N3_EV - H_MINUS_EV) * np.clip(theta_sw - _theta(teff), 0.0, None)
    out = np.empty((len(LINE_TABLE), teff.size))
    for i, (_, species, group, kind, chi, ion_e, log_eta_ref, _, _) in enumerate(LINE_TABLE):
        log_eta = log_eta_ref + abund[group]
        if kind == "neutral_minority":
            log_eta = log_eta + d_theta * (ion_e - chi - H_MINUS_EV)
        elif kind == "neutral_majority":
            log_eta = log_eta - d_theta * (chi + H_MINUS_EV) + ION_GRAVITY_COEFF * d_logg
        elif kind == "ion_majority":
            log_eta = log_eta - d_theta * (chi + H_MINUS_EV) + ION_GRAVITY_COEFF * d_logg
            theta_half = THETA_NUM / fade[species]
            x = np.clip((theta_half - _theta(teff)) * ion_e, -50.0, 50.0)
            log_eta = log_eta - np.log10(1.0 + 10.0**x)
        elif kind == "molecule":
            log_eta = log_eta + d_theta * CN_DISSOCIATION_COEFF
        else:  # pragma: no cover - table is static
            raise ValueError(kind)
        out[i] = np.clip(log_eta + hot_continuum, *LOG_ETA_CLIP)
    return out


def _paschen_log_eta(teff: np.ndarray, params: dict) -> np.ndarray:
    """log10 central optical depth of P13 vs Teff (n,): rises above ~7000 K, peaks ~A0."""
    sp = params["spectrum"]
    x = np.log10(teff) - math.log10(sp["paschen_teff_peak"])
    width = np.where(x < 0.0, sp["paschen_log_width_cool"], sp["paschen_log_width_hot"])
    return np.clip(sp["paschen_log_eta_peak"] - (x / width) ** 2, *LOG_ETA_CLIP)


def _tio_tau(teff: np.ndarray, m_h: np.ndarray, params: dict) -> np.ndarray:
    """TiO optical depth scale (n,): steep rise below ~3900 K, zero above tio_teff_off."""
    sp = params["spectrum"]
    on = np.clip((sp["tio_teff_off"] - teff) / (sp["tio_teff_off"] - sp["tio_teff_ref"]), 0.0, 1.0)
    expo = np.clip((sp["tio_teff_ref"] - teff) / sp["tio_teff_scale"], -50.0, 50.0)
    return sp["tio_tau_ref"] * 10.0**m_h * np.exp(expo) * on


def _doppler_sigma_kms(
    teff: np.ndarray, logg: np.ndarray, vsini: np.ndarray, params: dict, atomic_mass: float = 56.0
) -> np.ndarray:
    a, b = params["spectrum"]["microturbulence_kms"]
    xi = a + b * np.clip(4.5 - logg, 0.0, 4.5)
    thermal2 = K_B * teff / (atomic_mass * AMU) / 1e6  # (km/s)^2
    # rotation: Gaussian approximation of the rotational kernel (sigma ~ 0.6 vsini)
    return np.sqrt(thermal2 + 0.5 * xi**2 + (0.6 * vsini) ** 2)


@functools.lru_cache(maxsize=1)
def _cog_table() -> tuple[np.ndarray, np.ndarray]:
    """Curve of growth of a pure-Doppler line: (log10 eta grid, W / sigma_D).

    W / sigma_D = integral of 1 - exp(-eta exp(-x^2 / 2)) dx (x in Doppler sigmas).
    """
    log_eta = np.linspace(LOG_ETA_CLIP[0], LOG_ETA_CLIP[1], 321)
    x = np.linspace(-12.0, 12.0, 4801)
    prof = np.exp(-0.5 * x**2)
    w = np.array([np.sum(-np.expm1(-(10.0**le) * prof)) * (x[1] - x[0]) for le in log_eta])
    log_eta.setflags(write=False)
    w.setflags(write=False)
    return log_eta, w


def _line_window(
    grid: np.ndarray, centre: np.ndarray, half_window: float
) -> tuple[int, int, np.ndarray] | None:
    """Pixel range [j0, j1) within ``half_window`` nm of every star's ``centre`` (n,), and
    the offsets ``dx`` (n, j1 - j0) [nm] of those pixels; None if it misses the grid."""
    lo = float(np.min(centre)) - half_window
    hi = float(np.max(centre)) + half_window
    j0 = max(0, math.floor(_pixel(lo)))
    j1 = min(grid.size, math.ceil(_pixel(hi)) + 1)
    if j1 <= j0:
        return None
    return j0, j1, grid[None, j0:j1] - centre[:, None]


def _add_gaussian_line(
    flux: np.ndarray,
    grid: np.ndarray,
    centre: np.ndarray,
    depth: np.ndarray,
    sigma: np.ndarray,
    half_window: float,
) -> None:
    """Multiply ``flux`` in place by 1 - depth exp(-(lambda - centre)^2 / 2 sigma^2)."""
    window = _line_window(grid, centre, half_window)
    if window is None:
        return
    j0, j1, dx = window
    flux[:, j0:j1] *= 1.0 - depth[:, None] * np.exp(-0.5 * (dx / sigma[:, None]) ** 2)


def _add_line(
    flux: np.ndarray,
    grid: np.ndarray,
    centre: np.ndarray,
    eta: np.ndarray,
    sigma: np.ndarray,
    half_window: float,
    d_max: float,
    wing_amp: np.ndarray | None = None,
    gamma: np.ndarray | None = None,
) -> None:
    """Multiply ``flux`` (n, n_pix) in place by one line's transmission 1 - depth(lambda).

    depth = d_max tau / (1 + tau), tau = eta [exp(-x^2/2s^2) + A gamma^2/(x^2 + gamma^2)].
    Only pixels within ``half_window`` (nm, plus the largest shift) of the rest wavelength
    are touched.
    """
    window = _line_window(grid, centre, half_window)
    if window is None:
        return
    j0, j1, dx = window
    tau = np.exp(-0.5 * (dx / sigma[:, None]) ** 2)
    if wing_amp is not None:
        g2 = (gamma**2)[:, None]
        tau += wing_amp[:, None] * g2 / (dx**2 + g2)
    tau *= eta[:, None]
    flux[:, j0:j1] *= 1.0 - d_max * tau / (1.0 + tau)


def _rvs_flux_group(labels: dict[str, np.ndarray], rv_kms: np.ndarray, params: dict) -> np.ndarray:
    grid = _rvs_grid()
    n = rv_kms.size
    flux = np.ones((n, grid.size))
    if n == 0:
        return flux
    teff = labels["teff"]
    logg = labels["logg"]
    vsini = labels["vsini_kms"]
    doppler = 1.0 + rv_kms / C_KMS
    sig_v = _doppler_sigma_kms(teff, logg, vsini, params)
    sig_intr = _doppler_sigma_kms(teff, logg, np.zeros_like(vsini), params)
    log_eta = line_log_eta(labels, params)
    cog_x, cog_w = _cog_table()
    gamma = DAMPING_GAMMA_NM * 10.0 ** (DAMPING_GRAVITY_COEFF * (logg - REF_LOGG))
    for i, (lam, _, _, kind, _, _, _, log_damp, window) in enumerate(LINE_TABLE):
        eta = 10.0 ** log_eta[i]
        if np.max(eta) < NEGLIGIBLE_ETA:
            continue
        sigma = np.sqrt(_lsf_sigma_nm(lam) ** 2 + (lam * sig_v / C_KMS) ** 2)
        half = max(MIN_WINDOW_NM, CORE_WINDOW_SIGMAS * float(np.max(sigma)), window)
        d_max = MOLECULE_DEPTH_MAX if kind == "molecule" else LINE_DEPTH_MAX
        if math.isnan(log_damp):
            # curve of growth with the intrinsic Doppler width, rendered at the LSF
            ew = lam * sig_intr / C_KMS * np.interp(log_eta[i], cog_x, cog_w)
            depth = np.minimum(ew / (math.sqrt(2.0 * math.pi) * sigma), d_max)
            _add_gaussian_line(flux, grid, lam * doppler, depth, sigma, half)
        else:
            amp = np.full(n, 10.0**log_damp)
            _add_line(flux, grid, lam * doppler, eta, sigma, half, d_max, amp, gamma)
    # Paschen lines (Stark-broadened cores and wings)
    sp = params["spectrum"]
    log_eta_p = _paschen_log_eta(teff, params)
    if np.max(log_eta_p) > math.log10(NEGLIGIBLE_ETA):
        sig_h = _doppler_sigma_kms(teff, logg, vsini, params, atomic_mass=1.008)
        gamma_p = PASCHEN_GAMMA_NM * 10.0 ** (PASCHEN_GAMMA_LOGG_COEFF * (logg - 4.0))
        amp = np.full(n, 10.0 ** sp["paschen_log_damping"])
        for _, lam, rel in PASCHEN_LINES:
            sigma = np.sqrt(
                _lsf_sigma_nm(lam) ** 2 + PASCHEN_STARK_SIGMA_NM**2 + (lam * sig_h / C_KMS) ** 2
            )
            eta = 10.0 ** (log_eta_p + rel)
            _add_line(
                flux,
                grid,
                lam * doppler,
                eta,
                sigma,
                PASCHEN_WINDOW_NM,
                LINE_DEPTH_MAX,
                amp,
                gamma_p,
            )
    # TiO bands (heads degrading to the red, with a rotational ripple)
    tio = _tio_tau(teff, labels["m_h"], params)
    cool = np.flatnonzero(tio > 0.0)
    if cool.size:
        lsf = _lsf_sigma_nm(858.0)
        tau = np.zeros((cool.size, grid.size))
        for head, rel, decay in TIO_BANDS:
            head_shifted = head * doppler[cool, None]
            dx = grid[None, :] - head_shifted
            onset = _sigmoid(dx / (0.6 * lsf))
            ripple = 1.0 + TIO_RIPPLE_AMPLITUDE * np.cos(2.0 * np.pi * dx / TIO_RIPPLE_PERIOD_NM)
            tau += rel * onset * np.exp(-np.clip(dx, 0.0, None) / decay) * ripple
        flux[cool] *= np.exp(-tio[cool, None] * tau)
    return flux


def _rvs_flux(
    labels: dict[str, np.ndarray], rv_kms: np.ndarray, params: dict = DEFAULT_PARAMS
) -> np.ndarray:
    """Noise-free normalised RVS flux (n, 2401) float64 of single stars.

    labels: teff, logg, m_h, alpha_m, fe_h, mass, vsini_kms (n,); rv_kms (n,) Doppler shift.
    Stars are processed in two groups (slow / fast rotators) so that the line windows of
    slow rotators stay narrow.
    """
    params = _with_defaults(params)
    n = np.asarray(rv_kms).size
    flux = np.ones((n, RVS_N_PIXELS))
    vsini = np.asarray(labels["vsini_kms"], dtype=np.float64)
    for broad in (False, True):
        idx = np.flatnonzero((vsini > BROAD_VSINI_KMS) == broad)
        if idx.size == 0:
            continue
        sub = {
            k: np.asarray(labels[k], dtype=np.float64)[idx]
            for k in ("teff", "logg", "m_h", "alpha_m", "fe_h", "mass", "vsini_kms")
        }
        flux[idx] = _rvs_flux_group(sub, np.asarray(rv_kms, dtype=np.float64)[idx], params)
    return flux


def equivalent_width(flux: np.ndarray, centre_nm: float, half_width_nm: float) -> np.ndarray:
    """Equivalent width [nm] = sum (1 - F) dλ over |λ - centre| <= half_width; flux (n, 2401)."""
    grid = _rvs_grid()
    sel = np.abs(grid - centre_nm) <= half_width_nm + 1e-9
    return np.nansum(1.0 - np.asarray(flux)[..., sel], axis=-1) * RVS_WAVELENGTH_STEP_NM
