"""t-SNE map figures (Figs. 17, A.1), the Galactic [alpha/M]-[M/H] figure (Fig. 24), its
Galactocentric positions and the ra/dec plumbing (arrays, layout, catalogue)."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.coordinates import Galactocentric, SkyCoord
from astropy.io import fits
from figure_data import check_rendered, make_products, render_recorded

from gaiacnn import arrays, catalogue, layout
from gaiacnn.constants import CONTINUUM_WINDOWS_NM, rvs_wavelength_nm
from gaiacnn.figures import external, galaxy, style, tsne_maps
from gaiacnn.figures.context import Context
from gaiacnn.figures.galaxy import galactocentric_rz
from gaiacnn.figures.render import read_index, render_all

R_SUN, Z_SUN = 8.122, 0.0208  # astropy's Galactocentric defaults, kpc


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_products(tmp_path_factory.mktemp("products"), member=False)


# --------------------------------------------------------------------------- t-SNE maps


def test_tsne_figures_one_per_map_and_all_perplexities(inputs, tmp_path):
    out = tmp_path / "figs"
    index, sizes = render_recorded(Context(inputs, {}), out, tsne_maps.FIGURES)
    assert index["skipped"] == []
    names = [f["name"] for f in index["figures"]]
    assert names == [
        "fig17_tsne_p30",
        "fig17_tsne_p50",
        "figA1_tsne_perplexities",
        "figA2_tsne_labels",
    ]
    assert read_index(out) == index
    check_rendered(out, index, sizes)
    with h5py.File(inputs.maps[0], "r") as h5:
        tr, like = h5["in_training"][:], h5["training_like"][:]
    n_like, n_unlike = int((~tr & like).sum()), int((~tr & ~like).sum())
    fig17 = index["figures"][0]
    assert fig17["n_stars"] == len(tr) == 600
    cap = fig17["caption"]
    assert f"training-like ({n_like})" in cap and f"training-unlike ({n_unlike})" in cap
    assert f"training ({style.stars(int(tr.sum()))})" in cap
    assert "<= 1 t-SNE units" in cap and "every star is drawn" in cap
    cap_a1 = index["figures"][2]["caption"]
    assert "perplexity 30" in cap_a1 and "perplexity 50" in cap_a1


def test_tsne_map_is_subsampled_when_large(inputs, tmp_path, monkeypatch):
    monkeypatch.setattr(tsne_maps, "MAX_POINTS", 100)
    index = render_all(
        Context(inputs, {}),
        tmp_path / "figs",
        formats=("png",),
        functions=[tsne_maps.tsne_classification],
    )
    cap = index["figures"][0]["caption"]
    assert "a random 17% of the stars is drawn" in cap
    assert index["figures"][0]["n_stars"] == 600  # counts stay those of the whole map
    rows = tsne_maps._subsample(600, 0)
    assert rows.size == 100 and np.all(np.diff(rows) > 0)
    assert np.array_equal(rows, tsne_maps._subsample(600, 0))  # reproducible (figures.seed)


def test_tsne_figures_skip_without_maps(inputs, tmp_path):
    ctx = Context(dataclasses.replace(inputs, maps=()), {})
    index = render_all(ctx, tmp_path / "f", formats=("png",), functions=tsne_maps.FIGURES)
    assert index["figures"] == []
    assert {s["reason"] for s in index["skipped"]} == {"no t-SNE map files"}


# --------------------------------------------------------------------------- positions


def test_galactocentric_rz_known_cases():
    gc = Galactocentric().galcen_coord
    r, z = galactocentric_rz(np.array([gc.ra.deg]), np.array([gc.dec.deg]), np.array([R_SUN]))
    assert r[0] == pytest.approx(0.0, abs=1e-6) and z[0] == pytest.approx(0.0, abs=1e-6)
    # A star (almost) at the Sun: R = R_sun cos(tilt) and Z = z_sun.
    r, z = galactocentric_rz(np.array([123.0]), np.array([45.0]), np.array([1e-9]))
    assert r[0] == pytest.approx(R_SUN, abs=1e-4) and z[0] == pytest.approx(Z_SUN, abs=1e-6)
    # Toward the Galactic anticentre and the north Galactic pole, 1 kpc away.
    c = SkyCoord(l=[180.0, 0.0] * u.deg, b=[0.0, 90.0] * u.deg, frame="galactic").icrs
    r, z = galactocentric_rz(c.ra.deg, c.dec.deg, np.array([1.0, 1.0]))
    assert r == pytest.approx([R_SUN + 1.0, R_SUN], abs=0.01)
    assert z == pytest.approx([Z_SUN, 1.0 + Z_SUN], abs=0.01)
    # Vectorised; non-positive or NaN distances and NaN positions give NaN.
    r, z = galactocentric_rz(
        np.array([10.0, 10.0, 10.0, np.nan, 10.0]),
        np.array([5.0, 5.0, 5.0, 5.0, 5.0]),
        np.array([0.0, -1.0, np.nan, 1.0, 2.0]),
    )
    assert np.isnan(r[:4]).all() and np.isnan(z[:4]).all()
    assert np.isfinite(r[4]) and np.isfinite(z[4])
    r, z = galactocentric_rz(10.0, 5.0, 2.0)  # scalars broadcast too
    assert np.isfinite(r) and np.isfinite(z)


def _cell_centres(edges):
    e = np.asarray(edges, float)
    return 0.5 * (e[1:] + e[:-1])


def _positioned_catalogue(inputs, path, *, with_positions: bool = True):
    """make_products' catalogue with ra/dec and parallax placing the observed stars inside
    the training limits at chosen (R, Z); the others at the Sun.  Returns the new inputs
    and the number of those stars per (|Z| bin, R bin)."""
    table, attrs = catalogue.read(inputs.catalogue)
    table.attrs.update(attrs)
    clean = table["flag_boundary"].astype(str).str.fullmatch("0+").to_numpy(bool)
    inside = np.flatnonzero(~table["in_training"].to_numpy(bool) & clean)
    cfg = galaxy.DEFAULT_GALACTIC
    rc, zc = _cell_centres(cfg["r_edges"]), _cell_centres(cfg["abs_z_edges"])
    n = len(table)
    R = np.full(n, R_SUN)
    Z = np.full(n, Z_SUN)
    counts = np.zeros((zc.size, rc.size), int)
    for k, row in enumerate(inside):
        # Uneven numbers per cell: cell (i, j) gets stars while k % 40 < (i + 1) * (j + 1)...
        i, j = (k // rc.size) % zc.size, k % rc.size
        if k % 3 == 0:  # ...and every third star goes to the top-left cell (high |Z|, low R)
            i, j = zc.size - 1, 0
        R[row], Z[row] = rc[j], zc[i] * (1 if k % 2 else -1)
        counts[i, j] += 1
    phi = np.radians(np.linspace(-30, 30, n))  # azimuths: not all on the Sun-GC line
    gal = SkyCoord(
        x=R * np.cos(phi) * u.kpc,
        y=R * np.sin(phi) * u.kpc,
        z=Z * u.kpc,
        frame=Galactocentric(),
    ).icrs
    if with_positions:
        table["ra"], table["dec"] = gal.ra.deg, gal.dec.deg
    table["parallax"] = 1.0 / gal.distance.to_value(u.kpc)  # mas
    catalogue.write(table, path)
    return dataclasses.replace(inputs, catalogue=path), counts


OPEN_CUTS = {"galactic": {"snr": [0.0, 1e6], "max_logg": 99.0}, "min_stars_per_panel": 5}


def test_fig24_from_a_catalogue_with_positions(inputs, tmp_path):
    new, counts = _positioned_catalogue(inputs, tmp_path / "cat.fits")
    texts: dict = {}
    out = tmp_path / "figs"
    index, sizes = render_recorded(
        Context(new, OPEN_CUTS), out, [galaxy.alpha_vs_metallicity_galactic], texts
    )
    assert [f["name"] for f in index["figures"]] == ["fig24_alpha_m_h_galactic"]
    check_rendered(out, index, sizes)
    entry = index["figures"][0]
    assert entry["n_stars"] == counts.sum()
    assert style.stars(int(counts.sum())) in entry["caption"]
    assert "astropy Galactocentric defaults (R_sun = 8.122 kpc" in entry["caption"]
    # Panels row by row from the top: the highest |Z| bin first, R increasing to the right.
    nz, nr = counts.shape
    for i in range(nz):
        for j in range(nr):
            panel = texts["fig24_alpha_m_h_galactic"][i * nr + j]
            assert style.stars(int(counts[nz - 1 - i, j])) in panel
    assert counts[nz - 1, 0] > counts[0, 0]  # the top-left panel is the crowded one


def test_fig24_distance_from_a_catalogue_column(inputs, tmp_path):
    new, counts = _positioned_catalogue(inputs, tmp_path / "cat.fits")
    table, attrs = catalogue.read(new.catalogue)
    table.attrs.update(attrs)
    table["dist_kpc"] = 1.0 / table["parallax"]
    table["parallax"] = -1.0  # would give no distance at all
    catalogue.write(table, tmp_path / "cat2.fits")
    ctx = Context(
        dataclasses.replace(new, catalogue=tmp_path / "cat2.fits"),
        {**OPEN_CUTS, "galactic": {**OPEN_CUTS["galactic"], "distance": "dist_kpc"}},
    )
    (r,) = galaxy.alpha_vs_metallicity_galactic(ctx)
    assert r.n_stars == counts.sum() and "catalogue column dist_kpc" in r.caption
    r.fig.clear()


def test_fig24_skips_without_positions_or_stars(inputs, tmp_path):
    fn = [galaxy.alpha_vs_metallicity_galactic]
    index = render_all(Context(inputs, OPEN_CUTS), tmp_path / "a", formats=("png",), functions=fn)
    assert index["figures"] == []
    assert "no ra/dec" in index["skipped"][0]["reason"]
    new, _ = _positioned_catalogue(inputs, tmp_path / "cat.fits")
    few = {**OPEN_CUTS, "galactic": {**OPEN_CUTS["galactic"], "max_logg": -5.0}}
    index = render_all(Context(new, few), tmp_path / "b", formats=("png",), functions=fn)
    assert index["figures"] == []
    assert "fewer than min_stars_per_panel = 5" in index["skipped"][0]["reason"]


def test_fig24_names_a_missing_input_and_takes_fe_h_for_a_missing_m_h(inputs, tmp_path):
    """Without parallax (distances) or S/N (the low-S/N selection) Fig. 24 is skipped with
    the missing input named; without [M/H] it is drawn in [Fe/H], as its caption says."""
    new, counts = _positioned_catalogue(inputs, tmp_path / "cat.fits")
    table, attrs = catalogue.read(new.catalogue)
    fn = [galaxy.alpha_vs_metallicity_galactic]

    def render(changed, name):
        changed.attrs.update(attrs, labels=[x for x in attrs["labels"] if x in changed])
        catalogue.write(changed, tmp_path / f"{name}.fits")
        ctx = Context(dataclasses.replace(new, catalogue=tmp_path / f"{name}.fits"), OPEN_CUTS)
        return render_all(ctx, tmp_path / name, formats=("png",), functions=fn)

    for column, dataset in (("parallax", "astrometry/parallax"), ("rvs_snr", "rvs/snr")):
        for how, changed in (("nan", table.assign(**{column: np.nan})),
                             ("absent", table.drop(columns=[column]))):  # fmt: skip
            index = render(changed, f"{column}_{how}")
            assert index["figures"] == []
            assert f"no {dataset} in the arrays" in index["skipped"][0]["reason"]
    index = render(table.drop(columns=["m_h", "e_m_h", "sigma_m_h"]), "no_m_h")
    (entry,) = index["figures"]
    assert entry["n_stars"] == counts.sum()
    assert "against [Fe/H]" in entry["caption"] and "stands in for [M/H]" in entry["caption"]


def test_distance_is_one_over_parallax_and_nan_when_not_positive(inputs, tmp_path):
    new, _ = _positioned_catalogue(inputs, tmp_path / "cat.fits")
    ctx = Context(new, {})
    plx = ctx.column("parallax")
    np.testing.assert_allclose(galaxy.distance_kpc(ctx, "1/parallax"), 1.0 / plx)
    ctx.table.loc[0, "parallax"] = 0.0
    ctx.table.loc[1, "parallax"] = -0.5
    d = galaxy.distance_kpc(ctx, "1/parallax")
    assert np.isnan(d[:2]).all() and np.isfinite(d[2:]).all()


def _cell(r_kpc: float, z_kpc: float) -> tuple[int, int] | None:
    """(|Z| bin, R bin) of Fig. 24's default grid holding (R, Z), or None outside it."""
    cfg = galaxy.DEFAULT_GALACTIC
    i = np.searchsorted(cfg["abs_z_edges"], abs(z_kpc), side="right") - 1
    j = np.searchsorted(cfg["r_edges"], r_kpc, side="right") - 1
    if 0 <= i < len(cfg["abs_z_edges"]) - 1 and 0 <= j < len(cfg["r_edges"]) - 1:
        return int(i), int(j)
    return None


