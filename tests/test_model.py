"""Hybrid CNN (gaiacnn.model): architecture, scalers, determinism, learning, streamed prediction.

Everything runs on tiny synthetic layout files (300 stars, 200 pixels, 8 XP coefficients).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from gaiacnn.layout import LayoutError, phot_columns
from gaiacnn.model import (
    BRANCHES,
    DEFAULT_ARCH,
    MEMBER_FILES,
    MemberError,
    Scalers,
    build_model,
    fit_scalers,
    load_inputs,
    load_member,
    make_predictor,
    predict_file,
    split_indices,
    train_member,
)
from gaiacnn.spectra import normalise_xp

N, P, M = 300, 200, 8
K = 40  # XP sampled flux samples
LABELS = ["teff", "logg", "ti_fe"]
FAST = {"max_epochs": 2, "batch_size": 64}


def make_file(
    path: Path,
    n: int = N,
    *,
    seed: int = 1,
    rvs: bool = True,
    phot: bool = True,
    parallax: bool = True,
    xp: bool = True,
    labels: bool = True,
    sampled: bool = False,
    parallax_error: bool = True,
) -> Path:
    """A layout file whose labels are simple functions of three latent variables; with
    ``sampled``, XP sampled flux (K samples, absolute, six decades of brightness)."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(0, 1, size=(n, 3))
    with h5py.File(path, "w") as h5:
        h5.attrs["schema_version"] = "1.0"
        h5.attrs["provenance"] = "{}"
        h5["source_id"] = np.arange(1000, 1000 + n, dtype=np.int64)
        if rvs:
            x = np.arange(P)
            line1 = np.exp(-0.5 * ((x - 50) / 3.0) ** 2)
            line2 = np.exp(-0.5 * ((x - 130) / 4.0) ** 2)
            flux = 1 - 0.6 * z[:, :1] * line1 - 0.4 * z[:, 1:2] * line2
            flux += rng.normal(0, 0.01, size=flux.shape)
            ds = h5.create_dataset("rvs/flux", data=flux.astype(np.float32))
            ds.attrs["wavelength_nm"] = 846.0 + 0.01 * x
        if phot:
            g = 10 + 2 * z[:, 1]
            h5["phot/g"] = g.astype(np.float32)
            h5["phot/bp"] = (g + 0.3 + 0.5 * z[:, 0]).astype(np.float32)
            h5["phot/rp"] = (g - 0.3 - 0.5 * z[:, 0]).astype(np.float32)
        if parallax:
            h5["astrometry/parallax"] = (0.5 + 2 * z[:, 2]).astype(np.float32)
            if parallax_error:
                h5["astrometry/parallax_error"] = np.full(n, 0.05, np.float32)
        if xp:
            k = np.arange(M)
            bp0 = 100 * (1 + 3 * z[:, 2:3])
            bp = bp0 * np.concatenate([np.ones((n, 1)), 0.2 * k[1:] * z[:, :1]], axis=1)
            rp = 2 * bp0 * np.concatenate([np.ones((n, 1)), 0.1 * k[1:] * z[:, 1:2]], axis=1)
            h5["xp/bp_coefficients"] = bp.astype(np.float32)
            h5["xp/rp_coefficients"] = rp.astype(np.float32)
        if sampled:
            wl = np.linspace(336.0, 1020.0, K)
            # a Planck-like slope set by z0 (the T_eff latent), a dip set by z1; brightness
            # 1e-19..1e-13 W m-2 nm-1, unrelated to the labels
            shape = (wl / 600.0) ** (-2 + 4 * z[:, :1]) * (
                1 - 0.3 * z[:, 1:2] * np.exp(-0.5 * ((wl - 760) / 20) ** 2)
            )
            level = 10.0 ** rng.uniform(-19, -13, (n, 1))
            ds = h5.create_dataset("xp/sampled_flux", data=(level * shape).astype(np.float32))
            ds.attrs["wavelength_nm"] = wl
            ds.attrs["flux_kind"] = "absolute"
        if labels:
            noise = rng.normal(0, 0.01, size=(n, 3))
            h5["labels/teff"] = (4000 + 2000 * (z[:, 0] + noise[:, 0])).astype(np.float32)
            h5["labels/teff_err"] = np.full(n, 50, dtype=np.float32)
            h5["labels/logg"] = (1 + 3 * (z[:, 1] + noise[:, 1])).astype(np.float32)
            h5["labels/ti_fe"] = (0.3 * (z[:, 2] + noise[:, 2])).astype(np.float32)
    return path


@pytest.fixture(scope="module")
def train_file(tmp_path_factory) -> Path:
    return make_file(tmp_path_factory.mktemp("data") / "train.h5")


@pytest.fixture(scope="module")
def member(tmp_path_factory, train_file) -> tuple[Path, dict]:
    """One member trained long enough to learn the synthetic relation."""
    out = tmp_path_factory.mktemp("member") / "m"
    summary = train_member(
        train_file,
        out,
        split=0,
        seed=0,
        labels=LABELS,
        branches=BRANCHES,
        arch=None,
        training={"max_epochs": 40, "batch_size": 32},
    )
    return out, summary


# --------------------------------------------------------------------------- architecture


def test_full_architecture_matches_paper():
    model = build_model(2401, 4, 55, 5, DEFAULT_ARCH)
    layers = {layer.name: layer for layer in model.layers}
    convs = [layers[f"rvs_conv{i}"] for i in (1, 2, 3)]
    assert [c.filters for c in convs] == [32, 16, 8]
    assert all(c.kernel_size == (8,) for c in convs)
    assert layers["rvs_pool1"].pool_size == (2,) and layers["rvs_pool2"].pool_size == (2,)
    # pooling after convolution blocks two and three
    names = [layer.name for layer in model.layers]
    assert names.index("rvs_conv2") < names.index("rvs_pool1") < names.index("rvs_conv3")
    assert names.index("rvs_conv3") < names.index("rvs_pool2") < names.index("rvs_flatten")
    assert layers["rvs_dense"].units == 128
    assert layers["phot_dense"].units == 32
    assert layers["xp_dense"].units == 64
    assert layers["concat"].output.shape[-1] == 224
    assert layers["head_dense1"].units == 128 and layers["head_dense2"].units == 32
    assert model.output.shape[-1] == 5
    assert layers["labels"].get_config()["activation"] == "linear"
    shapes = {t.name: tuple(t.shape[1:]) for t in model.inputs}
    assert shapes == {"rvs": (2401, 1), "phot": (4,), "xp": (110,)}
    # LeakyReLU after each dense layer
    for d in ("rvs_dense", "phot_dense", "xp_dense", "head_dense1", "head_dense2"):
        assert type(layers[f"{d}_act"]).__name__ == "LeakyReLU"


def test_build_model_rejects_bad_arguments():
    with pytest.raises(ValueError, match="at least one branch"):
        build_model(None, None, None, 3, None)
    with pytest.raises(ValueError, match="unknown arch key"):
        build_model(100, None, None, 3, {"nonsense": 1})


SUBSETS = [s for r in (1, 2, 3) for s in itertools.combinations(BRANCHES, r)]


@pytest.mark.parametrize("branches", SUBSETS, ids=["+".join(s) for s in SUBSETS])
def test_every_branch_subset_trains(tmp_path, train_file, branches):
    out = tmp_path / "m"
    summary = train_member(
        train_file, out, split=1, seed=3, labels=LABELS, branches=branches, training=FAST
    )
    assert summary["epochs_run"] == 2
    assert sorted(p.name for p in out.iterdir()) == sorted(MEMBER_FILES)
    model, scalers = load_member(out)
    assert sorted(t.name for t in model.inputs) == sorted(branches)
    assert scalers.branches == list(branches)
    if "phot" in branches:
        assert len(scalers.phot_columns) == 4


def test_photometry_without_parallax(tmp_path):
    f = make_file(tmp_path / "nopar.h5", parallax=False, rvs=False)
    sc = fit_scalers(f, np.arange(200), LABELS, ("phot", "xp"))
    assert sc.phot_columns == ["phot/g", "phot/bp", "phot/rp"]
    summary = train_member(
        f, tmp_path / "m", split=0, seed=0, labels=LABELS, branches=("phot",), training=FAST
    )
    assert summary["n_parameters"] > 0
    model, _ = load_member(tmp_path / "m")
    assert tuple(model.inputs[0].shape[1:]) == (3,)


# --------------------------------------------------------------------------- scalers & splits


def test_split_is_deterministic_and_disjoint():
    tr, va = split_indices(1000, 3)
    tr2, va2 = split_indices(1000, 3)
    assert np.array_equal(tr, tr2) and np.array_equal(va, va2)
    assert len(va) == 250 and len(tr) == 750
    assert np.intersect1d(tr, va).size == 0
    assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(1000))
    tr4, _ = split_indices(1000, 4)
    assert not np.array_equal(tr, tr4)
    tr_b, _ = split_indices(1000, 3, base_seed=7)
    assert not np.array_equal(tr, tr_b)


