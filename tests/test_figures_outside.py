"""The four panels of Fig. 17, the t-SNE map coloured by the CNN labels (Fig. A.2) and the
CNN - reference labels of the stars outside the training limits in three Kiel-diagram
boxes (Fig. 19, Sect. 5.3)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from figure_data import (
    check_rendered,
    copy_products,
    make_products,
    render_recorded,
    rewrite_catalogue,
    set_reference_labels,
    write_map,
)
from matplotlib.colors import to_rgba

from gaiacnn import catalogue
from gaiacnn.figures import render, samples, tsne_maps
from gaiacnn.figures import style as st
from gaiacnn.figures.context import Context, Skip


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    return make_products(tmp_path_factory.mktemp("products"), n=300, member=False)


def _offsets(collection) -> set[tuple[float, float]]:
    return {(float(x), float(y)) for x, y in np.asarray(collection.get_offsets())}


# ------------------------------------------------------------------------------ Fig. 17
N_TRAINING, N_LIKE, N_UNLIKE = 40, 25, 15


@pytest.fixture
def small_map(tmp_path):
    """A map of 40 training stars, 25 training-like and 15 training-unlike observed stars at
    distinct positions, rows shuffled; (path, xy, masks)."""
    rng = np.random.default_rng(7)
    n = N_TRAINING + N_LIKE + N_UNLIKE
    kind = np.repeat([0, 1, 2], [N_TRAINING, N_LIKE, N_UNLIKE])[rng.permutation(n)]
    centre = np.array([[0.0, 0.0], [5.0, 0.0], [50.0, 50.0]])[kind]
    xy = (centre + rng.normal(0, 1, (n, 2))).astype(np.float32)
    in_training, like = kind == 0, kind == 1
    path = write_map(
        tmp_path / "tsne_p42.h5", 42.0, np.arange(n) + 10**15, in_training, like | in_training, xy
    )
    masks = {"training": in_training, "observed": ~in_training, "like": like, "unlike": kind == 2}
    return path, xy, masks


def _fig17_panels(fig) -> dict:
    """Panels of Fig. 17 by their letter."""
    panels = {ax.get_title()[0]: ax for ax in fig.axes if ax.get_title()[1:2] == ")"}
    assert sorted(panels) == ["a", "b", "c", "d"]
    return panels


def _rgb(collection) -> tuple:
    return tuple(np.round(collection.get_facecolor()[0][:3], 3))


def test_fig17_panels_hold_every_star_of_their_sample(products, small_map):
    path, xy, masks = small_map
    ctx = Context(dataclasses.replace(products, maps=[path]), {})
    (r,) = list(tsne_maps.tsne_classification(ctx))
    assert r.name == "fig17_tsne_p42" and r.n_stars == len(xy)
    panels = _fig17_panels(r.fig)
    # a) a 2-D histogram of every star
    (mesh,) = panels["a"].collections
    assert np.nansum(np.ma.filled(mesh.get_array(), np.nan)) == len(xy)
    # b) the training and the observed stars, in the project's sample colours
    by_label = {c.get_label().split(" (")[0]: c for c in panels["b"].collections}
    assert set(by_label) == {"training", "observed"}
    for key in ("training", "observed"):
        assert _offsets(by_label[key]) == {tuple(map(float, p)) for p in xy[masks[key]]}
        assert _rgb(by_label[key]) == tuple(np.round(to_rgba(st.SAMPLE_COLOUR[key])[:3], 3))
    # c), d) the observed stars of each class, and nothing else
    for letter, key, colour in (("c", "like", "inside"), ("d", "unlike", "outside")):
        (points,) = panels[letter].collections
        assert _offsets(points) == {tuple(map(float, p)) for p in xy[masks[key]]}
        assert _rgb(points) == tuple(np.round(to_rgba(st.SAMPLE_COLOUR[colour])[:3], 3))
    cap = r.caption
    assert (
        f"b) the training ({st.stars(N_TRAINING)}) and observed "
        f"({st.stars(N_LIKE + N_UNLIKE)}) samples in orange and blue" in cap
    )
    assert f"c) in green, the observed stars classified training-like ({N_LIKE})" in cap
    assert f"d) in red, those training-unlike ({N_UNLIKE}) in this map" in cap
    assert "panels b-d: every star is drawn" in cap
    r.fig.clear()


def test_fig17_subsamples_the_scatter_panels_not_the_density(products, small_map, monkeypatch):
    path, xy, _ = small_map
    monkeypatch.setattr(tsne_maps, "MAX_POINTS", 32)
    (r,) = list(tsne_maps.tsne_classification(Context(dataclasses.replace(products, maps=[path]))))
    panels = _fig17_panels(r.fig)
    (mesh,) = panels["a"].collections
    assert np.nansum(np.ma.filled(mesh.get_array(), np.nan)) == len(xy)
    by_label = {c.get_label().split(" (")[0]: c for c in panels["b"].collections}
    assert sum(len(c.get_offsets()) for c in by_label.values()) == 32
    drawn_cd = sum(len(panels[k].collections[0].get_offsets()) for k in "cd")
    assert drawn_cd == len(by_label["observed"].get_offsets())  # the same observed stars
    assert "panels b-d: a random 40% of the stars is drawn" in r.caption
    assert r.n_stars == len(xy)  # the counts stay those of the whole map
    r.fig.clear()


# ------------------------------------------------------------------------------ Fig. A.2
#: x offset of each map's stars [t-SNE units]: which map a drawn point comes from.
OFFSET = {30.0: 0.0, 50.0: 10_000.0, 75.0: 20_000.0, 100.0: 30_000.0}


def _label_maps(products, tmp_path, perplexities) -> tuple[Context, np.ndarray]:
    """Maps of the catalogue's stars in a shuffled order, each star at x = its catalogue
    row + the map's :data:`OFFSET`; the context and each star's class (0 training, 1
    training-like, 2 training-unlike)."""
    ctx = Context(products, {})
    sid = ctx.table["source_id"].to_numpy()
    n = len(sid)
    rng = np.random.default_rng(11)
    order = rng.permutation(n)
    in_tr = ctx.in_training
    like = rng.random(n) < 0.7
    kind = np.where(in_tr, 0, np.where(like, 1, 2))
    paths = []
    for p in perplexities:
        xy = np.c_[order + OFFSET[p], rng.normal(0, 1, n)]
        like_here = (like | in_tr)[order]
        path = tmp_path / f"tsne_p{p:g}.h5"
        paths.append(write_map(path, p, sid[order], in_tr[order], like_here, xy))
    return Context(dataclasses.replace(products, maps=paths), {}), kind


def _check_label_panels(r, ctx: Context, kind: np.ndarray, offset: float) -> None:
    """Every panel of Fig. A.2 holds the stars of its column, each coloured by its own CNN
    label of its row, from the map at ``offset``."""
    names = ["teff", "logg", "m_h"]
    grid = np.array(r.fig.axes[:9]).reshape(3, 3)
    for i, name in enumerate(names):
        label = ctx.column(name)
        for j in range(3):
            (points,) = grid[i, j].collections
            x = np.asarray(points.get_offsets())[:, 0]
            rows = np.rint(x - offset).astype(int)
            assert np.all((rows >= 0) & (rows < len(kind))), "a point of another map"
            assert sorted(rows) == sorted(np.flatnonzero(kind == j)), (name, j)
            np.testing.assert_allclose(points.get_array(), label[rows])
    labels = [ax.get_ylabel() for ax in r.fig.axes[9:]]
    assert labels == [st.label_text(x, "CNN ") for x in names]  # one colour bar per row


def test_figA2_uses_the_perplexity_50_map_among_several(products, tmp_path):
    ctx, kind = _label_maps(products, tmp_path, (30.0, 100.0, 50.0))
    (r,) = list(tsne_maps.tsne_labels(ctx))
    assert r.name == "figA2_tsne_labels"
    _check_label_panels(r, ctx, kind, OFFSET[50.0])
    counts = [int((kind == j).sum()) for j in range(3)]
    assert r.n_stars == sum(counts) == len(kind)
    assert "t-SNE map (perplexity 50)" in r.caption and "closest" not in r.caption
    for where, n in zip(("left", "middle", "right"), counts, strict=True):
        assert f"({where}, {st.stars(n)})" in r.caption
    assert "Teff (top), log g (centre) and [M/H] (bottom)" in r.caption
    assert "coloured by their CNN labels, not by their reference labels" in r.caption
    r.fig.clear()


def test_figA2_falls_back_to_the_closest_perplexity_and_says_so(products, tmp_path):
    ctx, kind = _label_maps(products, tmp_path, (75.0, 30.0))
    (r,) = list(tsne_maps.tsne_labels(ctx))
    _check_label_panels(r, ctx, kind, OFFSET[30.0])
    assert "t-SNE map (perplexity 30)" in r.caption
    assert "No perplexity-50 map (the paper's): the closest, perplexity 30, is shown" in r.caption
    assert "(maps: 30, 75)" in r.caption
    r.fig.clear()


def test_closest_perplexity():
    assert tsne_maps.closest_perplexity([30, 50, 75, 100]) == 1
    assert tsne_maps.closest_perplexity([75.0, 30.0]) == 1
    assert tsne_maps.closest_perplexity([75.0, 25.0]) == 1  # a tie: the lower perplexity
    assert tsne_maps.closest_perplexity([np.nan, 400.0]) == 1
    assert tsne_maps.closest_perplexity([10.0, 45.0], target=12.0) == 0
    with pytest.raises(Skip, match="perplexity"):
        tsne_maps.closest_perplexity([np.nan])


def test_figA2_skips_a_map_without_source_id(products, tmp_path):
    ctx, _ = _label_maps(products, tmp_path, (50.0,))
    import h5py

    with h5py.File(ctx.inputs.maps[0], "r+") as h5:
        del h5["source_id"]
    with pytest.raises(Skip, match="has no source_id"):
        list(tsne_maps.tsne_labels(ctx))


# ------------------------------------------------------------------------------ Fig. 19
def test_kiel_boxes_of_section_5_3():
    boxes = samples.OUTSIDE_BOXES
    assert [b.name for b in boxes] == ["hot dwarfs", "cool dwarfs", "cool giants"]
    teff = np.array([5700, 7000, 7000.5, 6000, 4000, 5000, 4500, 5100, 2000, 4800, 4800, 3000,
                     4900, np.nan, 6000])  # fmt: skip
    logg = np.array([2.0, 4.5, 3.0, 1.99, 4.5, 9.0, 4.49, 4.8, -2.0, 2.0, 2.01, -2.1,
                     1.0, 3.0, np.nan])  # fmt: skip
    expected = [0, 0, -1, -1, 1, 1, -1, -1, 2, 2, -1, -1, -1, -1, -1]
    np.testing.assert_array_equal(samples.kiel_box_index(teff, logg), expected)
    assert boxes[1].text() == "4000 <= Teff <= 5000 K, log g >= 4.5"
    assert boxes[2].text() == "2000 <= Teff <= 4800 K, -2 <= log g <= 2"


#: The constructed stars of Fig. 19: reference (T_eff [K], log g [dex]), CNN - reference
#: of T_eff [K] and log g [dex], outside the training limits?, the box they belong to.
STARS = {
    "hot_1": ((6500.0, 4.0), (100.0, 0.5), True, "hot dwarfs"),
    "hot_2": ((6000.0, 3.0), (300.0, -0.1), True, "hot dwarfs"),
    "cool_dwarf": ((4500.0, 4.8), (-50.0, -0.6), True, "cool dwarfs"),
    "cool_giant": ((3800.0, 1.0), (800.0, 0.2), True, "cool giants"),
    "no_box": ((8000.0, 4.0), (2000.0, 1.0), True, None),
    "inside_limits": ((6200.0, 3.5), (10.0, 0.0), False, "hot dwarfs"),
}


@pytest.fixture
def outside_products(products, tmp_path):
    """``products`` with every observed star inside the training limits but those of
    :data:`STARS` flagged outside (Teff digit 1) where they say so, with their reference
    and CNN T_eff and log g; returns (inputs, {star: catalogue row})."""
    new = copy_products(products, tmp_path / "copy")
    table, _ = catalogue.read(new.catalogue)
    ctx = Context(new, {})
    ref = ctx.reference
    ok = ~ctx.in_training & np.all(np.isfinite(ref[ctx.labels].to_numpy(float)), axis=1)
    chosen = dict(zip(STARS, np.flatnonzero(ok)[: len(STARS)], strict=True))
    width = len(table["flag_boundary"].iloc[0])
    flags = np.where(table["in_training"], table["flag_boundary"], "0" * width).astype(object)
    teff_ref, logg_ref = [], []
    for star, row in chosen.items():
        (t, g), (dt, dg), outside, _ = STARS[star]
        teff_ref.append(t)
        logg_ref.append(g)
        table.loc[row, "teff"], table.loc[row, "logg"] = t + dt, g + dg
        flags[row] = ("1" if outside else "0") + "0" * (width - 1)
    table["flag_boundary"] = flags.astype(str)
    rewrite_catalogue(new, table)
    sid = table["source_id"].to_numpy()[list(chosen.values())]
    set_reference_labels(new.observed, sid, {"teff": teff_ref, "logg": logg_ref})
    return new, chosen


def _rounded(points) -> set[tuple[float, float]]:
    return {(round(x, 3), round(y, 3)) for x, y in points}


def _by_box(ax) -> dict:
    return {c.get_label().split(" (")[0]: c for c in ax.collections}


def test_fig19_draws_the_outside_stars_of_each_box_and_no_other(outside_products):
    inputs, _ = outside_products
    ctx = Context(inputs, {})
    assert int(ctx.outside.sum()) == 5  # the constructed ones; all others inside
    (r,) = list(samples.outside_residuals(ctx))
    assert r.name == "fig19_outside_residuals" and r.n_stars == 4
    panels = {ax.get_xlabel(): ax for ax in r.fig.axes if ax.get_xlabel()}
    assert list(panels) == [st.label_text(x, "reference ") for x in ctx.labels]
    for name, k in (("teff", 0), ("logg", 1)):
        ax = panels[st.label_text(name, "reference ")]
        drawn = _by_box(ax)
        assert set(drawn) == {"hot dwarfs", "cool dwarfs", "cool giants"}
        for box, points in drawn.items():
            expected = {
                (STARS[s][0][k], STARS[s][1][k])
                for s in STARS
                if STARS[s][3] == box and STARS[s][2]
            }
            assert _rounded(_offsets(points)) == _rounded(expected), (name, box)
        zero = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
        assert zero and set(np.asarray(zero[0].get_ydata(), float)) == {0.0}
    teff_ax = panels[st.label_text("teff", "reference ")]
    teff_panel = _by_box(teff_ax)
    assert teff_panel["hot dwarfs"].get_label() == "hot dwarfs (2)"
    texts = [t.get_text() for t in teff_ax.texts]
    assert texts == [
        r"hot dwarfs: b = 200, $\sigma$ = 141 K",
        r"cool dwarfs: b = -50 K, $\sigma$ = n/a",
        r"cool giants: b = 800 K, $\sigma$ = n/a",
    ]
    assert _rgb(teff_panel["hot dwarfs"]) == tuple(np.round(to_rgba("tab:blue")[:3], 3))
    legend = [t.get_text() for t in r.fig.legends[0].get_texts()]
    assert legend == ["hot dwarfs (2 stars)", "cool dwarfs (1 star)", "cool giants (1 star)"]
    # the metallicity panels hold the same four stars (their reference [M/H] is finite)
    mh = panels[st.label_text("m_h", "reference ")]
    assert sum(len(c.get_offsets()) for c in mh.collections) == 4
    cap = r.caption
    assert "the 4 stars of the observed sample outside the training limits" in cap
    assert "flag_boundary with at least one digit 1" in cap
    assert "reference Teff and log g (not the CNN's)" in cap
    assert "hot dwarfs (5700 <= Teff <= 7000 K, 2 <= log g <= 4.5; blue dots; 2 stars)" in cap
    assert "cool dwarfs (4000 <= Teff <= 5000 K, log g >= 4.5; green crosses; 1 star)" in cap
    assert "cool giants (2000 <= Teff <= 4800 K, -2 <= log g <= 2; orange stars; 1 star)" in cap
    assert "1 star outside the limits with a reference Teff and log g lies in none" in cap
    r.fig.clear()


def test_fig19_skips_when_no_outside_star_is_in_a_box(outside_products, tmp_path):
    inputs, chosen = outside_products
    table, _ = catalogue.read(inputs.catalogue)
    width = len(table["flag_boundary"].iloc[0])
    flags = table["flag_boundary"].to_numpy(object)
    for star, row in chosen.items():
        if STARS[star][3] is not None:
            flags[row] = "0" * width
    table["flag_boundary"] = flags.astype(str)
    rewrite_catalogue(inputs, table)
    ctx = Context(inputs, {})
    assert int(ctx.outside.sum()) == 1
    with pytest.raises(Skip, match=r"none of the 1 star outside the training limits"):
        list(samples.outside_residuals(ctx))


def test_new_figures_are_registered_in_the_paper_order():
    order = {f.__name__: f.order for f in render.registry()}
    assert order["tsne_labels"] == pytest.approx(17.8)
    assert order["outside_limits"] < order["outside_residuals"] == 19
    assert samples.FIGURES[-1] is samples.outside_residuals
    assert tsne_maps.FIGURES[-1] is tsne_maps.tsne_labels


def test_figA2_and_fig19_render_to_images_of_their_size(products, outside_products, tmp_path):
    inputs, _ = outside_products
    ctx = Context(dataclasses.replace(inputs, maps=products.maps), {})
    out = tmp_path / "figs"
    functions = [tsne_maps.tsne_labels, samples.outside_residuals]
    index, sizes = render_recorded(ctx, out, functions)
    assert index["skipped"] == []
    assert [f["name"] for f in index["figures"]] == ["figA2_tsne_labels", "fig19_outside_residuals"]
    check_rendered(out, index, sizes)
