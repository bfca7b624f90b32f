"""Aggregation of the ensemble (Sect. 3.4): combination, running dispersion, sigma, catalogue."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from gaiacnn import catalogue, ensemble, evaluation
from gaiacnn.layout import ArraysWriter


def test_combine_is_mean_and_model_to_model_std():
    preds = np.array([[[1.0, 10.0]], [[3.0, 14.0]], [[2.0, 12.0]]])
    mean, std = ensemble.combine(preds)
    np.testing.assert_allclose(mean, [[2.0, 12.0]])
    np.testing.assert_allclose(std, [[1.0, 2.0]])
    np.testing.assert_array_equal(ensemble.combine(preds[:1])[1], 0.0)


def test_running_dispersion_recovers_a_known_profile():
    rng = np.random.default_rng(3)
    x = rng.uniform(-2.0, 0.5, 20000)
    true_sigma = 0.05 + 0.04 * x**2  # larger at the metal-poor end
    cnn = x + rng.normal(0.0, true_sigma)
    fit = ensemble.running_dispersion(x, cnn, "m_h", n_bins=20, degree=3)
    probe = np.array([-1.8, -1.0, 0.0, 0.3])
    np.testing.assert_allclose(fit(probe), 0.05 + 0.04 * probe**2, rtol=0.12)
    # Outside the fitted range the fit is clamped, not extrapolated.
    assert fit(np.array([-10.0]))[0] == pytest.approx(fit(np.array([fit.x_min]))[0])
    sigma = ensemble.total_uncertainty(np.array([0.03]), fit, np.array([0.0]))
    assert sigma[0] == pytest.approx(np.hypot(0.03, fit(np.array([0.0]))[0]))


def test_running_dispersion_needs_enough_stars():
    with pytest.raises(ensemble.EnsembleError, match="only 5 training stars"):
        ensemble.running_dispersion(np.arange(5.0), np.arange(5.0), "teff", n_bins=5, degree=2)


def test_effective_range_uses_quantiles_and_ignores_nan():
    r = ensemble.effective_range({"g": np.array([7.0, 8.0, np.nan, 14.2])}, (0.0, 1.0))
    assert r == {"g": [7.0, 14.2]}


def _member_file(path, ids, values):
    with h5py.File(path, "w") as h5:
        h5["source_id"] = ids
        h5["pred/teff"] = values.astype("f4")


def test_member_files_must_hold_the_same_stars(tmp_path):
    _member_file(tmp_path / "a.h5", np.arange(4), np.ones(4))
    _member_file(tmp_path / "b.h5", np.arange(4)[::-1], np.ones(4))
    with pytest.raises(ensemble.EnsembleError, match="source ids differ"):
        list(ensemble.iter_member_chunks([tmp_path / "a.h5", tmp_path / "b.h5"], ["teff"]))
    with pytest.raises(ensemble.EnsembleError, match="pred/logg missing"):
        list(ensemble.iter_member_chunks([tmp_path / "a.h5"], ["logg"]))


def _arrays(path, ids, teff=None):
    cols = {"source_id": ((), np.int64, {}), "phot/g": ((), np.float32, {})}
    data = {"source_id": ids, "phot/g": np.full(len(ids), 11.0, np.float32)}
    if teff is not None:
        cols["labels/teff"] = ((), np.float32, {})
        data["labels/teff"] = teff.astype(np.float32)
    with ArraysWriter(path, len(ids), cols) as w:
        w.append(data)


def test_catalogue_has_units_header_and_honest_sigma(tmp_path):
    rng = np.random.default_rng(5)
    n_tr, n_ob = 3000, 500
    ref = rng.uniform(4000, 6000, n_tr)
    preds = {"training": [], "observed": []}
    # Members share most of their error (same training stars): an error common to all of
    # them (80 K) that only the running dispersion sees, plus a small scatter between them.
    common = rng.normal(0, 80, n_tr)
    for k in range(3):
        for sample, n, base in (("training", n_tr, ref), ("observed", n_ob, ref[:n_ob])):
            p = tmp_path / f"{sample}{k}.h5"
            _member_file(
                p,
                np.arange(n) + (0 if sample == "training" else 10**6),
                base + common[:n] + rng.normal(0, 10, n),
            )
            preds[sample].append(p)
    _arrays(tmp_path / "tr.h5", np.arange(n_tr), ref)
    _arrays(tmp_path / "ob.h5", np.arange(n_ob) + 10**6)
    table, _fits, trange, _cal = catalogue.build(
        preds,
        {"training": tmp_path / "tr.h5", "observed": tmp_path / "ob.h5"},
        labels=["teff"],
        members=["split0_seed0", "split0_seed1", "split1_seed0"],
        n_bins=10,
        degree=2,
        config_hash="abc123",
    )
    assert len(table) == n_tr + n_ob and table["in_training"].sum() == n_tr
    assert trange["teff"][0] == pytest.approx(ref.min(), rel=1e-6)
    # sigma >= e and >= the running dispersion; roughly 80/sqrt(3)/... honest on training
    assert (table["sigma_teff"] >= table["e_teff"]).all()
    tr = table[table.in_training]
    cov = np.mean(np.abs(tr["teff"] - ref) <= tr["sigma_teff"])
    assert 0.6 < cov < 0.8
    catalogue.write(table, tmp_path / "cat.fits", tmp_path / "cat.csv")
    with fits.open(tmp_path / "cat.fits") as hdul:
        hdr = hdul[1].header
        assert hdr["CONFHASH"] == "abc123" and hdr["NMEMBERS"] == 3
        assert "split1_seed0" in hdr["MEMBERS"]
        units = {hdr[f"TTYPE{i}"]: hdr.get(f"TUNIT{i}") for i in range(1, hdr["TFIELDS"] + 1)}
        assert units["teff"] == "K" and units["sigma_teff"] == "K"
        assert units["phot_g_mean_mag"] == "mag"
    csv = pd.read_csv(tmp_path / "cat.csv")
    assert list(csv.columns) == list(table.columns)


def test_validation_masks_follow_the_training_splits():
    masks = ensemble.validation_masks(
        ["split0_seed0", "split0_seed1", "split3_seed0"], 400, 0.25, 2
    )
    for k, split in enumerate([0, 0, 3]):
        np.testing.assert_array_equal(
            np.flatnonzero(masks[k]), ensemble.split_indices(400, split, 0.25, 2)[1]
        )
    with pytest.raises(ensemble.EnsembleError, match="not an ensemble member name"):
        ensemble.validation_masks(["member7"], 10, 0.25, 0)


def test_snr_calibration_recovers_a_known_factor_and_removes_reference_errors():
    rng = np.random.default_rng(11)
    n = 20000
    snr = rng.uniform(15, 100, n)
    sigma = np.full(n, 0.05)
    true_k = np.where(snr < 30, 2.0, 1.0)  # the quoted sigma is half the truth below S/N 30
    ref_err = np.full(n, 0.04)
    resid = rng.normal(0, sigma * true_k) + rng.normal(0, ref_err)
    cal = ensemble.fit_snr_calibration(
        resid, sigma, snr, "m_h", reference_error=ref_err, n_bins=10, min_per_bin=50
    )
    np.testing.assert_allclose(cal(np.array([17.0, 22.0])), 2.0, rtol=0.1)
    np.testing.assert_allclose(cal(np.array([60.0, 95.0, 500.0])), 1.0, rtol=0.1)
    assert np.all(np.diff(cal.factor) <= 0)  # non-increasing with S/N
    assert cal(np.array([np.nan]))[0] == max(cal.factor)
    # Not removing the reference errors inflates the factors.
    raw = ensemble.fit_snr_calibration(resid, sigma, snr, "m_h", n_bins=10, min_per_bin=50)
    assert raw(np.array([80.0]))[0] > 1.2
    assert ensemble.fit_snr_calibration(resid[:10], sigma[:10], snr[:10], "m_h", n_bins=4) is None


def test_calibration_confidence_bounds_the_quantile_from_above():
    """With confidence 0.84 a bin's factor lies above the population's 68 % quantile in
    84 % of draws (distribution-free); 0.5 is numpy's quantile; the bound tightens as the
    bin fills."""
    rng = np.random.default_rng(3)
    q = ensemble.ONE_SIGMA_COVERAGE
    truth = 1.0  # |N(0, 1)|'s 68.27 % quantile
    for n in (50, 400):
        draws = np.abs(rng.normal(size=(3000, n)))
        above = [ensemble.coverage_quantile(d, q, 0.84) >= truth for d in draws]
        assert np.mean(above) == pytest.approx(0.84, abs=0.03)
        plain = [ensemble.coverage_quantile(d, q) >= truth for d in draws]
        assert np.mean(plain) == pytest.approx(0.5, abs=0.05)
    x = rng.normal(size=1000)
    assert ensemble.coverage_quantile(x, q) == np.quantile(x, q)
    small = np.median([ensemble.coverage_quantile(d, q, 0.84) for d in draws[:, :50]])
    large = np.median([ensemble.coverage_quantile(d, q, 0.84) for d in draws])
    assert small > large > truth
    # through the calibration: every factor at least the plain one
    snr, sigma = rng.uniform(15, 100, 4000), np.full(4000, 0.1)
    resid = rng.normal(0, 0.1, 4000)
    kw = dict(n_bins=8, min_per_bin=100)
    plain_cal = ensemble.fit_snr_calibration(resid, sigma, snr, "logg", **kw)
    wide_cal = ensemble.fit_snr_calibration(resid, sigma, snr, "logg", confidence=0.84, **kw)
    assert np.all(np.array(wide_cal.raw_factor) > np.array(plain_cal.raw_factor))


def test_factor_interval_covers_the_quantile_and_widens_with_reference_noise():
    """quantile_interval holds the population's 68 % quantile in 68 % of samples or more
    (distribution-free, each side missing at most 16 %); through the calibration each bin
    publishes it around its raw factor, wider where the reference labels are noisier than
    the CNN's errors."""
    rng = np.random.default_rng(8)
    q = ensemble.ONE_SIGMA_COVERAGE
    inside = []
    for _ in range(2000):
        lo, hi = ensemble.quantile_interval(np.abs(rng.normal(size=200)), q)
        inside.append(lo <= 1.0 <= hi)
    assert 0.66 <= np.mean(inside) <= 0.75
    assert np.isnan(ensemble.quantile_interval(np.array([]), q)[0])
    n, sigma = 2000, np.full(2000, 0.1)
    snr = rng.uniform(15, 100, n)
    err = np.where(snr > 57, 0.3, 0.01)  # the upper bin's references three times noisier
    resid = rng.normal(0, 0.1, n) + rng.normal(0, 1, n) * err
    cal = ensemble.fit_snr_calibration(resid, sigma, snr, "logg", reference_error=err,
                                       n_bins=2, min_per_bin=100)  # fmt: skip
    (lo1, hi1), (lo2, hi2) = cal.factor_interval
    for (lo, hi), raw in zip(cal.factor_interval, cal.raw_factor, strict=True):
        assert lo <= raw <= hi
    assert hi2 - lo2 > 2 * (hi1 - lo1)


