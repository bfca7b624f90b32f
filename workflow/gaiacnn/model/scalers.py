"""Input and label scalers (:class:`Scalers`, ``scalers.json``) and their fit."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import h5py
import numpy as np

from gaiacnn.layout import (
    PHOT_DATASETS,
    XP_COEFFICIENT_DATASETS,
    XP_SAMPLED_DATASET,
    LayoutError,
    LayoutInfo,
    datasets_of_branches,
    iter_rows,
    label_dataset,
    phot_columns,
    refuse_rows,
    resolve_xp_input,
    validate,
)
from gaiacnn.model.settings import BRANCHES, PARALLAX_DATASET, RVS_DATASET, SCALERS_FORMAT_VERSION
from gaiacnn.spectra import phot_features, xp_features

# --------------------------------------------------------------------------- scalers


def _minmax(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(x - lo) / (hi - lo) with a zero range mapped to 0 (constant feature)."""
    span = np.where(hi > lo, hi - lo, 1.0)
    return (x - lo) / span


def _to_json_list(a: np.ndarray | None) -> list[float] | None:
    """An array as the float list ``scalers.json`` stores (None stays None)."""
    return None if a is None else [float(v) for v in np.asarray(a, dtype=np.float64)]


def _from_json_list(v: Sequence[float] | None) -> np.ndarray | None:
    """A float list of ``scalers.json`` as a float64 array (None stays None)."""
    return None if v is None else np.asarray(v, dtype=np.float64)


