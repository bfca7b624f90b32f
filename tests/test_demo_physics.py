"""Physics checks of the offline demo survey (gaiacnn.demo.physics)."""

from __future__ import annotations

import numpy as np
import pytest

from gaiacnn.config import schema_defaults
from gaiacnn.constants import RVS_N_PIXELS, XP_N_COEFFICIENTS, rvs_wavelength_nm
from gaiacnn.demo import physics as P

WAVE = rvs_wavelength_nm()
CAT = (849.802, 854.209, 866.214)
FE_ISOLATED = 861.180  # Fe I 8611.8
PASCHEN = (850.249, 854.538, 859.839, 866.502)  # P16, P15, P14, P13


def star(**kw: float) -> dict[str, np.ndarray]:
    base = dict(
        teff=4800.0,
        logg=2.5,
        m_h=0.0,
        alpha_m=0.0,
        fe_h=0.0,
        mass=1.2,
        distance_pc=1000.0,
        a_v=0.0,
        rv_shift_kms=0.0,
        vsini_kms=3.0,
    )
    base.update(kw)
    arrays = {k: np.atleast_1d(np.asarray(v, dtype=np.float64)) for k, v in base.items()}
    n = max(a.size for a in arrays.values())
    return {k: np.broadcast_to(a, (n,)).copy() for k, a in arrays.items()}


def flux(**kw: float) -> np.ndarray:
    return P.noise_free_observables(star(**kw))["flux"]


def cat_ew(f: np.ndarray) -> float:
    return float(sum(P.equivalent_width(f, c, 1.2)[0] for c in CAT))


def ew(f: np.ndarray, centre: float, half: float = 0.12) -> float:
    return float(P.equivalent_width(f, centre, half)[0])


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(2024)
    return P.simulate_stars(rng, 3000)


def test_public_api():
    # the demo gives a truth for every label the model may be asked to learn
    schema_labels = schema_defaults("model")["labels"]
    assert set(schema_labels) <= set(P.LABELS)
    for name in ("thin_disc", "thick_disc", "halo", "ob_star", "m_giant", "cool_dwarf", "binary"):
        assert name in P.POPULATION_CODES
    assert len(set(P.POPULATION_CODES.values())) == len(P.POPULATION_CODES)
    import json

    json.dumps(P.DEFAULT_PARAMS)  # JSON-able
    assert 40 <= len(P.LINE_TABLE) <= 80
    assert all(846.0 < row[0] < 870.0 for row in P.LINE_TABLE)


def test_noise_free_shapes():
    mod = P.noise_free_observables(star(teff=[4800.0, 5800.0], logg=[2.5, 4.4]))
    assert mod["flux"].shape == (2, RVS_N_PIXELS) and mod["flux"].dtype == np.float64
    assert mod["bp"].shape == (2, XP_N_COEFFICIENTS) and mod["rp"].shape == (2, 55)
    assert np.all(np.isfinite(mod["flux"])) and np.all(mod["flux"] <= 1.0)
    np.testing.assert_allclose(mod["parallax_mas"], 1.0 - 0.017)


def test_metallicity_strengthens_cat_and_fe():
    ews = [
        (cat_ew(f), ew(f, FE_ISOLATED))
        for f in (flux(m_h=m, fe_h=m) for m in (-1.5, -0.8, -0.3, 0.0, 0.3))
    ]
    cat, fe = np.array(ews).T
    assert np.all(np.diff(cat) > 0) and np.all(np.diff(fe) > 0)
    assert cat[-1] > 2.0 * cat[0] and fe[-1] > 1.5 * fe[0]


def test_fe_lines_deepen_toward_low_teff():
    fe = [ew(flux(teff=t), FE_ISOLATED) for t in (5600.0, 5000.0, 4500.0, 4100.0)]
    assert np.all(np.diff(fe) > 0)


def test_alpha_lines_respond_to_alpha_only():
    lo, hi = flux(alpha_m=0.0), flux(alpha_m=0.3)
    assert cat_ew(hi) > 1.1 * cat_ew(lo)
    for centre in (864.847, 855.678):  # Si I
        assert ew(hi, centre, 0.08) > 1.05 * ew(lo, centre, 0.08)
    for centre in (868.298, 851.835):  # Ti I
        assert ew(hi, centre, 0.08) > 1.05 * ew(lo, centre, 0.08)
    fe_lo, fe_hi = ew(lo, FE_ISOLATED), ew(hi, FE_ISOLATED)
    assert abs(fe_hi - fe_lo) < 0.01 * fe_lo


