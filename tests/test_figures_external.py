"""The external comparison figures (Figs. 7 right, 20-23): tables written here (CSV and
FITS) from the catalogue's own labels plus a known offset and noise, joined on source_id,
rendered, and the printed bias checked against the offset."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table
from figure_data import check_rendered, make_products, render_recorded

from gaiacnn.figures import external
from gaiacnn.figures.context import Context
from gaiacnn.figures.render import read_index, render_all

#: Injected offsets: table value = CNN label + OFFSET + noise, so CNN - table = -OFFSET.
OFFSET = {"teff": 100.0, "logg": 0.2, "m_h": -0.1, "alpha_m": 0.05, "fe_h": -0.1}
NOISE = {"teff": 30.0, "logg": 0.05, "m_h": 0.03, "alpha_m": 0.02, "fe_h": 0.03}
UNKNOWN_IDS = np.arange(5, dtype=np.int64) + 9 * 10**15  # not in the catalogue
NAMES = {
    "fig07_gsp_spec_reference",
    "fig20_gsp_spec",
    "fig20_gsp_phot",
    "fig21_asteroseismic",
    "fig22_galah",
    "fig23_open_clusters",
}


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    return make_products(tmp_path_factory.mktemp("products"), member=False)


def _noisy(cat: pd.DataFrame, rng, name: str, label: str | None = None) -> np.ndarray:
    label = label or name
    return cat[label].to_numpy(float) + OFFSET[name] + rng.normal(0, NOISE[name], len(cat))


def _with_unknown(table: dict) -> pd.DataFrame:
    """``table`` plus rows of ids that are not in the catalogue (must not match)."""
    extra = {k: np.full(UNKNOWN_IDS.size, 1.0) for k in table if k not in ("source_id", "cluster")}
    extra["source_id"] = UNKNOWN_IDS
    if "cluster" in table:
        extra["cluster"] = np.array(["Nowhere"] * UNKNOWN_IDS.size)
    return pd.concat([pd.DataFrame(table), pd.DataFrame(extra)], ignore_index=True)


@pytest.fixture(scope="module")
def tables(products, tmp_path_factory):
    """The five comparison tables, and the catalogue rows each was drawn from."""
    out = tmp_path_factory.mktemp("external")
    ctx = Context(products)
    cat = ctx.table
    rng = np.random.default_rng(7)
    pick = np.sort(rng.choice(len(cat), 400, replace=False))
    sub = cat.iloc[pick]
    paths, rows = {}, {}
    # GSP-Spec: CSV, one noisy value, one non-numeric value (read as NaN)
    t = {"source_id": sub["source_id"].to_numpy(np.int64)}
    t |= {x: _noisy(sub, rng, x) for x in ("teff", "logg", "m_h", "alpha_m")}
    t["flags_gspspec"] = np.array(["0" * 41] * len(sub))
    df = _with_unknown(t)
    df["teff"] = df["teff"].astype(object)
    df.loc[0, "teff"] = "not a number"
    paths["gsp_spec"] = out / "gsp_spec.csv"
    df.to_csv(paths["gsp_spec"], index=False)
    rows["gsp_spec"] = pick
    # GSP-Phot: FITS, upper-case column names
    t = {"SOURCE_ID": sub["source_id"].to_numpy(np.int64)}
    t |= {x.upper(): _noisy(sub, rng, x) for x in ("teff", "logg", "m_h")}
    paths["gsp_phot"] = out / "gsp_phot.fits"
    Table(t).write(paths["gsp_phot"])
    rows["gsp_phot"] = pick
    # GALAH: FITS, [alpha/Fe] from the CNN [alpha/M]
    t = {"source_id": sub["source_id"].to_numpy(np.int64)}
    t |= {x: _noisy(sub, rng, x) for x in ("teff", "logg", "fe_h")}
    t["alpha_fe"] = _noisy(sub, rng, "alpha_m")
    tab = Table.from_pandas(_with_unknown(t))
    paths["galah"] = out / "galah.fits"
    tab.write(paths["galah"])
    rows["galah"] = pick
    # asteroseismic: CSV, the first 150 picked stars
    few = cat.iloc[pick[:150]]
    paths["asteroseismic"] = out / "seismic.csv"
    _with_unknown(
        {"source_id": few["source_id"].to_numpy(np.int64), "logg": _noisy(few, rng, "logg")}
    ).to_csv(paths["asteroseismic"], index=False)
    rows["asteroseismic"] = pick[:150]
    # open clusters: CSV, 5 clusters of 8 members (training or inside), one literature value
    # per cluster = median CNN fe_h of its members + offset; a 6th cluster of 2 (not drawn)
    usable = np.flatnonzero(ctx.in_training | ctx.inside)
    members = rng.choice(usable, 42, replace=False)
    names = np.repeat([f"NGC {i}" for i in range(6)], [8, 8, 8, 8, 8, 2])
    fe = cat["fe_h"].to_numpy(float)[members]
    value = pd.Series(fe).groupby(names).transform("median").to_numpy() + OFFSET["fe_h"]
    paths["open_clusters"] = out / "clusters.csv"
    _with_unknown(
        {
            "source_id": cat["source_id"].to_numpy(np.int64)[members],
            "cluster": names,
            "fe_h": value,
            "teff": cat["teff"].to_numpy(float)[members],
        }
    ).to_csv(paths["open_clusters"], index=False)
    rows["open_clusters"] = members
    return paths, rows


def _context(products, paths: dict) -> Context:
    return Context(products, {"external": {k: str(v) for k, v in paths.items()}})


def test_bias_sigma():
    b, s, n = external.bias_sigma([1.0, 3.0, np.nan, np.inf])
    assert (b, s, n) == (2.0, 1.0, 2)
    b, s, n = external.bias_sigma(np.array([np.nan]))
    assert np.isnan(b) and np.isnan(s) and n == 0
    assert external.bias_sigma(np.full((3, 2), 0.5)) == (0.5, 0.0, 6)


def test_join_and_bias(products, tables):
    paths, rows = tables
    ctx = _context(products, paths)
    for kind in ("gsp_spec", "gsp_phot", "galah"):
        m = external.matched(ctx, kind)
        assert m.n_table == len(rows[kind]) + (0 if kind == "gsp_phot" else UNKNOWN_IDS.size)
        assert sorted(m.frame["row"]) == sorted(rows[kind])  # unknown ids do not match
        sid = ctx.table["source_id"].to_numpy()[m.frame["row"].to_numpy()]
        np.testing.assert_array_equal(sid, m.frame["source_id"].to_numpy())
        pairs = {"teff": "teff", "logg": "logg"}
        pairs |= {"galah": {"fe_h": "fe_h", "alpha_m": "alpha_fe"}}.get(kind, {"m_h": "m_h"})
        for label, col in pairs.items():
            b, s, n = external.bias_sigma(m.frame[f"cnn_{label}"] - m.frame[f"ext_{col}"])
            assert n >= len(rows[kind]) - 1
            assert abs(b + OFFSET[label]) < 5 * NOISE[label] / np.sqrt(n)
            assert s == pytest.approx(NOISE[label], rel=0.25)
    m = external.matched(ctx, "gsp_spec")
    assert np.isnan(m.frame["ext_teff"]).sum() == 1  # the "not a number"
    assert "ext_flags_gspspec" not in m.frame  # extra columns ignored


def test_read_table_keeps_int64_ids(tmp_path):
    big = np.array([6917528997577384320, 4295806720, 6917528997577384320], dtype=np.int64)
    path = tmp_path / "seis.csv"
    pd.DataFrame({"Source_ID": big, "LOGG": [2.5, 3.0, 1.0]}).to_csv(path, index=False)
    t = external.read_table(path, "asteroseismic")
    assert t["source_id"].dtype == np.int64
    assert list(t["source_id"]) == [6917528997577384320, 4295806720]  # duplicate dropped
    assert list(t["logg"]) == [2.5, 3.0]
    j = external.join(np.array([1, 4295806720], dtype=np.int64), t)
    assert list(j["row"]) == [1] and list(j["logg"]) == [3.0]


def test_render_all(products, tables, tmp_path):
    paths, _ = tables
    ctx = _context(products, paths)
    out = tmp_path / "figs"
    index, sizes = render_recorded(ctx, out, external.FIGURES)
    assert index["skipped"] == []
    assert {f["name"] for f in index["figures"]} == NAMES
    assert read_index(out) == index
    check_rendered(out, index, sizes)
    captions = {f["name"]: f["caption"] for f in index["figures"]}
    # the printed bias recovers the injected offset (CNN - table = -OFFSET)
    for name, label, key in (
        ("fig20_gsp_spec", "teff", "teff"),
        ("fig20_gsp_spec", "m_h", "m_h"),
        ("fig20_gsp_phot", "logg", "logg"),
        ("fig22_galah", "fe_h", "fe_h"),
        ("fig22_galah", "alpha_m", "alpha"),
    ):
        text = captions[name]
        if name == "fig20_gsp_phot":  # three columns (Fig. 20): CNN - GSP-Phot is the third
            text = text.split("CNN - GSP-Phot:")[-1]
        found = re.findall(rf"\b{key} b = ([-+0-9.]+) (?:K|dex)", text)
        assert found, (name, key)
        for b in found:  # training and inside samples
            assert abs(float(b) + OFFSET[label]) < 6 * NOISE[label] / np.sqrt(50), (name, key)
    assert "gsp_spec.csv" in captions["fig20_gsp_spec"]
    assert "400 stars of the 405 in the table" in captions["fig20_gsp_spec"]
    seis = re.findall(r"CNN - seismic: b = ([-+0-9.]+) dex", captions["fig21_asteroseismic"])
    assert seis and all(abs(float(b) + OFFSET["logg"]) < 0.05 for b in seis)
    assert "GSP-Spec - seismic" in captions["fig21_asteroseismic"]
    m = re.search(r"over the clusters b = ([-+0-9.]+) dex", captions["fig23_open_clusters"])
    assert m and float(m.group(1)) == pytest.approx(-OFFSET["fe_h"], abs=1e-3)
    assert "5 clusters" in captions["fig23_open_clusters"]


def test_cluster_summary():
    frame = pd.DataFrame(
        {
            "ext_cluster": ["A"] * 5 + ["B"] * 4 + ["C"] * 3,
            "ext_fe_h": [0.1] * 5 + [-0.2, -0.2, -0.4, -0.4] + [0.0] * 3,
            "cnn_fe_h": [0.0, 0.1, 0.2, 0.3, np.nan] + [-0.3, -0.3, -0.3, -0.3] + [0.0] * 3,
        }
    )
    s = external.cluster_summary(frame, "ext_fe_h", "cnn_fe_h", min_members=4)
    assert list(s["cluster"]) == ["B", "A"]  # C too small; A has 4 finite members
    b = s.set_index("cluster")
    assert b.loc["A", "n"] == 4 and b.loc["A", "median"] == pytest.approx(0.15)
    assert b.loc["A", "delta"] == pytest.approx(0.05)
    assert b.loc["B", "ref"] == pytest.approx(-0.3) and b.loc["B", "ref_sd"] == pytest.approx(0.1)
    assert b.loc["B", "delta"] == pytest.approx(0.0)


@pytest.mark.parametrize("fmt", ["csv", "fits"])
def test_missing_column_names_file_and_column(products, tables, tmp_path, fmt):
    paths, _ = tables
    cat = Context(products).table
    t = {"source_id": cat["source_id"].to_numpy(np.int64)[:20]}
    t |= {x: cat[x].to_numpy(float)[:20] for x in ("teff", "logg", "m_h")}  # no alpha_m
    path = tmp_path / f"gsp_spec_bad.{fmt}"
    if fmt == "csv":
        pd.DataFrame(t).to_csv(path, index=False)
    else:
        Table(t).write(path)
    ctx = _context(products, {**paths, "gsp_spec": path})
    with pytest.raises(external.ExternalTableError, match=r"gsp_spec_bad\.\w+.*'alpha_m'"):
        render_all(ctx, tmp_path / "figs", formats=("png",), functions=[external.gsp_spec])
    assert issubclass(external.ExternalTableError, ValueError)
    assert not (tmp_path / "figs").exists()
    # a cluster table needs m_h or fe_h; a file that is not there is an error too
    clusters = tmp_path / f"clusters.{fmt}"
    t = {"source_id": t["source_id"], "cluster": np.array(["X"] * 20)}
    if fmt == "csv":
        pd.DataFrame(t).to_csv(clusters, index=False)
    else:
        Table(t).write(clusters)
    with pytest.raises(ValueError, match=r"clusters\.\w+.*'m_h' or 'fe_h'"):
        external.read_table(clusters, "open_clusters")
    with pytest.raises(ValueError, match="no such file"):
        external.read_table(tmp_path / "absent.csv", "galah")
    with pytest.raises(ValueError, match="unknown table format"):
        external.read_table(path.rename(tmp_path / "table.dat"), "gsp_spec")


@pytest.mark.parametrize(
    "cfg", [{}, {"external": {}}, {"external": dict.fromkeys(external.COLUMNS)}]
)
def test_no_tables_skips_every_figure(products, tmp_path, cfg):
    index = render_all(
        Context(products, cfg), tmp_path / "figs", formats=("png",), functions=external.FIGURES
    )
    assert index["figures"] == []
    assert [s["function"] for s in index["skipped"]] == [f.__name__ for f in external.FIGURES]
    assert all("figures.external." in s["reason"] for s in index["skipped"])


def test_inputs_external_preferred(products, tables, tmp_path):
    paths, _ = tables
    inputs = dataclasses.replace(products, external={"asteroseismic": paths["asteroseismic"]})
    ctx = Context(inputs, {"external": {"asteroseismic": None, "gsp_spec": paths["gsp_spec"]}})
    index = render_all(ctx, tmp_path / "figs", formats=("png",), functions=external.FIGURES)
    assert [f["name"] for f in index["figures"]] == ["fig21_asteroseismic"]
    assert "GSP-Spec" not in index["figures"][0]["caption"]  # cfg ignored: inputs non-empty


def test_columns_table_documents_every_column():
    md = external.columns_markdown()
    for key, spec in external.COLUMNS.items():
        for c in spec.columns:
            assert f"| `{key}` | `{c.name}` |" in md
    rows = [line for line in md.splitlines() if line.startswith("| `")]
    assert len(rows) == sum(len(s.columns) for s in external.COLUMNS.values()) + 1  # + header


def test_many_stars_drawn_as_histograms(products, tables, tmp_path, monkeypatch):
    """Above SCATTER_MAX matched stars a panel is a 2-D histogram (st.density), not points."""
    paths, _ = tables
    # SCATTER_MAX is read by the drawing helpers and by Fig. 21 (modules of the package).
    monkeypatch.setattr(external.drawing, "SCATTER_MAX", 50)
    monkeypatch.setattr(external.surveys, "SCATTER_MAX", 50)
    ctx = _context(products, paths)
    functions = [external.gsp_spec, external.asteroseismic]
    figs = [r for fn in functions for r in fn(ctx)]
    assert [r.name for r in figs] == ["fig20_gsp_spec", "fig21_asteroseismic"]
    for r in figs:
        assert any(ax.collections and type(ax.collections[0]).__name__ == "QuadMesh"
                   for ax in r.fig.axes)  # fmt: skip
