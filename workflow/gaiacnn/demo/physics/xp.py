"""SED, passbands, photometry and the XP coefficients and sampled spectra."""

from __future__ import annotations

import functools
import math

import numpy as np

from gaiacnn.constants import (
    XP_N_COEFFICIENTS,
)
from gaiacnn.demo.physics.constants import (
    BALMER_EDGE_NM,
    BALMER_EDGE_WIDTH_NM,
    C2_NM_K,
    C_M_S,
    EXTINCTION_NATS_PER_MAG,
    EXTINCTION_REF_NM,
    EXTINCTION_SLOPE,
    GAIA_PUPIL_AREA_M2,
    LOGG_SUN,
    PASSBAND_EDGE_WIDTH_NM,
    PASSBAND_LIMITS_NM,
    PLANCK_H_J_S,
    SED_GRID_MAX_NM,
    SED_GRID_MIN_NM,
    SED_GRID_STEP_NM,
    TEFF_SUN,
    XP_BAND_GRID_NM,
    XP_HERMITE_HALF_RANGE,
    XP_MERGE_NM,
    XP_SAMPLED_MAX_NM,
    XP_SAMPLED_MIN_NM,
    XP_SAMPLED_STEP_NM,
    XP_THROUGHPUT,
)
from gaiacnn.demo.physics.linelist import TIO_SED_BANDS
from gaiacnn.demo.physics.params import DEFAULT_PARAMS, _sigmoid
from gaiacnn.demo.physics.rvs import _tio_tau


# ==========================================================================================
# SED, photometry, XP
# ==========================================================================================
@functools.lru_cache(maxsize=1)
def _sed_grid() -> np.ndarray:
    n = round((SED_GRID_MAX_NM - SED_GRID_MIN_NM) / SED_GRID_STEP_NM) + 1
    grid = SED_GRID_MIN_NM + SED_GRID_STEP_NM * np.arange(n)
    grid.setflags(write=False)
    return grid


@functools.lru_cache(maxsize=1)
def _passbands() -> dict[str, np.ndarray]:
    """Photon-counting responses (n_sed,) of G, BP, RP: logistic edges x a smooth QE shape."""
    lam = _sed_grid()
    out = {}
    for band, (lo, hi) in PASSBAND_LIMITS_NM.items():
        edges = _sigmoid((lam - lo) / PASSBAND_EDGE_WIDTH_NM * 4.0) * _sigmoid(
            (hi - lam) / PASSBAND_EDGE_WIDTH_NM * 4.0
        )
        if band == "g":
            shape = np.exp(-0.5 * ((lam - 640.0) / 260.0) ** 2)
        elif band == "bp":
            shape = 0.6 + 0.4 * (lam - lo) / (hi - lo)
        else:
            shape = 1.0 - 0.6 * ((lam - lo) / (hi - lo)) ** 2
        resp = edges * shape
        resp.setflags(write=False)
        out[band] = resp
    return out


