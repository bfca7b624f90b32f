"""The figure framework (gaiacnn.figures): render every registered figure from a small
product set, check each file is a real, non-blank image of its declared size, and that a
failing figure leaves nothing half-written."""

from __future__ import annotations

import json

import pytest
from figure_data import check_image, make_products

from gaiacnn.figures import render
from gaiacnn.figures import style as st
from gaiacnn.figures.context import Context, Skip

#: Figures of the model alone (n_stars 0).
MODEL_ONLY = {"fig06_architecture"}


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    return make_products(tmp_path_factory.mktemp("products"))


def test_every_registered_figure_renders_to_a_real_image(products, tmp_path, monkeypatch):
    out = tmp_path / "figures"
    sizes = {}
    real_save = st.save

    def save(fig, out_dir, name, formats):  # remember each figure's declared size
        sizes[name] = tuple(fig.get_size_inches())
        return real_save(fig, out_dir, name, formats)

    monkeypatch.setattr(st, "save", save)
    index = render.render_all(Context(products, {}), out, formats=("png",))
    names = [f["name"] for f in index["figures"]]
    assert len(names) == len(set(names)) >= 8
    assert index == json.loads((out / render.INDEX_FILE).read_text())
    for entry in index["figures"]:
        # Fig. 6 draws the network, not stars
        assert entry["caption"] and (entry["n_stars"] > 0) != (entry["name"] in MODEL_ONLY)
        check_image(out / f"{entry['name']}.png", sizes[entry["name"]])
    # every figure function either drew or said why not
    drawn = {f.__name__ for f in render.registry()} - {s["function"] for s in index["skipped"]}
    assert drawn and all(s["reason"] for s in index["skipped"])


def test_figures_are_written_in_every_configured_format(products, tmp_path):
    from gaiacnn.figures import samples

    out = tmp_path / "figures"
    index = render.render_all(
        Context(products, {}), out, formats=("png", "pdf"), functions=[samples.snr_distribution]
    )
    assert index["figures"][0]["files"] == ["fig01_snr.png", "fig01_snr.pdf"]
    assert (out / "fig01_snr.pdf").read_bytes()[:5] == b"%PDF-"
    assert (out / "fig01_snr.pdf").stat().st_size > 1000


def test_a_skip_is_recorded_and_a_failure_leaves_the_old_directory(products, tmp_path):
    ctx = Context(products, {})

    @render.figure(1)
    def draws(ctx):
        fig, ax = st.new_figure()
        ax[0, 0].plot([0, 1], [0, 1])
        yield render.Rendered("figX_line", fig, "a line", 2)

    def skips(ctx):
        raise Skip("nothing to show")
        yield  # pragma: no cover

    def fails(ctx):
        raise RuntimeError("broken figure")
        yield  # pragma: no cover

    out = tmp_path / "figures"
    index = render.render_all(ctx, out, functions=[draws, skips], formats=["png"])
    assert [f["name"] for f in index["figures"]] == ["figX_line"]
    assert index["skipped"] == [{"function": "skips", "reason": "nothing to show"}]
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(RuntimeError, match="broken figure"):
        render.render_all(ctx, out, functions=[draws, fails], formats=["png"])
    assert sorted(p.name for p in out.iterdir()) == before  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["figures"]  # no temporary left


def test_label_text_gives_units_for_any_label():
    assert st.label_text("teff") == r"$T_\mathrm{eff}$ [K]"
    assert st.label_text("m_h") == "[M/H] [dex]"
    assert st.label_text("ti_fe", "CNN ") == "CNN [Ti/Fe] [dex]"
    assert st.stars(1) == "1 star" and st.stars(12345) == "12\u2009345 stars"


def test_fig1_marks_the_configured_lowest_snr_bin(products, tmp_path):
    """Fig. 1 marks and counts the first bin of ``evaluation.snr_edges``, whatever they are."""
    import numpy as np
    from figure_data import render_recorded

    from gaiacnn.figures import samples

    ctx = Context(products, {"snr_edges": [20.0, 40.0, 80.0]})
    snr = ctx.column("rvs_snr")
    ok = np.isfinite(snr) & (snr > 0)
    share = ((snr >= 20) & (snr < 40) & ok).sum() / ok.sum()
    index, _ = render_recorded(ctx, tmp_path, [samples.snr_distribution])
    (entry,) = index["figures"]
    assert f"{share:.0%} of the spectra have 20 <= S/N < 40" in entry["caption"]


def test_beyond_max_observed_the_figures_read_a_subsample(products, tmp_path):
    import h5py
    import numpy as np
    import pandas as pd
    from figure_data import copy_products, rewrite_catalogue

    from gaiacnn import catalogue

    inputs = copy_products(products, tmp_path / "p")
    # keep the reference labels of ten observed stars only
    with h5py.File(inputs.observed, "r+") as h5:
        n_obs = h5["source_id"].shape[0]
        labelled = np.flatnonzero(np.isfinite(h5["labels/teff"][:]))[5:15]
        for name in h5["labels"]:
            values = np.full(n_obs, np.nan, np.float32)
            values[labelled] = h5[f"labels/{name}"][:][labelled]
            h5[f"labels/{name}"][...] = values
    full = Context(inputs, {})
    sub = Context(inputs, {"max_observed": 50, "seed": 1})
    assert full.observed_subsample is None and full.sample_note() == ""
    keep = sub.observed_subsample
    # a random 50 of the observed stars, every one with a reference label among them
    assert keep.size == 50 and np.isin(labelled, keep).all()
    assert np.array_equal(keep, np.unique(keep))
    # with more of those than half of max_observed: a random half's worth of them
    few = Context(inputs, {"max_observed": 12, "seed": 1}).observed_subsample
    assert few.size == 12 and np.isin(few, labelled).sum() == 6
    # the subsample's catalogue is the full one's at those stars, column for column
    is_tr = full.in_training
    rows = np.r_[np.flatnonzero(is_tr), np.flatnonzero(~is_tr)[keep]]
    pd.testing.assert_frame_equal(sub.table, full.table.iloc[rows].reset_index(drop=True))
    # the arrays' columns follow the stars read
    for x in full.reference:
        assert np.allclose(
            sub.reference[x].to_numpy(), full.reference[x].to_numpy()[rows], equal_nan=True
        )
    # and so do the maps' (training stars, then the observed file's, in its order)
    from gaiacnn.figures.tsne_maps import context_map

    m_full, m_sub = (context_map(c, products.maps[0]) for c in (full, sub))
    obs_full = np.flatnonzero(~m_full.in_training)
    rows_map = np.r_[np.flatnonzero(m_full.in_training), obs_full[keep]]
    assert np.array_equal(m_sub.source_id, m_full.source_id[rows_map])
    assert np.array_equal(m_sub.xy, m_full.xy[rows_map])
    # every figure draws from the subsample, and its caption says so
    index = render.render_all(sub, tmp_path / "figures", formats=("png",))
    assert len(index["figures"]) >= 8
    note = f"Observed stars: a random 50 of the {n_obs:,} (figures.max_observed 50; those"
    assert all(note in f["caption"] for f in index["figures"])
    # a catalogue not in its arrays files' order cannot be subsampled by row: refused
    table, _ = catalogue.read(inputs.catalogue)
    obs = np.flatnonzero(~table["in_training"].to_numpy(bool))
    order = np.r_[np.flatnonzero(table["in_training"].to_numpy(bool)), obs[::-1]]
    rewrite_catalogue(inputs, table.iloc[order].reset_index(drop=True))
    with pytest.raises(ValueError, match="in the order of its arrays files"):
        _ = Context(inputs, {"max_observed": 50}).table