def test_scalers_use_training_rows_only(tmp_path):
    f = make_file(tmp_path / "a.h5")
    tr, va = split_indices(N, 0)
    before = fit_scalers(f, tr, LABELS, BRANCHES)
    with h5py.File(f, "r+") as h5:  # extreme values on one validation star
        v = int(va[0])
        h5["labels/teff"][v] = 1e5
        h5["phot/g"][v] = 30.0
        h5["astrometry/parallax"][v] = 100.0
        h5["xp/bp_coefficients"][v, 3] = 1e6
    after = fit_scalers(f, tr, LABELS, BRANCHES)
    assert before.to_json() == after.to_json()
    # but a training star does move them
    with h5py.File(f, "r+") as h5:
        h5["labels/teff"][int(tr[0])] = 1e5
    assert fit_scalers(f, tr, LABELS, BRANCHES).label_max[0] == pytest.approx(1e5)


def test_scalers_roundtrip_json(train_file):
    tr, _ = split_indices(N, 0)
    sc = fit_scalers(train_file, tr, LABELS, BRANCHES)
    back = Scalers.from_json(sc.to_json())
    assert back.to_json() == sc.to_json()
    for name in ("label_min", "label_max", "phot_min", "phot_max", "xp_min", "xp_max"):
        assert np.array_equal(getattr(back, name), getattr(sc, name))
    assert back.labels == LABELS and back.n_pixels == P and back.xp_length == M
    y = np.array([[5000.0, 2.5, 0.1]])
    np.testing.assert_allclose(back.unscale_labels(back.scale_labels(y)), y, rtol=1e-6)
    x, y01 = load_inputs(train_file, tr, BRANCHES, sc, LABELS)
    assert y01.min() == pytest.approx(0.0) and y01.max() == pytest.approx(1.0)
    assert x["phot"].min() == pytest.approx(0.0) and x["phot"].max() == pytest.approx(1.0)
    assert x["rvs"].shape == (len(tr), P, 1) and x["xp"].shape == (len(tr), 2 * M)
    assert all(v.dtype == np.float32 for v in x.values())


def test_xp_normalised_by_first_coefficient(train_file):
    bp = np.array([[2.0, 4.0, -1.0], [10.0, 5.0, 20.0]])
    rp = np.array([[4.0, 1.0, 2.0], [0.5, 0.25, 1.0]])
    np.testing.assert_allclose(
        normalise_xp(bp, rp), [[1, 2, -0.5, 1, 0.25, 0.5], [1, 0.5, 2, 1, 0.5, 2]]
    )
    rows = np.arange(N)
    sc = fit_scalers(train_file, rows, LABELS, ("xp",))
    with h5py.File(train_file, "r") as h5:
        bpc = h5["xp/bp_coefficients"][:].astype(float)
        rpc = h5["xp/rp_coefficients"][:].astype(float)
    ratio = np.concatenate([bpc / bpc[:, :1], rpc / rpc[:, :1]], axis=1)
    np.testing.assert_allclose(sc.xp_min, ratio.min(axis=0))
    np.testing.assert_allclose(sc.xp_max, ratio.max(axis=0))
    x, _ = load_inputs(train_file, rows, ("xp",), sc, LABELS)
    assert np.all(x["xp"][:, 0] == 0) and np.all(x["xp"][:, M] == 0)  # constant ratio 1
    # scaling the coefficients of a star by any factor leaves its XP input unchanged
    block = {"xp/bp_coefficients": bpc[:5] * 7.0, "xp/rp_coefficients": rpc[:5] * 0.1}
    ref = {"xp/bp_coefficients": bpc[:5], "xp/rp_coefficients": rpc[:5]}
    np.testing.assert_allclose(sc.inputs(block)["xp"], sc.inputs(ref)["xp"], atol=1e-6)


def test_nan_labels_are_masked_in_the_loss_and_counted(tmp_path):
    f = make_file(tmp_path / "nan.h5")
    with h5py.File(f, "r+") as h5:
        h5["labels/logg"][:10] = np.nan  # unknown log g: the other labels still train
        for name in LABELS:
            h5[f"labels/{name}"][10:13] = np.nan  # nothing known: left out
    summary = train_member(
        f, tmp_path / "m", split=0, seed=0, labels=LABELS, branches=("phot",), training=FAST
    )
    assert summary["n_dropped_nan_labels"] == 3
    assert summary["n_nan_labels"]["logg"] == 13 and summary["n_nan_labels"]["teff"] == 3
    assert summary["n_train"] + summary["n_validation"] == N - 3
    assert np.isfinite(summary["best_val_loss"])
    # only the labels asked for count
    summary = train_member(
        f, tmp_path / "m2", split=0, seed=0, labels=["teff"], branches=("phot",), training=FAST
    )
    assert summary["n_dropped_nan_labels"] == 3


def test_masked_mse_leaves_unknown_labels_out():
    from gaiacnn.model import masked_mse

    y_true = np.array([[0.5, np.nan], [1.0, 0.0]], np.float32)
    y_pred = np.array([[0.0, 123.0], [0.0, 1.0]], np.float32)
    loss = np.asarray(masked_mse(y_true, y_pred))
    np.testing.assert_allclose(loss, [0.25 / 2, (1.0 + 1.0) / 2])
    full = np.array([[0.5, 0.2]], np.float32)
    plain = np.mean((full - y_pred[:1]) ** 2)
    np.testing.assert_allclose(np.asarray(masked_mse(full, y_pred[:1])), [plain], rtol=1e-6)


# --------------------------------------------------------------------------- determinism


def _weights(member_dir: Path) -> list[np.ndarray]:
    model, _ = load_member(member_dir)
    return model.get_weights()


def test_same_seed_same_weights(tmp_path, train_file):
    kw = dict(split=2, labels=LABELS, branches=BRANCHES, training=FAST)
    train_member(train_file, tmp_path / "a", seed=5, **kw)
    train_member(train_file, tmp_path / "b", seed=5, **kw)
    train_member(train_file, tmp_path / "c", seed=6, **kw)
    wa, wb, wc = (_weights(tmp_path / d) for d in "abc")
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(wa, wc, strict=True))
    assert (tmp_path / "a" / "scalers.json").read_text() == (
        tmp_path / "c" / "scalers.json"
    ).read_text()  # the split, hence the scalers, depends on split only


# --------------------------------------------------------------------------- learning


def test_short_training_learns(member, train_file, tmp_path):
    out, summary = member
    history = json.loads((out / "history.json").read_text())["history"]
    assert min(history["val_loss"]) < 0.3 * history["val_loss"][0]
    assert summary["best_val_loss"] == pytest.approx(min(history["val_loss"]))
    pred = tmp_path / "pred.h5"
    predict_file(out, train_file, pred, progress=False)
    with h5py.File(pred, "r") as p, h5py.File(train_file, "r") as t:
        assert np.array_equal(p["source_id"][:], t["source_id"][:])
        for lab in ("teff", "logg"):
            r = np.corrcoef(p[f"pred/{lab}"][:], t[f"labels/{lab}"][:])[0, 1]
            assert r > 0.8, (lab, r)
            assert p[f"pred/{lab}"].dtype == np.float32


def test_predict_streams_in_chunks(member, tmp_path):
    out, _ = member
    obs = make_file(tmp_path / "obs.h5", n=250, seed=9, labels=False)
    predict_file(out, obs, tmp_path / "chunked.h5", chunk_rows=37, batch_size=16, progress=False)
    predict_file(out, obs, tmp_path / "whole.h5", chunk_rows=10_000, progress=False)
    model, scalers = load_member(out)
    with h5py.File(obs, "r") as h5:
        block = {k: h5[k][:] for k in scalers.datasets()}
        sid = h5["source_id"][:]
    direct = scalers.unscale_labels(model.predict(scalers.inputs(block), verbose=0))
    via_predictor = scalers.unscale_labels(make_predictor(model, 64)(scalers.inputs(block)))
    with h5py.File(tmp_path / "chunked.h5") as a, h5py.File(tmp_path / "whole.h5") as b:
        assert np.array_equal(a["source_id"][:], sid)
        for j, lab in enumerate(LABELS):
            np.testing.assert_allclose(a[f"pred/{lab}"][:], b[f"pred/{lab}"][:], rtol=1e-5)
            np.testing.assert_allclose(a[f"pred/{lab}"][:], direct[:, j], rtol=1e-4)
            np.testing.assert_allclose(via_predictor[:, j], direct[:, j], rtol=1e-4)