def test_input_distance_axis_widens_sigma_where_stars_leave_the_training_inputs():
    """Outside the training inputs (distance > 1) the quoted sigma is half the truth: the
    second axis finds the factor 2 there, from the few calibration stars that reach it, and
    leaves the stars inside alone; it is non-decreasing and constant beyond its last bin."""
    rng = np.random.default_rng(5)
    n = 12000
    snr = rng.uniform(15, 100, n)
    dist = np.r_[rng.uniform(0.1, 1.0, n - 600), rng.uniform(1.0, 2.5, 600)]
    sigma = np.full(n, 0.1)
    resid = rng.normal(0, sigma * np.where(dist > 1, 2.0, 1.0))
    kw = dict(n_bins=6, min_per_bin=100)
    cal = ensemble.fit_snr_calibration(resid, sigma, snr, "logg", input_distance=dist,
                                       input_bins=6, **kw)  # fmt: skip
    assert np.all(np.diff(cal.input_factor) >= 0)
    inside, outside = cal(np.full(2, 50.0), np.array([0.5, 0.9])), cal(np.full(2, 50.0), [1.8, 9])
    np.testing.assert_allclose(inside, 1.0, rtol=0.12)
    np.testing.assert_allclose(outside, 2.0, rtol=0.15)
    assert cal(np.array([50.0]), np.array([np.inf]))[0] == pytest.approx(outside[1])
    # the stars then cover 68 % on both sides
    z = np.abs(resid) / (sigma * cal(snr, dist))
    for m in (dist <= 1, dist > 1):
        assert np.mean(z[m] <= 1) == pytest.approx(0.6827, abs=0.04)
    # without the axis the outside stars are under-covered
    plain = ensemble.fit_snr_calibration(resid, sigma, snr, "logg", **kw)
    assert np.mean((np.abs(resid) / (sigma * plain(snr)) <= 1)[dist > 1]) < 0.5
    assert plain.input_factor is None


