"""Populations, Galactic positions and :func:`simulate_stars`."""

from __future__ import annotations

import math

import numpy as np

from gaiacnn.demo.physics.constants import (
    MAX_CANDIDATE_BATCH,
    MAX_DISTANCE_PC,
    N_DIRECTIONS,
    N_DISTANCE_CELLS,
    OOD_POPULATIONS,
    POPULATION_CODES,
    POSITION_CHUNK,
    R0_KPC,
    STAGE_CODES,
    Z_SUN_KPC,
)
from gaiacnn.demo.physics.observe import (
    _grvs_detection_limit,
    _median_snr,
    _observe,
    noise_free_observables,
)
from gaiacnn.demo.physics.params import DEFAULT_PARAMS, _nitrogen_enhancement, _with_defaults
from gaiacnn.demo.physics.xp import _band_mags_10pc, _grvs, _photometry, _sed_photons_10pc


# ==========================================================================================
# population
# ==========================================================================================
def _ms_relations() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Main-sequence Teff [K], log g, mass [Msun] nodes (solar metallicity)."""
    teff = np.array([3200.0, 3400.0, 3700.0, 4300.0, 5000.0, 5772.0, 6300.0, 6800.0, 7300.0])
    logg = np.array([5.05, 4.95, 4.80, 4.65, 4.58, 4.44, 4.30, 4.15, 4.10])
    mass = np.array([0.20, 0.35, 0.50, 0.68, 0.80, 1.00, 1.15, 1.35, 1.60])
    return teff, logg, mass


def _alpha_of_m_h(pop: str, m_h: np.ndarray, params: dict) -> np.ndarray:
    """Mean [α/M] vs [M/H] of a population (no scatter)."""
    pp = params["population"]
    if pop == "thick_disc":
        p = pp["thick_disc"]
        above = np.clip(m_h - p["alpha_knee_m_h"], 0.0, None)
        return p["alpha_plateau"] + p["alpha_slope_above_knee"] * above
    if pop == "halo":
        return np.full_like(m_h, pp["halo"]["alpha_mean"])
    p = pp["thin_disc"]
    return p["alpha_at_solar"] + p["alpha_slope"] * np.clip(m_h, -1.0, 0.5)


def _draw_labels(
    rng: np.random.Generator, pop: str, stage: str, m: int, params: dict
) -> dict[str, np.ndarray]:
    """Draw ``m`` stars' labels (at R = R0; the gradient is applied after positions)."""
    pp = params["population"]
    mh_lo, mh_hi = pp["m_h_limits"]
    ms_t, ms_g, ms_m = _ms_relations()
    base = "thin_disc" if pop in OOD_POPULATIONS else pop
    # metallicity and alpha
    if base == "halo":
        p = pp["halo"]
        m_h = np.clip(
            p["m_h_mean"] + p["m_h_sigma"] * rng.standard_normal(m), p["m_h_min"], p["m_h_max"]
        )
        a_sig = p["alpha_sigma"]
    else:
        p = pp[base]
        m_h = np.clip(p["m_h_mean"] + p["m_h_sigma"] * rng.standard_normal(m), mh_lo, mh_hi)
        a_sig = p["alpha_sigma"]
    alpha_dev = a_sig * rng.standard_normal(m)
    fe_dev = pp["fe_h_scatter"] * rng.standard_normal(m)
    vsini = pp["vsini_median_kms"] * np.exp(pp["vsini_lnsigma"] * rng.standard_normal(m))
    mass_med = pp[base]["giant_mass_median"]
    mass_sig = pp[base]["giant_mass_lnsigma"]
    teff_dm = 0.0  # dTeff/d[M/H] used when the gradient shifts [M/H]
    if stage == "main_sequence":
        if pop == "cool_dwarf":
            lo, hi = pp["cool_dwarf"]["teff_limits"]
            teff = rng.uniform(lo, hi, m)
            glo, ghi = pp["cool_dwarf"]["logg_limits"]
            logg = np.clip(np.interp(teff, ms_t, ms_g) + 0.05 * rng.standard_normal(m), glo, ghi)
        elif pop == "binary":
            lo, hi = pp["binary"]["primary_teff_limits"]
            teff = rng.uniform(lo, hi, m)
            logg = np.interp(teff, ms_t, ms_g) + pp["dwarf_logg_sigma"] * rng.standard_normal(m)
        else:
            lo, hi = pp["dwarf_teff_limits"]
            teff = np.clip(
                pp["dwarf_teff_mean"] + pp["dwarf_teff_sigma"] * rng.standard_normal(m), lo, hi
            )
            logg = np.interp(teff, ms_t, ms_g) + pp["dwarf_logg_sigma"] * rng.standard_normal(m)
            logg = np.maximum(logg, 4.0)
        mass = np.interp(teff, ms_t, ms_m) * (1.0 + 0.1 * m_h)
    elif stage == "subgiant":
        glo, ghi = pp["subgiant_logg_limits"]
        logg = rng.uniform(glo, ghi, m)
        teff = np.clip(
            6000.0 - 700.0 * (ghi - logg) / (ghi - glo) + 250.0 * rng.standard_normal(m),
            4900.0,
            6500.0,
        )
        mass = rng.uniform(0.95, 1.5, m)
    elif stage == "red_giant_branch":
        glo, ghi = pp["rgb_logg_limits"]
        logg = rng.uniform(glo, ghi, m)
        teff_dm = pp["rgb_teff_per_m_h"]
        teff = (
            pp["rgb_teff_at_logg25"]
            + pp["rgb_teff_per_logg"] * (logg - 2.5)
            + teff_dm * m_h
            + pp["rgb_teff_sigma"] * rng.standard_normal(m)
        )
        mass = mass_med * np.exp(mass_sig * rng.standard_normal(m))
    elif stage == "red_clump":
        logg = pp["rc_logg_mean"] + pp["rc_logg_sigma"] * rng.standard_normal(m)
        teff_dm = pp["rc_teff_per_m_h"]
        teff = pp["rc_teff_mean"] + teff_dm * m_h + pp["rc_teff_sigma"] * rng.standard_normal(m)
        mass = mass_med * np.exp(mass_sig * rng.standard_normal(m))
    elif stage == "m_giant":
        lo, hi = pp["m_giant"]["teff_limits"]
        teff = rng.uniform(lo, hi, m)
        glo, ghi = pp["m_giant"]["logg_limits"]
        logg = np.clip(
            glo + (ghi - glo) * (teff - lo) / (hi - lo) + 0.1 * rng.standard_normal(m), glo, ghi
        )
        mass = 1.2 * np.exp(0.3 * rng.standard_normal(m))
    elif stage == "hot_main_sequence":
        p = pp["ob_star"]
        lo, hi = p["teff_limits"]
        teff = np.exp(rng.uniform(math.log(lo), math.log(hi), m))
        glo, ghi = p["logg_limits"]
        logg = rng.uniform(glo, ghi, m)
        mass = 2.5 * (teff / 10000.0) ** 2.0
        m_h = np.clip(0.1 * rng.standard_normal(m), mh_lo, mh_hi)
        vsini = np.minimum(
            p["vsini_median_kms"] * np.exp(p["vsini_lnsigma"] * rng.standard_normal(m)), 400.0
        )
    else:  # pragma: no cover
        raise ValueError(stage)
    alpha_m = _alpha_of_m_h(base, m_h, params) + alpha_dev
    if pop == "ob_star":
        alpha_m = alpha_dev * 0.5
    labels = {
        "teff": teff,
        "logg": logg,
        "m_h": m_h,
        "alpha_m": alpha_m,
        "fe_h": m_h + fe_dev,
        "mass": mass,
        "vsini_kms": vsini,
        "_teff_dm": np.full(m, teff_dm),
    }
    # binaries
    is_bin = np.zeros(m, bool)
    if pop == "binary":
        is_bin[:] = True
        q_lo, q_hi = pp["binary"]["mass_ratio_limits"]
    else:
        q_lo, q_hi = pp["binaries"]["mass_ratio_limits"]
        if pop in ("thin_disc", "thick_disc", "halo") and stage == "main_sequence":
            is_bin = rng.random(m) < pp["binary_fraction_of_dwarfs"]
    q = rng.uniform(q_lo, q_hi, m)
    mass2 = np.where(is_bin, q * mass, np.nan)
    labels["is_binary"] = is_bin
    labels["mass2"] = mass2
    labels["teff2"] = np.where(is_bin, np.interp(mass2, ms_m, ms_t), np.nan)
    labels["logg2"] = np.where(is_bin, np.interp(mass2, ms_m, ms_g), np.nan)
    v_lo, v_hi = pp["binaries"]["relative_rv_kms"]
    rv2 = rng.uniform(v_lo, v_hi, m) * np.where(rng.random(m) < 0.5, -1.0, 1.0)
    labels["rv2_kms"] = np.where(is_bin, rv2, 0.0)
    return labels


