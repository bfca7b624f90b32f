"""The boundary flag (Sect. 5.2, + the input-space digit) and the t-SNE classification
(Sect. 5.1)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from gaiacnn import flags, tsne
from gaiacnn.layout import LayoutError

LABELS = ["teff", "logg", "m_h", "alpha_m", "fe_h"]
RANGE = {
    "teff": [3500.0, 7000.0],
    "logg": [0.5, 5.0],
    "m_h": [-2.0, 0.5],
    "alpha_m": [-0.1, 0.4],
    "fe_h": [-2.0, 0.5],
    "phot_g_mean_mag": [7.0, 14.2],
    "parallax": [0.1, 20.0],
}


def _values(n, **over):
    base = {"teff": 5000.0, "logg": 3.0, "m_h": 0.0, "alpha_m": 0.1, "fe_h": 0.0,
            "phot_g_mean_mag": 12.0, "parallax": 1.0}  # fmt: skip
    base.update(over)
    return {k: np.full(n, v, dtype=float) for k, v in base.items()}


def test_flag_digits_in_the_paper_order():
    order = [*LABELS, "phot_g_mean_mag", "parallax", "tsne", "inputs"]
    assert flags.digit_order(LABELS) == order
    cases = [
        ({}, False, False, "000000000"),
        ({"teff": 8000.0}, False, False, "100000000"),
        ({"logg": 0.2}, False, False, "010000000"),
        ({"m_h": -2.5}, False, False, "001000000"),
        ({"alpha_m": 0.5}, False, False, "000100000"),
        ({"fe_h": 0.6}, False, False, "000010000"),
        ({"phot_g_mean_mag": 15.0}, False, False, "000001000"),
        ({"parallax": np.nan}, False, False, "000000100"),  # missing counts as outside
        ({}, True, False, "000000010"),
        ({}, False, True, "000000001"),
        ({"teff": 3000.0, "parallax": 30.0}, True, True, "100000111"),
        ({"teff": 7000.0, "m_h": -2.0}, False, False, "000000000"),  # the limits are inside
    ]
    for over, tsne_out, inputs_out, expect in cases:
        got = flags.boundary_flags(
            _values(1, **over), RANGE, LABELS, np.array([tsne_out]), np.array([inputs_out])
        )
        assert got[0] == expect, (over, tsne_out, inputs_out)
    flags.validate_flags([c[3] for c in cases])
    # without photometry or parallax errors there is no input-space digit: '-'
    got = flags.boundary_flags(_values(1), RANGE, LABELS, np.array([True]))
    assert got[0] == "00000001-" and flags.recommended(got)[0] == np.False_


def test_the_papers_flag_has_eight_digits_without_the_inputs_digit():
    """flags.input_digit: false (the paper preset): the 8 digits of Sect. 5.2, in order;
    an input-space class given for such a flag is refused, not dropped."""
    order = [*LABELS, "phot_g_mean_mag", "parallax", "tsne"]
    assert flags.digit_order(LABELS, input_digit=False) == order
    assert flags.split_digits(order) == (LABELS, False)
    assert flags.split_digits([*order, "inputs"]) == (LABELS, True)
    got = flags.boundary_flags(
        _values(2, teff=np.array([5000.0, 8000.0])),
        RANGE,
        LABELS,
        np.array([True, False]),
        input_digit=False,
    )
    assert list(got) == ["00000001", "10000000"]
    flags.validate_flags(got, n_digits=8)
    with pytest.raises(flags.FlagError, match="inputs digit"):
        flags.boundary_flags(
            _values(1), RANGE, LABELS, np.array([False]), np.array([True]), input_digit=False
        )
    lines = flags.describe(LABELS, input_digit=False)
    assert len(lines) == 8 and lines[7].startswith("digit 8: not training-like")


def test_input_outside_from_the_labels_table():
    table = {
        "in_training": np.array([True, False, False, False, False]),
        "input_distance": np.array([5.0, 0.5, 1.0, 1.5, np.nan]),
    }
    assert list(flags.input_outside(table)) == [False, False, False, True, True]


def test_flag_follows_configured_labels():
    labels = ["teff", "ti_fe"]
    vals = {
        "teff": np.array([5000.0, 5000.0]),
        "ti_fe": np.array([0.0, 0.9]),
        "phot_g_mean_mag": np.array([12.0, 12.0]),
        "parallax": np.array([1.0, 1.0]),
    }
    rng = {
        "teff": [4000, 6000],
        "ti_fe": [-0.2, 0.5],
        "phot_g_mean_mag": [7, 14],
        "parallax": [0, 5],
    }
    got = flags.boundary_flags(vals, rng, labels, np.array([False, True]), np.array([1, 0]))
    assert list(got) == ["000001", "010010"]
    flags.validate_flags(got, n_digits=6)
    assert flags.describe(labels)[1] == "digit 2: ti_fe outside the training range (Table 1)"
    assert flags.describe(LABELS)[7].startswith("digit 8: not training-like")
    assert flags.describe(LABELS)[8].startswith("digit 9: BP-RP, M_G, parallax S/N outside")
    assert all(len(line) <= 72 for line in flags.describe(LABELS))


def test_a_quantity_the_survey_lacks_is_not_available():
    """No parallax (nor photometry) in the training file: that digit is '-' for every star,
    says so in the header lines, and does not count against a star."""
    vals = _values(2)
    rng = {k: v for k, v in RANGE.items() if k not in ("parallax", "phot_g_mean_mag")}
    vals["parallax"] = np.full(2, np.nan)
    vals["phot_g_mean_mag"] = np.full(2, np.nan)
    got = flags.boundary_flags(vals, rng, LABELS, np.array([False, True]))
    assert [f[5:7] for f in got] == ["--", "--"] and [f[8] for f in got] == ["-", "-"]
    flags.validate_flags(got)
    assert list(flags.recommended(got)) == [True, False]
    assert flags.available(got, 9) == [True] * 5 + [False, False, True, False]
    lines = flags.describe(LABELS, flags.available(got, 9), "xp/sampled_flux")
    # short enough for one FITS COMMENT card (72 characters)
    assert lines[6] == "digit 7: parallax not in the data (- for every star)"
    assert all(len(line) <= 72 for line in lines[:7])
    assert lines[7].endswith("maps of xp/sampled_flux")
    with pytest.raises(flags.FlagError, match="its '-' digits differ from row 0's"):
        flags.validate_flags(["00000--0-", "0000000--"])


def test_malformed_flags_are_refused():
    for bad in ["00000000", "0000000001", "00000000x", 100000000, None]:
        with pytest.raises(flags.FlagError, match="expected 9 characters of 0/1/-"):
            flags.validate_flags(["000000000", bad])
    with pytest.raises(flags.FlagError, match="no values of 'parallax'"):
        vals = _values(2)
        del vals["parallax"]
        flags.boundary_flags(vals, RANGE, LABELS, np.zeros(2, bool))


# --------------------------------------------------------------------------- t-SNE


def _clusters(rng, n_in, n_ood, p=60):
    """Spectra of two training-like populations and one unlike them (deeper, shifted lines)."""
    x = np.arange(p)
    a = 1 - 0.5 * np.exp(-0.5 * ((x - 15) / 2.0) ** 2)
    b = 1 - 0.5 * np.exp(-0.5 * ((x - 35) / 2.0) ** 2)
    c = 1 - 0.8 * np.exp(-0.5 * ((x - 50) / 1.5) ** 2)
    pick = rng.integers(0, 2, n_in)
    spec = np.where(pick[:, None] == 0, a, b) + rng.normal(0, 0.02, (n_in, p))
    ood = c + rng.normal(0, 0.02, (n_ood, p))
    return spec.astype(np.float32), ood.astype(np.float32)


def _embed(x, perplexity, *, seed=0, n_iter=500):
    """One map of ``x`` at ``perplexity``, as the workflow computes it (graph, then map)."""
    graph = tsne.neighbour_graph(x, [perplexity], seed=seed, n_jobs=1)
    return tsne.embed_graph(graph, perplexity, seed=seed, n_jobs=1, n_iter=n_iter)


def test_joint_map_separates_unlike_spectra():
    rng = np.random.default_rng(4)
    train, _ = _clusters(rng, 400, 0)
    obs_in, obs_ood = _clusters(rng, 400, 60)
    z = np.concatenate([train, obs_in, obs_ood])
    is_tr = np.r_[np.ones(400, bool), np.zeros(460, bool)]
    xy = np.asarray(_embed(z, 30, seed=0, n_iter=300))
    thr = tsne.threshold(xy[is_tr], rule="quantile", quantile=0.99)
    dist, like = tsne.classify(xy, is_tr, thr)
    assert like[is_tr].all() and np.all(dist[is_tr] == 0)
    assert like[400:800].mean() >= 0.95  # same populations as the training sample
    assert not like[800:].any()  # the unlike population
    med = tsne.threshold(xy[is_tr], rule="median_multiple", factor=3.0)
    assert med.value == pytest.approx(3.0 * med.median_training_nn)
    with pytest.raises(tsne.TsneError, match="unknown threshold rule"):
        tsne.threshold(xy[is_tr], rule="mean")
    with pytest.raises(tsne.TsneError, match="needs more than"):
        _embed(z[:50], 30)


def test_one_neighbour_graph_serves_every_perplexity():
    """A map from the graph searched for the largest perplexity equals the map from a graph
    searched for its own perplexity (each takes the first 3 x perplexity neighbours)."""
    rng = np.random.default_rng(5)
    z = np.concatenate(_clusters(rng, 300, 40))
    shared = tsne.neighbour_graph(z, [10, 30], seed=0)
    own = tsne.neighbour_graph(z, [10], seed=0)
    assert shared.k == 90 and own.k == 30
    np.testing.assert_array_equal(shared.indices[:, :30], own.indices)
    np.testing.assert_allclose(shared.init, own.init)
    a = np.asarray(tsne.embed_graph(shared, 10, seed=0, n_iter=100))
    b = np.asarray(tsne.embed_graph(own, 10, seed=0, n_iter=100))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(tsne.TsneError, match="needs 90 neighbours, graph has 30"):
        tsne.embed_graph(own, 30)


def test_mth_training_neighbour_needs_the_support_of_several_training_stars():
    # A map: a training cloud, observed stars in it, and an unlike observed blob that has
    # one stray training star inside it (a lone training star at the sample's edge).
    rng = np.random.default_rng(8)
    train = np.r_[rng.normal(0, 1, (500, 2)), [[10.0, 0.0]]]
    obs_in = rng.normal(0, 1, (300, 2))
    blob = rng.normal([10.0, 0.0], 0.3, (80, 2))
    xy = np.concatenate([train, obs_in, blob])
    is_tr = np.r_[np.ones(len(train), bool), np.zeros(380, bool)]
    one = tsne.threshold(xy[is_tr], quantile=0.99, neighbours=1)
    ten = tsne.threshold(xy[is_tr], quantile=0.99, neighbours=10)
    like1, like10 = tsne.classify(xy, is_tr, one)[1], tsne.classify(xy, is_tr, ten)[1]
    assert like1[-80:].mean() > 0.5  # the stray training star vouches for the blob
    assert not like10[-80:].any()  # ten training stars are not there
    assert like10[len(train) : len(train) + 300].mean() >= 0.95
    d = tsne.training_nn_distances(xy[is_tr], 10)
    assert ten.value == pytest.approx(np.quantile(d, 0.99)) and ten.neighbours == 10
    assert np.all(d >= tsne.training_nn_distances(xy[is_tr], 1))
    with pytest.raises(tsne.TsneError, match="need at least 11"):
        tsne.threshold(xy[:10], neighbours=10)
    with pytest.raises(tsne.TsneError, match=">= 1"):
        tsne.threshold(xy[is_tr], neighbours=0)
    with pytest.raises(tsne.TsneError, match="9 training stars in the map; need at least 10"):
        tsne.nearest_training_distance(xy[:9], xy[600:], 10)


def test_the_support_grows_with_the_training_sample():
    assert tsne.support_neighbours(2752, 10, 0.003) == 10  # the demo: the count
    assert tsne.support_neighbours(9006, 10, 0.003) == 27
    assert tsne.support_neighbours(44780, 10, 0.003) == 134  # the paper's training sample
    assert tsne.support_neighbours(10**6, 10, 0.0) == 10
    with pytest.raises(tsne.TsneError, match="fraction must be in"):
        tsne.support_neighbours(100, 10, 1.0)
    with pytest.raises(tsne.TsneError, match=">= 1"):
        tsne.support_neighbours(100, 0, 0.1)


def test_a_map_records_the_support_it_used(tmp_path):
    from gaiacnn.tsne import maps

    rng = np.random.default_rng(4)
    x, is_tr = _clusters(rng, 300, 0)[0], np.zeros(300, bool)
    is_tr[:200] = True
    graph = tsne.neighbour_graph(x, [10])
    np.savez(tmp_path / "g.npz", source_id=np.arange(300), in_training=is_tr,
             indices=graph.indices, distances=graph.distances, init=graph.init)  # fmt: skip
    cfg = {"seed": 0, "n_iter": 50, "pca_components": 0, "threshold_rule": "quantile",
           "threshold_quantile": 0.99, "threshold_factor": 3.0,
           "threshold_neighbours": 3}  # fmt: skip
    for fraction, m in ((0.0, 3), (0.05, 10)):
        out = tmp_path / f"p10_{fraction}.h5"
        maps.run_tsne_joint(
            tmp_path / "g.npz", out, perplexity=10,
            tsne_cfg={**cfg, "threshold_neighbours_fraction": fraction},
        )  # fmt: skip
        with h5py.File(out) as h5:
            assert h5.attrs["threshold_neighbours"] == m
            xy, tr = h5["xy"][:], h5["in_training"][:]
            d = tsne.nearest_training_distance(xy[tr], xy[~tr], m)
            np.testing.assert_allclose(h5["nn_training_distance"][:][~tr], d, rtol=1e-5)


def test_placing_into_a_fixed_map_agrees_with_the_map(tmp_path):
    rng = np.random.default_rng(5)
    train, _ = _clusters(rng, 400, 0)
    obs_in, obs_ood = _clusters(rng, 300, 40)
    ref_obs = np.r_[obs_in[:150], obs_ood[:20]]
    new = np.r_[obs_in[150:], obs_ood[20:]]
    ref = np.concatenate([train, ref_obs])
    emb = _embed(ref, 30, seed=0, n_iter=300)
    xy_ref = np.array(emb)  # a copy: the saved reference map
    thr = tsne.threshold(xy_ref[:400], rule="quantile", quantile=0.99)
    # saved as the workflow saves it (arrays and JSON settings) and read back
    tsne.write_reference_embedding(
        tmp_path / "embedding.h5",
        tsne.ReferenceEmbedding(tsne.portable_embedding(emb), thr, 400, 30.0, "rvs/flux"),
    )
    back = tsne.read_reference_embedding(tmp_path / "embedding.h5")
    saved = back.embedding
    assert saved.affinities is None and back.threshold == thr and back.n_training == 400
    assert saved.gradient_descent_params == emb.gradient_descent_params
    np.testing.assert_array_equal(np.asarray(saved), xy_ref)
    tsne.write_index(tmp_path / "index.npz", tsne.build_index(ref, 5))
    index = tsne.read_index(tmp_path / "index.npz")
    assert index.features.shape == (len(ref), 5)
    idx, dist = index.query(new, 25)
    assert idx.shape == dist.shape == (len(new), 25) and np.all(np.diff(dist, axis=1) >= 0)
    for n_iter in (0, 100):
        xy_new = tsne.place_by_neighbours(saved, idx, dist, perplexity=5, n_iter=n_iter)
        # placing does not move the reference map: saved and placed positions share one frame
        np.testing.assert_allclose(np.asarray(saved), xy_ref, atol=1e-9)
        assert xy_new.shape == (len(new), 2)
        like = tsne.nearest_training_distance(xy_ref[:400], xy_new) <= thr.value
        assert like[:150].mean() >= 0.9 and like[150:].mean() <= 0.1
    assert tsne.place_by_neighbours(saved, idx[:0], dist[:0]).shape == (0, 2)
    with pytest.raises(tsne.TsneError, match="needs 30 neighbours, got 25"):
        tsne.place_by_neighbours(saved, idx, dist, perplexity=10, n_iter=1)


def test_placement_reproduces_opentsne_transform_given_its_neighbours():
    """With openTSNE's own neighbours, the shared-neighbour placement is its transform."""
    rng = np.random.default_rng(2)
    train, _ = _clusters(rng, 300, 0)
    from openTSNE import TSNE

    # a map openTSNE made itself, so that it can search neighbours and transform; centred
    # as tsne.embed_graph centres its maps
    emb = TSNE(perplexity=20, n_iter=200, random_state=0, n_jobs=1).fit(train.astype(float))
    emb -= (np.max(emb, axis=0) + np.min(emb, axis=0)) / 2
    new = _clusters(rng, 60, 0)[0]
    idx, dist = emb.affinities.knn_index.query(np.ascontiguousarray(new, np.float64), 15)
    portable = tsne.portable_embedding(emb)
    x_new = np.ascontiguousarray(new, np.float64)
    ours = tsne.place_by_neighbours(portable, idx, dist, perplexity=5, n_iter=250, k_init=15)
    theirs = np.asarray(emb.transform(x_new, perplexity=5))
    np.testing.assert_allclose(ours, theirs, atol=1e-6 * np.ptp(theirs))
    # another exaggeration than transform's default 1.5: still transform, and not the same
    ours_1 = tsne.place_by_neighbours(
        portable, idx, dist, perplexity=5, n_iter=250, k_init=15, exaggeration=1.0
    )
    theirs_1 = np.asarray(emb.transform(x_new, perplexity=5, exaggeration=1.0))
    np.testing.assert_allclose(ours_1, theirs_1, atol=1e-6 * np.ptp(theirs_1))
    assert not np.allclose(ours_1, ours, atol=1e-3 * np.ptp(theirs))