def test_withheld_stars_get_an_uncertainty_added_in_quadrature():
    """Stars whose parallax the network withheld have an error of 0.2 dex more (in
    quadrature) than their sigma says, the others exact: the withheld stars get a floor of
    about 0.2 without moving the others' factor, and cover 68 % at every sigma, small or
    large (a factor of their own would over-cover the large ones); with too few withheld
    calibration stars there is no floor, and they get the others' factor."""
    rng = np.random.default_rng(8)
    n = 10000
    snr = rng.uniform(15, 100, n)
    withheld = rng.random(n) < 0.2
    sigma = rng.choice([0.05, 0.5], n)
    resid = rng.normal(0, np.where(withheld, np.hypot(sigma, 0.2), sigma))
    kw = dict(n_bins=5, min_per_bin=100)
    cal = ensemble.fit_snr_calibration(resid, sigma, snr, "logg", withheld=withheld, **kw)
    assert cal.withheld_floor == pytest.approx(0.2, rel=0.15)
    assert cal.withheld_count == withheld.sum()
    at = np.full(2, 40.0)
    np.testing.assert_allclose(cal(at), 1.0, rtol=0.1)
    np.testing.assert_allclose(
        cal(at, None, np.array([False, True]), np.array([0.05, 0.05])),
        [1.0, np.hypot(0.05, 0.2) / 0.05],
        rtol=0.15,
    )
    with pytest.raises(ValueError, match="needs their sigma"):
        cal(at, None, np.array([False, True]))
    z = np.abs(resid) / (sigma * cal(snr, None, withheld, sigma))
    for m in (withheld, ~withheld):
        for small in (sigma < 0.1, sigma > 0.1):
            assert np.mean(z[m & small] <= 1) == pytest.approx(0.6827, abs=0.05)
    # the others' factor is fitted without the withheld stars (with them it would grow)
    mixed = ensemble.fit_snr_calibration(resid, sigma, snr, "logg", **kw)
    assert mixed(at)[0] > 1.05 * cal(at)[0]
    # the floor needs min_per_bin withheld calibration stars
    few = withheld & (np.cumsum(withheld) <= 50)
    keep = ~withheld | few
    sparse = ensemble.fit_snr_calibration(resid[keep], sigma[keep], snr[keep], "logg",
                                          withheld=few[keep], **kw)  # fmt: skip
    assert sparse.withheld_floor is None
    np.testing.assert_array_equal(sparse(at, None, np.array([True, True]), at), sparse(at))


