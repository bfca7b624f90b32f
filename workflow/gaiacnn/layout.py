"""The HDF5 interchange layout (SPEC stage 3): writer, validator and chunked reader.

One file per sample, rows = stars, every dataset's first axis of length N::

    source_id            int64   (N,)        required
    rvs/flux             float   (N, P)      normalised flux; attribute wavelength_nm (P,)
    rvs/flux_error       float   (N, P)      optional
    rvs/snr              float   (N,)        rvs_spec_sig_to_noise
    rvs/radial_velocity_error  float (N,)   optional Gaia DR3 radial_velocity_error [km/s]:
                                             finite >= 0, or NaN where unknown (not a model
                                             input: Fig. C.1 only)
    xp/bp_coefficients   float   (N, M)      XP continuous BP coefficients (M = 55 in DR3)
    xp/rp_coefficients   float   (N, M)
    xp/bp_coefficient_errors, xp/rp_coefficient_errors  float (N, M)  optional 1 sigma errors
                                             of the coefficients [e-/s] (Gaia DR3
                                             *_coefficient_errors; both or neither):
                                             finite >= 0, or NaN where unknown (not a
                                             model input: the XP noise augmentation)
    xp/sampled_flux      float   (N, K)      optional alternative to the coefficients (e.g.
                                             GaiaXPy's calibrate); attributes wavelength_nm
                                             (K,) and flux_kind: "absolute" (W m-2 nm-1) or
                                             "normalised"
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

import dataclasses
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
    "rvs/radial_velocity_error": (1, "km/s"),
    "xp/bp_coefficients": (2, "e-/s"),
    "xp/rp_coefficients": (2, "e-/s"),
    "xp/bp_coefficient_errors": (2, "e-/s"),
    "xp/rp_coefficient_errors": (2, "e-/s"),
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
#: Optional 1 sigma errors of the XP coefficients [e-/s] (Gaia DR3 ``bp_coefficient_errors``,
#: ``rp_coefficient_errors``), in the order of :data:`XP_COEFFICIENT_DATASETS`: finite and
#: >= 0, or NaN where unknown; never a model input (the XP noise augmentation reads them).
XP_ERROR_DATASETS = ("xp/bp_coefficient_errors", "xp/rp_coefficient_errors")
XP_SAMPLED_DATASET = "xp/sampled_flux"
#: Values of ``xp/sampled_flux``'s attribute ``flux_kind``: absolute flux as GaiaXPy's
#: ``calibrate`` writes it (W m-2 nm-1), or flux already normalised by the survey.
XP_FLUX_KINDS = ("absolute", "normalised")
#: The two forms of the XP branch's input (``model.xp_input``).
XP_INPUTS = ("coefficients", "sampled")
#: Optional sky position (ICRS, deg), both or neither; never a model input.
POSITION_DATASETS = ("astrometry/ra", "astrometry/dec")
#: Optional radial-velocity uncertainty [km/s] (Gaia DR3 ``radial_velocity_error``): finite
#: and >= 0, or NaN where unknown; never a model input (Fig. C.1, Appendix C, only).
RV_ERROR_DATASET = "rvs/radial_velocity_error"
#: Datasets that feed the model: they must be finite after the arrays stage.
MODEL_INPUT_DATASETS = frozenset(
    {
        "rvs/flux",
        *PHOT_DATASETS,
        "astrometry/parallax",
        *XP_COEFFICIENT_DATASETS,
        XP_SAMPLED_DATASET,
    }
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
    xp_sampled_length: int | None = None  # K samples of xp/sampled_flux, None without it
    xp_flux_kind: str | None = None  # xp/sampled_flux's flux_kind attribute
    #: (cut, rule, rows removed) of the per-star cuts, when the values were checked
    cuts: tuple[tuple[str, str, int], ...] = ()

    @property
    def branches(self) -> tuple[str, ...]:
        """Model branches the file can feed: subset of ("rvs", "phot", "xp")."""
        out = []
        if self.n_pixels is not None:
            out.append("rvs")
        if self.has_photometry:
            out.append("phot")
        if self.xp_inputs:
            out.append("xp")
        return tuple(out)

    @property
    def xp_inputs(self) -> tuple[str, ...]:
        """Forms of XP data the file holds: subset of :data:`XP_INPUTS`."""
        return tuple(
            kind
            for kind, length in zip(
                XP_INPUTS, (self.xp_length, self.xp_sampled_length), strict=True
            )
            if length is not None
        )


def resolve_xp_input(info: LayoutInfo, choice: str) -> str | None:
    """The XP input the model reads from ``info``'s file: ``choice`` "coefficients" or
    "sampled" (refused if the file lacks it), or "auto": the coefficients where the file has
    them (the paper, Sect. 3.1), else the sampled flux; None if the file has no XP data."""
    if choice == "auto":
        return info.xp_inputs[0] if info.xp_inputs else None
    if choice not in XP_INPUTS:
        raise ValueError(f"xp_input {choice!r}: auto, {' or '.join(XP_INPUTS)}")
    if choice not in info.xp_inputs:
        dataset = XP_COEFFICIENT_DATASETS[0] if choice == "coefficients" else XP_SAMPLED_DATASET
        raise LayoutError(
            info.path,
            dataset,
            f"model.xp_input is {choice!r} but the file has no such data "
            f"(it has: {', '.join(info.xp_inputs) or 'no XP data'})",
        )
    return choice


def resolve_branches(info: LayoutInfo, branches: Sequence[str]) -> tuple[str, ...]:
    """The model's branches: ``branches`` as given, or, when empty, every branch the file
    can feed (``model.branches: []``)."""
    return tuple(branches) if branches else info.branches


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
    sample: str = "observed",
    training_cuts: Mapping | None = None,
    cuts: str = "apply",
) -> LayoutInfo:
    """Check that ``path`` follows the layout; return what it holds or raise :class:`LayoutError`.

    Structure is always checked (types, shapes, attributes).  With ``check_values``
    the data are streamed in row chunks: duplicate source ids, label values that are
    +-inf, label errors <= 0 and radial-velocity uncertainties < 0 or +-inf are refused,
    and the per-star cuts of :func:`gaiacnn.selection.file_row_cuts` (for ``sample``; the
    training cuts ``training_cuts`` on a training file) are counted into ``info.cuts``,
    the same counts the import makes; with ``cuts="refuse"`` a row that fails one is
    refused instead.  With ``require_finite_inputs`` any non-finite model input, and any
    parallax <= 0, is refused (the state after the arrays stage).  ``require_labels`` is
    True (at least one label) or the list of names needed.
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

        present_err = [d for d in XP_ERROR_DATASETS if d in h5]
        if len(present_err) == 1:
            other = next(d for d in XP_ERROR_DATASETS if d not in h5)
            raise LayoutError(path, other, f"missing while {present_err[0]} is present")
        for err_name, coef_name in zip(XP_ERROR_DATASETS, XP_COEFFICIENT_DATASETS, strict=True):
            if err_name not in h5:
                continue
            if coef_name not in h5:
                raise LayoutError(path, coef_name, f"missing while {err_name} is present")
            if h5[err_name].shape != h5[coef_name].shape:
                raise LayoutError(
                    path,
                    err_name,
                    f"shape {h5[err_name].shape} differs from {coef_name} {h5[coef_name].shape}",
                )

        xp_sampled_length, xp_flux_kind = _check_sampled(path, h5)

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
            xp_sampled_length=xp_sampled_length,
            xp_flux_kind=xp_flux_kind,
        )
        if check_values:
            counts = _check_values(
                path, h5, info, require_finite_inputs, chunk_rows, sample, training_cuts, cuts
            )
            info = dataclasses.replace(info, cuts=tuple(counts))
    return info