def test_sharded_prediction_gathers_to_the_whole_sample(member, tmp_path):
    from gaiacnn import ensemble, shards

    out, _ = member
    obs = make_file(tmp_path / "obs.h5", n=250, seed=9, labels=False)
    predict_file(out, obs, tmp_path / "whole.h5", chunk_rows=10_000, progress=False)
    rows = tmp_path / "rows.json"
    shards.write_row_count(obs, rows)
    cfg = {"shard_rows": 100, "chunk_rows": 37, "batch_size": 16, "precision": "float32"}
    parts = [tmp_path / f"shard{k}.h5" for k in range(shards.n_shards(250, 100))]
    for k, part in enumerate(parts):
        ensemble.run_predict_member(
            out / "model.keras", obs, rows, part, shard=k, prediction_cfg=cfg
        )
    with h5py.File(parts[2]) as h5:
        assert len(h5["source_id"]) == 50 and h5.attrs["shard_start"] == 200
    ensemble.run_gather_predictions(parts, tmp_path / "gathered.h5")
    with h5py.File(tmp_path / "gathered.h5") as a, h5py.File(tmp_path / "whole.h5") as b:
        assert np.array_equal(a["source_id"][:], b["source_id"][:])
        assert a.attrs["n_shards"] == 3 and "shard_start" not in a.attrs
        for lab in LABELS:
            np.testing.assert_allclose(a[f"pred/{lab}"][:], b[f"pred/{lab}"][:], rtol=1e-5)
    # shards that do not tile the sample are refused, and nothing is written
    with pytest.raises(
        shards.ShardError,
        match=r"shard2\.h5: rows 200\.\.250 of 250, expected the shard from row 1",
    ):
        ensemble.run_gather_predictions([parts[0], parts[2], parts[1]], tmp_path / "bad.h5")
    with pytest.raises(shards.ShardError, match="end at row 200"):
        ensemble.run_gather_predictions(parts[:2], tmp_path / "bad.h5")
    assert not (tmp_path / "bad.h5").exists()
    # arrays that changed after the count are refused
    other = make_file(tmp_path / "other.h5", n=260, seed=9, labels=False)
    with pytest.raises(shards.ShardError, match=r"holds 260 stars but .*rows\.json counts 250"):
        ensemble.run_predict_member(
            out / "model.keras", other, rows, tmp_path / "x.h5", shard=0, prediction_cfg=cfg
        )


def test_all_members_of_a_shard_in_one_job(member, train_file, tmp_path):
    """predict_members (rule predict_shard) writes, for each member, what that member
    alone writes (bit for bit, with and without the reader thread), each to its own file;
    the job of one shard refuses outputs that do not pair with the members."""
    from gaiacnn import ensemble, shards
    from gaiacnn.model import predict_members

    out, _ = member
    other = tmp_path / "other"
    train_member(train_file, other, split=1, seed=3, labels=LABELS, branches=BRANCHES,
                 training=FAST)  # fmt: skip
    obs = make_file(tmp_path / "obs.h5", n=250, seed=9, labels=False)
    alone = []
    for d in (out, other):
        alone.append(tmp_path / f"alone_{d.name}.h5")
        predict_file(d, obs, alone[-1], chunk_rows=37, batch_size=16, progress=False,
                     prefetch_chunks=0)  # fmt: skip
    rows = tmp_path / "rows.json"
    shards.write_row_count(obs, rows)
    cfg = {"shard_rows": 100, "chunk_rows": 37, "batch_size": 16, "precision": "float32"}
    for depth in (0, 3):
        both = [tmp_path / f"both{depth}_{k}.h5" for k in range(2)]
        ensemble.run_predict_members(
            [out / "model.keras", other / "model.keras"], obs, rows, both, shard=1,
            prediction_cfg={**cfg, "prefetch_chunks": depth},
        )  # fmt: skip
        for a, b, d in zip(alone, both, (out, other), strict=True):
            with h5py.File(a) as ha, h5py.File(b) as hb:
                assert hb.attrs["member_dir"] == str(d)
                assert hb.attrs["shard_start"] == 100 and hb.attrs["shard_stop"] == 200
                assert np.array_equal(hb["source_id"][:], ha["source_id"][100:200])
                for lab in LABELS:
                    assert np.array_equal(hb[f"pred/{lab}"][:], ha[f"pred/{lab}"][100:200])
    with h5py.File(alone[0]) as a, h5py.File(alone[1]) as b:
        assert not np.array_equal(a["pred/teff"][:], b["pred/teff"][:])  # two members
    with pytest.raises(ValueError, match=r"2 member.*1 output"):
        predict_members([out, other], obs, [tmp_path / "x.h5"], progress=False)
    assert not (tmp_path / "x.h5").exists()


def test_prefetch_hands_on_items_and_errors_and_stops_its_thread():
    import threading

    from gaiacnn.model import prefetch

    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        raise OSError("dropped connection")

    got = []
    with pytest.raises(OSError, match="dropped connection"):
        for x in prefetch(failing()):
            got.append(x)
    assert got == [1]
    # a consumer that stops early stops the producer (no thread left behind)
    before = threading.active_count()
    for x in prefetch(iter(range(10**6)), depth=2):
        if x == 5:
            break
    assert threading.active_count() == before


# --------------------------------------------------------------------------- bad inputs


def _no_files(d: Path) -> bool:
    return not d.exists() or not any(d.iterdir())


def test_training_file_without_labels(tmp_path):
    f = make_file(tmp_path / "nolab.h5", labels=False)
    with pytest.raises(LayoutError, match="holds no labels"):
        train_member(f, tmp_path / "m", split=0, seed=0, labels=LABELS, branches=BRANCHES)
    assert _no_files(tmp_path / "m")


def test_unknown_label_lists_what_file_has(tmp_path, train_file):
    with pytest.raises(LayoutError, match=r"labels/fe_h.*it has: logg, teff, ti_fe"):
        train_member(
            train_file, tmp_path / "m", split=0, seed=0, labels=["fe_h"], branches=BRANCHES
        )
    assert _no_files(tmp_path / "m")


def test_missing_branch_data(tmp_path):
    f = make_file(tmp_path / "noxp.h5", xp=False)
    with pytest.raises(LayoutError, match=r"xp/bp_coefficients.*branch 'xp'"):
        train_member(f, tmp_path / "m", split=0, seed=0, labels=LABELS, branches=BRANCHES)
    with pytest.raises(ValueError, match="unknown branch"):
        train_member(f, tmp_path / "m", split=0, seed=0, labels=LABELS, branches=("spec",))
    assert _no_files(tmp_path / "m")


@pytest.mark.parametrize("dataset", ["rvs/flux", "phot/bp", "xp/rp_coefficients"])
def test_non_finite_input_named(tmp_path, dataset):
    f = make_file(tmp_path / "bad.h5")
    tr, _ = split_indices(N, 0)
    row = int(tr[5])
    with h5py.File(f, "r+") as h5:
        ds = h5[dataset]
        if ds.ndim == 2:
            ds[row, 3] = np.inf
        else:
            ds[row] = np.nan
    with pytest.raises(LayoutError, match=rf"{dataset}.*source_id {1000 + row}"):
        train_member(
            f, tmp_path / "m", split=0, seed=0, labels=LABELS, branches=BRANCHES, training=FAST
        )
    assert _no_files(tmp_path / "m")


def test_xp_first_coefficient_zero_refused_naming_the_star(tmp_path):
    """The XP coefficients are normalised by the first one: a 0 there is refused, not divided."""
    f = make_file(tmp_path / "bad.h5")
    tr, _ = split_indices(N, 0)
    row = int(tr[7])
    with h5py.File(f, "r+") as h5:
        h5["xp/bp_coefficients"][row, 0] = 0.0
    with pytest.raises(
        LayoutError, match=rf"xp/bp_coefficients: 1 rows with first coefficient 0.*{1000 + row}"
    ):
        train_member(
            f, tmp_path / "m", split=0, seed=0, labels=LABELS, branches=BRANCHES, training=FAST
        )
    assert _no_files(tmp_path / "m")


def test_non_finite_input_in_prediction(member, tmp_path):
    out, _ = member
    obs = make_file(tmp_path / "obs.h5", n=50, labels=False)
    with h5py.File(obs, "r+") as h5:
        h5["astrometry/parallax"][17] = np.nan
    pred = tmp_path / "pred.h5"
    with pytest.raises(LayoutError, match=r"astrometry/parallax.*source_id 1017"):
        predict_file(out, obs, pred, chunk_rows=8, progress=False)
    assert list(tmp_path.glob("*pred*")) == []


def test_member_dir_missing_files(member, tmp_path, train_file):
    out, _ = member
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "scalers.json").write_text((out / "scalers.json").read_text())
    with pytest.raises(MemberError, match=r"lacks model\.keras"):
        predict_file(empty, train_file, tmp_path / "p.h5", progress=False)
    assert not (tmp_path / "p.h5").exists()


def test_prediction_needs_the_models_inputs(member, tmp_path):
    out, _ = member
    obs = make_file(tmp_path / "norvs.h5", n=20, rvs=False, labels=False)
    with pytest.raises(LayoutError, match=r"rvs/flux.*branch 'rvs'"):
        predict_file(out, obs, tmp_path / "p.h5", progress=False)
    assert not (tmp_path / "p.h5").exists()