def _arrays_with_labels(path, ids, snr, teff, teff_err):
    cols = {k: ((), dt, {}) for k, dt in (("source_id", np.int64), ("rvs/snr", np.float32))}
    cols |= {k: ((), np.float32, {}) for k in ("labels/teff", "labels/teff_err")}
    with ArraysWriter(path, len(ids), cols) as w:
        w.append(
            {
                "source_id": ids,
                "rvs/snr": snr.astype(np.float32),
                "labels/teff": teff.astype(np.float32),
                "labels/teff_err": teff_err.astype(np.float32),
            }
        )


def test_snr_calibration_makes_sigma_honest_on_unseen_noisy_stars(tmp_path):
    """Observed stars are noisier than the training ones: the paper's sigma under-covers
    them; the S/N calibration, fitted on the observed stars that have reference labels,
    restores 68 % coverage on the others (which the fit never saw)."""
    rng = np.random.default_rng(21)
    n_tr, n_ob = 3000, 4000
    members = ["split0_seed0", "split0_seed1", "split1_seed0", "split1_seed1"]
    ref = rng.uniform(4000, 6000, n_tr)
    truth_ob = rng.uniform(4100, 5900, n_ob)
    snr_tr, snr_ob = rng.uniform(30, 100, n_tr), rng.uniform(15, 30, n_ob)
    common_tr, common_ob = rng.normal(0, 80, n_tr), rng.normal(0, 200, n_ob)
    preds = {"training": [], "observed": []}
    for k in range(len(members)):
        for sample, ids, base in (
            ("training", np.arange(n_tr), ref + common_tr),
            ("observed", np.arange(n_ob) + 10**6, truth_ob + common_ob),
        ):
            p = tmp_path / f"{sample}{k}.h5"
            _member_file(p, ids, base + rng.normal(0, 10, len(ids)))
            preds[sample].append(p)
    _arrays_with_labels(tmp_path / "tr.h5", np.arange(n_tr), snr_tr, ref, np.full(n_tr, 20.0))
    labelled = np.arange(n_ob) < n_ob // 2  # APOGEE stars that failed the training cuts
    ref_ob = np.where(labelled, truth_ob + rng.normal(0, 60, n_ob), np.nan)
    err_ob = np.where(labelled, 60.0, np.nan)
    _arrays_with_labels(tmp_path / "ob.h5", np.arange(n_ob) + 10**6, snr_ob, ref_ob, err_ob)
    arrays = {"training": tmp_path / "tr.h5", "observed": tmp_path / "ob.h5"}
    kw = dict(labels=["teff"], members=members, n_bins=10, degree=2)

    def coverage(table):
        ob = table[~table.in_training.to_numpy()]
        unseen = ~labelled
        return np.mean(
            np.abs(ob["teff"].to_numpy()[unseen] - truth_ob[unseen])
            <= ob["sigma_teff"].to_numpy()[unseen]
        )

    paper, *_ = catalogue.build(preds, arrays, **kw)
    calibrated, _, _, cal = catalogue.build(
        preds, arrays, **kw, calibration_bins=6, calibration_min_per_bin=100
    )
    assert coverage(paper) < 0.45
    assert 0.63 <= coverage(calibrated) <= 0.73
    c = cal["teff"]
    # observed stars whose reference label falls outside the training range are left out
    assert n_ob // 2 - 20 < c.n_observed <= n_ob // 2 and 0 < c.n_validation < n_tr
    assert c(np.array([20.0]))[0] == pytest.approx(200 / 80, rel=0.2)
    tr = calibrated[calibrated.in_training.to_numpy()]
    assert 0.6 < np.mean(np.abs(tr["teff"].to_numpy() - ref) <= tr["sigma_teff"].to_numpy()) < 0.8
    catalogue.write(calibrated, tmp_path / "cat.fits", tmp_path / "cat.csv")
    with fits.open(tmp_path / "cat.fits") as hdul:
        assert hdul[1].header["SNRCALIB"] == "teff"
    with pytest.raises(ensemble.EnsembleError, match="4 member names for 3"):
        catalogue.build(
            {"training": preds["training"][:3], "observed": preds["observed"][:3]}, arrays, **kw
        )