def _check_panels(panels: list, counts: np.ndarray) -> None:
    """Each panel's texts (top row: the highest |Z| bin) hold its star count."""
    nz, nr = counts.shape
    for i in range(nz):
        for j in range(nr):
            assert style.stars(int(counts[nz - 1 - i, j])) in panels[i * nr + j], (i, j)


def _distance_table(inputs, tmp_path):
    """The positioned catalogue and a distance table (dist50 = 1/parallax [kpc]) in which
    one selected star X is moved to another R x |Z| cell, one has dist50 NaN, one -1 (both
    dropped) and one is missing; returns the inputs, the table path and the expected counts
    per (|Z| bin, R bin) with the table's distances and with 1/parallax."""
    new, counts = _positioned_catalogue(inputs, tmp_path / "cat.fits")
    ctx = Context(new)
    ra, dec = ctx.column("ra"), ctx.column("dec")
    d = 1.0 / ctx.column("parallax")
    inside = np.flatnonzero(ctx.inside)
    by_parallax, counts = counts, counts.copy()
    x, y, z, w = inside[:4]

    def cell(row: int, dist: float) -> tuple[int, int] | None:
        r, zz = galactocentric_rz(ra[row : row + 1], dec[row : row + 1], np.array([dist]))
        return _cell(r[0], zz[0])

    old = cell(x, d[x])
    for factor in (0.2, 0.4, 0.6, 1.6, 2.5, 4.0):
        moved = cell(x, d[x] * factor)
        if moved is not None and moved != old:
            break
    assert moved is not None and moved != old  # (the test's own premise)
    dist = d.copy()
    dist[x] *= factor
    counts[old] -= 1
    counts[moved] += 1
    dist[y], dist[z] = np.nan, -1.0
    for row in (y, z, w):
        counts[cell(row, d[row])] -= 1
    keep = np.ones(len(d), bool)
    keep[w] = False
    path = tmp_path / "starhorse.csv"
    sid = ctx.table["source_id"].to_numpy(np.int64)
    pd.DataFrame({"source_id": sid[keep], "dist50": dist[keep], "dist16": 0.9 * dist[keep]}).to_csv(
        path, index=False
    )
    return new, path, counts, by_parallax