def _density(pop: str, r_kpc: np.ndarray, z_kpc: np.ndarray, params: dict) -> np.ndarray:
    """Relative number density of a component (1 at the Sun for the discs)."""
    gal = params["galaxy"]
    if pop == "halo":
        h = gal["halo"]
        rq2 = r_kpc**2 + (z_kpc / h["flattening_q"]) ** 2
        rc2 = h["core_radius_kpc"] ** 2
        return ((rq2 + rc2) / (R0_KPC**2 + rc2)) ** (-0.5 * h["power_law_index"])
    comp = "thick_disc" if pop == "thick_disc" else "thin_disc"
    h_r = gal[comp]["scale_length_kpc"]
    h_z = gal[comp]["scale_height_kpc"]
    if pop == "ob_star":
        h_z = params["population"]["ob_star"]["scale_height_kpc"]
    return np.exp(-(r_kpc - R0_KPC) / h_r - np.abs(z_kpc) / h_z)


def _dust_a_v(d_pc: np.ndarray, sinb: np.ndarray, params: dict) -> np.ndarray:
    """Mean A_V [mag] to distance d along latitude b: exponential dust layer."""
    du = params["galaxy"]["dust"]
    d_kpc = d_pc / 1000.0
    x = d_kpc * np.abs(sinb) / du["scale_height_kpc"]
    frac = np.where(x > 1e-8, -np.expm1(-x) / np.maximum(x, 1e-8), 1.0)
    return du["a_v_per_kpc"] * d_kpc * frac