def test_evaluation_coverage_and_crlb_ratio(tmp_path):
    rng = np.random.default_rng(9)
    n = 4000
    truth = rng.uniform(4000, 6000, n)
    snr = rng.uniform(15, 100, n)
    sigma = np.full(n, 50.0)
    cnn = truth + rng.normal(0, 50.0, n)
    table = pd.DataFrame(
        {
            "source_id": np.arange(n),
            "in_training": np.arange(n) < 2000,
            "phot_g_mean_mag": np.full(n, 12.0),
            "parallax": np.ones(n),
            "teff": cnn,
            "sigma_teff": sigma,
        }
    )
    table.attrs.update(members=["m"], labels=["teff"])
    catalogue.write(table, tmp_path / "c.fits", tmp_path / "c.csv")
    with h5py.File(tmp_path / "truth.h5", "w") as h5:
        h5["source_id"] = np.arange(n)
        h5["truth/snr"] = snr
        h5["truth/teff"] = truth
        h5["crlb_all/teff"] = np.full(n, 25.0)
        h5["truth/population"] = np.where(np.arange(n) >= n - 100, 3, 0).astype("i1")  # 3: OB
    out = evaluation.evaluate(
        tmp_path / "c.fits", tmp_path / "truth.h5", {"teff": [0.0, 1e5]}, ["teff"], ["rvs", "xp"]
    )
    assert set(out["sample"]) == {"training", "observed_in_range", "observed_cnn_in_range"}
    n_of = out.groupby("sample")["n"].sum()
    # the last 100 stars are of an out-of-distribution population: not "in range" by truth
    assert n_of["training"] == 2000 and n_of["observed_cnn_in_range"] == n - 2000
    assert n_of["observed_in_range"] == n - 2000 - 100
    assert np.allclose(out["coverage_1sigma"], 0.68, atol=0.06)
    assert np.allclose(out["ratio_to_crlb"], 2.0, atol=0.25)
    # stars whose true label lies outside the range are not "in range", whatever the CNN says
    narrow = evaluation.evaluate(
        tmp_path / "c.fits", tmp_path / "truth.h5", {"teff": [4000.0, 5000.0]}, ["teff"], ["rvs"]
    )
    n_in = narrow.groupby("sample")["n"].sum()["observed_in_range"]
    expect = np.sum(
        (truth >= 4000) & (truth <= 5000) & (np.arange(n) >= 2000) & (np.arange(n) < n - 100)
    )
    assert n_in == expect
    assert evaluation.crlb_kind(["rvs"]) == "rvs"