def test_failed_save_leaves_nothing(tmp_path, train_file, monkeypatch):
    import keras

    def boom(self, *a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(keras.Model, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        train_member(
            train_file,
            tmp_path / "m",
            split=0,
            seed=0,
            labels=LABELS,
            branches=("phot",),
            training=FAST,
        )
    assert _no_files(tmp_path / "m")


# --------------------------------------------------------------------------- options


def test_bfloat16_prediction_close_to_float32(member, train_file, tmp_path):
    out, _ = member
    model, scalers = load_member(out)
    with h5py.File(train_file, "r") as h5:
        block = {k: h5[k][:] for k in scalers.datasets()}
    x = scalers.inputs(block)
    y32 = make_predictor(model, 64)(x)
    y16 = make_predictor(model, 64, precision="mixed_bfloat16")(x)
    assert y16.dtype == np.float32 and y16.shape == y32.shape
    # not bitwise the float32 result, but close in units of the labels' dispersion
    assert not np.array_equal(y16, y32)
    assert np.all(np.abs(y16 - y32) < 0.05 * y32.std(axis=0))
    predict_file(out, train_file, tmp_path / "p16.h5", progress=False, precision="mixed_bfloat16")
    predict_file(out, train_file, tmp_path / "p32.h5", progress=False)
    with h5py.File(tmp_path / "p16.h5") as a, h5py.File(tmp_path / "p32.h5") as b:
        assert a.attrs["precision"] == "mixed_bfloat16" and "precision" not in b.attrs
        for lab in LABELS:
            assert a[f"pred/{lab}"].dtype == np.float32
            sd = np.std(b[f"pred/{lab}"][:])
            np.testing.assert_allclose(a[f"pred/{lab}"][:], b[f"pred/{lab}"][:], atol=0.05 * sd)
    # the member itself is left in float32
    assert all(w.dtype == "float32" for w in model.weights)
    assert model.dtype_policy.name == "float32"
    with pytest.raises(ValueError, match="unknown precision"):
        make_predictor(model, 64, precision="float16")


def test_learning_rate_schedule_shapes():
    from gaiacnn.model import LearningRateSchedule

    warm = LearningRateSchedule(1e-3, 10, schedule="plateau", warmup_epochs=2, max_epochs=50)
    assert warm.lr_at(0) == pytest.approx(1e-3 / 20)
    assert warm.lr_at(19) == pytest.approx(1e-3)
    assert warm.lr_at(500) == pytest.approx(1e-3)
    one = LearningRateSchedule(
        1e-3, 10, schedule="one_cycle", warmup_epochs=2, max_epochs=12, final_factor=0.01
    )
    assert one.lr_at(19) == pytest.approx(1e-3)
    assert one.lr_at(20) == pytest.approx(1e-3)
    assert one.lr_at(70) == pytest.approx(0.5 * (1e-3 + 1e-5))
    assert one.lr_at(120) == pytest.approx(1e-5)
    lrs = [one.lr_at(s) for s in range(20, 121)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))
    with pytest.raises(ValueError, match="unknown schedule"):
        LearningRateSchedule(1e-3, 10, schedule="cyclic")


def test_learning_rate_schedule_keeps_plateau_cuts():
    import keras

    from gaiacnn.model import LearningRateSchedule

    model = build_model(None, 3, None, 1)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    cb = LearningRateSchedule(1e-3, 4, schedule="one_cycle", warmup_epochs=1, max_epochs=10)
    cb.set_model(model)
    for b in range(4):
        cb.on_train_batch_begin(b)
    lr = float(model.optimizer.learning_rate.numpy())
    assert lr == pytest.approx(1e-3)
    model.optimizer.learning_rate.assign(lr * 0.1)  # what ReduceLROnPlateau does
    cb.on_epoch_begin(1)
    cb.on_train_batch_begin(0)
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.1 * cb.lr_at(4))


@pytest.mark.parametrize("schedule", ["plateau", "one_cycle"])
def test_schedules_train(tmp_path, train_file, schedule):
    training = {**FAST, "max_epochs": 3, "schedule": schedule, "lr_warmup_epochs": 1}
    summary = train_member(
        train_file, tmp_path / "m", split=0, seed=0, labels=LABELS, branches=("phot", "xp"),
        training=training,
    )  # fmt: skip
    assert summary["epochs_run"] == 3
    lr = json.loads((tmp_path / "m" / "history.json").read_text())["history"]["learning_rate"]
    # end of the warm-up epoch: the peak; then constant (plateau) or decaying (one_cycle)
    assert lr[0] == pytest.approx(1e-3, rel=1e-5)
    if schedule == "plateau":
        assert lr[2] == pytest.approx(1e-3, rel=1e-5)
    else:
        assert lr[2] < lr[1] < lr[0]
    with pytest.raises(ValueError, match="unknown schedule"):
        train_member(
            train_file, tmp_path / "x", split=0, seed=0, labels=LABELS, branches=("phot",),
            training={**FAST, "schedule": "nope"},
        )  # fmt: skip


# --------------------------------------------------------------------------- augmentation


def test_augment_rvs_lowers_snr_to_the_drawn_target():
    from gaiacnn.model import augment_rvs

    n, p, s = 3000, 400, 50.0
    flux = np.ones((n, p, 1), np.float32)
    unit = np.full((n, p, 1), 1.0 / s, np.float32)
    unit[:, :10] = 0.0  # e.g. NaN-filled pixels: no noise there
    rng = np.random.default_rng(0)
    out = augment_rvs(flux, unit, np.full(n, s), rng, snr_min=10.0, fraction=1.0)
    added = (out - flux)[:, 10:, 0].std(axis=1)
    target = s / np.sqrt(1.0 + (added * s) ** 2)  # total noise = unit * s / target
    assert target.min() > 9.0 and target.max() <= s + 1e-6
    # log-uniform in [10, 50]: the mean of log(target) is the middle of the log range
    assert np.mean(np.log(target)) == pytest.approx(0.5 * (np.log(10) + np.log(50)), abs=0.03)
    assert np.all(out[:, :10] == 1.0)
    half = augment_rvs(flux, unit, np.full(n, s), rng, snr_min=10.0, fraction=0.5)
    changed = np.any(half != flux, axis=(1, 2))
    assert 0.45 < changed.mean() < 0.55
    # spectra already at or below snr_min (or with unknown S/N) are left alone
    low = augment_rvs(flux[:5], unit[:5], np.array([10.0, 8.0, np.nan, 5.0, 1.0]), rng,
                      snr_min=10.0, fraction=1.0)  # fmt: skip
    np.testing.assert_array_equal(low, flux[:5])


def _with_snr(path: Path, snr: float | None = 40.0) -> Path:
    make_file(path)
    if snr is not None:
        with h5py.File(path, "a") as h5:
            h5["rvs/snr"] = np.full(N, snr, np.float32)
    return path


def test_augmented_batches_are_deterministic(tmp_path):
    from gaiacnn.model import AugmentedBatches, noise_units

    path = _with_snr(tmp_path / "t.h5")
    rows = np.arange(0, N, 2)
    unit, snr = noise_units(path, rows)
    assert unit.shape == (rows.size, P, 1) and np.all(snr == 40.0)
    x = {"rvs": np.ones((rows.size, P, 1), np.float32), "phot": np.zeros((rows.size, 3))}
    y = np.arange(rows.size, dtype=float)[:, None]
    kw = dict(batch_size=32, seed=3, snr_min=15.0, fraction=0.5)
    a, b = AugmentedBatches(x, y, unit, snr, **kw), AugmentedBatches(x, y, unit, snr, **kw)
    assert len(a) == -(-rows.size // 32)
    xa, ya = a.batch(1)
    b.batch(len(b) + 1)  # another epoch first: no state carries over
    xb, yb = b.batch(1)
    np.testing.assert_array_equal(xa["rvs"], xb["rvs"])
    np.testing.assert_array_equal(ya, yb)
    assert np.any(xa["rvs"] != 1.0)  # noise was added
    assert not np.array_equal(a.batch(len(a) + 1)[1], ya)  # next epoch, new order
    # one epoch covers every training star once
    seen = np.concatenate([a.batch(s)[1][:, 0] for s in range(len(a))])
    np.testing.assert_array_equal(np.sort(seen), y[:, 0])
    # through tf.data: the same batches, in step order
    for step, (xt, yt) in enumerate(a.dataset(epochs=2).take(len(a) + 2)):
        xr, yr = a.batch(step)
        np.testing.assert_array_equal(xt["rvs"].numpy(), xr["rvs"])
        np.testing.assert_array_equal(yt.numpy(), yr.astype(np.float32))


def test_training_with_augmentation(tmp_path):
    path = _with_snr(tmp_path / "t.h5")
    tr = {**FAST, "augment_snr_min": 15.0, "augment_fraction": 0.5}
    kw = dict(split=0, seed=1, labels=LABELS, branches=BRANCHES, training=tr)
    assert train_member(path, tmp_path / "a", **kw)["noise_augmentation"] is True
    train_member(path, tmp_path / "b", **kw)
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb, strict=True))
    # without the S/N there is nothing to scale the noise by: said, and trained without it
    no_snr = _with_snr(tmp_path / "n.h5", None)
    with pytest.warns(UserWarning, match="no rvs/snr, so no noise augmentation"):
        summary = train_member(no_snr, tmp_path / "c", **kw)
    assert summary["noise_augmentation"] is False
    assert not train_member(path, tmp_path / "d", **{**kw, "branches": ["phot", "xp"]})[
        "noise_augmentation"
    ]