def test_combine_maps_and_reference_rows():
    assert list(tsne.combine_maps([np.array([1, 1, 0]), np.array([1, 0, 0])])) == [1, 0, 0]
    r = tsne.reference_rows(1000, 100, seed=3)
    assert r.size == 100 and np.all(np.diff(r) > 0)
    np.testing.assert_array_equal(r, tsne.reference_rows(1000, 100, seed=3))
    assert tsne.reference_rows(50, 100, seed=3).size == 50


def test_reference_training_keeps_the_data_proportion():
    # proportional: the training stars' share in the reference map is the observed stars'
    r = tsne.reference_training_rows(9000, 51000, 20000, "proportional", seed=3)
    assert r.size == round(9000 * 20000 / 51000) == 3529
    assert np.all(np.diff(r) > 0) and r[0] >= 0 and r[-1] < 9000
    np.testing.assert_array_equal(
        r, tsne.reference_training_rows(9000, 51000, 20000, "proportional", seed=3)
    )
    other = tsne.reference_training_rows(9000, 51000, 20000, "proportional", seed=4)
    assert not np.array_equal(r, other)
    # the paper's sizes (Sect. 5.1): 44 780 training stars, 20 000 of 841 300 observed
    assert tsne.reference_training_rows(44780, 841300, 20000, "proportional", 0).size == 1065
    # all: every training star; all observed stars embedded: every training star too
    np.testing.assert_array_equal(
        tsne.reference_training_rows(9000, 51000, 20000, "all", seed=3), np.arange(9000)
    )
    assert tsne.reference_training_rows(90, 500, 500, "proportional", seed=3).size == 90
    with pytest.raises(tsne.TsneError, match="unknown reference_training 'some'"):
        tsne.reference_training_rows(90, 500, 50, "some", seed=3)