def _sed_photons_10pc(
    teff: np.ndarray,
    logg: np.ndarray,
    m_h: np.ndarray,
    alpha_m: np.ndarray,
    mass: np.ndarray,
    a_v: np.ndarray | None,
    params: dict,
) -> np.ndarray:
    """Photon SED (n, n_sed) at 10 pc in arbitrary fixed units (solar star ~1 at 550 nm).

    Blackbody x surface area (R^2 = M / g) x blue line blanketing x Balmer jump x TiO x
    extinction A(lambda) = A_V (lambda / 550 nm)^-1.3.
    """
    sp = params["sed"]
    lam = _sed_grid()[None, :]
    teff = np.asarray(teff, dtype=np.float64)[:, None]
    logg = np.asarray(logg, dtype=np.float64)[:, None]
    m_h = np.asarray(m_h, dtype=np.float64)[:, None]
    alpha_m = np.asarray(alpha_m, dtype=np.float64)[:, None]
    mass = np.asarray(mass, dtype=np.float64)[:, None]
    radius2 = mass * 10.0 ** (LOGG_SUN - logg)
    x = np.clip(C2_NM_K / (lam * teff), 1e-6, 700.0)
    planck_photons = (lam / 550.0) ** -4 / np.expm1(x) * np.expm1(C2_NM_K / (550.0 * TEFF_SUN))
    tau = (
        sp["blanketing_tau"]
        * 10.0 ** (m_h + sp["blanketing_alpha_weight"] * alpha_m)
        * (TEFF_SUN / teff) ** sp["blanketing_teff_power"]
        * np.exp(-(lam - SED_GRID_MIN_NM) / sp["blanketing_scale_nm"])
    )
    lt = np.log10(teff) - math.log10(sp["balmer_jump_teff_peak"])
    bj = sp["balmer_jump_peak_mag"] * np.exp(-((lt / sp["balmer_jump_log_width"]) ** 2))
    bj = np.clip(bj * (1.0 + sp["balmer_jump_logg_coeff"] * (4.0 - logg)), 0.0, None)
    tau = tau + EXTINCTION_NATS_PER_MAG * bj * _sigmoid(
        (BALMER_EDGE_NM - lam) / BALMER_EDGE_WIDTH_NM * 4.0
    )
    tio = _tio_tau(teff[:, 0], m_h[:, 0], params)[:, None] * sp["tio_sed_tau_scale"]
    if np.any(tio > 0.0):
        prof = np.zeros_like(lam)
        for centre, width, rel in TIO_SED_BANDS:
            prof = prof + rel * np.exp(-0.5 * ((lam - centre) / width) ** 2)
        tau = tau + tio * prof
    if a_v is not None:
        a_v = np.asarray(a_v, dtype=np.float64)[:, None]
        tau = tau + EXTINCTION_NATS_PER_MAG * a_v * (lam / EXTINCTION_REF_NM) ** -EXTINCTION_SLOPE
    return radius2 * planck_photons * np.exp(-tau)


@functools.lru_cache(maxsize=8)
def _zero_points(sun_g: float, sun_bp: float, sun_rp: float) -> dict[str, float]:
    """Magnitude zero points making the Sun at 10 pc have the requested absolute magnitudes."""
    one = np.ones(1)
    sed = _sed_photons_10pc(
        one * TEFF_SUN, one * LOGG_SUN, one * 0.0, one * 0.0, one, None, DEFAULT_PARAMS
    )[0]
    bands = _passbands()
    target = {"g": sun_g, "bp": sun_bp, "rp": sun_rp}
    return {
        b: target[b] + 2.5 * math.log10(float(np.sum(sed * bands[b])) * SED_GRID_STEP_NM)
        for b in bands
    }


def _band_mags_10pc(sed: np.ndarray, params: dict) -> dict[str, np.ndarray]:
    s = params["sed"]["sun_abs_mag"]
    zps = _zero_points(s["g"], s["bp"], s["rp"])
    bands = _passbands()
    return {
        b: -2.5 * np.log10(np.maximum(sed @ bands[b] * SED_GRID_STEP_NM, 1e-300)) + zps[b]
        for b in bands
    }


@functools.lru_cache(maxsize=2)
def xp_basis(band: str) -> tuple[np.ndarray, np.ndarray]:
    """Fixed orthonormal Gauss–Hermite basis of one XP band.

    Hermite functions psi_k(x), k = 0..54, of a pseudo-wavelength x that maps the band's
    support (XP_BAND_GRID_NM) linearly onto [-XP_HERMITE_HALF_RANGE, +XP_HERMITE_HALF_RANGE],
    sampled on the SED grid and orthonormalised (QR, sign fixed so each function's first
    significant lobe is positive).

    Returns:
        (index of the SED-grid points in the band (m,), basis (m, 55) with basis.T @ basis = I).
    """
    lo, hi = XP_BAND_GRID_NM[band]
    lam = _sed_grid()
    idx = np.flatnonzero((lam >= lo - 1e-9) & (lam <= hi + 1e-9))
    x = (lam[idx] - 0.5 * (lo + hi)) / (0.5 * (hi - lo)) * XP_HERMITE_HALF_RANGE
    psi = np.empty((idx.size, XP_N_COEFFICIENTS))
    psi[:, 0] = math.pi**-0.25 * np.exp(-0.5 * x**2)
    psi[:, 1] = math.sqrt(2.0) * x * psi[:, 0]
    for k in range(1, XP_N_COEFFICIENTS - 1):
        psi[:, k + 1] = (
            math.sqrt(2.0 / (k + 1)) * x * psi[:, k] - math.sqrt(k / (k + 1)) * psi[:, k - 1]
        )
    q, r = np.linalg.qr(psi)
    q = q * np.sign(np.diag(r))[None, :]
    q.setflags(write=False)
    idx.setflags(write=False)
    return idx, q