def test_fig24_takes_the_distance_table(inputs, tmp_path):
    new, path, counts, by_parallax = _distance_table(inputs, tmp_path)
    ctx = Context(dataclasses.replace(new, external={"distances": path}), OPEN_CUTS)
    texts: dict = {}
    index, _ = render_recorded(
        ctx, tmp_path / "figs", [galaxy.alpha_vs_metallicity_galactic], texts
    )
    (entry,) = index["figures"]
    assert entry["n_stars"] == counts.sum()
    _check_panels(texts["fig24_alpha_m_h_galactic"], counts)
    assert not np.array_equal(counts, by_parallax)  # X moved (and Y, Z, W gone)
    caption = entry["caption"]
    assert "from the distance table starhorse.csv (column dist50 [kpc]" in caption
    assert "2 rows with a distance <= 0 or NaN dropped" in caption
    assert "without a table distance: 2 with a distance <= 0 or NaN (dropped), 1 not in" in caption
    assert "fallback" not in caption
    # the same table, but distance: 1/parallax asked for: every star in its parallax cell
    cfg = {**OPEN_CUTS, "galactic": {**OPEN_CUTS["galactic"], "distance": "1/parallax"}}
    ctx = Context(dataclasses.replace(new, external={"distances": path}), cfg)
    texts = {}
    index, _ = render_recorded(
        ctx, tmp_path / "figs2", [galaxy.alpha_vs_metallicity_galactic], texts
    )
    (entry,) = index["figures"]
    assert entry["n_stars"] == by_parallax.sum() == counts.sum() + 3  # Y, Z, W: a parallax
    _check_panels(texts["fig24_alpha_m_h_galactic"], by_parallax)
    assert "1/parallax (no zero-point correction)" in entry["caption"]
    assert "fallback" not in entry["caption"]