def test_label_correlation_recovers_the_errors_correlation_per_snr_bin():
    """Residuals r = CNN error + reference error, the CNN errors of two labels correlated
    by rho(S/N) (+0.6 at low S/N, -0.3 at high) and the reference errors independent: the
    fit finds rho in each bin once the reference errors are removed from the variances,
    and the column interpolates it in log S/N."""
    rng = np.random.default_rng(5)
    n = 40_000
    snr = rng.uniform(10, 200, n)
    rho = np.where(snr < 60, 0.6, -0.3)
    za, zb = rng.normal(size=(2, n))
    cnn_a, cnn_b = 0.1 * za, 0.1 * (rho * za + np.sqrt(1 - rho**2) * zb)
    err = {"logg": np.full(n, 0.08), "m_h": np.full(n, 0.05)}
    resid = {"logg": cnn_a + rng.normal(0, 0.08, n), "m_h": cnn_b + rng.normal(0, 0.05, n)}
    corr = ensemble.fit_label_correlation(
        resid, err, snr, ("logg", "m_h"), n_bins=8, min_per_bin=100
    )
    assert corr.labels == ("logg", "m_h") and len(corr.snr) == 8
    for centre, got in zip(corr.snr, corr.rho, strict=True):
        if abs(centre - 60) > 15:  # bins clear of the step
            assert got == pytest.approx(0.6 if centre < 60 else -0.3, abs=0.06), centre
    # without removing the reference errors the correlation would be diluted
    plain = ensemble.fit_label_correlation(
        resid, {k: np.zeros(n) for k in err}, snr, ("logg", "m_h"), n_bins=8, min_per_bin=100
    )
    assert abs(plain.rho[0]) < abs(corr.rho[0]) - 0.1
    assert corr(np.array([corr.snr[0], corr.snr[-1]])) == pytest.approx([corr.rho[0], corr.rho[-1]])
    assert corr(np.array([np.nan]))[0] == pytest.approx(np.median(corr.rho))
    assert ensemble.correlation_pairs(["teff", "logg", "fe_h", "alpha_m"]) == [
        ("teff", "logg"), ("teff", "fe_h"), ("logg", "fe_h"), ("fe_h", "alpha_m")
    ]  # fmt: skip
