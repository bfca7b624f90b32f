"""gaiacnn.tsne without openTSNE runs: the placement of new spectra into a fixed map and the
classification rules, and the gathering of the placed stars into one map, on hand-made maps
whose answers are known."""

import h5py
import numpy as np
import pytest

from gaiacnn import shards, tsne


def _threshold(value: float, neighbours: int = 1) -> tsne.Threshold:
    return tsne.Threshold("quantile", value, 0.99, 3.0, value / 2, neighbours)


# --------------------------------------------------------------------------- placement


def test_a_placed_point_sits_at_the_median_of_its_first_neighbours():
    rng = np.random.default_rng(1)
    ref_xy = rng.normal(size=(50, 2))
    neighbours = np.array([[3, 7, 11, 40, 2], [0, 1, 2, 3, 4], [49, 48, 47, 46, 45]])
    distances = np.sort(rng.uniform(size=neighbours.shape), axis=1)
    xy = tsne.place_by_neighbours(ref_xy, neighbours, distances, k_init=3)
    assert xy.shape == (3, 2)
    np.testing.assert_allclose(xy, np.median(ref_xy[neighbours[:, :3]], axis=1))
    # the median, not the mean: one far neighbour does not pull the point
    ref_xy[11] = (1e6, 1e6)
    moved = tsne.place_by_neighbours(ref_xy, neighbours, distances, k_init=3)
    assert np.all(np.abs(moved[0]) < 10)
    assert tsne.place_by_neighbours(ref_xy, neighbours[:0], distances[:0]).shape == (0, 2)


def test_the_placement_shards_tile_the_stars_left_out_of_the_reference_maps():
    cfg = {"reference_observed": 37, "place_shard_rows": 10, "seed": 3}
    n_obs = 120
    ref = tsne.reference_rows(n_obs, cfg["reference_observed"], cfg["seed"])
    assert ref.size == 37 and np.all(np.diff(ref) > 0)
    n = tsne.placement_shards(n_obs, cfg)
    assert n == 9  # 83 stars left, 10 per shard
    placed = [
        shards.complement_slice(n_obs, ref, *shards.shard_range(n_obs - ref.size, 10, k))
        for k in range(n)
    ]
    rows = np.concatenate(placed)
    assert np.all(np.diff(rows) > 0)  # in order, no star twice
    assert not np.isin(rows, ref).any()  # none of the reference stars
    np.testing.assert_array_equal(np.sort(np.r_[rows, ref]), np.arange(n_obs))  # all the rest
    # a reference subsample of the whole sample leaves nothing to place (one empty shard)
    assert tsne.placement_shards(30, cfg) == 1


# --------------------------------------------------------------------------- classification


def test_training_like_iff_the_distance_is_within_the_threshold():
    xy = np.array([[0.0, 0], [10, 0], [1, 0], [1.5, 0], [10, 0.5], [5, 0]])
    is_tr = np.array([True, True, False, False, False, False])
    dist, like = tsne.classify(xy, is_tr, _threshold(1.0))
    np.testing.assert_allclose(dist, [0, 0, 1.0, 1.5, 0.5, 5.0])
    np.testing.assert_array_equal(like, [True, True, True, False, True, False])  # <= 1.0
    # m = 2: the distance to the second nearest training star
    dist2, like2 = tsne.classify(xy, is_tr, _threshold(9.0, neighbours=2))
    np.testing.assert_allclose(dist2[2:], [9.0, 8.5, np.hypot(10, 0.5), 5.0])
    np.testing.assert_array_equal(like2, [True, True, True, True, False, True])


def test_the_threshold_is_a_quantile_or_a_multiple_of_the_training_distances():
    train = np.c_[np.arange(0.0, 10.0) ** 1.5, np.zeros(10)]  # gaps that grow
    own = np.abs(train[:, None, 0] - train[None, :, 0])
    own[np.arange(10), np.arange(10)] = np.inf
    nn = np.sort(own, axis=1)[:, 0]
    thr = tsne.threshold(train, rule="quantile", quantile=0.5)
    assert thr.value == pytest.approx(np.quantile(nn, 0.5))
    assert thr.median_training_nn == pytest.approx(np.median(nn))
    mult = tsne.threshold(train, rule="median_multiple", factor=2.0, neighbours=2)
    assert mult.value == pytest.approx(2.0 * np.median(np.sort(own, axis=1)[:, 1]))


def test_training_like_overall_only_in_every_perplexity():
    p30 = np.array([True, True, False, True])
    p50 = np.array([True, False, False, True])
    p75 = np.array([True, True, True, False])
    np.testing.assert_array_equal(tsne.combine_maps([p30, p50, p75]), [True, False, False, False])
    np.testing.assert_array_equal(tsne.combine_maps([p30]), p30)
    with pytest.raises(tsne.TsneError, match="no t-SNE map"):
        tsne.combine_maps([])


def test_reference_map_sets_vote_by_the_mean_ratio_to_their_thresholds():
    # two sets of reference maps, each in its own t-SNE units (thresholds 2 and 10)
    d1 = np.array([1.0, 2.4, 1.0, 3.0])  # ratios 0.5, 1.2, 0.5, 1.5
    d2 = np.array([14.0, 9.0, 10.0, 4.0])  # ratios 1.4, 0.9, 1.0, 0.4
    like = tsne.ensemble_training_like([d1, d2], [2.0, 10.0])
    # means 0.95, 1.05, 0.75, 0.95: neither set alone decides
    np.testing.assert_array_equal(like, [True, False, True, True])
    np.testing.assert_array_equal(tsne.ensemble_training_like([d1], [2.0]), d1 <= 2.0)
    with pytest.raises(tsne.TsneError, match="thresholds"):
        tsne.ensemble_training_like([d1, d2], [2.0])