def test_a_reference_map_with_few_training_stars_is_warned_about(caplog):
    from gaiacnn.tsne.classify import _warn_thin_support

    cfg = {"threshold_neighbours": 10, "threshold_neighbours_fraction": 0.003}
    with caplog.at_level("WARNING", logger="gaiacnn"):
        _warn_thin_support(1970, cfg)  # config/gaia_dr3.yaml: m = 10, 0.5 %
        assert not caplog.records
        _warn_thin_support(36, cfg)
    assert "36 training stars" in caplog.text and "m = 10 of them (27.8 %" in caplog.text


def test_an_ensemble_of_maps_averages_the_distance_over_the_threshold():
    # star 0: just outside one map, well inside the other (mean ratio 0.8); star 1: inside
    # both; star 2: just inside one, far outside the other (mean 1.45)
    d = [np.array([1.1, 0.5, 0.9]), np.array([1.0, 2.0, 8.0])]
    like = tsne.ensemble_training_like(d, [1.0, 4.0])
    assert like.tolist() == [True, True, False]
    # one map: its own rule, distance <= threshold
    assert tsne.ensemble_training_like(d[:1], [1.0]).tolist() == [False, True, True]
    with pytest.raises(tsne.TsneError, match="2 maps' distances but 1 thresholds"):
        tsne.ensemble_training_like(d, [1.0])
    # the sets' settings: seed + set, and only the configured sets
    cfg = {"seed": 5, "reference_maps": 2, "reference_observed": 10}
    assert [tsne.reference_set_config(cfg, k)["seed"] for k in (0, 1)] == [5, 6]
    assert tsne.reference_set_config(cfg, 1)["reference_observed"] == 10 and cfg["seed"] == 5
    with pytest.raises(tsne.TsneError, match=r"set 2: the config has sets 0\.\.1"):
        tsne.reference_set_config(cfg, 2)