def test_fig24_distance_table_explicitly_and_its_errors(inputs, tmp_path):
    new, path, counts, _ = _distance_table(inputs, tmp_path)
    table = {**OPEN_CUTS["galactic"], "distance": "table"}
    ctx = Context(new, {**OPEN_CUTS, "galactic": table, "external": {"distances": str(path)}})
    (r,) = galaxy.alpha_vs_metallicity_galactic(ctx)
    assert r.n_stars == counts.sum() and "distance table starhorse.csv" in r.caption
    r.fig.clear()
    # 'table' without a table configured: a configuration error, not a skipped figure
    with pytest.raises(ValueError, match=r"figures\.external\.distances is null"):
        next(galaxy.alpha_vs_metallicity_galactic(Context(new, {**OPEN_CUTS, "galactic": table})))
    # a table without a distance column is refused, naming the file and the columns
    bad = tmp_path / "no_distance.csv"
    pd.read_csv(path).rename(columns={"dist50": "dist"}).to_csv(bad, index=False)
    ctx = Context(new, {**OPEN_CUTS, "external": {"distances": str(bad)}})
    with pytest.raises(
        external.ExternalTableError, match=r"no_distance\.csv.*'dist50' or 'distance'"
    ):
        next(galaxy.alpha_vs_metallicity_galactic(ctx))
    # a 'distance' column (kpc) is read when there is no dist50
    other = tmp_path / "other.csv"
    pd.read_csv(path).rename(columns={"dist50": "Distance"}).to_csv(other, index=False)
    ctx = Context(new, {**OPEN_CUTS, "external": {"distances": str(other)}})
    (r,) = galaxy.alpha_vs_metallicity_galactic(ctx)
    assert r.n_stars == counts.sum() and "(column distance [kpc]" in r.caption
    r.fig.clear()