def _xp_coefficients(
    sed_obs: np.ndarray, mags: dict[str, np.ndarray], params: dict
) -> dict[str, np.ndarray]:
    """XP coefficients (n, 55) of BP and RP: projection of the band's photon counts per
    SED bin, scaled so their sum equals 10^(0.4 (ZP_e - m)) e-/s, onto xp_basis(band)."""
    zpe = params["sed"]["electron_zero_point"]
    bands = _passbands()
    out = {}
    for band in ("bp", "rp"):
        idx, basis = xp_basis(band)
        counts = sed_obs[:, idx] * bands[band][idx]
        total = np.maximum(counts.sum(axis=1), 1e-300)
        scale = 10.0 ** (0.4 * (zpe[band] - mags[band])) / total
        out[band] = (counts * scale[:, None]) @ basis
        out[band + "_counts"] = counts * scale[:, None]
    return out


def xp_sampled_wavelength_nm() -> np.ndarray:
    """GaiaXPy's default sampling grid [nm]: 336-1020 nm in 2 nm steps, (343,) float64."""
    n = round((XP_SAMPLED_MAX_NM - XP_SAMPLED_MIN_NM) / XP_SAMPLED_STEP_NM) + 1
    return XP_SAMPLED_MIN_NM + XP_SAMPLED_STEP_NM * np.arange(n)