def _map_file(path, sid, dist, thr, perplexity, like=None):
    """A map file of observed stars only, with given distances and threshold."""
    from gaiacnn.tsne.maps import _write_map

    dist = np.asarray(dist, float)
    data = {"source_id": sid, "in_training": np.zeros(sid.size, bool),
            "xy": np.zeros((sid.size, 2)), "nn_training_distance": dist,
            "training_like": dist <= thr if like is None else like}  # fmt: skip
    _write_map(path, data, {"perplexity": perplexity, "threshold": thr})


def test_classify_combines_the_perplexities_and_each_ones_ensemble(tmp_path):

    sid = np.array([11, 12, 13])
    obs = tmp_path / "observed.h5"
    with h5py.File(obs, "w") as h5:
        h5["source_id"] = sid
    # two sets of maps, two perplexities
    _map_file(tmp_path / "r0p30.h5", sid, [1.1, 0.5, 0.9], 1.0, 30.0)
    _map_file(tmp_path / "r0p50.h5", sid, [0.1, 0.1, 0.1], 1.0, 50.0)
    _map_file(tmp_path / "r1p30.h5", sid, [1.0, 2.0, 8.0], 4.0, 30.0)
    _map_file(tmp_path / "r1p50.h5", sid, [0.1, 3.0, 0.1], 1.0, 50.0)
    paths = [tmp_path / f"r{k}p{p}.h5" for k in (0, 1) for p in (30, 50)]
    # read two stars at a time: the classes do not depend on the chunks
    tsne.run_tsne_classify(paths, obs, tmp_path / "like.h5", chunk_rows=2)
    with h5py.File(tmp_path / "like.h5") as h5:
        assert h5["training_like_p30"][:].tolist() == [True, True, False]
        assert h5["training_like_p50"][:].tolist() == [True, False, True]
        assert h5["training_like"][:].tolist() == [True, False, False]
        assert h5.attrs["maps_per_perplexity"] == 2
    # one map per perplexity: the map's own classes, as stored
    _map_file(tmp_path / "p30.h5", sid, [1.0, 1.0, 1.0], 1.0, 30.0, like=np.array([0, 1, 1], bool))
    tsne.run_tsne_classify([tmp_path / "p30.h5"], obs, tmp_path / "one.h5")
    with h5py.File(tmp_path / "one.h5") as h5:
        assert h5["training_like"][:].tolist() == [False, True, True]
    # a set missing a map is refused, and nothing is written
    with pytest.raises(tsne.TsneError, match=r"unequal numbers of maps per perplexity: \[1, 2\]"):
        tsne.run_tsne_classify(paths[:3], obs, tmp_path / "bad.h5")
    assert not (tmp_path / "bad.h5").exists()
    # a map whose observed stars are not the observed file's, in its order: refused, naming
    # the map and the rows
    _map_file(tmp_path / "reversed.h5", sid[::-1], [1.0, 2.0, 8.0], 4.0, 30.0)
    with pytest.raises(tsne.TsneError, match=r"reversed\.h5: row 0 holds star 13, the observed"):
        tsne.run_tsne_classify([tmp_path / "reversed.h5"], obs, tmp_path / "bad.h5")
    assert not (tmp_path / "bad.h5").exists()


