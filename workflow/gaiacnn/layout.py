"""The HDF5 interchange layout (SPEC stage 3): writer, validator and chunked reader.

One file per sample, rows = stars, every dataset's first axis of length N::

    source_id            int64   (N,)        required
    rvs/flux             float   (N, P)      normalised flux; attribute wavelength_nm (P,)
    rvs/flux_error       float   (N, P)      optional
    rvs/snr              float   (N,)        rvs_spec_sig_to_noise
    xp/bp_coefficients   float   (N, M)      XP continuous BP coefficients (M = 55 in DR3)
    xp/rp_coefficients   float   (N, M)
    xp/sampled_flux      float   (N, K)      optional alternative to the coefficients
    phot/g, phot/bp, phot/rp        float (N,)  mean magnitudes [mag]
    astrometry/parallax, astrometry/parallax_error [mas], astrometry/ruwe   float (N,)
    astrometry/ra, astrometry/dec   float (N,)  optional ICRS position [deg] (both or neither;
                                                not a model input: Galactic figures only)
    labels/<name>, labels/<name>_err            float (N,)  training file; NaN where unknown

The root attributes carry ``schema_version`` and ``provenance`` (a JSON string).
A branch whose datasets are absent is simply not available to the model.
A file that breaks the layout is refused with :class:`LayoutError`, whose
message names the file, the dataset and what is wrong.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from gaiacnn.constants import LAYOUT_SCHEMA_VERSION
from gaiacnn.io import atomic_output

#: Datasets of known meaning: name -> (number of axes, unit).
KNOWN_DATASETS: dict[str, tuple[int, str]] = {
    "source_id": (1, ""),
    "rvs/flux": (2, "normalised flux"),
    "rvs/flux_error": (2, "normalised flux"),
    "rvs/snr": (1, ""),
    "xp/bp_coefficients": (2, "e-/s"),
    "xp/rp_coefficients": (2, "e-/s"),
    "xp/sampled_flux": (2, "W m-2 nm-1"),
    "phot/g": (1, "mag"),
    "phot/bp": (1, "mag"),
    "phot/rp": (1, "mag"),
    "astrometry/parallax": (1, "mas"),
    "astrometry/parallax_error": (1, "mas"),
    "astrometry/ruwe": (1, ""),
    "astrometry/ra": (1, "deg"),
    "astrometry/dec": (1, "deg"),
}
PHOT_DATASETS = ("phot/g", "phot/bp", "phot/rp")
XP_COEFFICIENT_DATASETS = ("xp/bp_coefficients", "xp/rp_coefficients")
#: Optional sky position (ICRS, deg), both or neither; never a model input.
POSITION_DATASETS = ("astrometry/ra", "astrometry/dec")
#: Datasets that feed the model: they must be finite after the arrays stage.
MODEL_INPUT_DATASETS = frozenset(
    {"rvs/flux", *PHOT_DATASETS, "astrometry/parallax", *XP_COEFFICIENT_DATASETS}
)
DEFAULT_CHUNK_ROWS = 256


class LayoutError(ValueError):
    """A file that does not follow the interchange layout."""

    def __init__(self, path: str | os.PathLike, dataset: str | None, problem: str):
        where = f"{path}" + (f": {dataset}" if dataset else "")
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.dataset = dataset
        self.problem = problem


@dataclass(frozen=True)
class LayoutInfo:
    """What a validated file holds."""

    path: str
    n_rows: int
    n_pixels: int | None  # RVS pixels, None without rvs/flux
    xp_length: int | None  # coefficients per band, None without XP coefficients
    has_photometry: bool
    has_parallax: bool
    labels: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def branches(self) -> tuple[str, ...]:
        """Model branches the file can feed: subset of ("rvs", "phot", "xp")."""
        out = []
        if self.n_pixels is not None:
            out.append("rvs")
        if self.has_photometry:
            out.append("phot")
        if self.xp_length is not None:
            out.append("xp")
        return tuple(out)


def label_dataset(name: str) -> str:
    """HDF5 path of label ``name``."""
    return f"labels/{name}"


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


# --------------------------------------------------------------------------- reading


def _open(path: str | os.PathLike) -> h5py.File:
    if not Path(path).exists():
        raise LayoutError(path, None, "file does not exist")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise LayoutError(
            path, None, f"not a readable HDF5 file (truncated or not HDF5): {exc}"
        ) from None


def _check_float(path, name: str, ds: h5py.Dataset, n: int, ndim: int) -> None:
    if not isinstance(ds, h5py.Dataset):
        raise LayoutError(path, name, "is a group, expected a dataset")
    if ds.dtype.kind != "f":
        raise LayoutError(path, name, f"dtype {ds.dtype} is not floating point")
    if ds.ndim != ndim:
        raise LayoutError(path, name, f"has shape {ds.shape}, expected {ndim} axes")
    if ds.shape[0] != n:
        raise LayoutError(path, name, f"has {ds.shape[0]} rows, source_id has {n}")


def validate(
    path: str | os.PathLike,
    *,
    require_labels: Sequence[str] | bool = False,
    forbid_labels: bool = False,
    check_values: bool = True,
    require_finite_inputs: bool = False,
    chunk_rows: int = 4096,
) -> LayoutInfo:
    """Check that ``path`` follows the layout; return what it holds or raise :class:`LayoutError`.

    Structure is always checked (types, shapes, attributes).  With ``check_values``
    the data are streamed in row chunks: duplicate source ids and all-NaN spectra
    are refused; with ``require_finite_inputs`` any non-finite model input, and
    any parallax <= 0, is refused too (the state after the arrays stage).
    ``require_labels`` is True (at least one label) or the list of names needed.
    """
    with _open(path) as h5:
        attrs = dict(h5.attrs)
        version = attrs.get("schema_version")
        if version is None:
            raise LayoutError(path, None, "root attribute schema_version is missing")
        if isinstance(version, bytes):
            version = version.decode()
        if str(version).split(".")[0] != LAYOUT_SCHEMA_VERSION.split(".")[0]:
            raise LayoutError(
                path,
                None,
                f"schema_version {version!r} not supported "
                f"(this code reads {LAYOUT_SCHEMA_VERSION})",
            )
        if "source_id" not in h5:
            raise LayoutError(path, "source_id", "required dataset is missing")
        sid = h5["source_id"]
        if not isinstance(sid, h5py.Dataset) or sid.ndim != 1:
            raise LayoutError(path, "source_id", "must be a 1-D dataset")
        if sid.dtype.kind not in "iu":
            raise LayoutError(path, "source_id", f"dtype {sid.dtype} is not an integer")
        n = sid.shape[0]
        if n == 0:
            raise LayoutError(path, "source_id", "file holds no rows")

        for name, (ndim, _unit) in KNOWN_DATASETS.items():
            if name != "source_id" and name in h5:
                _check_float(path, name, h5[name], n, ndim)

        n_pixels = None
        if "rvs/flux" in h5:
            flux = h5["rvs/flux"]
            wl = flux.attrs.get("wavelength_nm")
            if wl is None:
                raise LayoutError(path, "rvs/flux", "attribute wavelength_nm is missing")
            wl = np.asarray(wl, dtype=float)
            if wl.shape != (flux.shape[1],):
                raise LayoutError(
                    path,
                    "rvs/flux",
                    f"wavelength_nm has {wl.size} values for {flux.shape[1]} pixels",
                )
            if not (np.all(np.isfinite(wl)) and np.all(np.diff(wl) > 0)):
                raise LayoutError(path, "rvs/flux", "wavelength_nm is not strictly increasing")
            n_pixels = int(flux.shape[1])
            if "rvs/flux_error" in h5 and h5["rvs/flux_error"].shape != flux.shape:
                raise LayoutError(
                    path,
                    "rvs/flux_error",
                    f"shape {h5['rvs/flux_error'].shape} differs from rvs/flux {flux.shape}",
                )
        elif "rvs/flux_error" in h5:
            raise LayoutError(path, "rvs/flux", "missing while rvs/flux_error is present")

        present_xp = [d for d in XP_COEFFICIENT_DATASETS if d in h5]
        xp_length = None
        if len(present_xp) == 1:
            other = next(d for d in XP_COEFFICIENT_DATASETS if d not in h5)
            raise LayoutError(path, other, f"missing while {present_xp[0]} is present")
        if present_xp:
            m_bp, m_rp = (h5[d].shape[1] for d in XP_COEFFICIENT_DATASETS)
            xp_length = int(m_bp)
            if m_rp != m_bp:
                raise LayoutError(path, "xp/rp_coefficients", f"{m_rp} coefficients, BP has {m_bp}")

        present_phot = [d for d in PHOT_DATASETS if d in h5]
        if 0 < len(present_phot) < len(PHOT_DATASETS):
            missing = [d for d in PHOT_DATASETS if d not in h5]
            raise LayoutError(path, missing[0], "missing while other phot/ bands are present")

        present_pos = [d for d in POSITION_DATASETS if d in h5]
        if len(present_pos) == 1:
            other = next(d for d in POSITION_DATASETS if d not in h5)
            raise LayoutError(path, other, f"missing while {present_pos[0]} is present")

        labels: list[str] = []
        if "labels" in h5:
            group = h5["labels"]
            if not isinstance(group, h5py.Group):
                raise LayoutError(path, "labels", "must be a group")
            names = sorted(group.keys())
            for key in names:
                _check_float(path, f"labels/{key}", group[key], n, 1)
            for key in names:
                if key.endswith("_err"):
                    if key[:-4] not in group:
                        raise LayoutError(
                            path, f"labels/{key}", f"has no matching labels/{key[:-4]}"
                        )
                else:
                    labels.append(key)
        if forbid_labels and labels:
            raise LayoutError(path, "labels", "this sample must not carry labels")
        if require_labels is True and not labels:
            raise LayoutError(path, "labels", "training file holds no labels/<name> dataset")
        if isinstance(require_labels, Sequence) and not isinstance(require_labels, str):
            for name in require_labels:
                if name not in labels:
                    raise LayoutError(
                        path, f"labels/{name}", f"label not in file (it has: {labels or 'none'})"
                    )

        info = LayoutInfo(
            path=str(path),
            n_rows=int(n),
            n_pixels=n_pixels,
            xp_length=xp_length,
            has_photometry=bool(present_phot),
            has_parallax="astrometry/parallax" in h5,
            labels=tuple(labels),
            attrs={k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()},
        )
        if check_values:
            _check_values(path, h5, info, require_finite_inputs, chunk_rows)
    return info


def _check_values(path, h5: h5py.File, info: LayoutInfo, finite: bool, chunk_rows: int) -> None:
    """Stream the rows: unique source ids, no all-NaN spectrum, finite inputs if asked."""
    sid = h5["source_id"][:]
    check_unique_ids(path, sid)
    inputs = model_input_datasets(info)
    for start in range(0, info.n_rows, chunk_rows):
        stop = min(start + chunk_rows, info.n_rows)
        block = {name: h5[name][start:stop] for name in inputs}
        check_block(path, block, sid[start:stop], start, finite=finite)


def check_unique_ids(path, sid: np.ndarray) -> None:
    """Refuse duplicated source ids, naming one."""
    uniq, counts = np.unique(sid, return_counts=True)
    if np.any(counts > 1):
        dup = uniq[counts > 1]
        raise LayoutError(
            path, "source_id", f"{dup.size} duplicated source ids (e.g. {int(dup[0])})"
        )


def model_input_datasets(info: LayoutInfo) -> list[str]:
    """The datasets of ``info``'s file that can feed the model (spectra, photometry, XP)."""
    inputs = []
    if info.n_pixels is not None:
        inputs.append("rvs/flux")
    if info.has_photometry:
        inputs.extend(PHOT_DATASETS)
    if info.has_parallax:
        inputs.append("astrometry/parallax")
    if info.xp_length is not None:
        inputs.extend(XP_COEFFICIENT_DATASETS)
    return inputs