# --------------------------------------------------------------------------- XP sampled flux


def test_sampled_xp_feeds_the_xp_branch(tmp_path):
    """A file with sampled XP flux + photometry (no coefficients, no RVS, no parallax): the
    member's XP input is K wide, and its scaling takes the brightness out."""
    f = make_file(tmp_path / "s.h5", rvs=False, xp=False, parallax=False, sampled=True)
    summary = train_member(
        f, tmp_path / "m", split=0, seed=0, labels=[], branches=[], training=FAST
    )
    assert summary["branches"] == ["phot", "xp"] and summary["xp_input"] == "sampled"
    assert summary["labels"] == ["logg", "teff", "ti_fe"]  # every label of the file
    model, sc = load_member(tmp_path / "m")
    assert {t.name: tuple(t.shape) for t in model.inputs}["xp"] == (None, K)
    assert sc.xp_flux_kind == "absolute" and sc.xp_wavelength_nm.shape == (K,)
    with h5py.File(f) as h5:
        block = {k: h5[k][:20] for k in sc.datasets()}
    x = sc.inputs(block)["xp"]
    brighter = {**block, "xp/sampled_flux": block["xp/sampled_flux"] * 1e6}
    np.testing.assert_allclose(sc.inputs(brighter)["xp"], x, atol=1e-6)
    assert np.abs(x).max() < 2  # no star's input is set by its brightness


def test_sampled_xp_learns_what_the_shape_carries(tmp_path):
    f = make_file(tmp_path / "s.h5", rvs=False, xp=False, phot=False, parallax=False, sampled=True)
    summary = train_member(
        f, tmp_path / "m", split=0, seed=0, labels=["teff"], branches=["xp"],
        training={"max_epochs": 60, "batch_size": 32},
    )  # fmt: skip
    predict_file(tmp_path / "m", f, tmp_path / "p.h5", progress=False)
    with h5py.File(tmp_path / "p.h5") as p, h5py.File(f) as h5:
        resid = p["pred/teff"][:] - h5["labels/teff"][:]
    # T_eff spans 2000 K and is set by the slope of the spectrum alone
    assert np.std(resid) < 250, (np.std(resid), summary["best_val_loss"])


def test_xp_input_picks_coefficients_or_sampled(tmp_path):
    f = make_file(tmp_path / "both.h5", rvs=False, sampled=True)
    assert fit_scalers(f, np.arange(100), ["teff"], ["xp"]).xp_input == "coefficients"
    sc = fit_scalers(f, np.arange(100), ["teff"], ["xp"], "sampled")
    assert sc.xp_input == "sampled" and sc.xp_width == K
    g = make_file(tmp_path / "coef.h5", rvs=False)
    with pytest.raises(LayoutError, match=r"xp/sampled_flux: model\.xp_input is 'sampled' but"):
        fit_scalers(g, np.arange(100), ["teff"], ["xp"], "sampled")


# --------------------------------------------------------------------------- input contract


def _with_grid(src: Path, dst: Path, dataset: str, shift_nm: float = 0.0, n: int | None = None):
    """A copy of ``src`` whose ``dataset`` grid is shifted by ``shift_nm`` (same samples),
    or resampled onto ``n`` samples over a slightly wider range."""
    import shutil

    shutil.copy(src, dst)
    with h5py.File(dst, "a") as h5:
        wl = np.asarray(h5[dataset].attrs["wavelength_nm"])
        if n is None:
            h5[dataset].attrs["wavelength_nm"] = wl + shift_nm
            return dst
        new = np.linspace(wl[0] - 0.05, wl[-1] + 0.05, n)
        flux = np.array([np.interp(new, wl, row) for row in h5[dataset][:]], np.float32)
        attrs = dict(h5[dataset].attrs)
        del h5[dataset]
        ds = h5.create_dataset(dataset, data=flux)
        ds.attrs.update({**attrs, "wavelength_nm": new})
    return dst


def test_member_records_its_input_contract(member, train_file):
    _, sc = load_member(member[0])
    with h5py.File(train_file) as h5:
        np.testing.assert_array_equal(sc.rvs_wavelength_nm, h5["rvs/flux"].attrs["wavelength_nm"])
    doc = json.loads((member[0] / "scalers.json").read_text())
    for key in ("branches", "labels", "rvs_wavelength_nm", "xp_length", "xp_input", "xp_min"):
        assert doc[key] is not None, key


def test_prediction_refuses_another_grid_naming_both(member, train_file, tmp_path):
    """Trained on one RVS grid, a file on a grid shifted by 1 nm (the same pixel count) is
    refused with one line naming both grids, and nothing is written."""
    shifted = _with_grid(train_file, tmp_path / "shifted.h5", "rvs/flux", shift_nm=1.0)
    out = tmp_path / "pred.h5"
    with pytest.raises(LayoutError) as err:
        predict_file(member[0], shifted, out, progress=False)
    msg = str(err.value)
    assert "\n" not in msg
    assert "wavelength grid 847.00-848.99 nm, 200 samples" in msg
    assert "trained on, 846.00-847.99 nm, 200 samples" in msg
    assert "cannot be resampled" in msg
    assert not out.exists() and not list(tmp_path.glob("*.tmp*"))


def test_prediction_resamples_a_covering_grid_when_asked(member, train_file, tmp_path):
    finer = _with_grid(train_file, tmp_path / "finer.h5", "rvs/flux", n=431)
    with pytest.raises(LayoutError, match=r"prediction\.resample: true interpolates it"):
        predict_file(member[0], finer, tmp_path / "no.h5", progress=False)
    predict_file(member[0], finer, tmp_path / "yes.h5", progress=False, resample=True)
    predict_file(member[0], train_file, tmp_path / "ref.h5", progress=False)
    with h5py.File(tmp_path / "yes.h5") as a, h5py.File(tmp_path / "ref.h5") as b:
        assert json.loads(a.attrs["resampled"]) == ["rvs/flux"]
        # linear interpolation there and back: close to the predictions on the own grid
        assert np.median(np.abs(a["pred/teff"][:] - b["pred/teff"][:])) < 60


def test_prediction_refuses_another_xp_form_or_flux_kind(tmp_path):
    f = make_file(tmp_path / "s.h5", rvs=False, xp=False, parallax=False, sampled=True)
    train_member(f, tmp_path / "m", split=0, seed=0, labels=["teff"], branches=[], training=FAST)
    coef = make_file(tmp_path / "c.h5", rvs=False, parallax=False)
    with pytest.raises(LayoutError, match="XP input is the sampled, which the file lacks"):
        predict_file(tmp_path / "m", coef, tmp_path / "p.h5", progress=False)
    norm = tmp_path / "n.h5"
    _with_grid(f, norm, "xp/sampled_flux")
    with h5py.File(norm, "a") as h5:
        h5["xp/sampled_flux"].attrs["flux_kind"] = "normalised"
    with pytest.raises(LayoutError, match="flux_kind 'normalised', the model was trained on"):
        predict_file(tmp_path / "m", norm, tmp_path / "p.h5", progress=False)


# --------------------------------------------------------------------------- photometry input


def test_intrinsic_photometry_does_not_depend_on_distance():
    """Twice as far: G 1.505 mag fainter, half the parallax, same error; the colours and
    10^(0.2 M_G) stay, only its error grows (x 2): no input tells how far the star is."""
    from gaiacnn.spectra import phot_features

    cols = ["phot/g", "phot/bp", "phot/rp", "astrometry/parallax", "astrometry/parallax_error"]
    near = {"phot/g": np.array([12.0]), "phot/bp": np.array([12.5]),
            "phot/rp": np.array([11.3]), "astrometry/parallax": np.array([1.0]),
            "astrometry/parallax_error": np.array([0.02])}  # fmt: skip
    far = dict(near)
    for band in ("phot/g", "phot/bp", "phot/rp"):
        far[band] = near[band] + 5 * np.log10(2.0)
    far["astrometry/parallax"] = near["astrometry/parallax"] / 2
    a, b = (phot_features(x, cols, "intrinsic_with_error") for x in (near, far))
    np.testing.assert_allclose(a[:, :3], b[:, :3], rtol=1e-12)
    np.testing.assert_allclose(np.sinh(b[:, 3]), 2 * np.sinh(a[:, 3]), rtol=1e-12)
    # "intrinsic" is the same without the error: no input at all tells the distance
    np.testing.assert_array_equal(phot_features(near, cols, "intrinsic"), a[:, :3])
    np.testing.assert_allclose(phot_features(far, cols, "intrinsic"), a[:, :3], rtol=1e-12)
    # 10^(0.2 M_G) for M_G = G + 5 log10(parallax / 100 mas) = 2
    assert np.sinh(a[0, 2]) == pytest.approx(10 ** (0.2 * 2.0))
    # a negative parallax stays finite (a magnitude would not)
    neg = dict(near, **{"astrometry/parallax": np.array([-0.01])})
    assert np.all(np.isfinite(phot_features(neg, cols, "intrinsic_with_error")))
    # the paper's input is the columns as they are; no parallax: the colours only
    np.testing.assert_array_equal(
        phot_features(near, cols[:4], "magnitudes")[0], [12, 12.5, 11.3, 1]
    )
    assert phot_features(near, cols[:3], "intrinsic").shape == (1, 2)