def test_spectra_are_streamed_and_checked(tmp_path):
    path = tmp_path / "a.h5"
    flux = np.ones((10, 5), np.float32)
    flux[7, 2] = np.nan
    with h5py.File(path, "w") as h5:
        h5["source_id"] = np.arange(100, 110)
        h5["rvs/flux"] = flux
    np.testing.assert_array_equal(tsne.read_spectra(path, np.array([1, 3, 4]), chunk_rows=2), 1)
    with pytest.raises(LayoutError, match="source_id 107"):
        tsne.read_spectra(path)
    red = tsne.fit_reducer(np.random.default_rng(0).normal(size=(50, 5)), 2)
    assert red(np.ones((3, 5))).shape == (3, 2)
    assert tsne.fit_reducer(np.ones((4, 5)), 0)(np.ones((3, 5))).shape == (3, 5)
    with h5py.File(tmp_path / "b.h5", "w") as h5:
        h5["source_id"] = np.arange(3)
    assert tsne.n_rows(tmp_path / "b.h5") == 3
    with pytest.raises(LayoutError, match="rvs/flux: missing; the t-SNE classification embeds"):
        tsne.read_spectra(tmp_path / "b.h5")


def test_xp_spectra_are_embedded_when_there_are_no_rvs_spectra(tmp_path):
    """A survey without RVS spectra gets its t-SNE maps from the XP spectra: the sampled
    flux divided by its mean (brightness out), or the coefficients over their first one."""
    from gaiacnn.layout import validate

    rng = np.random.default_rng(1)
    shape = rng.uniform(0.5, 2.0, (1, 30))
    scale = 10.0 ** rng.uniform(-19, -13, (6, 1))  # six decades of brightness
    path = tmp_path / "xp.h5"
    with h5py.File(path, "w") as h5:
        h5.attrs["schema_version"] = "1.0"
        h5["source_id"] = np.arange(6)
        ds = h5.create_dataset("xp/sampled_flux", data=(scale * shape).astype("f4"))
        ds.attrs["wavelength_nm"] = np.linspace(336, 1020, 30)
        ds.attrs["flux_kind"] = "absolute"
        h5["xp/bp_coefficients"] = rng.normal(1, 0.1, (6, 55)).astype("f4")
        h5["xp/rp_coefficients"] = rng.normal(1, 0.1, (6, 55)).astype("f4")
    info = validate(path)
    assert tsne.choose_spectra([info]) == "xp/coefficients"  # auto: as the model's XP default
    assert tsne.choose_spectra([info], "xp_sampled") == "xp/sampled_flux"
    with pytest.raises(tsne.TsneError, match="not every sample holds rvs/flux"):
        tsne.choose_spectra([info], "rvs")
    x = tsne.read_spectra(path, spectra="xp/sampled_flux")
    # every star the same shape: the same point whatever its brightness
    np.testing.assert_allclose(x, np.repeat(x[:1], 6, axis=0), rtol=1e-5)
    np.testing.assert_allclose(x.mean(axis=1), 1.0, rtol=1e-5)
    coeffs = tsne.read_spectra(path, spectra="xp/coefficients")
    assert coeffs.shape == (6, 110) and np.allclose(coeffs[:, [0, 55]], 1.0)