def _sample_positions(
    rng: np.random.Generator, pop: str, m_rvs_abs: np.ndarray, d_cap: float | None, params: dict
) -> dict[str, np.ndarray]:
    """Heliocentric positions drawn from density x d^2 x visibility (G_RVS limit).

    For each star N_DIRECTIONS isotropic lines of sight are proposed; each is weighted by
    the integral of d^2 rho(R, z) over the distances where the star is visible (its G_RVS,
    incl. mean extinction, between the bright limit and the S/N-floor detection limit); one
    direction is chosen by that weight and a distance drawn from its N_DISTANCE_CELLS-cell
    profile (importance resampling).
    """
    gal = params["galaxy"]
    g_lim = _grvs_detection_limit(params)
    a_rvs = gal["dust"]["a_rvs_per_a_v"]
    sel_slope = params["snr"]["candidate_selection_slope"]
    grvs_ref = params["snr"]["grvs_ref"]
    shift = params["observed_shift"]
    f_d, f_av = shift["distance_factor"], shift["a_v_factor"]
    n = m_rvs_abs.size
    out = {k: np.empty(n) for k in ("distance_pc", "l_deg", "b_deg", "a_v_mean")}
    for c0 in range(0, n, POSITION_CHUNK):
        sl = slice(c0, min(n, c0 + POSITION_CHUNK))
        mabs = m_rvs_abs[sl]
        k = mabs.size
        d_max = np.minimum(10.0 ** ((g_lim - mabs + 5.0) / 5.0), MAX_DISTANCE_PC)
        if d_cap is not None:
            d_max = np.minimum(d_max, d_cap)
        sinb = rng.uniform(-1.0, 1.0, (k, N_DIRECTIONS))
        lon = rng.uniform(0.0, 2.0 * np.pi, (k, N_DIRECTIONS))
        cosb = np.sqrt(1.0 - sinb**2)
        frac = (np.arange(N_DISTANCE_CELLS) + 0.5) / N_DISTANCE_CELLS
        d = d_max[:, None, None] * frac[None, None, :]  # (k, 1, J)
        dk = d / 1000.0
        xg = -R0_KPC + dk * (cosb * np.cos(lon))[:, :, None]
        yg = dk * (cosb * np.sin(lon))[:, :, None]
        zg = Z_SUN_KPC + dk * sinb[:, :, None]
        rho = _density(pop, np.hypot(xg, yg), zg, params)
        av = _dust_a_v(d, sinb[:, :, None], params)
        # G_RVS as the S/N law sees it: at f_d x d, through a survey that reaches f_d times
        # farther at the same S/N (so 5 log10 f_d cancels)
        mag = mabs[:, None, None] + 5.0 * np.log10(d / 10.0) + a_rvs * f_av * av
        vis = (mag < g_lim) & (mag > gal["bright_limit_grvs"])
        w = d**2 * rho * vis * 10.0 ** (-sel_slope * (mag - grvs_ref))
        wdir = w.sum(axis=2)
        cum = np.cumsum(wdir, axis=1)
        u = rng.random(k) * cum[:, -1]
        kk = np.minimum((cum < u[:, None]).sum(axis=1), N_DIRECTIONS - 1)
        rows = np.arange(k)
        wsel = w[rows, kk]
        cumd = np.cumsum(wsel, axis=1)
        ud = rng.random(k) * cumd[:, -1]
        jj = np.minimum((cumd < ud[:, None]).sum(axis=1), N_DISTANCE_CELLS - 1)
        # uniform in volume (d^3) within the chosen cell
        cube = jj**3 + rng.random(k) * ((jj + 1.0) ** 3 - jj**3)
        dist = d_max * np.cbrt(cube) / N_DISTANCE_CELLS
        sb = sinb[rows, kk]
        dist = np.maximum(dist, 1.0)
        out["distance_pc"][sl] = f_d * dist
        out["b_deg"][sl] = np.degrees(np.arcsin(sb))
        out["l_deg"][sl] = np.degrees(lon[rows, kk])
        out["a_v_mean"][sl] = f_av * _dust_a_v(dist, sb, params)
    return out