def _check_sampled(path, h5: h5py.File) -> tuple[int | None, str | None]:
    """(K, flux_kind) of ``xp/sampled_flux``, or (None, None) without it; its attributes
    ``wavelength_nm`` (K strictly increasing values) and ``flux_kind`` are required."""
    if XP_SAMPLED_DATASET not in h5:
        return None, None
    ds = h5[XP_SAMPLED_DATASET]
    wl = ds.attrs.get("wavelength_nm")
    if wl is None:
        raise LayoutError(path, XP_SAMPLED_DATASET, "attribute wavelength_nm is missing")
    wl = np.asarray(wl, dtype=float)
    if wl.shape != (ds.shape[1],):
        raise LayoutError(
            path,
            XP_SAMPLED_DATASET,
            f"wavelength_nm has {wl.size} values for {ds.shape[1]} samples",
        )
    if not (np.all(np.isfinite(wl)) and np.all(np.diff(wl) > 0)):
        raise LayoutError(path, XP_SAMPLED_DATASET, "wavelength_nm is not strictly increasing")
    kind = ds.attrs.get("flux_kind")
    if isinstance(kind, bytes):
        kind = kind.decode()
    if kind not in XP_FLUX_KINDS:
        raise LayoutError(
            path,
            XP_SAMPLED_DATASET,
            f"attribute flux_kind is {kind!r}: it must say {' or '.join(map(repr, XP_FLUX_KINDS))}"
            " (absolute: W m-2 nm-1 as GaiaXPy's calibrate writes it)",
        )
    return int(ds.shape[1]), str(kind)


