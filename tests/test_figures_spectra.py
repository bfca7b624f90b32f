"""Spectra figures (Figs. 2, 9, 10, 12): rendering, the gradient and streaming helpers, skips
(Fig. 2's choice of stars: tests/test_figures_examples.py)."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
from figure_data import check_rendered, make_products, render_recorded

from gaiacnn import layout
from gaiacnn.figures import spectra, style
from gaiacnn.figures.context import Context, Skip
from gaiacnn.figures.render import read_index
from gaiacnn.model import Scalers
from gaiacnn.spectra import normalise_xp

NAMES = {
    "example_spectra": "fig02_example_spectra",
    "rvs_gradients": "fig09_rvs_gradients",
    "xp_gradients": "fig10_xp_gradients",
    "mean_spectra_sequences": "fig12_mean_spectra_sequences",
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_products(tmp_path_factory.mktemp("products"))


@pytest.fixture(scope="module")
def rendered(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("figures") / "spectra"
    index, sizes = render_recorded(Context(inputs, {}), out, spectra.FIGURES)
    return out, index, sizes


def test_every_figure_is_drawn_at_its_size_and_not_blank(rendered):
    out, index, sizes = rendered
    assert index["skipped"] == []
    assert [f["name"] for f in index["figures"]] == list(NAMES.values())
    assert read_index(out) == index
    check_rendered(out, index, sizes)
    assert all(w == style.PAGE_WIDTH for w, _ in sizes.values())
    for entry in index["figures"]:
        assert style.stars(entry["n_stars"]) in entry["caption"]


def test_figure_orders_and_names():
    assert [fn.__name__ for fn in spectra.FIGURES] == list(NAMES)
    assert [fn.order for fn in spectra.FIGURES] == [2, 9, 10, 12]


# ---------------------------------------------------------------------- gradients
def _linear_model(n_pix: int, n_xp: int, n_labels: int):
    import keras

    rvs = keras.Input(shape=(n_pix, 1), name="rvs")
    xp = keras.Input(shape=(n_xp,), name="xp")
    h = keras.layers.Concatenate()([keras.layers.Flatten()(rvs), xp])
    out = keras.layers.Dense(n_labels, name="labels")(h)  # linear: gradient = weights
    return keras.Model([rvs, xp], out)


def test_input_gradients_of_a_linear_model_are_its_weights_times_the_label_span():
    n_pix, n_xp, n_labels, n = 10, 4, 3, 7
    model = _linear_model(n_pix, n_xp, n_labels)
    w = model.get_layer("labels").get_weights()[0]  # (n_pix + n_xp, n_labels)
    lo, hi = np.array([0.0, -1.0, 10.0]), np.array([2.0, 1.5, 10.0])  # last: zero span
    scalers = Scalers(labels=["a", "b", "c"], label_min=lo, label_max=hi, branches=["rvs", "xp"])
    rng = np.random.default_rng(0)
    x = {
        "rvs": rng.normal(1, 0.1, (n, n_pix, 1)).astype(np.float32),
        "xp": rng.normal(0, 1, (n, n_xp)).astype(np.float32),
    }
    grads = spectra.input_gradients(model, scalers, x, batch_size=3)  # 3 batches, last partial
    span = np.array([2.0, 2.5, 1.0])
    assert grads["rvs"].shape == (n, n_labels, n_pix)
    assert grads["xp"].shape == (n, n_labels, n_xp)
    want = (w * span).T  # (n_labels, inputs)
    np.testing.assert_allclose(grads["rvs"], np.broadcast_to(want[:, :n_pix], (n, 3, n_pix)),
                               rtol=1e-5, atol=1e-7)  # fmt: skip
    np.testing.assert_allclose(grads["xp"], np.broadcast_to(want[:, n_pix:], (n, 3, n_xp)),
                               rtol=1e-5, atol=1e-7)  # fmt: skip
    only = spectra.input_gradients(model, scalers, x, wrt=["xp"])
    assert list(only) == ["xp"]
    np.testing.assert_allclose(only["xp"], grads["xp"])
    with pytest.raises(KeyError):
        spectra.input_gradients(model, scalers, x, wrt=["phot"])


def test_member_gradients_are_finite_and_averaged_over_members(inputs):
    ctx = Context(inputs, {})
    groups = [g for _, g in spectra.red_clump_groups(ctx)]
    labels, one, n1 = spectra.mean_gradients(ctx, groups, "rvs")
    assert n1 == 1 and labels == ["teff", "logg", "m_h", "alpha_m", "fe_h"]
    assert one[0].shape == (len(labels), 2401)
    assert np.all(np.isfinite(one[0])) and np.any(one[0] != 0)
    twice = Context(dataclasses.replace(inputs, members=[*inputs.members] * 2), {})
    _, two, n2 = spectra.mean_gradients(twice, groups, "rvs")
    assert n2 == 2
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12)


def test_red_clump_groups_follow_the_config(inputs):
    cfg = {"red_clump": {"max_stars": 2, "m_h": [0.0, -0.8, 5.0]}, "seed": 1}
    groups = spectra.red_clump_groups(Context(inputs, cfg))
    assert [c for c, _ in groups] == [0.0, -0.8, 5.0]
    with h5py.File(inputs.training, "r") as h5:
        t, g, m = (h5[f"labels/{k}"][:] for k in ("teff", "logg", "m_h"))
    for centre, rows in groups:
        assert rows.size <= 2 and np.all(np.diff(rows) > 0)
        assert np.all((t[rows] >= 4500) & (t[rows] <= 5100) & (g[rows] >= 2.2) & (g[rows] <= 2.8))
        assert np.all(np.abs(m[rows] - centre) <= 0.1)
    assert groups[0][1].size == 2 and groups[2][1].size == 0
    again = spectra.red_clump_groups(Context(inputs, cfg))
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(groups, again, strict=True))


# ---------------------------------------------------------------------- streaming helpers
def test_read_rows_gives_the_selected_rows_in_dense_and_sparse_blocks(inputs):
    with h5py.File(inputs.observed, "r") as h5:
        flux, sid = h5["rvs/flux"][:], h5["source_id"][:]
    rng = np.random.default_rng(2)
    dense = np.arange(16, 32)  # a whole block of 16 rows
    sparse = np.sort(rng.choice(np.arange(40, len(sid)), 9, replace=False))
    rows = np.r_[dense, sparse]
    got = spectra.read_rows(inputs.observed, ["rvs/flux", "source_id"], rows, chunk_rows=16)
    np.testing.assert_array_equal(got["rvs/flux"], flux[rows])
    np.testing.assert_array_equal(got["source_id"], sid[rows])
    with pytest.raises(ValueError):
        spectra.read_rows(inputs.observed, ["source_id"], rows[::-1])
    with pytest.raises(Skip):
        spectra.read_rows(inputs.observed, ["no/such"], rows)


def test_member_inputs_reads_the_rows_through_the_scalers(inputs):
    from gaiacnn.model import load_member

    _, scalers = load_member(inputs.members[0])
    rows = np.array([1, 5, 6, 40, 41])
    got = spectra.member_inputs(inputs.training, scalers, rows, chunk_rows=4)
    with h5py.File(inputs.training, "r") as h5:
        want = scalers.inputs({n: h5[n][:][rows] for n in scalers.datasets()})
    assert set(got) == {"rvs", "phot", "xp"} and got["rvs"].shape == (5, 2401, 1)
    for k, v in want.items():
        np.testing.assert_array_equal(got[k], v)


def test_xp_label_correlation_streams_the_pearson_coefficients(inputs):
    labels = ["teff", "m_h"]
    corr, n = spectra.xp_label_correlation(inputs.training, labels, chunk_rows=37)
    with h5py.File(inputs.training, "r") as h5:
        q = normalise_xp(h5["xp/bp_coefficients"][:], h5["xp/rp_coefficients"][:])
        y = np.stack([h5[layout.label_dataset(x)][:] for x in labels], axis=1)
    assert corr.shape == (2, q.shape[1])
    for j in range(2):
        ok = np.isfinite(y[:, j])
        assert n[j] == ok.sum()
        for k in (1, 5, 54, 56, 109):
            want = np.corrcoef(q[ok, k], y[ok, j])[0, 1]
            assert corr[j, k] == pytest.approx(want, abs=1e-9)
    assert np.all(np.isnan(corr[:, [0, 55]]))  # BP[0]/BP[0] and RP[0]/RP[0] are constant


def test_mean_spectra_streams_the_bin_means(inputs):
    with h5py.File(inputs.observed, "r") as h5:
        flux = h5["rvs/flux"][:].astype(float)
    n = len(flux)
    rng = np.random.default_rng(5)
    a = rng.integers(-1, 3, n)  # three bins, -1: not used
    b = np.where(rng.random(n) < 0.1, 0, -1)  # one sparse bin
    b[:2] = 1  # a second bin of two stars
    (ma, ca), (mb, cb) = spectra.mean_spectra(inputs.observed, [a, b], [3, 2], chunk_rows=20)
    assert list(ca) == [int((a == k).sum()) for k in range(3)]
    assert list(cb) == [int((b == 0).sum()), 2]
    for k in range(3):
        np.testing.assert_allclose(ma[k], flux[a == k].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(mb[1], flux[:2].mean(axis=0), rtol=1e-5)


def test_sequence_bins():
    seq = spectra.SpectraSequence("x", "teff", (4000.0, 4500.0, 5000.0), (("logg", 1.0, 2.0),), "")
    values = {
        "teff": np.array([4000.0, 4499.0, 4500.0, 4999.0, 5000.0, 4200.0, np.nan]),
        "logg": np.array([1.5, 1.5, 1.5, 1.5, 1.5, 2.0, 1.5]),
    }
    assert list(spectra.sequence_bins(values, seq)) == [0, 0, 1, 1, -1, -1, -1]


# ---------------------------------------------------------------------- skips
def test_gradient_figures_skip_without_members_or_red_clump_stars(inputs):
    none = Context(dataclasses.replace(inputs, members=[]), {})
    for fn in (spectra.rvs_gradients, spectra.xp_gradients):
        with pytest.raises(Skip, match="no ensemble member"):
            list(fn(none))
    empty = Context(inputs, {"red_clump": {"teff": [100.0, 200.0]}})
    for fn in (spectra.rvs_gradients, spectra.xp_gradients):
        with pytest.raises(Skip, match="no red-clump star"):
            list(fn(empty))