def _galactocentric(
    distance_pc: np.ndarray, l_deg: np.ndarray, b_deg: np.ndarray
) -> dict[str, np.ndarray]:
    dk = distance_pc / 1000.0
    lr, br = np.radians(l_deg), np.radians(b_deg)
    x = -R0_KPC + dk * np.cos(br) * np.cos(lr)
    y = dk * np.cos(br) * np.sin(lr)
    z = Z_SUN_KPC + dk * np.sin(br)
    return {"x_kpc": x, "y_kpc": y, "z_kpc": z, "R_kpc": np.hypot(x, y)}


def _group_quotas(n: int, params: dict) -> list[tuple[str, str, int]]:
    """Exact (population, stage, count) quotas (largest remainder) summing to n."""
    pp = params["population"]
    fr = pp["fractions"]
    g = pp["giant_fraction"]
    rc = pp["red_clump_fraction_of_giants"]
    sg = pp["subgiant_fraction_of_dwarfs"]
    groups: list[tuple[str, str, float]] = []
    for pop in ("thin_disc", "thick_disc", "halo"):
        rcf = 0.0 if pop == "halo" else rc
        groups += [
            (pop, "main_sequence", fr[pop] * (1 - g) * (1 - sg)),
            (pop, "subgiant", fr[pop] * (1 - g) * sg),
            (pop, "red_giant_branch", fr[pop] * g * (1 - rcf)),
            (pop, "red_clump", fr[pop] * g * rcf),
        ]
    groups += [
        ("ob_star", "hot_main_sequence", fr["ob_star"]),
        ("m_giant", "m_giant", fr["m_giant"]),
        ("cool_dwarf", "main_sequence", fr["cool_dwarf"]),
        ("binary", "main_sequence", fr["binary"]),
    ]
    total = sum(f for _, _, f in groups)
    exact = np.array([f / total * n for _, _, f in groups])
    counts = np.floor(exact).astype(int)
    rest = n - counts.sum()
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:rest]] += 1
    return [(p, s, int(c)) for (p, s, _), c in zip(groups, counts, strict=True)]