def _check_values(
    path,
    h5: h5py.File,
    info: LayoutInfo,
    finite: bool,
    chunk_rows: int,
    sample: str,
    training_cuts: Mapping | None,
    cuts: str,
) -> list[tuple[str, str, int]]:
    """Stream the rows: unique source ids, valid labels, the per-star cuts (counted, or
    refused), finite inputs if asked.  Returns the cut counts."""
    sid = h5["source_id"][:]
    check_unique_ids(path, sid)
    _, counts = scan_rows(path, h5, info, sample, training_cuts, cuts, chunk_rows)
    if finite:
        inputs = model_input_datasets(info)
        for start in range(0, info.n_rows, chunk_rows):
            stop = min(start + chunk_rows, info.n_rows)
            block = {name: h5[name][start:stop] for name in inputs}
            check_block(path, block, sid[start:stop], start, finite=True)
    return counts


def check_label_values(path, block: Mapping[str, np.ndarray], sid: np.ndarray) -> None:
    """Refuse label values that are +-inf and label errors <= 0 (NaN = unknown is fine),
    with the number of rows and one source_id.  ``block`` maps ``labels/...`` names to
    rows (others are ignored)."""
    for name, values in block.items():
        if not name.startswith("labels/"):
            continue
        v = np.asarray(values, dtype=np.float64)
        if name.endswith("_err"):
            with np.errstate(invalid="ignore"):
                bad = np.isinf(v) | (v <= 0)
            what = "errors that are <= 0 or infinite (an error must be > 0; NaN = unknown)"
        else:
            bad = np.isinf(v)
            what = "values that are +-inf (NaN = unknown)"
        if bad.any():
            raise LayoutError(
                path,
                name,
                f"{int(bad.sum())} rows with {what}, e.g. source_id {int(sid[np.argmax(bad)])}",
            )


#: Optional uncertainty datasets whose values are checked (unit, for the message):
#: finite and >= 0, or NaN where unknown.
ERROR_DATASET_UNITS: dict[str, str] = {
    RV_ERROR_DATASET: "km/s",
    **dict.fromkeys(XP_ERROR_DATASETS, "e-/s"),
}


def check_error_values(path, block: Mapping[str, np.ndarray], sid: np.ndarray) -> None:
    """Refuse uncertainties (:data:`ERROR_DATASET_UNITS`: the radial-velocity uncertainty
    [km/s], the XP coefficient errors [e-/s]) that are negative or +-inf (NaN = unknown is
    fine), with the number of rows and one source_id; datasets ``block`` lacks are not
    checked."""
    for name, unit in ERROR_DATASET_UNITS.items():
        if name not in block:
            continue
        v = np.asarray(block[name], dtype=np.float64)
        with np.errstate(invalid="ignore"):
            bad = np.isinf(v) | (v < 0)
        bad = bad.reshape(len(v), -1).any(axis=1)
        if bad.any():
            raise LayoutError(
                path,
                name,
                f"{int(bad.sum())} rows with values that are < 0 or infinite (an uncertainty "
                f"in {unit} must be >= 0; NaN = unknown), e.g. source_id "
                f"{int(sid[np.argmax(bad)])}",
            )


def scan_rows(
    path,
    h5: h5py.File,
    info: LayoutInfo,
    sample: str,
    training_cuts: Mapping | None,
    cuts: str = "apply",
    chunk_rows: int = 4096,
) -> tuple[np.ndarray, list[tuple[str, str, int]]]:
    """Stream the rows once: refuse bad label values (:func:`check_label_values`) and bad
    uncertainties (:func:`check_error_values`); apply
    the per-star cuts of :func:`gaiacnn.selection.file_row_cuts`.  Returns the keep-mask
    (n,) and ``(cut, rule, removed)`` per cut, each counted among the rows the earlier cuts
    kept.  With ``cuts="refuse"`` the first row that fails a cut is refused, naming it."""
    from gaiacnn.selection import FILE_CUT_MODES, file_cut_datasets, file_row_cuts

    if cuts not in FILE_CUT_MODES:
        raise ValueError(f"cuts {cuts!r}: {' or '.join(FILE_CUT_MODES)}")
    names = [n for n in file_cut_datasets(sample) if n in h5]
    names += [f"labels/{x}{e}" for x in info.labels for e in ("", "_err") if f"labels/{x}{e}" in h5]
    names += [e for e in ERROR_DATASET_UNITS if e in h5 and e not in names]
    n = info.n_rows
    keep = np.ones(n, bool)
    removed: dict[str, list] = {}
    for start in range(0, n, chunk_rows):
        stop = min(start + chunk_rows, n)
        block = {name: h5[name][start:stop] for name in names}
        sid = h5["source_id"][start:stop]
        check_label_values(path, block, sid)
        check_error_values(path, block, sid)
        ok = np.ones(stop - start, bool)
        results = file_row_cuts(block, sample, training_cuts, info.xp_flux_kind)
        if cuts == "refuse" and results:
            failing = ~np.stack([mask for _, _, mask in results])  # (cuts, rows)
            if failing.any():
                i = int(np.argmax(failing.any(axis=0)))  # the first row failing a cut
                cut, rule, _ = results[int(np.argmax(failing[:, i]))]
                raise LayoutError(path, *_refusal(cut, rule, start + i, int(sid[i])))
        for cut, rule, mask in results:
            fail = ok & ~mask
            entry = removed.setdefault(cut, [rule, 0])
            entry[1] += int(fail.sum())
            ok &= mask
        keep[start:stop] = ok
    return keep, [(cut, rule, count) for cut, (rule, count) in removed.items()]