def test_fig24_states_the_parallax_fallback_without_a_table(inputs, tmp_path):
    new, counts = _positioned_catalogue(inputs, tmp_path / "cat.fits")
    for cfg in (OPEN_CUTS, {**OPEN_CUTS, "external": {"distances": None}}):
        (r,) = galaxy.alpha_vs_metallicity_galactic(Context(new, cfg))
        assert r.n_stars == counts.sum()
        assert "1/parallax, the fallback: no distance table given" in r.caption
        r.fig.clear()


# --------------------------------------------------------------------------- plumbing

WL = rvs_wavelength_nm()


def _build_arrays(tmp_path, gaia: pd.DataFrame) -> str:
    ids = gaia["source_id"].to_numpy()
    cols = {"source_id": ((), np.int64, {}), "rvs/flux": ((WL.size,), np.float32, {})}
    cols["rvs/flux"] = ((WL.size,), np.float32, {"wavelength_nm": WL})
    with layout.ArraysWriter(tmp_path / "raw.h5", len(ids), cols) as w:
        w.append({"source_id": ids, "rvs/flux": np.full((len(ids), WL.size), 0.9, np.float32)})
    out = tmp_path / "out.h5"
    arrays.build_sample_file(
        tmp_path / "raw.h5",
        gaia,
        pd.DataFrame({"source_id": ids[::-1]}),
        out,
        sample_name="observed",
        continuum_windows_nm=CONTINUUM_WINDOWS_NM,
        nan_fill_quantile=0.75,
        progress=False,
    )
    return out


def _gaia(n: int, positions: bool) -> pd.DataFrame:
    g = pd.DataFrame(
        {
            "source_id": np.arange(n) + 10,
            "rvs_spec_sig_to_noise": np.full(n, 40.0),
            "phot_g_mean_mag": np.full(n, 11.0),
            "phot_bp_mean_mag": np.full(n, 11.5),
            "phot_rp_mean_mag": np.full(n, 10.5),
            "parallax": np.full(n, 1.0),
            "parallax_error": np.full(n, 0.02),
            "ruwe": np.full(n, 1.0),
        }
    )
    if positions:
        g["ra"], g["dec"] = np.linspace(0.5, 359.5, n), np.linspace(-80, 80, n)
    return g