def check_block(
    path, block: Mapping[str, np.ndarray], sid: np.ndarray, start: int, *, finite: bool
) -> None:
    """Refuse a row chunk: an all-NaN spectrum; with ``finite``, any non-finite model input
    or a parallax <= 0.  ``sid`` are the chunk's source ids, ``start`` its first row."""
    for name, values in block.items():
        if name not in MODEL_INPUT_DATASETS:
            continue  # e.g. rvs/flux_error keeps NaN where the flux was filled
        bad = ~np.isfinite(values)
        if name == "rvs/flux":
            all_nan = bad.all(axis=1)
            if all_nan.any():
                i = int(np.argmax(all_nan))
                raise LayoutError(
                    path, name, f"row {start + i} (source_id {int(sid[i])}) has no finite pixel"
                )
        if finite and bad.any():
            rows = np.nonzero(bad.reshape(len(values), -1).any(axis=1))[0]
            i = int(rows[0])
            raise LayoutError(
                path,
                name,
                f"non-finite values in {rows.size} rows of rows {start}-{start + len(values) - 1}"
                f" (first: row {start + i}, source_id {int(sid[i])})",
            )
        if finite and name == "astrometry/parallax" and np.any(values <= 0):
            i = int(np.argmax(values <= 0))
            raise LayoutError(
                path,
                name,
                f"parallax <= 0 at row {start + i} (source_id {int(sid[i])}); "
                "the paper's cut (Sect. 2.2) removes such stars",
            )