def test_flag_column_roundtrips_through_the_catalogue(tmp_path):
    import pandas as pd
    from astropy.io import fits

    from gaiacnn import catalogue

    table = pd.DataFrame(
        {
            "source_id": np.array([1, 2], np.int64),
            "in_training": np.array([True, False]),
            "teff": np.array([5000.0, 8000.0], np.float32),
            "flag_boundary": ["000000000", "100000011"],
        }
    )
    table.attrs.update(
        members=["split0_seed0"], labels=["teff"], flag_digits=flags.digit_order(LABELS)
    )
    catalogue.write(table, tmp_path / "c.fits", tmp_path / "c.csv")
    back, attrs = catalogue.read(tmp_path / "c.fits")
    assert list(back["flag_boundary"]) == ["000000000", "100000011"]
    assert list(back["in_training"]) == [True, False] and attrs["members"] == ["split0_seed0"]
    with fits.open(tmp_path / "c.fits") as hdul:
        hdr = hdul[1].header
        assert hdr["FLAGDIGS"].split(",")[-2:] == ["tsne", "inputs"]
        assert "digit 1: Teff outside the training range (Table 1)" in list(hdr["COMMENT"])
    assert (
        pd.read_csv(tmp_path / "c.csv", dtype={"flag_boundary": str})["flag_boundary"][1]
        == "100000011"
    )


