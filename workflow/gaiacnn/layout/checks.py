"""Validation of a file (:func:`validate`) and of its values, block by block."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np

from gaiacnn.constants import LAYOUT_SCHEMA_VERSION
from gaiacnn.layout.names import (
    KNOWN_DATASETS,
    MODEL_INPUT_DATASETS,
    PARALLAX_DATASET,
    PHOT_DATASETS,
    POSITION_DATASETS,
    RV_ERROR_DATASET,
    RVS_FLUX_DATASET,
    RVS_FLUX_ERROR_DATASET,
    XP_COEFFICIENT_DATASETS,
    XP_ERROR_DATASETS,
    XP_FLUX_KINDS,
    XP_SAMPLED_DATASET,
    LayoutError,
    LayoutInfo,
)

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
        if RVS_FLUX_DATASET in h5:
            flux = h5[RVS_FLUX_DATASET]
            _check_wavelength_grid(path, RVS_FLUX_DATASET, flux, "pixels")
            n_pixels = int(flux.shape[1])
            if RVS_FLUX_ERROR_DATASET in h5 and h5[RVS_FLUX_ERROR_DATASET].shape != flux.shape:
                raise LayoutError(
                    path,
                    RVS_FLUX_ERROR_DATASET,
                    f"shape {h5[RVS_FLUX_ERROR_DATASET].shape} differs from {RVS_FLUX_DATASET} "
                    f"{flux.shape}",
                )
        elif RVS_FLUX_ERROR_DATASET in h5:
            raise LayoutError(path, RVS_FLUX_DATASET, "missing while rvs/flux_error is present")

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
            has_parallax=PARALLAX_DATASET in h5,
            labels=tuple(labels),
            attrs={k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()},
            xp_sampled_length=xp_sampled_length,
            xp_flux_kind=xp_flux_kind,
            has_xp_errors=all(name in h5 for name in XP_ERROR_DATASETS),
        )
        if check_values:
            counts = _check_values(
                path, h5, info, require_finite_inputs, chunk_rows, sample, training_cuts, cuts
            )
            info = dataclasses.replace(info, cuts=tuple(counts))
    return info


def _check_wavelength_grid(path, name: str, ds: h5py.Dataset, what: str) -> None:
    """The attribute ``wavelength_nm`` of the 2-D dataset ``name``: present, one finite
    value per column (``what``: "pixels", "samples"), strictly increasing [nm]."""
    wl = ds.attrs.get("wavelength_nm")
    if wl is None:
        raise LayoutError(path, name, "attribute wavelength_nm is missing")
    wl = np.asarray(wl, dtype=float)
    if wl.shape != (ds.shape[1],):
        raise LayoutError(
            path, name, f"wavelength_nm has {wl.size} values for {ds.shape[1]} {what}"
        )
    if not (np.all(np.isfinite(wl)) and np.all(np.diff(wl) > 0)):
        raise LayoutError(path, name, "wavelength_nm is not strictly increasing")


def _check_sampled(path, h5: h5py.File) -> tuple[int | None, str | None]:
    """(K, flux_kind) of ``xp/sampled_flux``, or (None, None) without it; its attributes
    ``wavelength_nm`` (K strictly increasing values) and ``flux_kind`` are required."""
    if XP_SAMPLED_DATASET not in h5:
        return None, None
    ds = h5[XP_SAMPLED_DATASET]
    _check_wavelength_grid(path, XP_SAMPLED_DATASET, ds, "samples")
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


def refuse_rows(path, name: str, bad: np.ndarray, sid: np.ndarray, what: str) -> None:
    """Raise a :class:`LayoutError` on ``name`` when any row of ``bad`` (one bool per row) is
    set, saying how many rows have ``what`` and the source_id of the first."""
    if bad.any():
        raise LayoutError(
            path,
            name,
            f"{int(bad.sum())} rows with {what}, e.g. source_id {int(sid[np.argmax(bad)])}",
        )


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
        refuse_rows(path, name, bad, sid, what)


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
        refuse_rows(
            path,
            name,
            bad.reshape(len(v), -1).any(axis=1),
            sid,
            f"values that are < 0 or infinite (an uncertainty in {unit} must be >= 0; "
            "NaN = unknown)",
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
        return RVS_FLUX_DATASET, f"row {row} (source_id {source_id}) has no finite pixel"
    if cut == "parallax_positive":
        return PARALLAX_DATASET, (
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
        inputs.append(RVS_FLUX_DATASET)
    if info.has_photometry:
        inputs.extend(PHOT_DATASETS)
    if info.has_parallax:
        inputs.append(PARALLAX_DATASET)
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
        if name == RVS_FLUX_DATASET:
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
        if finite and name == PARALLAX_DATASET and np.any(values <= 0):
            i = int(np.argmax(values <= 0))
            raise LayoutError(
                path,
                name,
                f"parallax <= 0 at row {start + i} (source_id {int(sid[i])}); "
                "the paper's cut (Sect. 2.2) removes such stars",
            )