def _candidates(
    rng: np.random.Generator, pop: str, stage: str, m: int, params: dict
) -> dict[str, np.ndarray]:
    """Draw m candidate stars of one group with positions, photometry and S/N."""
    pp = params["population"]
    lab = _draw_labels(rng, pop, stage, m, params)
    # absolute G_RVS without extinction (visibility limit for the position draw)
    sed = _sed_photons_10pc(
        lab["teff"], lab["logg"], lab["m_h"], lab["alpha_m"], lab["mass"], None, params
    )
    mags = _band_mags_10pc(sed, params)
    m_rvs = _grvs(mags["bp"], mags["rp"], params)
    d_cap = pp["cool_dwarf"]["max_distance_pc"] if pop == "cool_dwarf" else None
    pos = _sample_positions(rng, pop, m_rvs, d_cap, params)
    gc = _galactocentric(pos["distance_pc"], pos["l_deg"], pos["b_deg"])
    base = "thin_disc" if pop in OOD_POPULATIONS else pop
    grad = pp[base].get("m_h_gradient_dex_per_kpc", 0.0) if base != "halo" else 0.0
    if grad != 0.0 and pop != "ob_star":
        mh_lo, mh_hi = pp["m_h_limits"]
        new = np.clip(lab["m_h"] + grad * (gc["R_kpc"] - R0_KPC), mh_lo, mh_hi)
        shift = new - lab["m_h"]
        lab["alpha_m"] = (
            lab["alpha_m"]
            + _alpha_of_m_h(base, new, params)
            - _alpha_of_m_h(base, lab["m_h"], params)
        )
        lab["m_h"] = new
        lab["fe_h"] = lab["fe_h"] + shift
        lab["teff"] = lab["teff"] + lab["_teff_dm"] * shift
    dust = params["galaxy"]["dust"]
    a_v = pos["a_v_mean"] * np.exp(dust["lnsigma"] * rng.standard_normal(m))
    rv = params["spectrum"]["rv_shift_sigma_kms"] * rng.standard_normal(m)
    truth = {k: v for k, v in lab.items() if not k.startswith("_")}
    truth.update(
        distance_pc=pos["distance_pc"],
        l_deg=pos["l_deg"],
        b_deg=pos["b_deg"],
        a_v=a_v,
        rv_shift_kms=rv,
        **gc,
    )
    truth["population"] = np.full(m, POPULATION_CODES[pop], np.int8)
    truth["stage"] = np.full(m, STAGE_CODES[stage], np.int8)
    phot = _photometry(truth, params)
    grvs = _grvs(phot["bp"], phot["rp"], params)
    transit = np.exp(2.0 * params["snr"]["transit_lnsigma"] * rng.standard_normal(m))
    field = params["observed_shift"]
    # the shifted field's survey reaches distance_factor times farther at the same S/N
    deeper = 5.0 * math.log10(field["distance_factor"])
    snr = _median_snr(grvs - deeper, params) * np.sqrt(transit) * field["snr_factor"]
    truth["lum_ratio"] = phot["lum_ratio"]
    truth["_snr"] = snr
    truth["_transit"] = transit
    truth["_keep"] = (
        (snr >= params["snr_floor"])
        & np.isfinite(snr)
        & (grvs > params["galaxy"]["bright_limit_grvs"])
    )
    return truth


