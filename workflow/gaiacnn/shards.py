"""Shards: a sample cut into contiguous row ranges, one workflow job each.

Prediction (one job per ensemble member and shard) and the scalable t-SNE placement (one
job per shard, into every map) run on shards of a configured number of rows, so that
10^6-10^8 stars become many small jobs whose memory does not grow with the sample; the
gathering jobs put the shards back together in row order.  The number of shards is known
only once the arrays exist: the workflow reads it from the row count that the checkpoint
``count_rows`` writes.
"""

from __future__ import annotations

import json
import os

import numpy as np

from gaiacnn.io import UnreadableResult, open_h5, read_json, write_text_atomic


class ShardError(ValueError):
    """A shard outside the sample, or shards that do not tile it."""


def n_shards(n_rows: int, shard_rows: int) -> int:
    """Number of shards of ``shard_rows`` rows (the last may be shorter) covering ``n_rows``
    rows; at least one, so that an empty sample still has its (empty) shard."""
    if shard_rows < 1:
        raise ShardError(f"shard size must be at least one row, got {shard_rows}")
    return max(1, -(-int(n_rows) // int(shard_rows)))


def shard_range(n_rows: int, shard_rows: int, shard: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of shard ``shard`` (0-based) of ``n_rows`` rows."""
    n = n_shards(n_rows, shard_rows)
    if not 0 <= shard < n:
        raise ShardError(
            f"shard {shard} does not exist: {n_rows} rows in shards of {shard_rows} "
            f"are shards 0..{n - 1}"
        )
    start = shard * shard_rows
    return start, min(start + shard_rows, n_rows)


def complement_slice(n_rows: int, excluded: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows ``start..stop-1`` (0-based positions) of the rows of ``range(n_rows)`` that are
    not in ``excluded`` (sorted, distinct), without building the whole complement: memory
    ~ ``stop - start`` + ``excluded.size``, not ``n_rows``."""
    excluded = np.asarray(excluded, dtype=np.int64)
    if excluded.size and (np.any(np.diff(excluded) <= 0) or excluded[-1] >= n_rows):
        raise ShardError("excluded rows must be sorted, distinct and inside the sample")
    if not 0 <= start <= stop <= n_rows - excluded.size:
        raise ShardError(
            f"rows {start}..{stop} outside the {n_rows - excluded.size} rows left "
            f"after excluding {excluded.size}"
        )
    # the j-th row left is j + (number of excluded rows i with excluded[i] - i <= j)
    j = np.arange(start, stop, dtype=np.int64)
    return j + np.searchsorted(excluded - np.arange(excluded.size), j, side="right")


def write_row_count(arrays_path: str | os.PathLike, out_path: str | os.PathLike) -> int:
    """Write ``{"n_rows": N, "arrays": path}`` (JSON, atomically) for an arrays file;
    return N.  Only the shape of ``source_id`` is read."""
    with open_h5(arrays_path) as h5:
        if "source_id" not in h5:
            raise ShardError(f"{arrays_path}: source_id: dataset is missing")
        n = int(h5["source_id"].shape[0])
    write_text_atomic(out_path, json.dumps({"n_rows": n, "arrays": str(arrays_path)}) + "\n")
    return n


def read_row_count(path: str | os.PathLike) -> int:
    """The row count written by :func:`write_row_count`."""
    what = "a row count (rule count_rows)"
    n = read_json(path, what, ["n_rows"])["n_rows"]
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise UnreadableResult(f"{path}: not {what} (n_rows {n!r})")
    return n
