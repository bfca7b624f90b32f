"""The Gaia DR3 radial-velocity uncertainty eVrad (``rvs/radial_velocity_error`` [km/s]) and
Fig. C.1: the layout accepts it (NaN = unknown) and refuses it broken, naming it; the import
copies it; the demo survey writes it, growing as the RVS S/N falls, without changing any
other value it writes; the figure draws the right stars, with GSP-Spec when a table is
given, and says why not without the dataset."""

from __future__ import annotations

import copy

import h5py
import numpy as np
import pandas as pd
import pytest
from figure_data import add_rv_error, check_rendered, make_products, render_recorded

from gaiacnn import arrays, layout
from gaiacnn.constants import CONTINUUM_WINDOWS_NM, LAYOUT_SCHEMA_VERSION
from gaiacnn.demo import physics
from gaiacnn.figures import rv
from gaiacnn.figures import style as st
from gaiacnn.figures.context import Context, Skip
from gaiacnn.layout import RV_ERROR_DATASET, LayoutError, dataset_usage, validate
from gaiacnn.tables import fits_column_names, read_fits_columns

N = 12


# ------------------------------------------------------------------------------ layout
def write_file(path, rv_error=None, *, n: int = N):
    """A small observed-sample layout file (RVS flux and S/N, photometry, parallax, a
    label), with ``rvs/radial_velocity_error`` = ``rv_error`` when given."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as h5:
        h5.attrs["schema_version"] = LAYOUT_SCHEMA_VERSION
        h5["source_id"] = np.arange(n, dtype=np.int64) + 10
        ds = h5.create_dataset("rvs/flux", data=rng.uniform(0.5, 1, (n, 2401)).astype("f4"))
        ds.attrs["wavelength_nm"] = np.linspace(846, 870, 2401)
        h5["rvs/snr"] = np.linspace(15, 200, n).astype("f4")
        for band in ("g", "bp", "rp"):
            h5[f"phot/{band}"] = np.full(n, 11, "f4")
        h5["astrometry/parallax"] = np.full(n, 1.0, "f4")
        h5["labels/teff"] = np.full(n, 4800, "f4")
        if rv_error is not None:
            h5[RV_ERROR_DATASET] = rv_error
    return path


def good_rv_error(n: int = N) -> np.ndarray:
    values = np.linspace(0.1, 6.0, n).astype("f4")
    values[[2, 7]] = np.nan  # unknown
    values[4] = 0.0  # allowed: >= 0
    return values


def test_layout_accepts_the_rv_error_and_says_it_feeds_the_figures_only(tmp_path, capsys):
    from gaiacnn import cli

    path = write_file(tmp_path / "ok.h5", good_rv_error())
    info = validate(path, require_finite_inputs=True)
    assert info.n_rows == N and info.branches == ("rvs", "phot")  # not a model input
    assert RV_ERROR_DATASET not in layout.MODEL_INPUT_DATASETS
    for sample in ("training", "observed"):
        usage = dict(dataset_usage(path, sample=sample))
        assert usage[RV_ERROR_DATASET].startswith("used: figures only")
        assert "Fig. C.1" in usage[RV_ERROR_DATASET]
    assert cli.main(["summary", str(path)]) == 0
    assert f"{RV_ERROR_DATASET}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        (np.r_[good_rv_error(N - 1), -0.5].astype("f4"), "1 rows with values that are < 0"),
        (np.r_[np.inf, good_rv_error(N - 1)].astype("f4"), "infinite"),
        (good_rv_error(N - 1), f"has {N - 1} rows, source_id has {N}"),
        (np.ones(N, int), "not floating point"),
        (np.ones((N, 2), "f4"), "expected 1 axes"),
    ],
    ids=["negative", "infinite", "wrong length", "integer", "2-D"],
)
def test_layout_refuses_a_broken_rv_error_naming_it(tmp_path, values, problem):
    path = write_file(tmp_path / "bad.h5", values)
    with pytest.raises(LayoutError) as err:
        validate(path)
    assert err.value.dataset == RV_ERROR_DATASET
    assert problem in str(err.value) and str(path) in str(err.value)


def test_import_copies_the_rv_error_and_refuses_a_negative_one(tmp_path, config):
    from gaiacnn.arrays import run_import_arrays

    kwargs = dict(
        sample_name="observed",
        labels=[],
        rvs_cfg=config["rvs"],
        arrays_cfg=config["arrays"],
        provenance={"source": "files"},
    )
    good = good_rv_error()
    run_import_arrays(write_file(tmp_path / "user.h5", good), tmp_path / "out.h5", **kwargs)
    with h5py.File(tmp_path / "out.h5") as h5:
        np.testing.assert_array_equal(h5[RV_ERROR_DATASET][:], good)
        assert h5[RV_ERROR_DATASET].attrs["unit"] == "km/s"
    bad = good.copy()
    bad[5] = -1.0
    with pytest.raises(LayoutError, match=r"rvs/radial_velocity_error: 1 rows .*source_id 15"):
        run_import_arrays(write_file(tmp_path / "bad.h5", bad), tmp_path / "bad_out.h5", **kwargs)
    assert not (tmp_path / "bad_out.h5").exists()


# ------------------------------------------------------------------------------ demo
def test_the_law_grows_as_the_snr_falls_from_the_floor():
    params = physics.merge_params({"rv_error": {"lnsigma": 0.0}})
    snr = np.array([400.0, 100.0, 20.0, 4.0, 20.0])
    teff = np.array([5000.0, 5000.0, 5000.0, 5000.0, 14000.0])
    ev = physics.radial_velocity_error(np.random.default_rng(0), teff, snr, params)
    assert ev.dtype == np.float32 and np.all(np.diff(ev[:4]) > 0)
    assert 0.11 < ev[0] < 0.15  # the floor at high S/N
    np.testing.assert_allclose(ev[2], np.hypot(0.11, 1.3), rtol=1e-6)  # 1.3 km/s at S/N 20
    assert 6.0 < ev[3] < 7.0  # ~6.4 km/s at G_RVS 14 (Katz et al. 2023)
    assert ev[4] > 3 * ev[2]  # hot stars: few, broad lines


def _demo(folder, *, rv: bool = True, n_shift: int = 0, base: dict) -> dict:
    from gaiacnn.demo import survey

    cfg = copy.deepcopy(base)
    cfg.update(n_stars=80, chunk_size=20, crlb_inputs=[])
    cfg["shift"] = dict(cfg["shift"], n_stars=n_shift)
    if not rv:
        cfg["physics"] = {"rv_error": {"enabled": False}}
    folder.mkdir()
    paths = survey.default_paths(folder)
    survey.generate(cfg, *paths.values(), progress=False)
    return paths


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    """The same small demo survey with eVrad (``on``), switched off (``off``: what the demo
    wrote before it existed) and with a shifted field (``shifted``)."""
    import yaml

    from gaiacnn.config import load_schema, validate_config

    repo = __import__("pathlib").Path(__file__).resolve().parents[1]
    with open(repo / "config" / "config.yaml", encoding="utf-8") as fh:
        cfg = validate_config(yaml.safe_load(fh), load_schema(repo / "config" / "schema.yaml"))
    root = tmp_path_factory.mktemp("rv_demo")
    out = {
        "on": _demo(root / "on", base=cfg["demo"]),
        "off": _demo(root / "off", rv=False, base=cfg["demo"]),
        "shifted": _demo(root / "shifted", n_shift=15, base=cfg["demo"]),
    }
    out["datasets"] = cfg["demo"]["datasets"]
    return out


def test_demo_writes_an_rv_error_that_grows_as_the_snr_falls(demos):
    from astropy.table import Table

    table = Table.read(demos["on"]["gaia_source"])
    assert table["radial_velocity_error"].unit == "km / s"
    gaia = read_fits_columns(
        demos["on"]["gaia_source"], ["radial_velocity_error", "rvs_spec_sig_to_noise"]
    )
    ev = gaia["radial_velocity_error"].to_numpy()
    snr = gaia["rvs_spec_sig_to_noise"].to_numpy(float)
    assert ev.dtype == np.float32 and np.all(np.isfinite(ev)) and np.all(ev > 0.1)
    assert float(np.median(ev)) < 3.0 and float(ev.max()) < 30.0  # DR3-like: ~0.1 to a few
    assert np.corrcoef(np.log(ev), np.log(snr))[0, 1] < -0.5
    assert np.median(ev[snr < 25]) > 2 * np.median(ev[snr > 60])
    # the shifted field's stars come after, and the ordinary ones keep their eVrad
    shifted = read_fits_columns(demos["shifted"]["gaia_source"], ["radial_velocity_error"])
    assert len(shifted) == 95
    np.testing.assert_array_equal(shifted["radial_velocity_error"].to_numpy()[:80], ev)


def test_demo_rv_error_changes_no_other_value(demos):
    on, off = demos["on"], demos["off"]
    for key in ("raw", "truth", "allstar"):
        assert on[key].read_bytes() == off[key].read_bytes(), key
    a = read_fits_columns(on["gaia_source"])
    b = read_fits_columns(off["gaia_source"])
    assert list(a.columns) == [*b.columns, "radial_velocity_error"]
    for col in b.columns:
        x, y = a[col].to_numpy(), b[col].to_numpy()
        if x.dtype == object:  # strings
            assert x.tolist() == y.tolist(), col
        else:
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), col


def _arrays(paths, out, datasets) -> dict[str, bytes]:
    """Arrays of 40 of the demo's stars (rows as the raw store has them), every dataset's
    bytes by name."""
    present = set(fits_column_names(paths["gaia_source"]))
    gaia_cols = [c for c in ["source_id", *arrays.GAIA_SCALARS] if c in present]
    gaia = read_fits_columns(paths["gaia_source"], gaia_cols)
    ids = layout.read_column(paths["raw"], "source_id")
    sample = pd.DataFrame({"source_id": ids[::2], "teff": 5000.0, "teff_err": 50.0})
    arrays.build_sample_file(
        paths["raw"],
        gaia,
        sample,
        out,
        sample_name="training",
        labels=["teff"],
        continuum_windows_nm=CONTINUUM_WINDOWS_NM,
        nan_fill_quantile=0.75,
        datasets=datasets,
        progress=False,
    )
    validate(out, require_finite_inputs=True)
    found: dict[str, bytes] = {}

    def keep(name: str, obj) -> None:
        if isinstance(obj, h5py.Dataset):
            found[name] = obj[()].tobytes()

    with h5py.File(out) as h5:
        h5.visititems(keep)
    return found


def test_demo_arrays_hold_the_rv_error_and_are_otherwise_unchanged(demos, tmp_path):
    on = _arrays(demos["on"], tmp_path / "on.h5", demos["datasets"])
    off = _arrays(demos["off"], tmp_path / "off.h5", demos["datasets"])
    assert "rvs" in demos["datasets"] and set(on) == {*off, RV_ERROR_DATASET}
    for name in off:
        assert on[name] == off[name], name
    gaia = read_fits_columns(demos["on"]["gaia_source"], ["source_id", "radial_velocity_error"])
    with h5py.File(tmp_path / "on.h5") as h5:
        sid = h5["source_id"][:]
        want = gaia.set_index("source_id").loc[sid, "radial_velocity_error"].to_numpy()
        np.testing.assert_array_equal(h5[RV_ERROR_DATASET][:], want)
        assert h5[RV_ERROR_DATASET].attrs["unit"] == "km/s"
    # without the rvs group there is no eVrad either
    shape = _arrays(demos["on"], tmp_path / "xp.h5", ["xp_coefficients", "phot"])
    assert RV_ERROR_DATASET not in shape


# ------------------------------------------------------------------------------ Fig. C.1
def _ev_of(sid: np.ndarray) -> np.ndarray:
    """Test eVrad [km/s] of a star by its source_id: 0.1-4 km/s, NaN for every 7th star,
    0 (no log-axis position) for every 11th."""
    k = np.asarray(sid, dtype=np.int64) % 10**6
    ev = 0.1 * 40.0 ** ((k % 17) / 16.0)
    ev[k % 7 == 0] = np.nan
    ev[k % 11 == 0] = 0.0
    return ev


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    root = tmp_path_factory.mktemp("rv_products")
    plain = make_products(root / "plain", member=False)
    return plain, add_rv_error(plain, root / "with_rv", _ev_of)


def _expected_counts(ctx: Context) -> dict[str, int]:
    """Stars of each column of Fig. C.1, counted from the files: eVrad > 0 and a finite
    CNN - reference for one of T_eff, log g, [M/H], [alpha/M]."""
    sid = ctx.table["source_id"].to_numpy()
    ev = pd.Series(_ev_of(sid), index=sid)
    known = ev.to_numpy() > 0
    ref = ctx.reference
    resid = np.zeros(len(sid), bool)
    for x in ("teff", "logg", "m_h", "alpha_m"):
        resid |= np.isfinite(ctx.table[x].to_numpy(float) - ref[x].to_numpy(float))
    return {
        "training": int((ctx.in_training & known & resid).sum()),
        "inside": int((ctx.inside & known & resid).sum()),
        "left_out": int(((ctx.in_training | ctx.inside) & ~known & resid).sum()),
    }


def test_fig_c1_draws_both_samples_with_their_star_counts(products, tmp_path):
    _, inputs = products
    ctx = Context(inputs, {})
    index, sizes = render_recorded(ctx, tmp_path / "figures", [rv.rv_error_residuals])
    (entry,) = index["figures"]
    assert entry["name"] == "figC1_rv_error"
    want = _expected_counts(ctx)
    assert want["training"] > 50 and want["inside"] > 50 and want["left_out"] > 0
    assert entry["n_stars"] == want["training"] + want["inside"]
    caption = entry["caption"]
    assert f"training sample ({st.stars(want['training'])})" in caption
    assert f"reference label ({st.stars(want['inside'])})" in caption
    assert f"{st.stars(want['left_out'])} with a reference label but no eVrad" in caption
    assert "running median and 16–84 % range" in caption and "[km/s]" in caption
    assert "No GSP-Spec points: no GSP-Spec table" in caption
    check_rendered(tmp_path / "figures", index, sizes)


def test_fig_c1_axes_have_units_and_one_row_per_label(products):
    _, inputs = products
    with st.style():
        (fig,) = [r.fig for r in rv.rv_error_residuals(Context(inputs, {}))]
    axes = np.asarray(fig.axes).reshape(4, 2)
    assert [ax.get_title() for ax in axes[0]] == [
        "training",
        "observed, inside the training limits",
    ]
    assert axes[0, 0].get_ylabel() == r"$T_\mathrm{eff}$ $-$ reference [K]"
    assert axes[2, 0].get_ylabel() == "[M/H] $-$ reference [dex]"
    assert all("[km s$^{-1}$]" in ax.get_xlabel() for ax in axes[-1])
    assert all(ax.get_xscale() == "log" for ax in axes.ravel())


def test_fig_c1_skips_without_the_dataset(products, tmp_path):
    plain, _ = products
    index, _ = render_recorded(Context(plain, {}), tmp_path / "figures", [rv.rv_error_residuals])
    assert index["figures"] == []
    (skip,) = index["skipped"]
    assert skip["function"] == "rv_error_residuals"
    assert f"no {RV_ERROR_DATASET} in the arrays" in skip["reason"]
    with pytest.raises(Skip, match="radial-velocity uncertainties"):
        rv.rv_error(Context(plain, {}))


#: GSP-Spec = reference + OFFSET + noise: its running median must sit at OFFSET, the CNN's
#: near zero.
OFFSET = {"teff": 200.0, "logg": 0.4, "m_h": -0.25, "alpha_m": 0.12}


def test_fig_c1_draws_gsp_spec_minus_reference_from_a_table(products, tmp_path):
    _, inputs = products
    ctx = Context(inputs, {})
    ref = ctx.reference
    rng = np.random.default_rng(5)
    pick = np.sort(rng.choice(len(ctx.table), 400, replace=False))
    table = {"source_id": ctx.table["source_id"].to_numpy(np.int64)[pick]}
    for x, off in OFFSET.items():
        noise = rng.normal(0.0, abs(off) / 8, pick.size)
        table[x] = ref[x].to_numpy(float)[pick] + off + noise
    table["flags_gspspec"] = ["0" * 41] * pick.size
    path = tmp_path / "gsp_spec.csv"
    pd.DataFrame(table).to_csv(path, index=False)
    ctx = Context(inputs, {"external": {"gsp_spec": str(path)}})
    with st.style():
        (r,) = list(rv.rv_error_residuals(ctx))
    sid = ctx.table["source_id"].to_numpy()
    known = _ev_of(sid) > 0
    in_table = np.isin(np.arange(len(sid)), pick)
    has_ref = np.isfinite(ref["teff"].to_numpy(float))
    for key, mask in (("training", ctx.in_training), ("inside", ctx.inside)):
        n = int((mask & known & in_table & has_ref).sum())
        assert n > 20
        words = "of the training sample" if key == "training" else "observed inside the limits"
        assert f"{st.stars(n)} {words}" in r.caption
    assert "GSP-Spec − reference (gsp_spec.csv, 400 stars" in r.caption
    axes = np.asarray(r.fig.axes).reshape(4, 2)
    for row, (x, off) in zip(axes, OFFSET.items(), strict=True):
        for ax in row:
            lines = {line.get_label(): line.get_ydata() for line in ax.get_lines()}
            gsp = np.asarray(lines["GSP-Spec running median"], float)
            cnn = np.asarray(lines["CNN running median"], float)
            assert gsp.size >= 2 and cnn.size >= 2, x
            np.testing.assert_allclose(np.nanmedian(gsp), off, atol=abs(off) / 4, err_msg=x)
            assert abs(np.nanmedian(cnn)) < abs(off) / 2, x
    assert r.n_stars == (
        _expected_counts(ctx)["training"] + _expected_counts(ctx)["inside"]
    )  # the GSP-Spec stars do not change the CNN counts


def test_running_stats_in_equal_count_bins():
    x = np.geomspace(0.1, 10.0, 200)
    d = np.log10(x) + np.tile([-1.0, 1.0], 100) * 0.1
    s = rv.running_stats(np.r_[x, np.nan, -1.0], np.r_[d, 0.0, 0.0], max_bins=5, min_per_bin=10)
    assert s["n"].tolist() == [40] * 5  # the NaN and the negative x do not count
    np.testing.assert_allclose(s["median"], np.log10(s["x"]), atol=0.06)
    assert np.all(s["p84"] - s["p16"] > 0.15)
    few = rv.running_stats(x[:9], d[:9], min_per_bin=10)
    assert few["x"].size == 0 and few["n"].size == 0