def iter_rows(
    path: str | os.PathLike,
    names: Sequence[str],
    chunk_rows: int = 4096,
    rows: tuple[int, int] | None = None,
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yield ``(start_row, {name: block})`` over the file in row chunks (memory ~ chunk_rows);
    over rows ``[start, stop)`` only if ``rows`` is given (a shard)."""
    with _open(path) as h5:
        n = h5["source_id"].shape[0]
        first, last = (0, n) if rows is None else (int(rows[0]), int(rows[1]))
        if not 0 <= first <= last <= n:
            raise LayoutError(path, "source_id", f"rows {first}..{last} outside the {n} rows")
        for name in names:
            if name not in h5:
                raise LayoutError(path, name, "dataset is missing")
        for start in range(first, last, chunk_rows):
            stop = min(start + chunk_rows, last)
            yield start, {name: h5[name][start:stop] for name in names}


def read_column(path: str | os.PathLike, name: str) -> np.ndarray:
    """Read one 1-D dataset whole (source ids, labels, magnitudes: N values)."""
    with _open(path) as h5:
        if name not in h5:
            raise LayoutError(path, name, "dataset is missing")
        return h5[name][:]


def wavelength_nm(path: str | os.PathLike) -> np.ndarray:
    """The RVS wavelength grid stored with ``rvs/flux``."""
    with _open(path) as h5:
        if "rvs/flux" not in h5:
            raise LayoutError(path, "rvs/flux", "dataset is missing")
        return np.asarray(h5["rvs/flux"].attrs["wavelength_nm"], dtype=float)