def test_augment_parallax_lowers_the_parallax_snr_to_the_drawn_target():
    from gaiacnn.model import augment_parallax

    n = 20000
    plx, err = np.full(n, 2.0), np.full(n, 0.04)  # S/N 50
    new_plx, new_err = augment_parallax(plx, err, np.random.default_rng(0), snr_min=2.0,
                                        fraction=1.0)  # fmt: skip
    target = plx / new_err
    assert target.min() >= 2.0 - 1e-9 and target.max() <= 50 + 1e-9
    assert np.mean(np.log(target)) == pytest.approx(0.5 * (np.log(2) + np.log(50)), abs=0.03)
    pull = (new_plx - plx) / new_err  # the total noise (old + added) matches the new error
    total = np.sqrt(new_err**2 - err**2) / new_err
    assert np.std(pull / np.where(total > 0, total, 1)) == pytest.approx(1.0, abs=0.03)
    half, _ = augment_parallax(plx, err, np.random.default_rng(1), snr_min=2.0, fraction=0.5)
    assert 0.47 < np.mean(half != plx) < 0.53
    # at or below snr_min, or not finite: unchanged
    low = np.array([0.08, -0.1, np.nan, 0.04])
    out = augment_parallax(low, np.full(4, 0.04), np.random.default_rng(2), snr_min=2.0,
                           fraction=1.0)  # fmt: skip
    np.testing.assert_array_equal(out[0], low)


def test_parallax_augmentation_reads_the_error_as_training_data_only(tmp_path):
    from gaiacnn.model import load_member

    path = make_file(tmp_path / "t.h5")
    tr = {**FAST, "augment_snr_min": 0.0, "augment_parallax_snr_min": 1.0}
    kw = dict(split=0, seed=1, labels=LABELS, branches=BRANCHES, training=tr,
              phot_input="intrinsic")  # fmt: skip
    summary = train_member(path, tmp_path / "a", **kw)
    assert summary["parallax_augmentation"] is True and summary["phot_input"] == "intrinsic"
    train_member(path, tmp_path / "b", **kw)
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb, strict=True))  # deterministic
    _, scalers = load_member(tmp_path / "a")
    assert scalers.phot_input == "intrinsic"
    # the error sets the augmentation's noise but is not an input
    assert "astrometry/parallax_error" not in scalers.phot_columns
    assert scalers.phot_min.shape == (3,)  # BP - RP, G - RP, asinh(10^(0.2 M_G))
    with_error = train_member(path, tmp_path / "e", **{**kw, "phot_input": "intrinsic_with_error"})
    assert with_error["parallax_augmentation"] is True
    _, err_scalers = load_member(tmp_path / "e")
    assert err_scalers.phot_min.shape == (4,)
    assert err_scalers.phot_columns[-1] == "astrometry/parallax_error"
    # the paper's input: its raw parallax is augmented the same way
    paper = train_member(path, tmp_path / "c", **{**kw, "phot_input": "magnitudes"})
    assert paper["parallax_augmentation"] is True
    # augmentation off: neither form reads the error, and a file without it trains and
    # predicts
    off = {**kw, "training": {**tr, "augment_parallax_snr_min": 0.0}}
    bare = make_file(tmp_path / "bare.h5", parallax_error=False)
    assert train_member(bare, tmp_path / "f", **off)["parallax_augmentation"] is False
    predict_file(tmp_path / "f", bare, tmp_path / "pf.h5")
    predict_file(tmp_path / "a", bare, tmp_path / "pa.h5")
    # a file without parallax errors is refused where the augmentation needs them, naming
    # the dataset, and where the error is an input, also at prediction
    with pytest.raises(LayoutError, match="astrometry/parallax_error"):
        train_member(bare, tmp_path / "d", **kw)
    assert _no_files(tmp_path / "d")
    with pytest.raises(LayoutError, match="astrometry/parallax_error"):
        predict_file(tmp_path / "e", bare, tmp_path / "p.h5")