def simulate_stars(
    rng: np.random.Generator, n: int, params: dict = DEFAULT_PARAMS
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Draw n stars that pass the survey's S/N floor, returning (truth, observed).

    Each (population, stage) group gets an exact quota of n (``params["population"]``);
    candidates are drawn in batches until every quota is filled with stars whose
    rvs_spec_sig_to_noise >= params["snr_floor"]; the result is shuffled.

    truth (all (n,)): teff [K], logg, m_h, alpha_m, fe_h [dex], mass [Msun], vsini_kms,
        distance_pc, a_v [mag], rv_shift_kms, l_deg, b_deg, x_kpc, y_kpc, z_kpc, R_kpc
        (galactocentric, Sun at x = -8.2 kpc), population (int8, POPULATION_CODES),
        stage (int8, STAGE_CODES), is_binary (bool), mass2, teff2, logg2 (NaN for single
        stars), rv2_kms (secondary - primary, 0 for singles), lum_ratio (RVS-band flux
        ratio, 0 for singles), n_enh (dredge-up [N/M]).
    observed: flux, flux_error (n, 2401) float32 (NaN at the edges); snr; bp/rp
        _coefficients and _coefficient_errors (n, 55); phot_{g,bp,rp}_mean_mag and
        _flux_over_error; parallax, parallax_error [mas]; ruwe; all float32.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    params = _with_defaults(params)
    parts: list[dict[str, np.ndarray]] = []
    for pop, stage, quota in _group_quotas(n, params):
        need = quota
        acc_rate = 0.3
        while need > 0:
            m = int(min(MAX_CANDIDATE_BATCH, max(64, math.ceil(1.3 * need / max(acc_rate, 0.01)))))
            cand = _candidates(rng, pop, stage, m, params)
            keep = np.flatnonzero(cand["_keep"])
            acc_rate = max(keep.size / m, 0.005)
            keep = keep[:need]
            parts.append({k: v[keep] for k, v in cand.items()})
            need -= keep.size
    truth = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = rng.permutation(n)
    truth = {k: v[order] for k, v in truth.items()}
    snr = truth.pop("_snr")
    transit = truth.pop("_transit")
    truth.pop("_keep")
    truth["n_enh"] = _nitrogen_enhancement(truth["logg"], truth["mass"], params)
    model = noise_free_observables(truth, params)
    observed = _observe(rng, truth, model, snr, transit, params)
    return truth, observed


def radial_velocity_error(
    rng: np.random.Generator,
    teff: np.ndarray,
    snr: np.ndarray,
    params: dict = DEFAULT_PARAMS,
) -> np.ndarray:
    """A Gaia DR3-like ``radial_velocity_error`` [km/s] per star (n,) float32 from its
    T_eff [K] and rvs_spec_sig_to_noise ``snr``, with ``params["rv_error"]``'s law
    (:data:`DEFAULT_PARAMS`: Katz et al. 2023): it grows as 1/S/N, faster for stars hotter
    than ``hot_teff``, with a lognormal scatter drawn from ``rng`` (one standard normal per
    star, nothing else drawn), added in quadrature to a 0.11 km/s floor."""
    law = _with_defaults(params)["rv_error"]
    teff = np.asarray(teff, dtype=np.float64)
    snr = np.clip(np.asarray(snr, dtype=np.float64), 1e-3, None)
    hot = np.where(teff > law["hot_teff"], (teff / law["hot_teff"]) ** law["hot_power"], 1.0)
    scatter = np.exp(law["lnsigma"] * rng.standard_normal(teff.shape))
    photon = law["at_snr_ref_kms"] * law["snr_ref"] / snr * hot * scatter
    return np.hypot(law["floor_kms"], photon).astype(np.float32)