def test_cat_giant_stronger_than_dwarf():
    assert cat_ew(flux(logg=1.8)) > 1.1 * cat_ew(flux(logg=4.5))


def test_paschen_in_ob_star_not_in_k_star():
    hot, cool = flux(teff=15000.0, logg=4.0, vsini_kms=80.0), flux(teff=5000.0, logg=4.5)
    for lam in PASCHEN:
        j = int(np.argmin(np.abs(WAVE - lam)))
        assert hot[0, j] < 0.8
    # P14 at 859.84 nm lies between metal lines: nothing there in a K star
    j = int(np.argmin(np.abs(WAVE - 859.839)))
    assert cool[0, j] > 0.95
    assert ew(hot, 859.839, 1.0) > 5 * ew(cool, 859.839, 1.0)
    # metal lines fade in OB stars
    assert ew(hot, FE_ISOLATED) < 0.1 * ew(cool, FE_ISOLATED)


def test_tio_bands_in_m_giant():
    m_giant, k_giant = flux(teff=3500.0, logg=0.6), flux(teff=4800.0, logg=2.3)
    continuum_window = slice(0, 150)  # 846.0-847.5 nm, red tail of the 843-845 nm heads
    assert np.mean(m_giant[0, continuum_window]) < 0.8
    assert np.mean(k_giant[0, continuum_window]) > 0.9
    # band head at 856.9 nm: a step down to the red
    j = int(np.argmin(np.abs(WAVE - 856.9)))
    blue, red = m_giant[0, j - 12 : j - 4].max(), m_giant[0, j + 4 : j + 12].max()
    assert red < blue - 0.03
    assert not np.any(P._tio_tau(np.array([4300.0]), np.array([0.0]), P.DEFAULT_PARAMS))


def test_determinism(sample):
    t1, o1 = P.simulate_stars(np.random.default_rng(7), 200)
    t2, o2 = P.simulate_stars(np.random.default_rng(7), 200)
    t3, o3 = P.simulate_stars(np.random.default_rng(8), 200)
    for k in t1:
        np.testing.assert_array_equal(t1[k], t2[k])
    for k in o1:
        np.testing.assert_array_equal(o1[k], o2[k])
    assert not np.array_equal(t1["teff"], t3["teff"])
    assert not np.array_equal(o1["flux"], o3["flux"], equal_nan=True)


def test_observed_layout(sample):
    truth, obs = sample
    n = truth["teff"].size
    assert n == 3000
    assert obs["flux"].shape == (n, RVS_N_PIXELS) and obs["flux"].dtype == np.float32
    for key in (
        "bp_coefficients",
        "rp_coefficients",
        "bp_coefficient_errors",
        "rp_coefficient_errors",
    ):
        assert obs[key].shape == (n, 55) and obs[key].dtype == np.float32
    for key in (
        "snr",
        "phot_g_mean_mag",
        "parallax",
        "parallax_error",
        "ruwe",
        "phot_bp_mean_flux_over_error",
    ):
        assert obs[key].shape == (n,) and obs[key].dtype == np.float32
    assert truth["population"].dtype == np.int8 and truth["is_binary"].dtype == bool
    assert np.all(obs["snr"] >= 15.0)


def test_nan_only_at_edges(sample):
    _, obs = sample
    nan = np.isnan(obs["flux"])
    assert np.array_equal(nan, np.isnan(obs["flux_error"]))
    assert nan.any() and not nan.all(axis=1).any()
    lead = np.argmin(nan, axis=1)
    trail = np.argmin(nan[:, ::-1], axis=1)
    n_nan = nan.sum(axis=1)
    np.testing.assert_array_equal(n_nan, lead + trail)  # no interior NaN
    assert 0.3 < np.mean(n_nan == 0) < 0.5


def test_snr_distribution(sample):
    _, obs = sample
    snr = obs["snr"]
    assert 0.25 < np.mean(snr < 25.0) < 0.42  # paper Fig. 1: one third in [15, 25)
    assert np.mean(snr >= 30.0) >= 0.2