def _gather_inputs(tmp_path, n_obs=23, n_ref=7, n_tr=4, shard_rows=5, seed=3):
    """An observed file, a reference map (n_tr training stars, then the n_ref observed stars
    of reference_rows(seed)) and the placement shards of the others, positions made from
    each star's row so the gathered map can be checked star by star."""
    from gaiacnn.tsne.maps import _write_map

    cfg = {"reference_observed": n_ref, "seed": seed, "place_shard_rows": shard_rows}
    # Gaia-sized source ids (above 2**53: a cast through float64 would change them)
    sid = 5_000_000_000_000_000_001 + np.arange(n_obs, dtype=np.int64) * 7
    obs = tmp_path / "observed.h5"
    with h5py.File(obs, "w") as h5:
        h5["source_id"] = sid
    ref_rows = tsne.reference_rows(n_obs, n_ref, seed)
    rows = np.r_[np.arange(n_tr) - 100, ref_rows]  # training stars at negative "rows"
    _write_map(
        tmp_path / "reference.h5",
        {
            "source_id": np.r_[np.arange(n_tr) + 1, sid[ref_rows]],
            "in_training": np.arange(rows.size) < n_tr,
            "xy": np.c_[rows, -rows],
            "nn_training_distance": np.abs(rows),
            "training_like": rows % 2 == 0,
        },
        {"perplexity": 30.0, "threshold": 1.0},
    )
    others = np.setdiff1d(np.arange(n_obs), ref_rows)
    shards = []
    for k, start in enumerate(range(0, others.size, shard_rows)):
        r = others[start : start + shard_rows]
        shards.append(tmp_path / f"shard{k}.h5")
        with h5py.File(shards[-1], "w") as h5:
            h5["source_id"] = sid[r]
            h5["p30/xy"] = np.c_[r, -r].astype(np.float32)
            h5["p30/nn_training_distance"] = r.astype(np.float32)
            h5["p30/training_like"] = r % 2 == 0
    return obs, shards, cfg, sid


@pytest.mark.parametrize("chunk_rows", [3, 64])
def test_a_gathered_map_holds_every_observed_star_in_the_observed_files_order(tmp_path, chunk_rows):
    obs, shards, cfg, sid = _gather_inputs(tmp_path)
    out = tmp_path / "p30.h5"
    tsne.run_tsne_gather(
        tmp_path / "reference.h5", shards, obs, out, perplexity=30, tsne_cfg=cfg,
        chunk_rows=chunk_rows,
    )  # fmt: skip
    with h5py.File(out) as h5:
        assert h5["in_training"][:].tolist() == [True] * 4 + [False] * sid.size
        assert np.array_equal(h5["source_id"][4:], sid)
        rows = np.arange(sid.size)
        assert np.array_equal(h5["xy"][4:], np.c_[rows, -rows])
        assert np.array_equal(h5["nn_training_distance"][4:], rows)
        assert np.array_equal(h5["training_like"][4:], rows % 2 == 0)
        assert np.array_equal(h5["xy"][:4, 0], np.arange(4) - 100)
        assert h5.attrs["perplexity"] == 30.0 and h5.attrs["threshold"] == 1.0
    # the classification reads the gathered map in step with the observed file
    tsne.run_tsne_classify([out], obs, tmp_path / "like.h5", chunk_rows=chunk_rows)
    with h5py.File(tmp_path / "like.h5") as h5:
        assert np.array_equal(h5["source_id"][:], sid)
        assert np.array_equal(h5["training_like"][:], np.arange(sid.size) % 2 == 0)


def test_gathering_refuses_shards_that_do_not_tile_the_observed_file(tmp_path):
    obs, shards, cfg, _ = _gather_inputs(tmp_path)
    ref, out = tmp_path / "reference.h5", tmp_path / "p30.h5"
    # a shard missing: too few stars
    with pytest.raises(tsne.TsneError, match="stars fewer than the observed file needs"):
        tsne.run_tsne_gather(ref, shards[:-1], obs, out, perplexity=30, tsne_cfg=cfg)
    # a shard twice: too many
    with pytest.raises(tsne.TsneError, match="stars more than the observed file has"):
        tsne.run_tsne_gather(ref, [*shards, shards[0]], obs, out, perplexity=30, tsne_cfg=cfg)
    # shards out of order: a star at another star's row, named with the row
    with pytest.raises(tsne.TsneError, match=r"stands at row \d+ of .*observed\.h5, which holds"):
        tsne.run_tsne_gather(ref, shards[::-1], obs, out, perplexity=30, tsne_cfg=cfg)
    # another reference subsample (another seed's map): refused before anything is read
    with pytest.raises(tsne.TsneError, match="takes 9 of the 23"):
        cfg9 = {**cfg, "reference_observed": 9}
        tsne.run_tsne_gather(ref, shards, obs, out, perplexity=30, tsne_cfg=cfg9)
    # a perplexity the shards did not place
    with pytest.raises(tsne.TsneError, match=r"no p50/xy"):
        tsne.run_tsne_gather(ref, shards, obs, out, perplexity=50, tsne_cfg=cfg)
    assert not out.exists()
