"""Physics checks of the offline demo survey (gaiacnn.demo.physics)."""

from __future__ import annotations

import numpy as np
import pytest

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
    assert P.LABELS == ("teff", "logg", "m_h", "alpha_m", "fe_h")
    for name in ("thin_disc", "thick_disc", "halo", "ob_star", "m_giant", "cool_dwarf", "binary"):
        assert name in P.POPULATION_CODES
    assert len(set(P.POPULATION_CODES.values())) == len(P.POPULATION_CODES)
    import json

    json.dumps(P.DEFAULT_PARAMS)  # JSON-able
    assert P.DEFAULT_PARAMS["snr_floor"] == 15.0
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