def test_population_shape(sample):
    truth, obs = sample
    pop = truth["population"]
    ind = pop <= P.POPULATION_CODES["halo"]
    giant_frac = np.mean(truth["logg"][ind] < 3.5)
    assert abs(giant_frac - 0.70) < 0.03
    rc = truth["stage"] == P.STAGE_CODES["red_clump"]
    assert rc.sum() > 0.15 * ind.sum()
    assert np.all((truth["teff"][rc] > 4500) & (truth["teff"][rc] < 5100))
    thin, thick = pop == 0, pop == 1
    assert truth["alpha_m"][thick].mean() > truth["alpha_m"][thin].mean() + 0.12
    assert np.abs(truth["z_kpc"][thick]).mean() > 1.3 * np.abs(truth["z_kpc"][thin]).mean()
    assert truth["m_h"][pop == 2].min() < -1.8
    # OOD populations present and labelled
    for name in P.OOD_POPULATIONS:
        assert np.any(pop == P.POPULATION_CODES[name])
    cd = pop == P.POPULATION_CODES["cool_dwarf"]
    assert np.all(truth["distance_pc"][cd] <= 200.0 + 1e-6)
    assert np.median(obs["parallax"][cd]) > 5.0
    binr = truth["is_binary"]
    assert np.all(obs["ruwe"][binr] >= 1.4) and np.median(obs["ruwe"][~binr]) < 1.1
    # sky coordinates consistent with positions
    d = truth["distance_pc"] / 1000.0
    z = P.Z_SUN_KPC + d * np.sin(np.radians(truth["b_deg"]))
    np.testing.assert_allclose(truth["z_kpc"], z, atol=1e-9)
    # photometry range
    assert obs["phot_g_mean_mag"].min() > 1.5 and obs["phot_g_mean_mag"].max() < 15.5
    foe = obs["phot_bp_mean_flux_over_error"]
    assert 0.005 < np.mean(foe < 500) < 0.15


def test_xp_and_photometry():
    near, far = star(distance_pc=500.0), star(distance_pc=1000.0)
    m_near, m_far = P.noise_free_observables(near), P.noise_free_observables(far)
    np.testing.assert_allclose(m_near["bp"][0, 0] / m_far["bp"][0, 0], 4.0, rtol=1e-9)
    np.testing.assert_allclose(m_near["g"] + 5 * np.log10(2.0), m_far["g"], atol=1e-9)

    def shape(mod: dict, band: str) -> np.ndarray:
        return mod[band][0, 1:10] / mod[band][0, 0]

    temps = (3900.0, 4800.0, 6000.0, 8000.0)
    mods = [P.noise_free_observables(star(teff=t, logg=3.0)) for t in temps]
    colours = [float(m["bp_mag"][0] - m["rp_mag"][0]) for m in mods]
    assert np.all(np.diff(colours) < 0)  # hotter -> bluer
    assert np.abs(shape(mods[0], "bp") - shape(mods[2], "bp")).max() > 0.05
    poor = P.noise_free_observables(star(m_h=-1.5, fe_h=-1.5))
    rich = P.noise_free_observables(star(m_h=0.3, fe_h=0.3))
    assert np.abs(shape(poor, "bp") - shape(rich, "bp")).max() > 0.01
    assert float(poor["bp_mag"][0] - poor["rp_mag"][0]) < float(
        rich["bp_mag"][0] - rich["rp_mag"][0]
    )


def test_solar_calibration():
    sun = P.noise_free_observables(
        star(teff=P.TEFF_SUN, logg=P.LOGG_SUN, mass=1.0, distance_pc=10.0)
    )
    assert abs(float(sun["g"][0]) - 4.67) < 1e-6
    assert abs(float(sun["bp_mag"][0] - sun["rp_mag"][0]) - 0.82) < 1e-6


def test_xp_basis_orthonormal():
    for band in ("bp", "rp"):
        _, basis = P.xp_basis(band)
        np.testing.assert_allclose(basis.T @ basis, np.eye(55), atol=1e-10)