def test_withheld_parallax_input(tmp_path):
    """intrinsic_withheld: a parallax below the S/N threshold is withheld (0 and a flag),
    training withholds a fraction at random, the threshold travels with the member, and a
    setting that cannot take effect is refused."""
    from gaiacnn.model import load_member
    from gaiacnn.spectra import phot_features

    block = {
        "phot/g": np.full(4, 12.0), "phot/bp": np.full(4, 12.5), "phot/rp": np.full(4, 11.5),
        "astrometry/parallax": np.array([1.0, 0.1, -0.2, np.nan]),
        "astrometry/parallax_error": np.array([0.02, 0.05, 0.05, 0.05]),
    }  # fmt: skip
    cols = phot_columns(True, "intrinsic_withheld")
    assert cols[-1] == "astrometry/parallax_error"
    f = phot_features(block, cols, "intrinsic_withheld", 5.0)
    np.testing.assert_array_equal(f[:, 3], [0, 1, 1, 1])  # S/N 50 kept; 2, < 0, NaN withheld
    np.testing.assert_array_equal(f[1:, 2], 0.0)
    assert f[0, 2] > 0 and np.all(np.isfinite(f))
    with pytest.raises(ValueError, match="withheld_snr"):
        phot_features(block, cols, "intrinsic_withheld")

    path = make_file(tmp_path / "t.h5")
    with pytest.raises(ValueError, match="withheld_snr"):
        fit_scalers(path, np.arange(50), LABELS, BRANCHES, "auto", "intrinsic_withheld")
    tr = {**FAST, "augment_snr_min": 0.0, "withhold_parallax_fraction": 0.5,
          "withhold_parallax_below_snr": 5.0}  # fmt: skip
    kw = dict(split=0, seed=1, labels=LABELS, branches=BRANCHES, training=tr,
              phot_input="intrinsic_withheld")  # fmt: skip
    summary = train_member(path, tmp_path / "a", **kw)
    assert summary["parallax_withheld"] is True and summary["parallax_augmentation"] is False
    train_member(path, tmp_path / "b", **kw)
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb, strict=True))  # deterministic
    _, scalers = load_member(tmp_path / "a")
    assert scalers.phot_width == 4 and scalers.parallax_withheld_snr == 5.0
    np.testing.assert_array_equal([scalers.phot_min[-1], scalers.phot_max[-1]], [0.0, 1.0])
    assert Scalers.from_json(scalers.to_json()).parallax_withheld_snr == 5.0
    x = scalers.inputs(block, ["phot"])["phot"]
    np.testing.assert_array_equal(x[:, 3], [0, 1, 1, 1])
    # predicting reads the error (the threshold needs it) and records the threshold; the
    # catalogue marks the stars whose parallax was withheld
    from gaiacnn import catalogue

    obs = make_file(tmp_path / "obs.h5", seed=2)
    with h5py.File(obs, "a") as h5:
        h5["astrometry/parallax_error"][:10] = 1.0  # parallax S/N 0.5-2.5 < 5
    predict_file(tmp_path / "a", path, tmp_path / "p.h5")
    predict_file(tmp_path / "a", obs, tmp_path / "po.h5")
    with h5py.File(tmp_path / "po.h5", "r") as h5:
        assert h5.attrs["parallax_withheld_snr"] == 5.0
    table, *_ = catalogue.build(
        {"training": [tmp_path / "p.h5"], "observed": [tmp_path / "po.h5"]},
        {"training": path, "observed": obs},
        labels=LABELS, members=["split0_seed1"], n_bins=5, degree=1,
    )  # fmt: skip
    observed = ~table["in_training"].to_numpy(bool)
    np.testing.assert_array_equal(table["parallax_withheld"][observed], np.arange(N) < 10)
    assert not table["parallax_withheld"][~observed].any()
    bare = make_file(tmp_path / "bare.h5", parallax_error=False)
    with pytest.raises(LayoutError, match="astrometry/parallax_error"):
        predict_file(tmp_path / "a", bare, tmp_path / "pb.h5")
    # the training sample predicted a second time with every parallax withheld: the same
    # labels as for a file whose parallaxes all fall below the threshold; the stars' own
    # predictions unchanged; sharded predictions gather both groups
    from gaiacnn import ensemble, shards

    noisy = make_file(tmp_path / "noisy.h5")
    with h5py.File(noisy, "a") as h5:
        h5["astrometry/parallax_error"][:] = 1e6
    predict_file(tmp_path / "a", noisy, tmp_path / "pn.h5", progress=False)
    rows = tmp_path / "rows.json"
    shards.write_row_count(path, rows)
    cfg = {"shard_rows": N // 2, "chunk_rows": 37, "batch_size": 16, "precision": "float32"}
    parts = [tmp_path / f"shard{k}.h5" for k in range(2)]
    for k, part in enumerate(parts):
        ensemble.run_predict_member(tmp_path / "a" / "model.keras", path, rows, part, shard=k,
                                    prediction_cfg=cfg, withheld_too=True)  # fmt: skip
    ensemble.run_gather_predictions(parts, tmp_path / "pw.h5")
    with (h5py.File(tmp_path / "pw.h5") as w, h5py.File(tmp_path / "p.h5") as p,
          h5py.File(tmp_path / "pn.h5") as q):  # fmt: skip
        assert w.attrs["withheld_predictions"] and "withheld_predictions" not in p.attrs
        for lab in LABELS:
            np.testing.assert_allclose(w[f"pred/{lab}"][:], p[f"pred/{lab}"][:], rtol=1e-5)
            np.testing.assert_allclose(w[f"pred_withheld/{lab}"][:], q[f"pred/{lab}"][:],
                                       rtol=1e-5)  # fmt: skip
            assert not np.allclose(w[f"pred_withheld/{lab}"][:], p[f"pred/{lab}"][:])
    ensemble.run_predict_member(tmp_path / "a" / "model.keras", path, rows, tmp_path / "s1.h5",
                                shard=1, prediction_cfg=cfg)  # fmt: skip
    with pytest.raises(shards.ShardError, match="prediction groups"):
        ensemble.run_gather_predictions([parts[0], tmp_path / "s1.h5"], tmp_path / "bad.h5")
    # the calibration takes the held-out training stars in the withheld regime as
    # calibration stars of the withheld stars' own factor; without them there are too few
    cal_kw = dict(labels=LABELS, members=["split0_seed1"], n_bins=5, degree=1,
                  calibration_bins=2, calibration_min_per_bin=10)  # fmt: skip
    arrays = {"training": path, "observed": obs}
    with h5py.File(obs, "a") as h5:
        h5["rvs/snr"] = np.full(N, 30.0, np.float32)
    with h5py.File(path, "a") as h5:
        h5["rvs/snr"] = np.full(N, 40.0, np.float32)
    n_val = ensemble.validation_masks(["split0_seed1"], N, 0.25, 0).sum()
    _, _, _, without = catalogue.build(
        {"training": [tmp_path / "p.h5"], "observed": [tmp_path / "po.h5"]}, arrays, **cal_kw
    )
    n_obs = without["teff"].withheld_count or 0  # observed withheld stars only
    assert n_obs <= 10
    _, _, _, cal = catalogue.build(
        {"training": [tmp_path / "pw.h5"], "observed": [tmp_path / "po.h5"]}, arrays, **cal_kw
    )
    assert cal["teff"].withheld_count == n_val + n_obs and cal["teff"].withheld_floor >= 0
    # the fraction is the withheld form's setting: another form trains as before
    other = train_member(path, tmp_path / "c", **{**kw, "phot_input": "intrinsic"})
    assert other["parallax_withheld"] is False
    predict_file(tmp_path / "c", path, tmp_path / "pc.h5", withheld_too=True, progress=False)
    with h5py.File(tmp_path / "pc.h5") as h5:
        assert "pred_withheld" not in h5 and "withheld_predictions" not in h5.attrs
    # the withheld form with nothing withheld in training: refused before anything is written
    with pytest.raises(ValueError, match="withhold_parallax_fraction"):
        train_member(path, tmp_path / "d",
                     **{**kw, "training": {**tr, "withhold_parallax_fraction": 0.0}})  # fmt: skip
    assert _no_files(tmp_path / "d")


def test_scalers_without_phot_input_read_as_the_papers(train_file):
    import json

    sc = fit_scalers(train_file, np.arange(50), LABELS, BRANCHES)
    doc = json.loads(sc.to_json())
    assert doc["phot_input"] == "magnitudes"
    del doc["phot_input"]
    assert Scalers.from_json(json.dumps(doc)).phot_input == "magnitudes"


# --------------------------------------------------------------------------- XP augmentation


def _with_xp_errors(path: Path, scale: float = 0.05) -> Path:
    """``path`` (with rvs/snr) plus XP coefficient errors: ``scale`` x |coefficient|."""
    _with_snr(path)
    with h5py.File(path, "a") as h5:
        for coef, err in zip(("xp/bp_coefficients", "xp/rp_coefficients"),
                             ("xp/bp_coefficient_errors", "xp/rp_coefficient_errors"),
                             strict=True):  # fmt: skip
            h5[err] = (scale * np.abs(h5[coef][:]) + 1e-3).astype(np.float32)
    return path


def test_xp_augmentation_adds_the_noise_of_the_rvs_factor(tmp_path):
    """Each augmented star's XP coefficients get noise of error * sqrt(k^2 - 1), k the
    factor its RVS S/N was lowered by; the others keep theirs; the RVS noise is the same
    as without XP augmentation (its own random stream)."""
    from gaiacnn.model import (
        AugmentedBatches,
        augment_factors,
        fit_scalers,
        load_inputs,
        noise_units,
    )

    path = _with_xp_errors(tmp_path / "t.h5")
    rows = np.arange(N)
    sc = fit_scalers(path, rows, LABELS, ["rvs", "xp"], "coefficients")
    x, y = load_inputs(path, rows, ["rvs", "xp"], sc, LABELS)
    unit, snr = noise_units(path, rows)
    with h5py.File(path) as h5:
        names = ("xp/bp_coefficients", "xp/rp_coefficients")
        names += ("xp/bp_coefficient_errors", "xp/rp_coefficient_errors")
        raw = {k: h5[k][:] for k in names}
    kw = dict(batch_size=N, seed=5, snr_min=15.0, fraction=0.5)
    fn = lambda block: sc.inputs(block, ["xp"])["xp"]  # noqa: E731
    with_xp = AugmentedBatches(x, y, unit, snr, **kw, xp_raw=raw, xp_fn=fn)
    without = AugmentedBatches(x, y, unit, snr, **kw)
    xa, _ = with_xp.batch(0)
    xb, _ = without.batch(0)
    np.testing.assert_array_equal(xa["rvs"], xb["rvs"])
    np.testing.assert_array_equal(xb["xp"], x["xp"][with_xp._order(0)])  # untouched
    order = with_xp._order(0)
    factor = augment_factors(snr[order], np.random.default_rng([5, 0, 0, 1]),
                             snr_min=15.0, fraction=0.5)  # fmt: skip
    picked = factor > 1.0
    assert 0 < picked.sum() < N
    changed = np.any(xa["xp"] != x["xp"][order], axis=1)
    np.testing.assert_array_equal(changed, picked)
    # the noise, in coefficient units: back out of the normalisation BP / BP[0]
    rng = np.random.default_rng([5, 0, 0, 3])
    want = {}
    for coef, err in (("xp/bp_coefficients", "xp/bp_coefficient_errors"),
                      ("xp/rp_coefficients", "xp/rp_coefficient_errors")):  # fmt: skip
        scale = np.sqrt(np.maximum(factor[picked] ** 2 - 1, 0))[:, None]
        noise = rng.standard_normal((int(picked.sum()), raw[coef].shape[1]), dtype=np.float32)
        want[coef] = raw[coef][order].copy()
        want[coef][picked] += noise * raw[err][order][picked] * scale.astype(np.float32)
    np.testing.assert_allclose(xa["xp"], fn(want), rtol=1e-5, atol=1e-6)


def test_xp_augmentation_trains_and_refuses_what_it_cannot_do(tmp_path):
    path = _with_xp_errors(tmp_path / "t.h5")
    tr = {**FAST, "augment_snr_min": 15.0, "augment_fraction": 0.5, "augment_xp": True}
    kw = dict(split=0, seed=1, labels=LABELS, branches=BRANCHES, training=tr)
    train_member(path, tmp_path / "a", **kw)
    train_member(path, tmp_path / "b", **{**kw, "training": {**tr, "augment_xp": False}})
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert not all(np.array_equal(p, q) for p, q in zip(wa, wb, strict=True))
    # no errors in the file: refused, naming the datasets
    with pytest.raises(LayoutError, match="xp/bp_coefficient_errors"):
        train_member(_with_snr(tmp_path / "n.h5"), tmp_path / "c", **kw)
    # without the RVS augmentation there is no factor to follow
    with pytest.raises(ValueError, match="needs the RVS noise augmentation"):
        train_member(path, tmp_path / "d", **{**kw, "training": {**tr, "augment_snr_min": 0}})


def test_input_noise_spread(tmp_path, caplog):
    """uncertainty.input_noise: every star is predicted again with its own parallax and XP
    noise drawn from their errors; the spread of those predictions (pred_noise) grows with
    the errors, is zero without them and for a parallax the member withholds, is the same
    in a rerun and across shards, leaves the labels themselves unchanged (the RVS branch
    runs once, split from the rest), and enters sigma_* in quadrature (column e_input_*)."""
    import logging

    from gaiacnn import catalogue, ensemble, shards
    from gaiacnn.model import predict_members

    path = make_file(tmp_path / "t.h5")
    obs = make_file(tmp_path / "obs.h5", seed=4)
    for f in (path, obs):
        with h5py.File(f, "a") as h5:
            h5["xp/bp_coefficient_errors"] = np.abs(0.05 * h5["xp/bp_coefficients"][:])
            h5["xp/rp_coefficient_errors"] = np.abs(0.05 * h5["xp/rp_coefficients"][:])
            h5["rvs/snr"] = np.full(N, 30.0, np.float32)
    with h5py.File(obs, "a") as h5:
        err = h5["astrometry/parallax_error"]
        err[:50] = 0.0  # no parallax noise: only the XP's moves these
        err[50:100] = 0.5 * h5["astrometry/parallax"][50:100]  # parallax S/N 2 < 5: withheld
        err[100:150] = 0.15 * h5["astrometry/parallax"][100:150]  # S/N ~7: used, noisy
        h5["xp/bp_coefficient_errors"][:50] = 0.0
        h5["xp/rp_coefficient_errors"][:50] = 0.0
    tr = {**FAST, "augment_snr_min": 0.0, "withhold_parallax_fraction": 0.2,
          "withhold_parallax_below_snr": 5.0}  # fmt: skip
    train_member(path, tmp_path / "a", split=0, seed=1, labels=LABELS, branches=BRANCHES,
                 training=tr, phot_input="intrinsic_withheld")  # fmt: skip
    a = tmp_path / "a"
    kw = dict(progress=False, chunk_rows=64, batch_size=32)
    predict_members([a], obs, [tmp_path / "plain.h5"], **kw)
    predict_members([a], path, [tmp_path / "plain_t.h5"], **kw)
    noise = dict(noise_draws=8, noise_sources=["parallax", "xp"])
    predict_members([a], obs, [tmp_path / "n.h5"], **kw, **noise)
    predict_members([a], obs, [tmp_path / "n2.h5"], **kw, **noise)
    predict_members([a], obs, [tmp_path / "plx.h5"], **kw, noise_draws=8,
                    noise_sources=["parallax"])  # fmt: skip
    with (h5py.File(tmp_path / "plain.h5") as p, h5py.File(tmp_path / "n.h5") as n,
          h5py.File(tmp_path / "n2.h5") as n2, h5py.File(tmp_path / "plx.h5") as q):  # fmt: skip
        assert json.loads(n.attrs["input_noise"]) == ["parallax", "xp"]
        assert n.attrs["input_noise_draws"] == 8 and "pred_noise" not in p
        for lab in LABELS:
            assert np.array_equal(n[f"pred/{lab}"][:], p[f"pred/{lab}"][:])  # trunk + head
            s, s2, sp = (h[f"pred_noise/{lab}"][:] for h in (n, n2, q))
            assert np.array_equal(s, s2)  # seeded
            assert np.all(np.isfinite(s)) and np.all(s >= 0)
            # no errors, no spread; withheld: no parallax drawn (but for the float32
            # rounding of a batch whose other rows differ)
            y = np.abs(p[f"pred/{lab}"][:]) + 1.0
            assert np.all(s[:50] <= 1e-6 * y[:50]) and np.all(sp[50:100] <= 1e-6 * y[50:100])
            assert np.median(sp[100:150]) > 0 and np.median(s[150:]) > 0
            # a noisier parallax moves the labels more
            assert np.median(sp[100:150]) > np.median(sp[150:])
    # sharded, with the training sample's withheld predictions: both groups' spreads
    rows = tmp_path / "rows.json"
    shards.write_row_count(path, rows)
    cfg = {"shard_rows": N // 2, "chunk_rows": 37, "batch_size": 16, "precision": "float32"}
    parts = [tmp_path / f"shard{k}.h5" for k in range(2)]
    noise_cfg = {"sources": noise["noise_sources"], "draws": 4}
    for k, part in enumerate(parts):
        ensemble.run_predict_member(a / "model.keras", path, rows, part, shard=k,
                                    prediction_cfg=cfg, withheld_too=True,
                                    noise_cfg=noise_cfg)  # fmt: skip
    ensemble.run_gather_predictions(parts, tmp_path / "pt.h5")
    # the same draws for a star whatever the shards and chunks (its source_id fixes them)
    predict_members([a], path, [tmp_path / "whole.h5"], progress=False, withheld_too=True,
                    noise_draws=4, noise_sources=noise["noise_sources"])  # fmt: skip
    with h5py.File(tmp_path / "pt.h5") as h5, h5py.File(tmp_path / "whole.h5") as w:
        for g in ensemble.PREDICTION_GROUPS:
            assert h5[f"{g}/teff"].shape == (N,)
            np.testing.assert_allclose(h5[f"{g}/teff"][:], w[f"{g}/teff"][:], rtol=1e-5)
        assert np.all(h5["pred_withheld_noise/teff"][:] > 0)  # the XP noise alone
    # a file without XP errors: the XP noise is not drawn, and that is said
    bare = make_file(tmp_path / "bare.h5", seed=5)
    with caplog.at_level(logging.WARNING):
        predict_members([a], bare, [tmp_path / "b.h5"], **kw, **noise)
    assert "xp (the file lacks xp/bp_coefficient_errors" in caplog.text
    with h5py.File(tmp_path / "b.h5") as h5:
        assert json.loads(h5.attrs["input_noise"]) == ["parallax"]
        assert "the file lacks" in json.loads(h5.attrs["input_noise_skipped"])[0]
    with pytest.raises(ValueError, match="unknown input noise"):
        predict_members([a], obs, [tmp_path / "x.h5"], **kw, noise_draws=8,
                        noise_sources=["rvs"])  # fmt: skip
    # the catalogue: e_input_* columns, and sigma = sqrt(e² + e_input² + D²) (the paper's
    # form with the spread added: no S/N calibration here)
    build_kw = dict(labels=LABELS, members=["split0_seed1"], n_bins=5, degree=1)
    table, fits_, _, _ = catalogue.build(
        {"training": [tmp_path / "pt.h5"], "observed": [tmp_path / "n.h5"]},
        {"training": path, "observed": obs}, **build_kw,
    )  # fmt: skip
    observed = ~table["in_training"].to_numpy(bool)
    with h5py.File(tmp_path / "n.h5") as h5:
        for j, lab in enumerate(LABELS):
            e_in = table[f"e_input_{lab}"].to_numpy(float)[observed]
            np.testing.assert_allclose(e_in, h5[f"pred_noise/{lab}"][:], rtol=1e-6)
            d = fits_[j](table[lab].to_numpy(float))
            expect = np.sqrt(table[f"e_{lab}"].to_numpy(float) ** 2
                             + table[f"e_input_{lab}"].to_numpy(float) ** 2 + d**2)  # fmt: skip
            np.testing.assert_allclose(table[f"sigma_{lab}"], expect, rtol=1e-5)
    assert table.attrs["input_noise"] == ["parallax", "xp"]
    # the config says whether it is used: off leaves it out, on refuses predictions without
    off, *_ = catalogue.build(
        {"training": [tmp_path / "pt.h5"], "observed": [tmp_path / "n.h5"]},
        {"training": path, "observed": obs}, **build_kw, input_noise=False,
    )  # fmt: skip
    assert not any(c.startswith("e_input_") for c in off.columns) and off.attrs["input_noise"] == []
    assert (off["sigma_teff"] < table["sigma_teff"]).any()
    with caplog.at_level(logging.WARNING):
        bare_table, *_ = catalogue.build(
            {"training": [tmp_path / "plain_t.h5"], "observed": [tmp_path / "plain.h5"]},
            {"training": path, "observed": obs}, **build_kw, input_noise=True,
        )  # fmt: skip
    assert "sigma_* has none" in caplog.text
    assert not any(c.startswith("e_input_") for c in bare_table.columns)
    # members predicted with and without the noise do not mix
    with pytest.raises(ensemble.EnsembleError, match=r"different uncertainty\.input_noise"):
        catalogue.build(
            {"training": [tmp_path / "pt.h5"] * 2,
             "observed": [tmp_path / "n.h5", tmp_path / "plain.h5"]},
            {"training": path, "observed": obs},
            **{**build_kw, "members": ["split0_seed1", "split1_seed1"]},
        )  # fmt: skip


def test_star_normals_follow_the_star_not_the_chunk():
    """The input noise's deviates are fixed by the member key, the star, the draw and the
    stream: the same for a star in any chunk or order, different otherwise, and standard
    normal."""
    from gaiacnn.model.predict import star_normals

    sid = np.arange(10**5, dtype=np.int64) * 7919 + 3
    z = star_normals(11, sid, 0, 1, 6)
    assert z.shape == (sid.size, 6)
    np.testing.assert_array_equal(star_normals(11, sid[::-1], 0, 1, 6), z[::-1])
    np.testing.assert_array_equal(star_normals(11, sid[500:600], 0, 1, 6), z[500:600])
    for other in (star_normals(12, sid, 0, 1, 6), star_normals(11, sid, 1, 1, 6),
                  star_normals(11, sid, 0, 2, 6)):  # fmt: skip
        assert abs(np.corrcoef(other.ravel(), z.ravel())[0, 1]) < 0.01
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 0.01
    # the tails of a normal: 0.27 % beyond 3 sigma
    assert 0.0022 < np.mean(np.abs(z) > 3) < 0.0032
