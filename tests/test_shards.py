"""Shards of a sample: their row ranges, the rows left out of the t-SNE reference maps, and
the row count that the workflow reads once the arrays exist."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from gaiacnn import shards, tsne


def test_shards_tile_the_rows_in_order():
    assert shards.n_shards(10, 4) == 3
    ranges = [shards.shard_range(10, 4, k) for k in range(3)]
    assert ranges == [(0, 4), (4, 8), (8, 10)]
    assert shards.n_shards(8, 4) == 2 and shards.shard_range(8, 4, 1) == (4, 8)
    assert shards.n_shards(3, 200_000) == 1 and shards.shard_range(3, 200_000, 0) == (0, 3)
    # an empty sample still has one (empty) shard: the workflow needs no special case
    assert shards.n_shards(0, 4) == 1 and shards.shard_range(0, 4, 0) == (0, 0)


def test_a_shard_outside_the_sample_is_refused():
    with pytest.raises(shards.ShardError, match=r"shard 3 does not exist: 10 rows .* 0\.\.2"):
        shards.shard_range(10, 4, 3)
    with pytest.raises(shards.ShardError, match="at least one row"):
        shards.n_shards(10, 0)


@pytest.mark.parametrize("n_excluded", [0, 1, 37, 400, 999, 1000])
def test_complement_slices_are_the_rows_left_in_order(n_excluded):
    n = 1000
    excluded = tsne.reference_rows(n, n_excluded, seed=4)
    if n_excluded == 1000:
        excluded = np.arange(n)
    rest = np.setdiff1d(np.arange(n), excluded)
    k = shards.n_shards(rest.size, 64)
    parts = [
        shards.complement_slice(n, excluded, *shards.shard_range(rest.size, 64, i))
        for i in range(k)
    ]
    np.testing.assert_array_equal(np.concatenate(parts), rest)


def test_complement_slice_refuses_rows_past_the_end_and_unsorted_exclusions():
    with pytest.raises(shards.ShardError, match="outside the 8 rows left"):
        shards.complement_slice(10, np.array([1, 5]), 4, 9)
    with pytest.raises(shards.ShardError, match="sorted, distinct"):
        shards.complement_slice(10, np.array([5, 1]), 0, 2)


def test_placement_shards_count_the_stars_left_out_of_the_reference_maps():
    cfg = {"reference_observed": 100, "place_shard_rows": 30}
    assert tsne.placement_shards(1000, cfg) == 30  # 900 left, 30 per shard
    assert tsne.placement_shards(50, cfg) == 1  # every star in the reference maps


def test_row_count_reads_the_shape_only(tmp_path):
    arrays = tmp_path / "a.h5"
    with h5py.File(arrays, "w") as h5:
        h5["source_id"] = np.arange(12)
    out = tmp_path / "rows.json"
    assert shards.write_row_count(arrays, out) == 12
    assert json.loads(out.read_text())["n_rows"] == 12 and shards.read_row_count(out) == 12
    with h5py.File(tmp_path / "b.h5", "w") as h5:
        h5["flux"] = np.ones(3)
    with pytest.raises(shards.ShardError, match=r"b\.h5: source_id: dataset is missing"):
        shards.write_row_count(tmp_path / "b.h5", tmp_path / "rows_b.json")
    assert not (tmp_path / "rows_b.json").exists()