def test_crlb_scales_with_snr(sample):
    truth, obs = sample
    sel = np.arange(40)
    t = {k: v[sel] for k, v in truth.items()}
    o = {k: v[sel] for k, v in obs.items()}
    o2 = dict(o)
    o2["flux_error"] = (o["flux_error"] / 2.0).astype(np.float32)
    b1 = P.cramer_rao_bound(t, o, inputs="rvs")
    b2 = P.cramer_rao_bound(t, o2, inputs="rvs")
    normal = t["population"] != P.POPULATION_CODES["ob_star"]  # hot stars lack Fe I lines
    for lab in P.LABELS:
        assert not np.any(np.isnan(b1[lab]))
        assert np.all(np.isfinite(b1[lab][normal])) and np.all(b1[lab] > 0)
        ok = np.isfinite(b1[lab])
        np.testing.assert_allclose(b2[lab][ok] / b1[lab][ok], 0.5, rtol=0.05)
    ball = P.cramer_rao_bound(t, o, inputs="all")
    for lab in P.LABELS:
        assert np.all(np.isfinite(ball[lab][normal]))
        assert np.all(ball[lab][normal] <= b1[lab][normal] * (1 + 1e-6))
    # typical RVS-only precision of a red-clump-like star is tens of K and < 0.1 dex
    assert 1.0 < np.median(b1["teff"][normal]) < 200.0
    assert np.median(b1["m_h"][normal]) < 0.1


def test_crlb_nan_pixels_carry_no_information(sample):
    truth, obs = sample
    t = {k: v[:5] for k, v in truth.items()}
    o = {k: v[:5] for k, v in obs.items()}
    o_nan = dict(o)
    f = o["flux"].copy()
    f[:, :1200] = np.nan
    o_nan["flux"] = f
    full = P.cramer_rao_bound(t, o)
    half = P.cramer_rao_bound(t, o_nan)
    assert np.all(half["teff"] >= full["teff"] * (1 - 1e-9))
    assert np.all(np.isfinite(half["teff"]))


# ------------------------------------------------------------------------------------------
# XP sampled spectra (xp_sampled_flux)
# ------------------------------------------------------------------------------------------
def test_xp_sampled_grid_and_absolute_scale():
    wl = P.xp_sampled_wavelength_nm()
    assert wl.shape == (343,) and wl[0] == 336.0 and wl[-1] == 1020.0
    np.testing.assert_allclose(np.diff(wl), 2.0)
    # The throughputs follow from the demo's calibration: band counts = SED x response x
    # 10^(0.4 (ZP_e - zp)) x 2 nm, and the Sun at 10 pc has the observed solar flux.
    sun = star(teff=P.TEFF_SUN, logg=P.LOGG_SUN, mass=1.0, distance_pc=10.0)
    sed = P._sed_photons_10pc(
        sun["teff"], sun["logg"], sun["m_h"], sun["alpha_m"], sun["mass"], None, P.DEFAULT_PARAMS
    )[0]
    lam = P._sed_grid()
    f_sun_10pc = P.SOLAR_FLUX_550NM_1AU * P.AU_PER_10PC**2  # W m-2 nm-1
    photons_per_unit = f_sun_10pc / (P.PLANCK_H_J_S * P.C_M_S / 550e-9) / sed[lam == 550.0][0]
    s = P.DEFAULT_PARAMS["sed"]
    zps = P._zero_points(*(s["sun_abs_mag"][b] for b in ("g", "bp", "rp")))
    for band in ("bp", "rp"):
        scale = 10.0 ** (0.4 * (s["electron_zero_point"][band] - zps[band])) * P.SED_GRID_STEP_NM
        expected = scale / (photons_per_unit * P.GAIA_PUPIL_AREA_M2 * P.SED_GRID_STEP_NM)
        assert P.XP_THROUGHPUT[band] == pytest.approx(expected, rel=0.005)
    # ... so the demo Sun's sampled flux at 550 nm is the Sun's (within the expansion's ripple)
    mod = P.noise_free_observables(sun)
    f = P.xp_sampled_flux(mod["bp"], mod["rp"])[0]
    assert f[wl == 550.0][0] == pytest.approx(f_sun_10pc, rel=0.08)
    assert np.all(f > 0) and 1e-13 < f.min() and f.max() < 1e-12