def _merge_weight_bp(wavelength_nm: np.ndarray) -> np.ndarray:
    """Weight of BP in the sampled spectrum: 1 below XP_MERGE_NM, 0 above, raised cosine in
    between (RP gets 1 - weight)."""
    lo, hi = XP_MERGE_NM
    t = np.clip((np.asarray(wavelength_nm, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * t))


@functools.lru_cache(maxsize=4)
def _xp_design_matrices(grid: tuple[float, ...]) -> dict[str, np.ndarray]:
    """(K, 55) matrices D_band with sampled flux = bp @ D_bp.T + rp @ D_rp.T [W m^-2 nm^-1].

    Column k of D_band is basis function k of xp_basis(band), in e-/s per SED bin, divided by
    the bin width, the pupil area, the band's throughput and relative response (photons
    s^-1 m^-2 nm^-1), linearly interpolated from the SED grid to ``grid``, times the photon
    energy h c / lambda and the band's merge weight.
    """
    lam = _sed_grid()
    wl = np.asarray(grid, dtype=np.float64)
    w_bp = _merge_weight_bp(wl)
    weights = {"bp": w_bp, "rp": 1.0 - w_bp}
    energy_j = PLANCK_H_J_S * C_M_S / (wl * 1e-9)
    responses = _passbands()
    out = {}
    for band in ("bp", "rp"):
        idx, basis = xp_basis(band)
        lam_b = lam[idx]
        used = weights[band] > 0.0
        outside = used & ((wl < lam_b[0] - 1e-9) | (wl > lam_b[-1] + 1e-9))
        if np.any(outside):
            raise ValueError(
                f"xp_sampled_flux: {wl[outside][0]:g} nm needs {band.upper()}, whose support "
                f"is {lam_b[0]:g}-{lam_b[-1]:g} nm"
            )
        collect = GAIA_PUPIL_AREA_M2 * XP_THROUGHPUT[band] * responses[band][idx]
        photons = basis / (SED_GRID_STEP_NM * collect)[:, None]
        # Linear interpolation matrix (K, m) from the band's SED-grid points to the grid.
        x = np.clip(wl, lam_b[0], lam_b[-1])
        j = np.clip(np.searchsorted(lam_b, x, side="right") - 1, 0, lam_b.size - 2)
        f = (x - lam_b[j]) / (lam_b[j + 1] - lam_b[j])
        interp = np.zeros((wl.size, lam_b.size))
        rows = np.arange(wl.size)
        interp[rows, j] = 1.0 - f
        interp[rows, j + 1] += f
        design = (interp @ photons) * (energy_j * weights[band] * used)[:, None]
        design.setflags(write=False)
        out[band] = design
    return out


def xp_sampled_flux(
    bp_coefficients: np.ndarray,
    rp_coefficients: np.ndarray,
    wavelength_nm: np.ndarray | None = None,
) -> np.ndarray:
    """XP sampled spectra from XP coefficients, as GaiaXPy's ``calibrate`` gives them.

    Args:
        bp_coefficients, rp_coefficients: (n, 55) coefficients of :func:`xp_basis` ("bp",
            "rp") [e-/s per 2 nm SED bin, as in ``observed``; noise included].
        wavelength_nm: (K,) sampling grid [nm], default :func:`xp_sampled_wavelength_nm`
            (336-1020 nm, 2 nm).  BP alone is used below XP_MERGE_NM, RP alone above,
            a smooth weight in between; a point needing a band outside that band's support
            (XP_BAND_GRID_NM) is refused with ValueError.

    Returns:
        (n, K) float64 absolute flux density F_lambda [W m^-2 nm^-1]: the Gauss-Hermite
        expansion evaluated on the grid (photon counts per nm), divided by the pupil area
        GAIA_PUPIL_AREA_M2, the band's throughput XP_THROUGHPUT and relative passband
        response, times the photon energy h c / lambda.  The coefficients' noise propagates
        (faint or red stars can have negative samples, as real XP spectra).  A star with a
        non-finite coefficient in either band gets an all-NaN row.  Order of magnitude:
        ~1e-17 near 600 nm at G = 15, x 10^(-0.4 dG) with G.
    """
    grid = xp_sampled_wavelength_nm() if wavelength_nm is None else wavelength_nm
    design = _xp_design_matrices(tuple(float(v) for v in np.asarray(grid, dtype=np.float64)))
    bp = np.asarray(bp_coefficients, dtype=np.float64)
    rp = np.asarray(rp_coefficients, dtype=np.float64)
    if bp.ndim != 2 or bp.shape != rp.shape or bp.shape[1] != XP_N_COEFFICIENTS:
        raise ValueError(
            f"xp_sampled_flux: coefficients of shape (n, {XP_N_COEFFICIENTS}) expected, "
            f"got BP {bp.shape} and RP {rp.shape}"
        )
    ok = np.isfinite(bp).all(axis=1) & np.isfinite(rp).all(axis=1)
    flux = np.full((bp.shape[0], design["bp"].shape[0]), np.nan)
    flux[ok] = bp[ok] @ design["bp"].T + rp[ok] @ design["rp"].T
    return flux


def _photometry(
    truth: dict[str, np.ndarray],
    params: dict,
    distance_pc: np.ndarray | None = None,
    a_v: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Apparent G/BP/RP (composite for binaries), the observed SED (n, n_sed) and the RVS-band
    luminosity ratio of the secondary."""
    d = np.asarray(truth["distance_pc"] if distance_pc is None else distance_pc, np.float64)
    av = np.asarray(truth["a_v"] if a_v is None else a_v, np.float64)
    sed = _sed_photons_10pc(
        truth["teff"], truth["logg"], truth["m_h"], truth["alpha_m"], truth["mass"], av, params
    )
    lum_ratio = np.zeros(d.size)
    is_bin = np.asarray(truth.get("is_binary", np.zeros(d.size, bool)), bool)
    if np.any(is_bin):
        b = np.flatnonzero(is_bin)
        sed2 = _sed_photons_10pc(
            truth["teff2"][b],
            truth["logg2"][b],
            truth["m_h"][b],
            truth["alpha_m"][b],
            truth["mass2"][b],
            av[b],
            params,
        )
        lam = _sed_grid()
        rvs = (lam >= 846.0) & (lam <= 870.0)
        lum_ratio[b] = sed2[:, rvs].sum(1) / sed[b][:, rvs].sum(1)
        sed[b] += sed2
    sed *= (10.0 / d[:, None]) ** 2
    mags = _band_mags_10pc(sed, params)
    return {"sed": sed, "g": mags["g"], "bp": mags["bp"], "rp": mags["rp"], "lum_ratio": lum_ratio}


def _grvs(g_bp: np.ndarray, g_rp: np.ndarray, params: dict) -> np.ndarray:
    a, b = params["photometry"]["grvs_colour_terms"]
    return g_rp + a + b * (g_bp - g_rp)