@dataclass
class Scalers:
    """Min-max scalers fitted on the training part of a split only (SPEC stage 4, Sect. 3.1).

    ``label_min``/``label_max``: (n_labels,) in the labels' units; ``phot_min``/``phot_max``:
    (len(phot_columns),) in mag and mas; ``xp_min``/``xp_max``: (2M,) over the normalised XP
    coefficients (BP/BP[0], RP/RP[0], dimensionless), or (K,) over the normalised sampled
    flux (:func:`normalise_sampled`).  ``branches`` are the model's inputs, ``n_pixels`` and
    ``xp_length`` (M) the input sizes it was trained with; ``xp_input`` the XP form
    ("coefficients" or "sampled"), ``xp_sampled_length`` (K), ``xp_flux_kind`` and
    ``xp_wavelength_nm`` (K,) the sampled flux's; ``rvs_wavelength_nm`` (P,) the RVS grid.
    """

    labels: list[str]
    label_min: np.ndarray
    label_max: np.ndarray
    branches: list[str] = field(default_factory=lambda: list(BRANCHES))
    phot_columns: list[str] = field(default_factory=list)
    phot_input: str = "magnitudes"
    phot_min: np.ndarray | None = None
    phot_max: np.ndarray | None = None
    xp_min: np.ndarray | None = None
    xp_max: np.ndarray | None = None
    n_pixels: int | None = None
    xp_length: int | None = None
    xp_input: str | None = None
    xp_sampled_length: int | None = None
    xp_flux_kind: str | None = None
    xp_wavelength_nm: np.ndarray | None = None
    rvs_wavelength_nm: np.ndarray | None = None
    # "intrinsic_withheld": the parallax S/N below which the parallax is withheld
    parallax_withheld_snr: float | None = None

    @property
    def xp_width(self) -> int | None:
        """Width of the XP input: 2M coefficients or K samples (None without XP)."""
        if "xp" not in self.branches:
            return None
        if self.xp_input == "sampled":
            return self.xp_sampled_length
        return None if self.xp_length is None else 2 * self.xp_length

    @property
    def phot_width(self) -> int:
        """Width of the photometry input: one per column (magnitudes), or the colours and
        the luminosity, with its error for "intrinsic_with_error" or whether it is withheld
        for "intrinsic_withheld" (:func:`gaiacnn.spectra.phot_features`)."""
        if self.phot_input != "magnitudes":
            per_parallax = 1 if self.phot_input == "intrinsic" else 2
            return 2 + per_parallax * (PARALLAX_DATASET in self.phot_columns)
        return len(self.phot_columns)

    # -- serialisation
    def to_json(self) -> str:
        """Canonical JSON (sorted keys; floats written exactly, so the roundtrip is lossless)."""
        doc = {
            "format_version": SCALERS_FORMAT_VERSION,
            "labels": list(self.labels),
            "label_min": _to_json_list(self.label_min),
            "label_max": _to_json_list(self.label_max),
            "branches": list(self.branches),
            "phot_columns": list(self.phot_columns),
            "phot_input": self.phot_input,
            "phot_min": _to_json_list(self.phot_min),
            "phot_max": _to_json_list(self.phot_max),
            "xp_min": _to_json_list(self.xp_min),
            "xp_max": _to_json_list(self.xp_max),
            "n_pixels": self.n_pixels,
            "xp_length": self.xp_length,
            "xp_input": self.xp_input,
            "xp_sampled_length": self.xp_sampled_length,
            "xp_flux_kind": self.xp_flux_kind,
            "xp_wavelength_nm": _to_json_list(self.xp_wavelength_nm),
            "rvs_wavelength_nm": _to_json_list(self.rvs_wavelength_nm),
            "parallax_withheld_snr": self.parallax_withheld_snr,
        }
        return json.dumps(doc, sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Scalers:
        """Inverse of :meth:`to_json`."""
        doc = json.loads(text)
        version = doc.get("format_version")
        if version != SCALERS_FORMAT_VERSION:
            raise ValueError(
                f"scalers format_version {version!r} not supported (this code reads "
                f"{SCALERS_FORMAT_VERSION}, which records the input contract): retrain the member"
            )
        return cls(
            labels=list(doc["labels"]),
            label_min=_from_json_list(doc["label_min"]),
            label_max=_from_json_list(doc["label_max"]),
            branches=list(doc["branches"]),
            phot_columns=list(doc["phot_columns"]),
            # members trained before the key existed had the paper's input
            phot_input=str(doc.get("phot_input", "magnitudes")),
            phot_min=_from_json_list(doc["phot_min"]),
            phot_max=_from_json_list(doc["phot_max"]),
            xp_min=_from_json_list(doc["xp_min"]),
            xp_max=_from_json_list(doc["xp_max"]),
            n_pixels=doc["n_pixels"],
            xp_length=doc["xp_length"],
            xp_input=doc["xp_input"],
            xp_sampled_length=doc["xp_sampled_length"],
            xp_flux_kind=doc["xp_flux_kind"],
            xp_wavelength_nm=_from_json_list(doc["xp_wavelength_nm"]),
            rvs_wavelength_nm=_from_json_list(doc["rvs_wavelength_nm"]),
            # members trained before the key existed had no withheld parallaxes
            parallax_withheld_snr=doc.get("parallax_withheld_snr"),
        )

    # -- inputs
    def datasets(self, branches: Iterable[str] | None = None) -> list[str]:
        """Layout datasets the given branches (default: the model's) read."""
        return input_datasets(
            self.branches if branches is None else branches, self.phot_columns, self.xp_input
        )

    def inputs(
        self, block: Mapping[str, np.ndarray], branches: Iterable[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Layout datasets of a chunk of n rows -> model inputs (float32).

        ``"rvs"``: (n, P, 1) flux as stored; ``"phot"``: (n, phot_width) in [0, 1] on
        the training range; ``"xp"``: (n, 2M) normalised then scaled coefficients, or (n, K)
        normalised then scaled sampled flux.
        """
        out: dict[str, np.ndarray] = {}
        for b in self.branches if branches is None else branches:
            if b == "rvs":
                out["rvs"] = np.asarray(block[RVS_DATASET], dtype=np.float32)[..., None]
            elif b == "phot":
                cols = phot_features(
                    block, self.phot_columns, self.phot_input, self.parallax_withheld_snr
                )
                out["phot"] = _minmax(cols, self.phot_min, self.phot_max).astype(np.float32)
            elif b == "xp":
                xp = xp_features(block, self.xp_input, self.xp_flux_kind)
                out["xp"] = _minmax(xp, self.xp_min, self.xp_max).astype(np.float32)
            else:
                raise ValueError(f"unknown branch {b!r} (known: {', '.join(BRANCHES)})")
        return out

    # -- labels
    def scale_labels(self, y: np.ndarray) -> np.ndarray:
        """(n, n_labels) physical labels -> [0, 1] on the training range (float32)."""
        y = np.asarray(y, dtype=np.float64)
        return _minmax(y, self.label_min, self.label_max).astype(np.float32)

    def unscale_labels(self, y01: np.ndarray) -> np.ndarray:
        """(n, n_labels) scaled labels -> physical units (float32)."""
        span = np.where(self.label_max > self.label_min, self.label_max - self.label_min, 1.0)
        y = np.asarray(y01, dtype=np.float64) * span + self.label_min
        return y.astype(np.float32)


def input_datasets(
    branches: Iterable[str], phot_columns: Sequence[str], xp_input: str | None = "coefficients"
) -> list[str]:
    """Layout dataset names read by ``branches`` (phot_columns for the photometry branch,
    ``xp_input`` for the XP branch)."""
    return list(datasets_of_branches(branches, phot_columns, xp_input))


def _check_branches(path, info: LayoutInfo, branches: Sequence[str]) -> tuple[str, ...]:
    """``branches`` checked against the file, in canonical order; empty = every branch the
    file can feed (``model.branches: []``)."""
    branches = tuple(branches) or info.branches
    if not branches:
        raise LayoutError(
            path,
            None,
            "no model input: needs rvs/flux, phot/*, xp/*_coefficients or xp/sampled_flux",
        )
    unknown = [b for b in branches if b not in BRANCHES]
    if unknown:
        raise ValueError(f"unknown branch(es) {unknown} (known: {', '.join(BRANCHES)})")
    if len(set(branches)) != len(branches):
        raise ValueError(f"branches repeated: {list(branches)}")
    need = {"rvs": RVS_DATASET, "phot": PHOT_DATASETS[0], "xp": XP_COEFFICIENT_DATASETS[0]}
    for b in branches:
        if b not in info.branches:
            raise LayoutError(
                path,
                need[b],
                f"branch {b!r} asked for but its data are absent "
                f"(the file can feed: {', '.join(info.branches) or 'no branch'})",
            )
    # canonical order, whatever order they were given in
    return tuple(b for b in BRANCHES if b in branches)


def _check_finite(
    path, block: Mapping[str, np.ndarray], names: Iterable[str], sid, flux_kind: str | None = None
) -> None:
    """Refuse NaN/inf in model inputs, naming the dataset and the first bad source_id (and an
    absolute XP sampled spectrum whose mean is not > 0, ``flux_kind``)."""
    for name in names:
        a = np.asarray(block[name])
        refuse_rows(
            path, name, ~np.isfinite(a.reshape(len(a), -1)).all(axis=1), sid, "non-finite inputs"
        )
    if XP_SAMPLED_DATASET in block and flux_kind == "absolute":
        with np.errstate(invalid="ignore"):
            bad = ~(np.asarray(block[XP_SAMPLED_DATASET], float).mean(axis=1) > 0)
        refuse_rows(path, XP_SAMPLED_DATASET, bad, sid, "mean flux <= 0 (cannot normalise)")
    for bp_rp in XP_COEFFICIENT_DATASETS:
        if bp_rp in block:
            bad = np.asarray(block[bp_rp])[:, 0] == 0
            refuse_rows(path, bp_rp, bad, sid, "first coefficient 0 (cannot normalise)")


def _gather(
    path, names: Sequence[str], rows: np.ndarray, chunk_rows: int = 4096
) -> dict[str, np.ndarray]:
    """Read ``names`` (and source_id) at ``rows`` (unique indices, any order) by streaming."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 1:
        raise ValueError("rows must be a 1-D array of row indices")
    order = np.argsort(rows, kind="stable")
    srt = rows[order]
    if srt.size and np.any(np.diff(srt) == 0):
        raise ValueError("rows contains duplicated indices")
    wanted = list(dict.fromkeys(["source_id", *names]))
    parts: dict[str, list[np.ndarray]] = {n: [] for n in wanted}
    n_seen = 0
    for start, block in iter_rows(path, wanted, chunk_rows):
        stop = start + len(block["source_id"])
        lo, hi = np.searchsorted(srt, [start, stop])
        if hi > lo:
            local = srt[lo:hi] - start
            for n in wanted:
                parts[n].append(block[n][local])
        n_seen = stop
    if srt.size and (srt[0] < 0 or srt[-1] >= n_seen):
        raise IndexError(f"{path}: row indices outside 0..{n_seen - 1}")
    out = {}
    for n in wanted:
        cat = np.concatenate(parts[n]) if parts[n] else np.empty((0,))
        res = np.empty_like(cat)
        res[order] = cat
        out[n] = res
    return out


def _check_labels(path, info: LayoutInfo, labels: Sequence[str]) -> list[str]:
    labels = list(labels)
    if not info.labels:
        raise LayoutError(
            path, "labels", "training file holds no labels/<name> dataset (is it a training file?)"
        )
    if not labels:  # model.labels: [] = every label of the training file
        return list(info.labels)
    for name in labels:
        if name not in info.labels:
            raise LayoutError(
                path,
                label_dataset(name),
                f"label {name!r} not in file (it has: {', '.join(info.labels)})",
            )
    return labels


def fit_scalers(
    train_file: str | os.PathLike,
    rows: np.ndarray,
    labels: Sequence[str],
    branches: Sequence[str],
    xp_input: str = "auto",
    phot_input: str = "magnitudes",
    withheld_snr: float | None = None,
) -> Scalers:
    """Fit the min-max scalers on ``rows`` (the training part only) of ``train_file``, and
    record the file's input contract (grids, XP form, photometry form) with them.
    ``withheld_snr``: for ``phot_input`` "intrinsic_withheld", the parallax S/N below which
    the parallax is withheld (:func:`gaiacnn.spectra.phot_features`; recorded, and used at
    prediction).  Its 0/1 input is scaled on [0, 1] whatever the training rows hold.

    Labels use nanmin/nanmax (stars with NaN labels should already be left out of ``rows``);
    inputs must be finite.  A zero range (constant feature, e.g. BP[0]/BP[0] = 1) maps to 0.
    ``xp_input``: "coefficients", "sampled" or "auto" (:func:`gaiacnn.layout.resolve_xp_input`).
    """
    if phot_input == "intrinsic_withheld" and withheld_snr is None:
        raise ValueError("phot_input intrinsic_withheld needs withheld_snr")
    info = validate(train_file, check_values=False)
    labels = _check_labels(train_file, info, labels)
    branches = _check_branches(train_file, info, branches)
    xp_form = resolve_xp_input(info, xp_input) if "xp" in branches else None
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        raise ValueError("fit_scalers: no training rows")
    phot_cols = phot_columns(info.has_parallax, phot_input) if "phot" in branches else []
    _require(train_file, phot_cols)
    in_names = [n for n in input_datasets(branches, phot_cols, xp_form) if n != RVS_DATASET]
    lab_names = [label_dataset(n) for n in labels]
    data = _gather(train_file, [*in_names, *lab_names], rows)
    _check_finite(train_file, data, in_names, data["source_id"], info.xp_flux_kind)
    y = np.stack([data[n].astype(np.float64) for n in lab_names], axis=1)
    with np.errstate(all="ignore"):
        if np.any(np.all(~np.isfinite(y), axis=0)):
            bad = [labels[i] for i in np.nonzero(np.all(~np.isfinite(y), axis=0))[0]]
            raise LayoutError(train_file, label_dataset(bad[0]), "no finite value in the rows")
        y = np.where(np.isfinite(y), y, np.nan)
        sc = Scalers(
            labels=labels,
            label_min=np.nanmin(y, axis=0),
            label_max=np.nanmax(y, axis=0),
            branches=list(branches),
            phot_columns=phot_cols,
            phot_input=phot_input,
            n_pixels=info.n_pixels if "rvs" in branches else None,
            xp_length=info.xp_length if xp_form == "coefficients" else None,
            xp_input=xp_form,
            parallax_withheld_snr=(
                float(withheld_snr) if phot_input == "intrinsic_withheld" else None
            ),
        )
    if "rvs" in branches:
        sc.rvs_wavelength_nm = _wavelengths(train_file, RVS_DATASET)
    if xp_form == "sampled":
        sc.xp_sampled_length = info.xp_sampled_length
        sc.xp_flux_kind = info.xp_flux_kind
        sc.xp_wavelength_nm = _wavelengths(train_file, XP_SAMPLED_DATASET)
    if "phot" in branches:
        p = phot_features(data, phot_cols, phot_input, sc.parallax_withheld_snr)
        sc.phot_min, sc.phot_max = p.min(axis=0), p.max(axis=0)
        if phot_input == "intrinsic_withheld" and PARALLAX_DATASET in phot_cols:
            # the withheld flag is 0/1 whatever the training rows hold (the training
            # stars' parallaxes are withheld at random in the batches, not in the file)
            sc.phot_min[-1], sc.phot_max[-1] = 0.0, 1.0
    if "xp" in branches:
        xp = xp_features(data, xp_form, info.xp_flux_kind)
        sc.xp_min, sc.xp_max = xp.min(axis=0), xp.max(axis=0)
    return sc


def _require(path, names: Sequence[str]) -> None:
    """Refuse a file that lacks one of ``names`` (e.g. the parallax error the intrinsic
    photometry input needs)."""
    with h5py.File(path, "r") as h5:
        for name in names:
            if name not in h5:
                raise LayoutError(
                    path,
                    name,
                    "missing; the intrinsic photometry input (model.phot_input) needs the "
                    "parallax error: add it, or set model.phot_input: magnitudes",
                )


def _wavelengths(path, dataset: str) -> np.ndarray:
    with h5py.File(path, "r") as h5:
        return np.asarray(h5[dataset].attrs["wavelength_nm"], dtype=np.float64)