def test_xp_sampled_flux_is_the_response_corrected_expansion():
    """Noise-free coefficients give back the star's photon spectrum x h c / lambda (to the
    ripple of a 55-function expansion), BP and RP agree where they are merged, and the
    flux scales as 10^(-0.4 G) with distance."""
    stars = star(
        teff=[3900.0, 4800.0, 5800.0, 7500.0],
        logg=[1.5, 2.5, 4.4, 4.0],
        mass=[1.0, 1.2, 1.0, 1.8],
        distance_pc=[800.0, 1000.0, 300.0, 2000.0],
        a_v=[0.5, 0.2, 0.0, 1.0],
    )
    mod = P.noise_free_observables(stars)
    wl = P.xp_sampled_wavelength_nm()
    lam = P._sed_grid()
    flux = P.xp_sampled_flux(mod["bp"], mod["rp"])
    assert flux.shape == (4, 343) and flux.dtype == np.float64
    responses = P._passbands()
    for band, lo, hi in (("bp", 400.0, P.XP_MERGE_NM[0]), ("rp", P.XP_MERGE_NM[1], 1000.0)):
        idx, _ = P.xp_basis(band)
        lam_b = lam[idx]
        sel = (lam_b >= lo) & (lam_b <= hi)
        energy = P.PLANCK_H_J_S * P.C_M_S / (lam_b[sel] * 1e-9)
        true = (
            mod[band + "_counts"][:, sel]
            / (responses[band][idx][sel] * P.SED_GRID_STEP_NM)
            / (P.GAIA_PUPIL_AREA_M2 * P.XP_THROUGHPUT[band])
            * energy
        )
        got = flux[:, np.isin(wl, lam_b[sel])]
        assert np.median(np.abs(got / true - 1.0)) < 0.06
        assert np.max(np.abs(got / true - 1.0)) < 0.5
    merge = (wl >= P.XP_MERGE_NM[0]) & (wl <= P.XP_MERGE_NM[1])
    bp_alone = P.xp_sampled_flux(mod["bp"], np.zeros_like(mod["rp"]))
    rp_alone = P.xp_sampled_flux(np.zeros_like(mod["bp"]), mod["rp"])
    np.testing.assert_allclose(bp_alone + rp_alone, flux, rtol=1e-12)
    assert np.all(rp_alone[:, wl < P.XP_MERGE_NM[0]] == 0.0)
    assert np.all(bp_alone[:, wl > P.XP_MERGE_NM[1]] == 0.0)
    # the merged flux stays between the neighbouring BP-only and RP-only levels
    edge_lo = flux[:, np.flatnonzero(merge)[0] - 1]
    edge_hi = flux[:, np.flatnonzero(merge)[-1] + 1]
    inside = flux[:, merge]
    assert np.all(inside > 0.7 * np.minimum(edge_lo, edge_hi)[:, None])
    assert np.all(inside < 1.3 * np.maximum(edge_lo, edge_hi)[:, None])
    far = dict(stars, distance_pc=stars["distance_pc"] * 10.0)
    mod_far = P.noise_free_observables(far)
    np.testing.assert_allclose(
        P.xp_sampled_flux(mod_far["bp"], mod_far["rp"]), flux / 100.0, rtol=1e-9
    )


def test_xp_sampled_flux_of_simulated_stars(sample):
    """From the noisy coefficients: positive where the star's flux is, ~1e-17 W m-2 nm-1 at
    G = 15 near 600 nm, decades across the G range, and the BP-only part carries the
    G_BP photometry."""
    truth, obs = sample
    wl = P.xp_sampled_wavelength_nm()
    flux = P.xp_sampled_flux(obs["bp_coefficients"], obs["rp_coefficients"])
    assert flux.shape == (3000, 343) and np.all(np.isfinite(flux))
    # Positive everywhere for solar-type and hotter stars; cool stars' blue end is a few %
    # of their peak, below the ripple of the 55-function expansion (as in real XP spectra).
    assert np.all(flux[truth["teff"] >= 5500.0] > 0)
    assert np.all(flux[:, wl >= 470.0] > 0)
    assert np.mean(flux > 0) > 0.99
    # 600 nm: log F follows -0.4 G, ~1e-17 at G = 15
    g = obs["phot_g_mean_mag"].astype(float)
    f600 = flux[:, wl == 600.0][:, 0]
    slope, icpt = np.polyfit(g, np.log10(f600), 1)
    assert -0.44 < slope < -0.37
    assert 5e-18 < 10.0 ** (slope * 15.0 + icpt) < 8e-17
    assert np.log10(f600.max() / f600.min()) > 4.0  # G spans ~11 mag here
    # The BP-only part's integral against the photometry: roughly constant while the flux
    # spans decades (colour terms only) ...
    bpm = obs["phot_bp_mean_mag"].astype(float)
    bp_only = wl < P.XP_MERGE_NM[0]
    ratio = flux[:, bp_only].sum(axis=1) * P.XP_SAMPLED_STEP_NM / 10.0 ** (-0.4 * bpm)
    assert np.all((ratio > 0.6 * np.median(ratio)) & (ratio < 1.6 * np.median(ratio)))
    # ... and, turned back into electrons through the area, throughput and response, a
    # fraction < 1 of the G_BP count rate (the rest of BP lies beyond the merge window).
    lam = P._sed_grid()
    response = P._passbands()["bp"][np.searchsorted(lam, wl)]
    electrons = (
        flux
        / (P.PLANCK_H_J_S * P.C_M_S / (wl * 1e-9))
        * (P.GAIA_PUPIL_AREA_M2 * P.XP_THROUGHPUT["bp"] * response * P.XP_SAMPLED_STEP_NM)
    )
    zp = P.DEFAULT_PARAMS["sed"]["electron_zero_point"]["bp"]
    fraction = electrons[:, bp_only].sum(axis=1) / 10.0 ** (0.4 * (zp - bpm))
    assert np.all((fraction > 0.5) & (fraction < 1.0))