def _refusal(cut: str, rule: str, row: int, source_id: int) -> tuple[str | None, str]:
    """(dataset, problem) of a row that fails a per-star cut (data.files_cuts: refuse)."""
    if cut == "rvs_finite_pixel":
        return "rvs/flux", f"row {row} (source_id {source_id}) has no finite pixel"
    if cut == "parallax_positive":
        return "astrometry/parallax", (
            f"parallax <= 0 at row {row} (source_id {source_id}); "
            "the paper's cut (Sect. 2.2) removes such stars"
        )
    return None, (
        f"row {row} (source_id {source_id}) fails the cut {cut} ({rule}); "
        "data.files_cuts: apply cuts such rows instead"
    )


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
    if info.xp_sampled_length is not None:
        inputs.append(XP_SAMPLED_DATASET)
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


def wavelength_nm(path: str | os.PathLike, dataset: str = "rvs/flux") -> np.ndarray:
    """The wavelength grid [nm] stored with ``dataset`` (``rvs/flux`` or ``xp/sampled_flux``)."""
    with _open(path) as h5:
        if dataset not in h5:
            raise LayoutError(path, dataset, "dataset is missing")
        return np.asarray(h5[dataset].attrs["wavelength_nm"], dtype=float)


# --------------------------------------------------------------------------- usage


def xp_datasets(xp_input: str | None) -> tuple[str, ...]:
    """The datasets of an XP input form ("coefficients", the default, or "sampled")."""
    return (XP_SAMPLED_DATASET,) if xp_input == "sampled" else XP_COEFFICIENT_DATASETS


#: Forms of the photometry branch's input (``model.phot_input``): the paper's G, BP, RP
#: [mag] and parallax [mas]; or "intrinsic": BP - RP, G - RP and the parallax as
#: 10^(0.2 M_G) with its error (:func:`gaiacnn.spectra.phot_features`), no apparent
#: magnitude, so that a star's distance is not an input.
PHOT_INPUTS: tuple[str, ...] = ("magnitudes", "intrinsic")
PARALLAX_ERROR_DATASET = "astrometry/parallax_error"


def phot_columns(has_parallax: bool, phot_input: str = "magnitudes") -> list[str]:
    """The photometry branch's datasets: G, BP, RP, and the parallax where there is one
    (with its error for the "intrinsic" input)."""
    if phot_input not in PHOT_INPUTS:
        raise ValueError(f"unknown phot_input {phot_input!r} (known: {', '.join(PHOT_INPUTS)})")
    cols = [*PHOT_DATASETS]
    if has_parallax:
        cols.append("astrometry/parallax")
        if phot_input == "intrinsic":
            cols.append(PARALLAX_ERROR_DATASET)
    return cols


def datasets_of_branches(
    branches: Iterable[str], phot: Sequence[str], xp_input: str | None
) -> dict[str, str]:
    """Dataset -> the model branch that reads it, for ``branches`` in their order: ``phot``
    the photometry branch's datasets (:func:`phot_columns`), ``xp_input`` the XP form."""
    out: dict[str, str] = {}
    for b in branches:
        if b == "rvs":
            names: Sequence[str] = ("rvs/flux",)
        elif b == "phot":
            names = phot
        elif b == "xp":
            names = xp_datasets(xp_input)
        else:
            raise ValueError(f"unknown branch {b!r} (known: rvs, phot, xp)")
        out.update(dict.fromkeys(names, b))
    return out