def test_arrays_copy_ra_dec_when_gaia_source_has_them(tmp_path):
    gaia = _gaia(6, positions=True)
    out = _build_arrays(tmp_path, gaia)
    layout.validate(out, require_finite_inputs=True)
    with h5py.File(out, "r") as h5:
        np.testing.assert_allclose(h5["astrometry/ra"][:], gaia["ra"], rtol=1e-6)
        np.testing.assert_allclose(h5["astrometry/dec"][:], gaia["dec"], rtol=1e-6)
        assert h5["astrometry/ra"].attrs["unit"] == "deg"
    (tmp_path / "raw.h5").unlink()
    out = _build_arrays(tmp_path, _gaia(6, positions=False))
    layout.validate(out, require_finite_inputs=True)  # positions stay optional
    with h5py.File(out, "r") as h5:
        assert "astrometry/ra" not in h5 and "astrometry/dec" not in h5
    (tmp_path / "raw.h5").unlink()
    with pytest.raises(ValueError, match="ra and dec must come together"):
        _build_arrays(tmp_path, _gaia(6, positions=True).drop(columns="dec"))


def test_layout_validates_positions_when_present(tmp_path):
    path = tmp_path / "f.h5"
    cols = {"source_id": ((), np.int64, {}), "astrometry/parallax": ((), np.float32, {})}
    with layout.ArraysWriter(path, 3, cols) as w:
        w.append({"source_id": np.arange(3), "astrometry/parallax": np.ones(3, np.float32)})
    layout.validate(path)  # without positions
    with h5py.File(path, "a") as h5:
        h5["astrometry/ra"] = np.array([1.0, 2.0, 3.0])
    with pytest.raises(layout.LayoutError, match="astrometry/dec: missing while astrometry/ra"):
        layout.validate(path)
    with h5py.File(path, "a") as h5:
        h5["astrometry/dec"] = np.array([1.0, 2.0])
    with pytest.raises(layout.LayoutError, match="astrometry/dec: has 2 rows"):
        layout.validate(path)
    with h5py.File(path, "a") as h5:
        del h5["astrometry/dec"]
        h5["astrometry/dec"] = np.array([-1.0, 0.0, 1.0])
    assert layout.validate(path).n_rows == 3


def test_catalogue_gains_ra_dec_only_when_the_arrays_have_them(tmp_path):
    def arrays_file(path, ids, positions):
        cols = {"source_id": ((), np.int64, {}), "labels/teff": ((), np.float32, {})}
        data = {"source_id": ids, "labels/teff": np.linspace(4000, 6000, len(ids))}
        if positions:
            for k in layout.POSITION_DATASETS:
                cols[k] = ((), np.float32, {})
                data[k] = np.linspace(1, 2, len(ids))
        with layout.ArraysWriter(path, len(ids), cols) as w:
            w.append(data)

    def member(path, ids, teff):  # a member's prediction file (as test_ensemble writes)
        with h5py.File(path, "w") as h5:
            h5["source_id"] = ids
            h5["pred/teff"] = np.asarray(teff, np.float32)

    rng = np.random.default_rng(0)
    ids = {"training": np.arange(200), "observed": np.arange(50) + 1000}
    preds = {s: [] for s in ids}
    for k in range(2):
        for s, sid in ids.items():
            p = tmp_path / f"{s}{k}.h5"
            member(p, sid, rng.uniform(4000, 6000, len(sid)))
            preds[s].append(p)
    for obs_positions, expected in ((True, True), (False, False)):
        arrays_file(tmp_path / "tr.h5", ids["training"], positions=False)
        arrays_file(tmp_path / "ob.h5", ids["observed"], positions=obs_positions)
        table, *_ = catalogue.build(
            preds,
            {"training": tmp_path / "tr.h5", "observed": tmp_path / "ob.h5"},
            labels=["teff"],
            members=["split0_seed0", "split0_seed1"],
            n_bins=5,
            degree=1,
        )
        assert ({"ra", "dec"} <= set(table.columns)) is expected
        if expected:
            assert list(table.columns[:4]) == ["source_id", "in_training", "ra", "dec"]
            obs = ~table["in_training"].to_numpy(bool)
            assert np.isfinite(table.loc[obs, "ra"]).all()
            assert np.isnan(table.loc[~obs, "ra"]).all()  # training file without positions
            catalogue.write(table, tmp_path / "c.fits")
            back, _ = catalogue.read(tmp_path / "c.fits")
            np.testing.assert_allclose(back.loc[obs, "dec"], table.loc[obs, "dec"])
            hdr = fits.getheader(tmp_path / "c.fits", 1)
            units = {hdr[f"TTYPE{i}"]: hdr.get(f"TUNIT{i}") for i in range(1, hdr["TFIELDS"] + 1)}
            assert units["ra"] == "deg" and units["dec"] == "deg"