def test_xp_sampled_flux_propagates_noise_and_nan(sample):
    _, obs = sample
    bp = obs["bp_coefficients"][:20].astype(np.float64)
    rp = obs["rp_coefficients"][:20].astype(np.float64)
    flux = P.xp_sampled_flux(bp, rp)
    noisier = P.xp_sampled_flux(bp + obs["bp_coefficient_errors"][:20], rp)
    assert np.all(noisier[:, :100] != flux[:, :100])
    bp[3] = np.nan
    rp[5, 7] = np.nan
    out = P.xp_sampled_flux(bp, rp)
    assert np.isnan(out[[3, 5]]).all() and np.isfinite(np.delete(out, [3, 5], axis=0)).all()
    # Any grid inside the supports: the photon flux is interpolated linearly between the
    # 2 nm samples (then x h c / lambda at the point: ~1e-3 from the mean of the neighbours).
    mid = P.xp_sampled_flux(bp[:2], rp[:2], np.array([337.0, 601.0]))
    np.testing.assert_allclose(mid[:, 0], 0.5 * (flux[:2, 0] + flux[:2, 1]), rtol=2e-3)
    np.testing.assert_allclose(mid[:, 1], 0.5 * (flux[:2, 132] + flux[:2, 133]), rtol=2e-3)
    with pytest.raises(ValueError, match="RP, whose support"):
        P.xp_sampled_flux(bp[:2], rp[:2], np.array([1100.0]))
    with pytest.raises(ValueError, match=r"shape \(n, 55\)"):
        P.xp_sampled_flux(bp[:, :10], rp[:, :10])


def test_generator_writes_the_sampled_flux_with_its_attributes(tmp_path, config):
    import h5py

    from gaiacnn import layout
    from gaiacnn.demo import survey

    cfg = dict(config["demo"], n_stars=40, chunk_size=16)
    cfg["flags"] = dict(cfg["flags"], no_xp_continuous=0.2)
    files = {}
    for run in ("a", "b"):
        paths = survey.default_paths(tmp_path / run)
        (tmp_path / run).mkdir()
        survey.generate(
            cfg,
            paths["gaia_source"],
            paths["allstar"],
            paths["raw"],
            paths["truth"],
            progress=False,
        )
        files[run] = paths
    with h5py.File(files["a"]["raw"], "r") as h5:
        ds = h5["xp/sampled_flux"]
        assert ds.shape == (40, 343) and ds.dtype == np.float32
        np.testing.assert_array_equal(ds.attrs["wavelength_nm"], P.xp_sampled_wavelength_nm())
        assert ds.attrs["wavelength_nm"].dtype == np.float64
        assert ds.attrs["flux_kind"] == "absolute"
        assert ds.attrs["unit"] == "W m-2 nm-1"
        flux = ds[:]
        bp, rp = h5["xp/bp_coefficients"][:], h5["xp/rp_coefficients"][:]
    no_xp = np.isnan(bp).any(axis=1)
    assert 0 < no_xp.sum() < 40
    assert np.isnan(flux[no_xp]).all() and np.isfinite(flux[~no_xp]).all()
    # computed from the stored (noisy) coefficients
    np.testing.assert_allclose(
        flux[~no_xp], P.xp_sampled_flux(bp[~no_xp], rp[~no_xp]).astype(np.float32), rtol=1e-6
    )
    info = layout.validate(files["a"]["raw"], check_values=False)
    assert info.xp_sampled_length == 343 and info.xp_flux_kind == "absolute"
    # seed contract: the same seed and chunk size give byte-identical files
    for key in ("raw", "truth", "gaia_source", "allstar"):
        assert files["a"][key].read_bytes() == files["b"][key].read_bytes(), key