# --------------------------------------------------------------------------- input space


def _catalogue(rng, n, *, distance_kpc, plx_err_mas, a_g=0.0):
    """G, BP, RP, parallax, its error of n giants/dwarfs (M_G 0..5, BP-RP 0.8..1.6) at
    ``distance_kpc`` (log-normal), with ``a_g`` mag of extinction (E(BP-RP) = a_g / 2)."""
    m_g = rng.uniform(0.0, 5.0, n)
    colour = 0.8 + 0.16 * m_g + rng.normal(0, 0.05, n) + a_g / 2
    d = distance_kpc * np.exp(rng.normal(0, 0.3, n))
    g = m_g + 5 * np.log10(d * 100) + a_g
    plx = 1 / d + rng.normal(0, plx_err_mas, n)
    return {
        "phot_g_mean_mag": g,
        "phot_bp_mean_mag": g + 0.3 + colour / 2,
        "phot_rp_mean_mag": g + 0.3 - colour / 2,
        "parallax": plx,
        "parallax_error": np.full(n, plx_err_mas),
    }


def test_input_space_digit_sees_farther_and_redder_stars_not_like_ones():
    rng = np.random.default_rng(3)
    train = flags.input_space_features(_catalogue(rng, 3000, distance_kpc=1.0, plx_err_mas=0.03))
    like = flags.input_space_features(_catalogue(rng, 2000, distance_kpc=1.0, plx_err_mas=0.03))
    far = flags.input_space_features(_catalogue(rng, 2000, distance_kpc=4.0, plx_err_mas=0.05))
    red = flags.input_space_features(
        _catalogue(rng, 2000, distance_kpc=1.0, plx_err_mas=0.03, a_g=1.5)
    )
    stars = np.vstack([train, like, far, red])
    is_train = np.r_[np.ones(3000, bool), np.zeros(6000, bool)]
    dist = flags.input_space_distance(stars, is_train)
    out = dist > 1
    assert out[:3000].mean() == pytest.approx(0.01, abs=0.002)  # 1 - quantile, by definition
    like_out, far_out, red_out = out[3000:5000], out[5000:7000], out[7000:]
    assert like_out.mean() < 0.03  # ~1 - quantile of stars like the training ones
    assert far_out.mean() > 0.5 and red_out.mean() > 0.5
    assert np.median(dist[5000:7000]) > np.median(dist[3000:5000])
    # a non-positive parallax or a missing magnitude is outside
    bad = like[:2].copy()
    bad[0, 1] = np.nan
    bad[1, 0] = np.inf
    bad_dist = flags.input_space_distance(np.vstack([train, bad]), is_train[:3002])
    assert np.isinf(bad_dist[3000:]).all()
    cat = _catalogue(rng, 2, distance_kpc=1.0, plx_err_mas=0.03)
    cat["parallax"] = np.array([-0.1, 0.0])
    assert np.isnan(flags.input_space_features(cat)[:, 1:]).all()
    with pytest.raises(flags.FlagError, match="need > 10"):
        flags.input_space_distance(np.vstack([train[:5], like]), np.arange(2005) < 5)
