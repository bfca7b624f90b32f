"""Writing a layout file (:class:`ArraysWriter`) and its provenance."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from gaiacnn.constants import LAYOUT_SCHEMA_VERSION
from gaiacnn.io import atomic_output
from gaiacnn.layout.names import DEFAULT_CHUNK_ROWS, KNOWN_DATASETS

# --------------------------------------------------------------------------- writing


class ArraysWriter:
    """Write a layout file row-chunk by row-chunk, atomically.

    Usage::

        with ArraysWriter(path, n_rows, columns, attrs=...) as w:
            for chunk in ...:
                w.append({"source_id": ..., "rvs/flux": ...})

    ``columns`` maps dataset name -> (trailing shape, dtype, attributes).  Rows
    must be appended in order; on leaving the block every dataset must hold
    exactly ``n_rows`` rows, else nothing is written.  The file appears under
    ``path`` only when complete (temporary file, then rename).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        n_rows: int,
        columns: Mapping[str, tuple[tuple[int, ...], Any, Mapping[str, Any]]],
        *,
        attrs: Mapping[str, Any] | None = None,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        compression: str | None = None,
    ):
        if "source_id" not in columns:
            raise ValueError("a layout file needs a source_id column")
        self.path = Path(path)
        self.n_rows = int(n_rows)
        self.columns = dict(columns)
        self.attrs = dict(attrs or {})
        self.chunk_rows = max(1, int(chunk_rows))
        self.compression = None if compression in (None, "none") else compression
        self._done = 0
        self._ctx = None
        self._h5: h5py.File | None = None

    def __enter__(self) -> ArraysWriter:
        self._ctx = atomic_output(self.path)
        tmp = self._ctx.__enter__()
        self._h5 = h5py.File(tmp, "w", libver="earliest", track_order=False)
        self._h5.attrs["schema_version"] = LAYOUT_SCHEMA_VERSION
        for key, value in self.attrs.items():
            self._h5.attrs[key] = value
        rows = max(1, min(self.chunk_rows, self.n_rows))
        for name, (tail, dtype, dattrs) in self.columns.items():
            shape = (self.n_rows, *tail)
            chunks = (rows, *tail) if self.n_rows > 0 else None
            ds = self._h5.create_dataset(
                name,
                shape=shape,
                dtype=dtype,
                chunks=chunks,
                compression=self.compression,
                track_times=False,
            )
            unit = KNOWN_DATASETS.get(name, (0, ""))[1]
            if name.startswith("labels/"):
                unit = ""
            merged = {"unit": unit, **dict(dattrs)}
            for key, value in merged.items():
                ds.attrs[key] = value
        return self

    def append(self, data: Mapping[str, np.ndarray]) -> None:
        """Append the next rows; every declared column must be given, all of one length."""
        assert self._h5 is not None, "use ArraysWriter as a context manager"
        missing = set(self.columns) - set(data)
        if missing:
            raise ValueError(f"append() lacks columns {sorted(missing)}")
        lengths = {len(v) for v in data.values()}
        if len(lengths) != 1:
            raise ValueError(f"columns of unequal length in one append(): {lengths}")
        n = lengths.pop()
        if self._done + n > self.n_rows:
            raise ValueError(f"more rows than declared ({self._done + n} > {self.n_rows})")
        for name in self.columns:
            self._h5[name][self._done : self._done + n] = data[name]
        self._done += n

    def __exit__(self, exc_type, exc, tb) -> bool:
        assert self._h5 is not None and self._ctx is not None
        failure = exc
        try:
            self._h5.close()  # flushes: can fail too (disk full), and must then not rename
        except Exception as err:
            failure = failure or err
        if failure is None and self._done != self.n_rows:
            failure = ValueError(f"{self.path}: wrote {self._done} of {self.n_rows} rows")
        if failure is None:
            self._ctx.__exit__(None, None, None)
            return False
        # removes the temporary file; raises its own error for a full disk
        self._ctx.__exit__(type(failure), failure, failure.__traceback__)
        if failure is not exc:
            raise failure
        return False


def provenance_attr(**items: Any) -> str:
    """Provenance as a canonical JSON string (sorted keys: byte-identical reruns)."""
    return json.dumps(items, sort_keys=True, default=str)
