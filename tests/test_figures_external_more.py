"""Fig. 16 with the GSP-Spec - reference lines and Fig. 20 in its three columns (Sect. 4.5,
6.1), from small comparison tables whose stars are chosen so that the kept ones are known."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table
from figure_data import make_products

from gaiacnn.figures import external, samples
from gaiacnn.figures.context import Context, Skip, snr_edges

UNKNOWN_IDS = np.arange(4, dtype=np.int64) + 9 * 10**15  # not in the catalogue
#: GSP-Spec / GSP-Phot = reference + OFFSET + a noise of SPREAD (per label).
OFFSET = {"teff": 200.0, "logg": -0.3, "m_h": 0.15, "alpha_m": 0.05}
SPREAD = {"teff": 150.0, "logg": 0.25, "m_h": 0.2, "alpha_m": 0.08}


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    return make_products(tmp_path_factory.mktemp("products"), n=500, member=False)


@pytest.fixture(scope="module")
def ctx(products):
    return Context(products)


def _rows(ctx: Context) -> dict[str, np.ndarray]:
    """Catalogue rows by kind: training and inside stars with every reference label, and
    observed stars outside the training limits."""
    ref = ctx.reference[list(OFFSET)].to_numpy(float)
    full = np.isfinite(ref).all(axis=1)
    return {
        "training": np.flatnonzero(ctx.in_training & full),
        "inside": np.flatnonzero(ctx.inside & full),
        "outside": np.flatnonzero(ctx.outside),
    }


def _table(ctx: Context, rows: np.ndarray, labels, seed: int) -> pd.DataFrame:
    """Reference + OFFSET + noise for ``labels`` of the catalogue ``rows``."""
    rng = np.random.default_rng(seed)
    t = pd.DataFrame({"source_id": ctx.table["source_id"].to_numpy(np.int64)[rows]})
    for x in labels:
        ref = ctx.reference[x].to_numpy(float)[rows]
        t[x] = ref + OFFSET[x] + rng.normal(0, SPREAD[x], rows.size)
    return t


# --------------------------------------------------------------------------- Fig. 16
@pytest.fixture(scope="module")
def gsp_spec(ctx, tmp_path_factory):
    """A GSP-Spec table of 60 training, 80 inside and 10 outside stars (+ unknown ids); 4 of
    the training stars have no value at all (NaN): they are not counted."""
    r = _rows(ctx)
    rows = np.r_[r["training"][:60], r["inside"][:80], r["outside"][:10]]
    t = _table(ctx, rows, ("teff", "logg", "m_h", "alpha_m"), seed=5)
    t.loc[:3, ["teff", "logg", "m_h", "alpha_m"]] = np.nan
    extra = pd.DataFrame({"source_id": UNKNOWN_IDS, **dict.fromkeys(OFFSET, 1.0)})
    path = tmp_path_factory.mktemp("gsp") / "gsp_spec.csv"
    pd.concat([t, extra]).to_csv(path, index=False)
    return path, rows


def _dashed(ax) -> list:
    return [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]


def test_fig16_draws_gsp_spec_dashed_lines_with_their_counts(products, ctx, gsp_spec):
    path, rows = gsp_spec
    c = Context(products, {"external": {"gsp_spec": str(path)}})
    (r,) = samples.precision_vs_snr(c)
    snr = ctx.measured("rvs_snr")
    edges = snr_edges(c.cfg)
    in_bins = (snr >= edges[0]) & (snr < edges[-1])
    have = np.zeros(len(ctx.table), bool)
    have[rows[4:]] = True  # the first 4 rows have no GSP-Spec value
    n_tr = int((have & in_bins & ctx.in_training).sum())
    n_in = int((have & in_bins & ctx.inside).sum())
    assert 30 < n_tr < 60 and 40 < n_in <= 80  # (the test's own premise)
    legend = [t.get_text() for t in r.fig.legends[0].get_texts()]
    assert f"GSP-Spec $-$ ref., training ({n_tr} stars)" in legend
    assert f"GSP-Spec $-$ ref., observed, inside ({n_in} stars)" in legend
    assert f"{n_tr} stars of the training sample and {n_in} stars observed inside" in r.caption
    assert "dashed lines" in r.caption and "not given" not in r.caption
    axes = r.fig.axes
    titles = [ax.get_title() for ax in axes]
    assert len(axes) == len(ctx.labels)
    for ax, name in zip(axes, ctx.labels, strict=True):
        dashed = _dashed(ax)
        assert len(dashed) == (2 if name in OFFSET else 0), (name, titles)
        assert ax.get_ylabel().endswith("[K]" if name == "teff" else "[dex]")
    # the training dashed line of T_eff: the standard deviation of GSP-Spec - reference of
    # the training stars of each S/N bin with >= 5 of them
    teff_ax = axes[ctx.labels.index("teff")]
    training = next(ln for ln in _dashed(teff_ax) if ln.get_color() == "tab:orange")
    t = pd.read_csv(path).set_index("source_id")
    d = np.full(len(ctx.table), np.nan)
    d[rows] = t.loc[ctx.table["source_id"].to_numpy()[rows], "teff"].to_numpy(float)
    d -= ctx.reference["teff"].to_numpy(float)
    for k, (lo, hi) in enumerate(itertools.pairwise(edges)):
        b = ctx.in_training & (snr >= lo) & (snr < hi) & np.isfinite(d)
        want = np.std(d[b]) if b.sum() >= samples.MIN_BIN_STARS else np.nan
        np.testing.assert_allclose(training.get_ydata()[k], want, rtol=1e-9)
    assert np.nanmean(training.get_ydata()) == pytest.approx(SPREAD["teff"], rel=0.35)
    r.fig.clear()


def test_fig16_without_gsp_spec_says_so(products):
    (r,) = samples.precision_vs_snr(Context(products, {"external": {"gsp_spec": None}}))
    assert all(not _dashed(ax) for ax in r.fig.axes)
    assert "GSP-Spec not given (figures.external.gsp_spec is null)" in r.caption
    assert not any("GSP-Spec" in t.get_text() for t in r.fig.legends[0].get_texts())
    r.fig.clear()


def test_fig16_and_fig7_right_take_the_same_gsp_spec_stars(products, gsp_spec):
    path, rows = gsp_spec
    c = Context(products, {"external": {"gsp_spec": str(path)}})
    m, have = external.gsp_spec_minus_reference(c)
    assert have == ["teff", "logg", "m_h", "alpha_m"]
    assert sorted(m.frame["row"]) == sorted(rows)  # unknown ids left out
    (r,) = external.gsp_spec_reference(c)
    assert f"{len(rows)} stars of the {len(rows) + UNKNOWN_IDS.size} in the table" in r.caption
    r.fig.clear()


# --------------------------------------------------------------------------- Fig. 20
@pytest.fixture(scope="module")
def gsp_phot(ctx, tmp_path_factory):
    """A GSP-Phot table (FITS): 40 inside stars with every value (kept), 3 inside stars
    without GSP-Phot [M/H], 12 training and 7 outside stars (left out), unknown ids."""
    r = _rows(ctx)
    kept, lacking = r["inside"][:40], r["inside"][40:43]
    rows = np.r_[kept, lacking, r["training"][:12], r["outside"][:7]]
    t = _table(ctx, rows, ("teff", "logg", "m_h"), seed=9)
    t.loc[40:42, "m_h"] = np.nan
    extra = pd.DataFrame({"source_id": UNKNOWN_IDS, **dict.fromkeys(("teff", "logg", "m_h"), 1.0)})
    path = tmp_path_factory.mktemp("phot") / "gsp_phot.fits"
    Table.from_pandas(pd.concat([t, extra], ignore_index=True)).write(path)
    return path, kept, t


def test_fig20_three_columns_of_the_inside_stars_with_all_three(products, ctx, gsp_phot):
    path, kept, t = gsp_phot
    c = Context(products, {"external": {"gsp_phot": str(path)}})
    (r,) = external.gsp_phot(c)
    assert r.name == "fig20_gsp_phot" and r.n_stars == kept.size == 40
    axes = np.array(r.fig.axes).reshape(3, 3)  # rows: teff, logg, m_h
    titles = [ax.get_title() for ax in axes[0]]
    for title, want in zip(
        titles, ("CNN $-$ reference", "GSP-Phot $-$ reference", "CNN $-$ GSP-Phot"), strict=True
    ):
        assert title == f"{want}, 40 stars"
    assert "40 stars of the observed sample inside the training limits" in r.caption
    assert (
        "12 of the training sample, 7 observed outside the training limits and 3 lacking "
        "a value left out" in r.caption
    )
    sid = ctx.table["source_id"].to_numpy()[kept]
    ext = t.set_index("source_id").loc[sid]
    for i, x in enumerate(("teff", "logg", "m_h")):
        cnn, ref = ctx.column(x)[kept], ctx.reference[x].to_numpy(float)[kept]
        columns = ((ref, cnn - ref), (ref, ext[x] - ref), (ext[x], cnn - ext[x]))
        for j, (want_x, want_y) in enumerate(columns):
            xy = axes[i, j].collections[0].get_offsets()
            assert len(xy) == 40
            np.testing.assert_allclose(np.sort(xy[:, 0]), np.sort(want_x), rtol=1e-5)
            np.testing.assert_allclose(np.sort(xy[:, 1]), np.sort(want_y), rtol=1e-4, atol=1e-4)
        assert axes[i, 2].get_xlabel().startswith("GSP-Phot")
        assert axes[i, 0].get_xlabel().startswith("reference")
    # the middle column's bias is the injected offset of GSP-Phot from the reference
    middle = r.caption.split("GSP-Phot - reference:")[1].split("|")[0]
    b = float(re.search(r"teff b = ([-+0-9.]+) K", middle).group(1))
    assert abs(b - OFFSET["teff"]) < 4 * SPREAD["teff"] / np.sqrt(40)
    r.fig.clear()


def test_fig20_skips_without_a_kept_star(products, ctx, tmp_path):
    r = _rows(ctx)
    t = _table(ctx, np.r_[r["training"][:10], r["outside"][:5]], ("teff", "logg", "m_h"), 2)
    path = tmp_path / "gsp_phot.csv"
    t.to_csv(path, index=False)
    with pytest.raises(Skip, match="inside the training limits"):
        next(external.gsp_phot(Context(products, {"external": {"gsp_phot": str(path)}})))