def test_observed_shift_moves_distance_extinction_and_parallax_precision_separately():
    """demo.shift's factors (issue 24): twice as far at the same extinction, or also redder
    and with worse parallaxes; the identity shift draws exactly the ordinary stars."""

    def draw(**shift):
        params = P.merge_params({"observed_shift": shift}) if shift else None
        return P.simulate_stars(np.random.default_rng(7), 600, params)

    base_t, base_o = draw()
    same_t, same_o = draw(distance_factor=1.0, a_v_factor=1.0, snr_factor=1.0)
    np.testing.assert_array_equal(base_o["flux"], same_o["flux"])
    np.testing.assert_array_equal(base_t["distance_pc"], same_t["distance_pc"])
    far_t, far_o = draw(distance_factor=2.0)
    red_t, red_o = draw(distance_factor=2.0, a_v_factor=2.0, parallax_error_factor=1.5)

    def med(x):
        return float(np.median(x))

    assert 1.7 < med(far_t["distance_pc"]) / med(base_t["distance_pc"]) < 2.4
    assert 0.8 < med(far_t["a_v"]) / med(base_t["a_v"]) < 1.25  # same extinction
    assert 1.4 < med(red_t["a_v"]) / med(far_t["a_v"]) < 2.6
    # the S/N floor still holds: the field's survey reaches twice as far
    assert far_o["snr"].min() >= 15.0 and 0.8 < med(far_o["snr"]) / med(base_o["snr"]) < 1.25
    plx_snr = {
        k: med(o["parallax"] / o["parallax_error"])
        for k, o in (("base", base_o), ("far", far_o), ("red", red_o))
    }
    assert plx_snr["far"] < plx_snr["base"] / 2 and plx_snr["red"] < plx_snr["far"]
    # parallaxes stay those of the true distances (errors Gaussian about 1/d)
    pull = (far_o["parallax"] - (1000 / far_t["distance_pc"] - 0.017)) / far_o["parallax_error"]
    assert abs(float(np.mean(pull))) < 0.15 and 0.85 < float(np.std(pull)) < 1.15


def test_shifted_field_adds_stars_and_keeps_the_ordinary_ones(tmp_path, config):
    import h5py

    from gaiacnn.demo import survey
    from gaiacnn.tables import read_fits_columns

    out = {}
    for run, n_shift in (("plain", 0), ("shifted", 30)):
        cfg = dict(config["demo"], n_stars=40, chunk_size=16)
        cfg["shift"] = dict(
            cfg["shift"], n_stars=n_shift, distance_factor=2.0, apogee_match_fraction=0.5
        )
        (tmp_path / run).mkdir()
        paths = survey.default_paths(tmp_path / run)
        info = survey.generate(cfg, *paths.values(), progress=False)
        assert info["n_stars"] == 40 + n_shift and info["n_shifted"] == n_shift
        out[run] = paths
    with h5py.File(out["plain"]["truth"]) as a, h5py.File(out["shifted"]["truth"]) as b:
        assert not a["truth/shifted"][:].any()
        shifted = b["truth/shifted"][:]
        assert shifted.sum() == 30 and not shifted[:40].any()
        np.testing.assert_array_equal(a["source_id"][:], b["source_id"][:40])
        np.testing.assert_array_equal(a["truth/teff"][:], b["truth/teff"][:40])
        ids = b["source_id"][:]
        assert len(np.unique(ids)) == 70
        assert np.median(b["truth/distance_pc"][40:]) > 1.5 * np.median(a["truth/distance_pc"][:])
    with h5py.File(out["plain"]["raw"]) as a, h5py.File(out["shifted"]["raw"]) as b:
        np.testing.assert_array_equal(a["rvs/flux"][:], b["rvs/flux"][:40])
    apogee = read_fits_columns(out["shifted"]["allstar"], ["GAIAEDR3_SOURCE_ID"])
    matched = np.isin(ids[40:], apogee["GAIAEDR3_SOURCE_ID"].to_numpy())
    assert 5 <= matched.sum() <= 25  # apogee_match_fraction 0.5 of 30