def branch_datasets(
    info: LayoutInfo,
    branches: Sequence[str],
    xp_input: str | None,
    phot_input: str = "magnitudes",
) -> dict[str, str]:
    """Dataset -> model branch that reads it, for ``branches`` (empty: every branch the file
    can feed), the XP form ``xp_input`` (resolved: "coefficients" or "sampled") and the
    photometry form ``phot_input``."""
    return datasets_of_branches(
        resolve_branches(info, branches), phot_columns(info.has_parallax, phot_input), xp_input
    )


def all_datasets(path: str | os.PathLike) -> list[str]:
    """Every dataset of an HDF5 file, by path, in file order."""
    names: list[str] = []
    with _open(path) as h5:
        h5.visititems(
            lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None
        )
    return names


def dataset_usage(
    path: str | os.PathLike,
    *,
    sample: str,
    branches: Sequence[str] = (),
    xp_input: str = "auto",
    labels: Sequence[str] = (),
    tsne_spectra: str | None = None,
    phot_input: str = "magnitudes",
) -> list[tuple[str, str]]:
    """What the workflow does with each dataset of a layout file: ``(dataset, "used: ..."
    or "ignored: <why>")``, every dataset of the file listed once.

    ``branches``/``xp_input``/``labels`` as in the config (``model.*``; empty = what the file
    offers); ``tsne_spectra`` the dataset the t-SNE stage embeds (None: not known here).
    """
    info = validate(path, check_values=False)
    form = resolve_xp_input(info, xp_input) if "xp" in resolve_branches(info, branches) else None
    feeds = branch_datasets(info, branches, form, phot_input)
    wanted = list(labels) or list(info.labels)
    chosen = set(resolve_branches(info, branches))
    out: list[tuple[str, str]] = []
    for name in all_datasets(path):
        uses: list[str] = []
        why = ""
        if name in feeds:
            uses.append(f"{feeds[name]} branch")
        if name == "source_id":
            uses.append("star identifier")
        elif name == tsne_spectra or (
            tsne_spectra == "xp/coefficients" and name in XP_COEFFICIENT_DATASETS
        ):
            uses.append("t-SNE classification")
        if name == "phot/g":
            uses.append("flag digit G")
        elif name == "astrometry/parallax":
            uses.append("flag digit parallax")
        elif name == "rvs/snr":
            uses.append("S/N of the catalogue, the uncertainty calibration and the figures")
            if sample == "training":
                uses.append("training cut S/N")
        elif name in ("astrometry/parallax_error", "astrometry/ruwe"):
            if name == PARALLAX_ERROR_DATASET:
                uses.append("flag digit inputs")
            if sample == "training":
                uses.append("training cut (Sect. 2.5)")
            else:
                why = "the observed sample has no cut on it and it is not a model input"
        elif name == "rvs/flux_error":
            if "rvs" in chosen:
                uses.append("noise augmentation of the rvs branch (when on)")
            else:
                why = "the rvs branch is not used"
        elif name in XP_ERROR_DATASETS:
            if "xp" in chosen and form == "coefficients":
                uses.append("noise augmentation of the xp branch (when on)")
            else:
                why = (
                    f"model.xp_input uses the {form}"
                    if form
                    else "model.branches leaves out the xp branch"
                )
        elif name in POSITION_DATASETS:
            uses.append("Galactic figures (Fig. 24)")
        elif name == RV_ERROR_DATASET:
            uses.append("figures only: residuals against the RV uncertainty (Fig. C.1)")
        elif name.startswith("labels/"):
            label = name.removeprefix("labels/").removesuffix("_err")
            if label not in wanted:
                why = f"label {label!r} is not in model.labels"
            elif name.endswith("_err"):
                uses.append("reference label error (uncertainty model)")
            else:
                uses.append(
                    "training label" if sample == "training" else "reference label (validation)"
                )
        elif name in KNOWN_DATASETS and name not in feeds and not uses:
            if name in XP_COEFFICIENT_DATASETS or name == XP_SAMPLED_DATASET:
                why = (
                    f"model.xp_input uses the {form}"
                    if form
                    else "model.branches leaves out the xp branch"
                )
            else:
                branch = {"rvs/flux": "rvs"}.get(name, "phot")
                why = f"model.branches leaves out the {branch} branch"
        elif name not in KNOWN_DATASETS and not uses:
            why = "not part of the layout (unknown dataset)"
        if uses:
            out.append((name, "used: " + "; ".join(uses)))
        else:
            out.append((name, "ignored: " + (why or "not read by any stage")))
    return out
