"""The hybrid CNN of Guiglion et al. 2024 (A&A 682, A9, Sect. 3.1-3.2): scalers, model, training
and streamed prediction for one ensemble member (one ``seed x split`` model).

Inputs come from files in the HDF5 interchange layout (:mod:`gaiacnn.layout`, SPEC stage 3).
The model has up to three branches, named as its Keras inputs:

``"rvs"``
    normalised RVS flux, shape ``(N, P, 1)`` (P = 2401 in DR3), fed unscaled;
``"phot"``
    G, G_BP, G_RP [mag] and parallax [mas] (3 columns without parallax), min-max scaled
    (the paper); or, ``model.phot_input: intrinsic``, BP − RP, G − RP and the parallax as
    the distance-free luminosity 10^(0.2 M_G) with its error
    (:func:`gaiacnn.spectra.phot_features`), min-max scaled;
``"xp"``
    either the 2*M XP coefficients (M = 55 in DR3): BP / BP[0] and RP / RP[0], then min-max
    scaled (the paper); or the K samples of ``xp/sampled_flux`` (``model.xp_input``): each
    star's absolute flux divided by its own mean flux, so that brightness (six decades
    across a survey, and carried by the photometry) leaves the XP input and no bright star
    dominates the loss, then min-max scaled per wavelength.

Labels (any ``labels/<name>`` of the training file) are min-max scaled to [0, 1] on the
training part of the split; the network predicts the scaled labels and :class:`Scalers`
maps them back to physical units.  The scalers are saved with the model (``scalers.json``).

A member directory holds ``model.keras``, ``scalers.json`` and ``history.json``; all three
are written under temporary names and renamed into place only when training succeeded.
``scalers.json`` is also the member's *input contract*: its branches, labels, the RVS and
XP-sampled wavelength grids, the coefficient count and the scaler statistics.  Prediction
refuses a file that breaks it (:func:`check_contract`).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from gaiacnn.ensemble import split_indices
from gaiacnn.io import atomic_output
from gaiacnn.layout import (
    PARALLAX_ERROR_DATASET,
    PHOT_DATASETS,
    XP_COEFFICIENT_DATASETS,
    XP_ERROR_DATASETS,
    XP_SAMPLED_DATASET,
    LayoutError,
    LayoutInfo,
    datasets_of_branches,
    iter_rows,
    label_dataset,
    phot_columns,
    resolve_xp_input,
    validate,
    xp_datasets,
)
from gaiacnn.spectra import phot_features, xp_features

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

#: Model branches, in the order of the paper's Fig. 6 description (Sect. 3.1).
BRANCHES: tuple[str, ...] = ("rvs", "phot", "xp")
PARALLAX_DATASET = "astrometry/parallax"
RVS_DATASET = "rvs/flux"

#: Files of a trained member directory.
MODEL_FILE = "model.keras"
SCALERS_FILE = "scalers.json"
HISTORY_FILE = "history.json"
MEMBER_FILES = (MODEL_FILE, SCALERS_FILE, HISTORY_FILE)

#: 2: the input contract (wavelength grids, XP input form) is part of the file.
SCALERS_FORMAT_VERSION = 2
#: Two wavelength grids are the same when no sample differs by more than this [nm].
GRID_TOLERANCE_NM = 1e-4

#: Architecture (Guiglion et al. 2024, Sect. 3.1 and Fig. 6).
DEFAULT_ARCH: dict[str, Any] = {
    # "three 1D convolution layers (with 32, 16, and 8 filters ...)" (Sect. 3.1)
    "conv_filters": [32, 16, 8],
    # "we adopted a kernel size of 8 pixels for each convolution block" (Sect. 3.1)
    "kernel_size": 8,
    # "1D Max-Pooling layers (after 1D convolution blocks two and three)" (Sect. 3.1);
    # the pool size is not given in the paper: 2 (Keras default) is assumed.
    "pool_size": 2,
    # Convolution activation: not stated in the paper (LeakyReLU is named only "for the
    # fully connected layers", Sect. 3.1); ReLU assumed.
    "conv_activation": "relu",
    # Padding is not stated; Keras default "valid" assumed.
    "padding": "valid",
    # "passed through a block of fully connected layers with 128 neurons" (Sect. 3.1)
    "rvs_dense": 128,
    # "four input neurons fully connected to a layer of 32 neurons" (Sect. 3.1)
    "phot_dense": 32,
    # "110 input neurons ... to a fully connected layer with 64 neurons" (Sect. 3.1)
    "xp_dense": 64,
    # concatenated (224) "and passed into three fully connected layers with 128, 32, and 5
    # neurons each" (Sect. 3.1); the last one (n_labels, linear) is the output.
    "head_dense": [128, 32],
    # "LeakyRelu activation functions for the fully connected layers" (Sect. 3.1, Xu et al.
    # 2015); the slope is not given: Keras' LeakyReLU layer default 0.3 assumed.
    "negative_slope": 0.3,
    # No dropout is mentioned in the paper.
    "dropout": 0.0,
}

#: Training settings (Guiglion et al. 2024, Sect. 3.1-3.2).
DEFAULT_TRAINING: dict[str, Any] = {
    # Optimiser and learning rate are not stated in the paper: Adam, Keras default 1e-3.
    "learning_rate": 1e-3,
    # Batch size is not stated in the paper: 128 assumed.
    "batch_size": 128,
    # "reached their minimum validation loss function typically after 80 epochs" (Sect. 3.2);
    # early stopping ends training before this cap.
    "max_epochs": 150,
    # "early-stop callbacks with a patience of 20" on the validation loss (Sect. 3.1)
    "early_stopping_patience": 20,
    # "ReduceLROnPlateau callbacks from Keras" (Sect. 3.1); no parameters are given, Keras
    # defaults (factor 0.1, patience 10) assumed.
    "reduce_lr_factor": 0.1,
    "reduce_lr_patience": 10,
    "min_lr": 0.0,
    # "keeping a constant training-validation ratio of 75%" (Sect. 3.2)
    "validation_fraction": 0.25,
    # Added to the split number to seed the 75/25 split (not in the paper).
    "base_seed": 0,
    # Keras verbosity of model.fit (0 silent, 2 one line per epoch).
    "verbose": 0,
    # Learning-rate schedule (not in the paper).  "plateau": constant learning_rate, cut by
    # ReduceLROnPlateau only (the paper's setting).  "one_cycle": linear warm-up over
    # lr_warmup_epochs, then cosine decay to learning_rate * lr_final_factor at max_epochs;
    # ReduceLROnPlateau cuts still apply on top of it, and EarlyStopping is unchanged.
    "schedule": "plateau",
    # Linear warm-up of the learning rate, per batch, from learning_rate / steps to
    # learning_rate over this many epochs (0: none); used by both schedules.
    "lr_warmup_epochs": 0,
    # "one_cycle" only: final learning rate as a fraction of learning_rate.
    "lr_final_factor": 0.01,
    # Noise augmentation of the RVS spectra (not in the paper): in every epoch a fraction
    # augment_fraction of the training spectra (never the validation ones) get extra
    # Gaussian noise that lowers their S/N to a value drawn log-uniformly between
    # augment_snr_min and their own S/N, so that the model sees the low S/N of the
    # observed sample (whose S/N starts below the training cut).  0 switches it off (the
    # paper has no augmentation).
    "augment_snr_min": 15.0,
    "augment_fraction": 0.5,
    # Parallax augmentation (not in the paper): in every epoch a fraction
    # augment_parallax_fraction of the training stars get extra parallax noise that lowers
    # their parallax S/N to a value drawn log-uniformly between augment_parallax_snr_min and
    # their own (error grown to match), so that the model sees the worse parallaxes of an
    # observed sample without the training sample's 20 % cut (Sect. 2.5).  Needs the
    # parallax error as an input (phot_input "intrinsic"); 0 switches it off.
    "augment_parallax_snr_min": 1.0,
    "augment_parallax_fraction": 0.5,
    # XP noise augmentation (not in the paper): a spectrum whose S/N the RVS augmentation
    # lowers by a factor k gets XP coefficients as noisy as a star k times fainter, noise
    # of sigma = error * sqrt(k^2 - 1) per coefficient, from the file's
    # xp/*_coefficient_errors; so the XP branch, too, sees the noise of the fainter
    # observed stars.  Needs the RVS augmentation, the XP coefficients as input and their
    # errors in the training file; false switches it off.
    "augment_xp": False,
}

#: Learning-rate schedules of :func:`train_member` (``training["schedule"]``).
SCHEDULES: tuple[str, ...] = ("plateau", "one_cycle")

#: Compute precisions of :func:`make_predictor` / :func:`predict_file`.
PRECISIONS: tuple[str, ...] = ("float32", "mixed_bfloat16")


class MemberError(RuntimeError):
    """A member directory that is missing files or does not fit the data."""


# --------------------------------------------------------------------------- scalers


def _minmax(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(x - lo) / (hi - lo) with a zero range mapped to 0 (constant feature)."""
    span = np.where(hi > lo, hi - lo, 1.0)
    return (x - lo) / span


def _f(a: np.ndarray | None) -> list[float] | None:
    return None if a is None else [float(v) for v in np.asarray(a, dtype=np.float64)]


def _a(v: Sequence[float] | None) -> np.ndarray | None:
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
        the luminosity with its error (intrinsic: :func:`gaiacnn.spectra.phot_features`)."""
        if self.phot_input == "intrinsic":
            return 2 + 2 * (PARALLAX_DATASET in self.phot_columns)
        return len(self.phot_columns)

    # -- serialisation
    def to_json(self) -> str:
        """Canonical JSON (sorted keys; floats written exactly, so the roundtrip is lossless)."""
        doc = {
            "format_version": SCALERS_FORMAT_VERSION,
            "labels": list(self.labels),
            "label_min": _f(self.label_min),
            "label_max": _f(self.label_max),
            "branches": list(self.branches),
            "phot_columns": list(self.phot_columns),
            "phot_input": self.phot_input,
            "phot_min": _f(self.phot_min),
            "phot_max": _f(self.phot_max),
            "xp_min": _f(self.xp_min),
            "xp_max": _f(self.xp_max),
            "n_pixels": self.n_pixels,
            "xp_length": self.xp_length,
            "xp_input": self.xp_input,
            "xp_sampled_length": self.xp_sampled_length,
            "xp_flux_kind": self.xp_flux_kind,
            "xp_wavelength_nm": _f(self.xp_wavelength_nm),
            "rvs_wavelength_nm": _f(self.rvs_wavelength_nm),
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
            label_min=_a(doc["label_min"]),
            label_max=_a(doc["label_max"]),
            branches=list(doc["branches"]),
            phot_columns=list(doc["phot_columns"]),
            # members trained before the key existed had the paper's input
            phot_input=str(doc.get("phot_input", "magnitudes")),
            phot_min=_a(doc["phot_min"]),
            phot_max=_a(doc["phot_max"]),
            xp_min=_a(doc["xp_min"]),
            xp_max=_a(doc["xp_max"]),
            n_pixels=doc["n_pixels"],
            xp_length=doc["xp_length"],
            xp_input=doc["xp_input"],
            xp_sampled_length=doc["xp_sampled_length"],
            xp_flux_kind=doc["xp_flux_kind"],
            xp_wavelength_nm=_a(doc["xp_wavelength_nm"]),
            rvs_wavelength_nm=_a(doc["rvs_wavelength_nm"]),
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
                cols = phot_features(block, self.phot_columns, self.phot_input)
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
        bad = ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)
        if bad.any():
            i = int(np.argmax(bad))
            raise LayoutError(
                path,
                name,
                f"non-finite input values in {int(bad.sum())} rows "
                f"(first: source_id {int(sid[i])})",
            )
    if XP_SAMPLED_DATASET in block and flux_kind == "absolute":
        with np.errstate(invalid="ignore"):
            bad = ~(np.asarray(block[XP_SAMPLED_DATASET], float).mean(axis=1) > 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise LayoutError(
                path,
                XP_SAMPLED_DATASET,
                f"mean flux <= 0 in {int(bad.sum())} rows (cannot normalise; "
                f"first: source_id {int(sid[i])})",
            )
    for bp_rp in XP_COEFFICIENT_DATASETS:
        if bp_rp in block:
            first = np.asarray(block[bp_rp])[:, 0]
            bad = first == 0
            if bad.any():
                i = int(np.argmax(bad))
                raise LayoutError(
                    path,
                    bp_rp,
                    f"first coefficient is 0 (cannot normalise; source_id {int(sid[i])})",
                )


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
) -> Scalers:
    """Fit the min-max scalers on ``rows`` (the training part only) of ``train_file``, and
    record the file's input contract (grids, XP form, photometry form) with them.

    Labels use nanmin/nanmax (stars with NaN labels should already be left out of ``rows``);
    inputs must be finite.  A zero range (constant feature, e.g. BP[0]/BP[0] = 1) maps to 0.
    ``xp_input``: "coefficients", "sampled" or "auto" (:func:`gaiacnn.layout.resolve_xp_input`).
    """
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
        )
    if "rvs" in branches:
        sc.rvs_wavelength_nm = _wavelengths(train_file, RVS_DATASET)
    if xp_form == "sampled":
        sc.xp_sampled_length = info.xp_sampled_length
        sc.xp_flux_kind = info.xp_flux_kind
        sc.xp_wavelength_nm = _wavelengths(train_file, XP_SAMPLED_DATASET)
    if "phot" in branches:
        p = phot_features(data, phot_cols, phot_input)
        sc.phot_min, sc.phot_max = p.min(axis=0), p.max(axis=0)
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


# --------------------------------------------------------------------------- model


def _merge(defaults: Mapping[str, Any], given: Mapping[str, Any] | None, what: str) -> dict:
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"unknown {what} key(s) {unknown} (known: {sorted(defaults)})")
    return {**defaults, **given}


def build_model(
    n_pixels: int | None,
    n_phot: int | None,
    xp_length: int | None,
    n_labels: int,
    arch: Mapping[str, Any] | None = None,
    *,
    xp_width: int | None = None,
) -> keras.Model:
    """The hybrid CNN (Sect. 3.1, Fig. 6); a branch is built when its size is not None.

    ``n_pixels``: RVS pixels P (input "rvs", (batch, P, 1)); ``n_phot``: photometry inputs
    (input "phot", (batch, 3 or 4)); ``xp_length``: coefficients per band M (input "xp",
    (batch, 2M)), or ``xp_width``: the XP input's width itself (K samples of the sampled
    flux).  Output: (batch, n_labels) scaled labels, linear.  ``arch`` overrides keys of
    :data:`DEFAULT_ARCH`.
    """
    a = _merge(DEFAULT_ARCH, arch, "arch")
    if xp_width is None and xp_length is not None:
        xp_width = 2 * int(xp_length)
    if n_pixels is None and n_phot is None and xp_width is None:
        raise ValueError("build_model needs at least one branch (rvs, phot or xp)")
    if n_labels < 1:
        raise ValueError("n_labels must be >= 1")
    slope = float(a["negative_slope"])

    def dense(x, units: int, name: str):
        x = keras.layers.Dense(int(units), name=name)(x)
        x = keras.layers.LeakyReLU(negative_slope=slope, name=f"{name}_act")(x)
        if a["dropout"]:
            x = keras.layers.Dropout(float(a["dropout"]), name=f"{name}_dropout")(x)
        return x

    inputs, feats = [], []
    if n_pixels is not None:
        filters = list(a["conv_filters"])
        if len(filters) != 3:
            raise ValueError("arch conv_filters must list 3 filter counts (Sect. 3.1)")
        x_in = keras.Input(shape=(int(n_pixels), 1), name="rvs", dtype="float32")
        x = x_in
        for i, nf in enumerate(filters, start=1):
            x = keras.layers.Conv1D(
                int(nf),
                int(a["kernel_size"]),
                activation=a["conv_activation"],
                padding=a["padding"],
                name=f"rvs_conv{i}",
            )(x)
            if i >= 2:  # max-pooling after convolution blocks two and three (Sect. 3.1)
                x = keras.layers.MaxPooling1D(int(a["pool_size"]), name=f"rvs_pool{i - 1}")(x)
        x = keras.layers.Flatten(name="rvs_flatten")(x)
        feats.append(dense(x, a["rvs_dense"], "rvs_dense"))
        inputs.append(x_in)
    if n_phot is not None:
        p_in = keras.Input(shape=(int(n_phot),), name="phot", dtype="float32")
        feats.append(dense(p_in, a["phot_dense"], "phot_dense"))
        inputs.append(p_in)
    if xp_width is not None:
        q_in = keras.Input(shape=(int(xp_width),), name="xp", dtype="float32")
        feats.append(dense(q_in, a["xp_dense"], "xp_dense"))
        inputs.append(q_in)
    h = keras.layers.Concatenate(name="concat")(feats) if len(feats) > 1 else feats[0]
    for i, units in enumerate(a["head_dense"], start=1):
        h = dense(h, units, f"head_dense{i}")
    out = keras.layers.Dense(int(n_labels), activation="linear", name="labels")(h)
    names = "_".join(i.name for i in inputs)
    return keras.Model(inputs=inputs, outputs=out, name=f"hybrid_cnn_{names}")


def model_for(scalers: Scalers, arch: Mapping[str, Any] | None = None) -> keras.Model:
    """Build the model that fits ``scalers`` (its branches and input sizes)."""
    b = scalers.branches
    return build_model(
        scalers.n_pixels if "rvs" in b else None,
        scalers.phot_width if "phot" in b else None,
        None,
        len(scalers.labels),
        arch,
        xp_width=scalers.xp_width,
    )


# --------------------------------------------------------------------------- data


def load_inputs(
    train_file: str | os.PathLike,
    rows: np.ndarray,
    branches: Sequence[str],
    scalers: Scalers,
    labels: Sequence[str],
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Model inputs and scaled labels of ``rows`` (in that order), held in memory.

    Returns ``({"rvs": (n, P, 1), "phot": (n, k), "xp": (n, 2M or K)}, y01 (n, n_labels))``,
    all float32.  Non-finite inputs raise :class:`LayoutError`; so do labels that are +-inf
    and rows with no finite label (callers drop such stars first, as :func:`train_member`
    does).  A NaN label stays NaN: :func:`masked_mse` leaves it out of the loss.
    """
    names = scalers.datasets(branches)
    lab_names = [label_dataset(n) for n in labels]
    data = _gather(train_file, [*names, *lab_names], rows)
    _check_finite(train_file, data, names, data["source_id"], scalers.xp_flux_kind)
    y = np.stack([data[n].astype(np.float64) for n in lab_names], axis=1)
    bad = np.isinf(y) | ~np.isfinite(y).any(axis=1, keepdims=True)
    if bad.any():
        i, j = (int(v[0]) for v in np.nonzero(bad))
        raise LayoutError(
            train_file,
            lab_names[j],
            f"+-inf labels, or no finite label, in {int(bad.any(axis=1).sum())} of the rows "
            f"(first: source_id {int(data['source_id'][i])}); drop such stars first",
        )
    return scalers.inputs(data, branches), scalers.scale_labels(y)


def masked_mse(y_true, y_pred):
    """Mean squared error over the labels that are known (NaN = unknown is left out), per
    star: sum of the squared errors of its finite labels / n_labels (the plain MSE when
    every label is known)."""
    known = tf.math.is_finite(y_true)
    diff = tf.where(known, y_true - y_pred, tf.zeros_like(y_pred))
    return tf.reduce_sum(tf.square(diff), axis=-1) / tf.cast(tf.shape(y_true)[-1], y_pred.dtype)


# --------------------------------------------------------------------------- training


def _read_labels(path, labels: Sequence[str]) -> np.ndarray:
    with h5py.File(path, "r") as h5:
        return np.stack([h5[label_dataset(n)][:].astype(np.float64) for n in labels], axis=1)


def augment_factors(
    snr: np.ndarray, rng: np.random.Generator, *, snr_min: float, fraction: float
) -> np.ndarray:
    """The factor k >= 1 by which the noise augmentation divides each spectrum's S/N: a
    random ``fraction`` of the spectra with S/N s > ``snr_min`` get a target S/N t drawn
    log-uniformly in [``snr_min``, s], k = s / t; the others k = 1.  (n,) float64."""
    snr = np.asarray(snr, dtype=np.float64)
    factor = np.ones(snr.size)
    pick = (rng.random(snr.size) < fraction) & np.isfinite(snr) & (snr > snr_min)
    idx = np.flatnonzero(pick)
    if idx.size:
        s = snr[idx]
        factor[idx] = s / np.exp(rng.uniform(np.log(snr_min), np.log(s)))
    return factor


def add_noise(
    values: np.ndarray, error: np.ndarray, factor: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """``values`` (n, ...) with Gaussian noise of sigma = ``error`` * sqrt(k^2 - 1) added to
    the rows whose factor k (``factor``, (n,)) is > 1, so that their total noise is
    ``error`` * k (an error of 0 or NaN: no noise); float32, a copy."""
    out = np.array(values, dtype=np.float32, copy=True)
    idx = np.flatnonzero(np.asarray(factor) > 1.0)
    if idx.size == 0:
        return out
    scale = np.sqrt(np.maximum(np.asarray(factor)[idx] ** 2 - 1.0, 0.0)).astype(np.float32)
    shape = (idx.size, *([1] * (out.ndim - 1)))
    noise = rng.standard_normal((idx.size, *out.shape[1:]), dtype=np.float32)
    err = np.nan_to_num(np.asarray(error, dtype=np.float32)[idx], nan=0.0)
    out[idx] += noise * err * scale.reshape(shape)
    return out


def augment_rvs(
    flux: np.ndarray,
    noise_unit: np.ndarray,
    snr: np.ndarray,
    rng: np.random.Generator,
    *,
    snr_min: float,
    fraction: float,
) -> np.ndarray:
    """Add Gaussian noise that lowers the S/N of a random ``fraction`` of the spectra.

    ``flux`` (n, P[, 1]) and ``noise_unit`` (same shape: the 1σ flux error of each pixel,
    0 where unknown) in normalised-flux units; ``snr`` (n,) the spectra's S/N.  A picked
    spectrum with S/N s > ``snr_min`` gets a target S/N t drawn log-uniformly in
    [``snr_min``, s] and noise of σ = noise_unit · sqrt((s/t)² − 1) per pixel, so its
    total noise is noise_unit · s/t (:func:`augment_factors`, :func:`add_noise`).  The
    others are returned unchanged (as a copy).
    """
    factor = augment_factors(snr, rng, snr_min=snr_min, fraction=fraction)
    return add_noise(flux, noise_unit, factor, rng)


def augment_parallax(
    parallax: np.ndarray,
    error: np.ndarray,
    rng: np.random.Generator,
    *,
    snr_min: float,
    fraction: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Lower the parallax S/N of a random ``fraction`` of stars, as :func:`augment_rvs`
    lowers the spectra's: a picked star with parallax / error = s > ``snr_min`` gets a
    target S/N t drawn log-uniformly in [``snr_min``, s], its error times s/t and Gaussian
    noise of σ = error · sqrt((s/t)² − 1) added to its parallax [mas].  Returns new arrays
    (parallax, error); the others are unchanged."""
    plx = np.array(parallax, dtype=np.float64, copy=True)
    err = np.array(error, dtype=np.float64, copy=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = plx / err
    pick = (rng.random(plx.size) < fraction) & np.isfinite(snr) & (snr > snr_min)
    idx = np.flatnonzero(pick)
    if idx.size:
        s = snr[idx]
        factor = s / np.exp(rng.uniform(np.log(snr_min), np.log(s)))
        plx[idx] += (
            err[idx] * np.sqrt(np.maximum(factor**2 - 1.0, 0.0)) * rng.standard_normal(idx.size)
        )
        err[idx] *= factor
    return plx, err


def noise_units(path, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(1σ pixel errors (n, P, 1), S/N (n,)) of ``rows`` for :func:`augment_rvs`.

    The errors are ``rvs/flux_error`` where the file has it (NaN → 0: filled pixels get no
    noise), else flux / ``rvs/snr``.  Needs ``rvs/snr``.
    """
    with h5py.File(path, "r") as h5:
        has_err = "rvs/flux_error" in h5
        if "rvs/snr" not in h5:
            raise LayoutError(path, "rvs/snr", "missing; noise augmentation needs the S/N")
    names = ["rvs/snr", "rvs/flux_error" if has_err else RVS_DATASET]
    data = _gather(path, names, rows)
    snr = data["rvs/snr"].astype(np.float64)
    if has_err:
        unit = data["rvs/flux_error"].astype(np.float32)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            unit = (np.abs(data[RVS_DATASET]) / snr[:, None]).astype(np.float32)
    unit[~np.isfinite(unit)] = 0.0
    return unit[..., None], snr


class AugmentedBatches:
    """Shuffled training batches whose RVS spectra get :func:`augment_rvs` noise (when
    ``noise_unit`` is given) and whose parallaxes get :func:`augment_parallax` noise (when
    ``phot_raw``, the photometry branch's datasets, and ``phot_fn``, datasets -> scaled
    input, are given).

    Deterministic: global step s is batch i = s mod len(self) of epoch e = s // len(self);
    the order of epoch e and the noise of its batch i depend only on (seed, e, i), so the
    same seed gives the same batches in any run, however many threads prepare them.
    :meth:`dataset` serves them through ``tf.data`` (prepared in background threads,
    overlapping the training steps; a Python-side ``keras.utils.PyDataset`` halved the
    training rate on 2 cores).
    """

    def __init__(
        self,
        x,
        y,
        noise_unit,
        snr,
        *,
        batch_size,
        seed,
        snr_min,
        fraction,
        phot_raw=None,
        phot_fn=None,
        parallax_snr_min=0.0,
        parallax_fraction=0.0,
        xp_raw=None,
        xp_fn=None,
    ):
        self.x, self.y = x, y
        self.names = sorted(x)
        self.noise_unit, self.snr = noise_unit, snr
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.snr_min, self.fraction = float(snr_min), float(fraction)
        self.phot_raw, self.phot_fn = phot_raw, phot_fn
        self.parallax_snr_min = float(parallax_snr_min)
        self.parallax_fraction = float(parallax_fraction)
        # XP coefficients and their errors (layout names), re-noised with the RVS factors
        self.xp_raw, self.xp_fn = xp_raw, xp_fn

    def _order(self, epoch: int) -> np.ndarray:
        # Recomputed per batch (about 1 ms for 10^5 stars): no cache shared between the
        # tf.data threads that prepare batches concurrently.
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.y))

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def batch(self, step: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(inputs, scaled labels) of global step ``step``."""
        epoch, i = divmod(int(step), len(self))
        idx = self._order(epoch)[i * self.batch_size : (i + 1) * self.batch_size]
        xb = {k: v[idx] for k, v in self.x.items()}
        rng = np.random.default_rng([self.seed, epoch, i, 1])
        if self.noise_unit is not None:
            factor = augment_factors(
                self.snr[idx], rng, snr_min=self.snr_min, fraction=self.fraction
            )
            xb["rvs"] = add_noise(xb["rvs"], self.noise_unit[idx], factor, rng)
            if self.xp_raw is not None:
                xrng = np.random.default_rng([self.seed, epoch, i, 3])
                block = {}
                for coef, err in zip(XP_COEFFICIENT_DATASETS, XP_ERROR_DATASETS, strict=True):
                    block[coef] = add_noise(
                        self.xp_raw[coef][idx], self.xp_raw[err][idx], factor, xrng
                    )
                xb["xp"] = self.xp_fn(block)
        if self.phot_raw is not None:
            block = {k: v[idx] for k, v in self.phot_raw.items()}
            prng = np.random.default_rng([self.seed, epoch, i, 2])
            block[PARALLAX_DATASET], block[PARALLAX_ERROR_DATASET] = augment_parallax(
                block[PARALLAX_DATASET],
                block[PARALLAX_ERROR_DATASET],
                prng,
                snr_min=self.parallax_snr_min,
                fraction=self.parallax_fraction,
            )
            xb["phot"] = self.phot_fn(block)
        return xb, self.y[idx]

    def dataset(self, epochs: int) -> tf.data.Dataset:
        """``epochs`` × len(self) batches as a ``tf.data.Dataset`` (use with
        ``steps_per_epoch=len(self)``)."""
        names = self.names

        def make(step):
            xb, yb = self.batch(step)
            return (*[np.asarray(xb[k], np.float32) for k in names], yb.astype(np.float32))

        def to_tf(step):
            out = tf.numpy_function(make, [step], [tf.float32] * (len(names) + 1))
            x = {}
            for k, t in zip(names, out[:-1], strict=True):
                t.set_shape((None, *self.x[k].shape[1:]))
                x[k] = t
            y = out[-1]
            y.set_shape((None, *self.y.shape[1:]))
            return x, y

        return (
            tf.data.Dataset.range(int(epochs) * len(self))
            .map(to_tf, num_parallel_calls=2, deterministic=True)
            .prefetch(2)
        )


class LearningRateSchedule(keras.callbacks.Callback):
    """Per-batch learning rate: linear warm-up, then constant ("plateau") or cosine decay
    ("one_cycle"), composed with the cuts :class:`keras.callbacks.ReduceLROnPlateau` makes.

    Place it after ReduceLROnPlateau in the callback list.  At each epoch start a learning
    rate lower than the one this callback last set is read as a plateau cut, and the ratio
    multiplies every later value (so ``min_lr`` and the cuts keep their meaning).
    """

    def __init__(
        self,
        peak_lr: float,
        steps_per_epoch: int,
        *,
        schedule: str = "plateau",
        warmup_epochs: float = 0,
        max_epochs: int = 1,
        final_factor: float = 0.01,
    ):
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r} (known: {', '.join(SCHEDULES)})")
        if warmup_epochs < 0:
            raise ValueError("lr_warmup_epochs must be >= 0")
        self.peak = float(peak_lr)
        self.schedule = schedule
        self.steps = max(1, int(steps_per_epoch))
        self.warmup = round(float(warmup_epochs) * self.steps)
        self.total = max(self.warmup + 1, int(max_epochs) * self.steps)
        self.final = float(final_factor)
        self.cut = 1.0
        self.step = 0
        self._last: float | None = None

    def lr_at(self, step: int) -> float:
        """Learning rate of batch ``step`` (0-based, counted over all epochs), before cuts."""
        if step < self.warmup:
            return self.peak * (step + 1) / self.warmup
        if self.schedule == "plateau":
            return self.peak
        t = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.peak * (self.final + (1.0 - self.final) * 0.5 * (1.0 + np.cos(np.pi * t)))

    def _get(self) -> float:
        return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_begin(self, epoch, logs=None):
        if self._last is not None:
            now = self._get()
            if now < self._last * (1 - 1e-6):
                self.cut *= now / self._last

    def on_train_batch_begin(self, batch, logs=None):
        lr = self.lr_at(self.step) * self.cut
        self.model.optimizer.learning_rate.assign(lr)
        self._last = lr
        self.step += 1


def train_member(
    train_file: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    split: int,
    seed: int,
    labels: Sequence[str],
    branches: Sequence[str],
    arch: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    xp_input: str = "auto",
    phot_input: str = "magnitudes",
) -> dict[str, Any]:
    """Train one ensemble member (Sect. 3.2) and write ``out_dir``/{model.keras, history.json,
    scalers.json} atomically (all three renamed into place only on success).

    The 75/25 split depends only on ``split`` (and ``training["base_seed"]``); weight
    initialisation and batch shuffling only on ``seed``; with op determinism on, the same
    seed and data give the same weights on CPU.  A NaN label is left out of the loss
    (:func:`masked_mse`); stars with no finite label at all are left out of training and
    validation (the split is drawn over all rows first, so it does not depend on which
    labels are missing).  ``labels`` empty: every label of the file; ``branches`` empty:
    every branch the file can feed; ``xp_input``: the XP form (auto: the coefficients where
    the file has them, else the sampled flux); ``phot_input``: the photometry form
    (:data:`gaiacnn.layout.PHOT_INPUTS`).  Returns a summary dict.
    """
    t0 = time.time()
    tr = _merge(DEFAULT_TRAINING, training, "training")
    if tr["schedule"] not in SCHEDULES:
        raise ValueError(f"unknown schedule {tr['schedule']!r} (known: {', '.join(SCHEDULES)})")
    info = validate(train_file, check_values=False)
    labels = _check_labels(train_file, info, labels)
    branches = _check_branches(train_file, info, branches)

    augment = float(tr["augment_snr_min"]) > 0 and float(tr["augment_fraction"]) > 0
    if augment and "rvs" not in branches:
        augment = False  # nothing to add noise to
    if augment:
        with h5py.File(train_file, "r") as h5:
            if "rvs/snr" not in h5:
                warnings.warn(
                    f"{train_file}: no rvs/snr, so no noise augmentation (it needs the "
                    "spectra's S/N); training on the spectra as they are",
                    stacklevel=2,
                )
                augment = False
    y_all = _read_labels(train_file, labels)
    labelled = np.any(np.isfinite(y_all), axis=1)
    n_nan = {lab: int((~np.isfinite(y_all[:, j])).sum()) for j, lab in enumerate(labels)}
    train_rows, val_rows = split_indices(
        info.n_rows, split, tr["validation_fraction"], tr["base_seed"]
    )
    train_rows = train_rows[labelled[train_rows]]
    val_rows = val_rows[labelled[val_rows]]
    if train_rows.size == 0 or val_rows.size == 0:
        raise LayoutError(
            train_file,
            "labels",
            f"too few stars with a finite label of {labels} "
            f"({int(labelled.sum())} of {info.n_rows}) to train and validate",
        )

    scalers = fit_scalers(train_file, train_rows, labels, branches, xp_input, phot_input)
    augment_plx = (
        float(tr["augment_parallax_snr_min"]) > 0
        and float(tr["augment_parallax_fraction"]) > 0
        and "phot" in branches
        and PARALLAX_ERROR_DATASET in scalers.phot_columns
    )
    augment_xp = bool(tr["augment_xp"]) and "xp" in branches
    if augment_xp and not (float(tr["augment_snr_min"]) > 0 and float(tr["augment_fraction"]) > 0):
        raise ValueError(
            "model.training.augment_xp needs the RVS noise augmentation (its S/N factors): "
            "set augment_snr_min and augment_fraction > 0, or switch augment_xp off"
        )
    if augment_xp and not augment:
        warnings.warn(
            f"{train_file}: no RVS noise augmentation (see above), so no XP augmentation",
            stacklevel=2,
        )
        augment_xp = False
    if augment_xp and scalers.xp_input != "coefficients":
        raise ValueError(
            "model.training.augment_xp needs the XP coefficients as input "
            f"(model.xp_input resolves to {scalers.xp_input!r}: set it to coefficients, or "
            "switch augment_xp off)"
        )
    with h5py.File(train_file, "r") as h5:
        has_xp_errors = all(e in h5 for e in XP_ERROR_DATASETS)
    if augment_xp and not has_xp_errors:
        raise LayoutError(
            train_file,
            XP_ERROR_DATASETS[0],
            "missing: model.training.augment_xp needs the XP coefficient errors "
            f"({', '.join(XP_ERROR_DATASETS)}); add them or switch augment_xp off",
        )
    x_tr, y_tr = load_inputs(train_file, train_rows, branches, scalers, labels)
    x_va, y_va = load_inputs(train_file, val_rows, branches, scalers, labels)

    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()
    model = model_for(scalers, arch)
    model.compile(optimizer=keras.optimizers.Adam(float(tr["learning_rate"])), loss=masked_mse)
    callbacks = [
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss",
            factor=float(tr["reduce_lr_factor"]),
            patience=int(tr["reduce_lr_patience"]),
            min_lr=float(tr["min_lr"]),
        ),
        keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=int(tr["early_stopping_patience"]),
            restore_best_weights=True,
        ),
    ]
    if tr["schedule"] != "plateau" or float(tr["lr_warmup_epochs"]) > 0:
        # After ReduceLROnPlateau (so its cuts are seen), before EarlyStopping.
        callbacks.insert(
            1,
            LearningRateSchedule(
                float(tr["learning_rate"]),
                -(-train_rows.size // int(tr["batch_size"])),
                schedule=tr["schedule"],
                warmup_epochs=float(tr["lr_warmup_epochs"]),
                max_epochs=int(tr["max_epochs"]),
                final_factor=float(tr["lr_final_factor"]),
            ),
        )
    if augment or augment_plx:
        unit, snr = noise_units(train_file, train_rows) if augment else (None, None)
        data = AugmentedBatches(
            x_tr,
            y_tr,
            unit,
            snr,
            batch_size=int(tr["batch_size"]),
            seed=int(seed),
            snr_min=float(tr["augment_snr_min"]),
            fraction=float(tr["augment_fraction"]),
            phot_raw=_gather(train_file, scalers.phot_columns, train_rows) if augment_plx else None,
            phot_fn=lambda block: scalers.inputs(block, ["phot"])["phot"],
            parallax_snr_min=float(tr["augment_parallax_snr_min"]),
            parallax_fraction=float(tr["augment_parallax_fraction"]),
            xp_raw=(
                _gather(train_file, [*XP_COEFFICIENT_DATASETS, *XP_ERROR_DATASETS], train_rows)
                if augment_xp
                else None
            ),
            xp_fn=lambda block: scalers.inputs(block, ["xp"])["xp"],
        )
        fit_args: dict[str, Any] = {
            "x": data.dataset(int(tr["max_epochs"])),
            "steps_per_epoch": len(data),
            "shuffle": False,  # shuffled by AugmentedBatches itself
        }
    else:
        fit_args = {"x": x_tr, "y": y_tr, "batch_size": int(tr["batch_size"]), "shuffle": True}
    hist = model.fit(
        **fit_args,
        validation_data=(x_va, y_va),
        epochs=int(tr["max_epochs"]),
        callbacks=callbacks,
        verbose=int(tr["verbose"]),
    )
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    val_loss = history.get("val_loss", [])
    best = int(np.nanargmin(val_loss)) if val_loss else -1
    summary: dict[str, Any] = {
        "split": int(split),
        "seed": int(seed),
        "labels": list(labels),
        "branches": list(branches),
        "n_train": int(train_rows.size),
        "n_validation": int(val_rows.size),
        "n_dropped_nan_labels": int((~labelled).sum()),
        "n_nan_labels": n_nan,
        "xp_input": scalers.xp_input,
        "epochs_run": len(val_loss),
        "best_epoch": best + 1,
        "best_val_loss": float(val_loss[best]) if val_loss else None,
        "n_parameters": int(model.count_params()),
        "noise_augmentation": augment,
        "parallax_augmentation": augment_plx,
        "phot_input": scalers.phot_input if "phot" in branches else None,
        "train_seconds": round(time.time() - t0, 3),
        "arch": _merge(DEFAULT_ARCH, arch, "arch"),
        "training": tr,
        "train_file": str(train_file),
    }
    _save_member(Path(out_dir), model, scalers, {"history": history, "summary": summary})
    return summary


def _save_member(out_dir: Path, model: keras.Model, scalers: Scalers, history: dict) -> None:
    """Write the three member files under temporary names, then rename them into place."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        tmp_scalers = stack.enter_context(atomic_output(out_dir / SCALERS_FILE))
        tmp_history = stack.enter_context(atomic_output(out_dir / HISTORY_FILE))
        tmp_scalers.write_text(scalers.to_json(), encoding="utf-8")
        tmp_history.write_text(json.dumps(history, indent=1, sort_keys=True), encoding="utf-8")
        fd, name = tempfile.mkstemp(prefix=f".{MODEL_FILE}.", suffix=".tmp.keras", dir=out_dir)
        os.close(fd)
        tmp_model = Path(name)
        try:
            model.save(tmp_model)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_model, 0o666 & ~umask)  # mkstemp makes 0600; usual permissions
        except BaseException:
            tmp_model.unlink(missing_ok=True)
            raise
        stack.callback(os.replace, tmp_model, out_dir / MODEL_FILE)
    # ExitStack unwinds in reverse: model.keras first, then history.json, then scalers.json.


# --------------------------------------------------------------------------- prediction


def load_member(member_dir: str | os.PathLike) -> tuple[keras.Model, Scalers]:
    """The trained model and its scalers from a member directory."""
    d = Path(member_dir)
    missing = [f for f in (MODEL_FILE, SCALERS_FILE) if not (d / f).is_file()]
    if missing:
        raise MemberError(f"{d}: member directory lacks {', '.join(missing)} (was it trained?)")
    scalers = Scalers.from_json((d / SCALERS_FILE).read_text(encoding="utf-8"))
    model = keras.models.load_model(d / MODEL_FILE, compile=False)
    return model, scalers


def describe_grid(wl: np.ndarray | None) -> str:
    """A wavelength grid in words: "846.00-870.00 nm, 2401 samples (step 0.01 nm)"."""
    if wl is None:
        return "no grid"
    wl = np.asarray(wl, dtype=float)
    if wl.size < 2:
        return f"{wl.size} sample(s)"
    return f"{wl[0]:.2f}-{wl[-1]:.2f} nm, {wl.size} samples (step {np.median(np.diff(wl)):.4g} nm)"


def same_grid(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """Two wavelength grids agree sample for sample within :data:`GRID_TOLERANCE_NM`."""
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= GRID_TOLERANCE_NM))


def _regridder(src: np.ndarray, dst: np.ndarray):
    """Linear interpolation of (n, len(src)) spectra onto ``dst`` (inside ``src``)."""

    def fn(values: np.ndarray) -> np.ndarray:
        v = np.asarray(values, dtype=np.float64)
        out = np.empty((v.shape[0], dst.size), dtype=np.float32)
        for i in range(v.shape[0]):
            out[i] = np.interp(dst, src, v[i])
        return out

    return fn


def check_contract(scalers: Scalers, info: LayoutInfo, *, resample: bool = False) -> dict:
    """Refuse a file that breaks the member's input contract (one line naming both sides):
    a branch whose data it lacks, parallax missing, another XP form or coefficient count,
    another RVS or XP-sampled wavelength grid (``resample``: accepted when it covers the
    member's grid, and interpolated onto it), another flux kind.  Returns ``{dataset:
    function}`` of the datasets to resample (empty when the grids agree)."""
    path = info.path
    need = {"rvs": RVS_DATASET, "phot": PHOT_DATASETS[0], "xp": xp_datasets(scalers.xp_input)[0]}
    for b in scalers.branches:
        if b not in info.branches:
            raise LayoutError(
                path,
                need[b],
                f"the model needs branch {b!r}, whose data the file lacks "
                f"(it can feed: {', '.join(info.branches) or 'no branch'})",
            )
    if "phot" in scalers.branches and PARALLAX_DATASET in scalers.phot_columns:
        if not info.has_parallax:
            raise LayoutError(path, PARALLAX_DATASET, "the model needs parallax")
        _require(path, scalers.phot_columns)
    regrid: dict = {}
    grids = []
    if "rvs" in scalers.branches:
        grids.append((RVS_DATASET, scalers.rvs_wavelength_nm))
    if "xp" in scalers.branches:
        if scalers.xp_input not in info.xp_inputs:
            raise LayoutError(
                path,
                need["xp"],
                f"the model's XP input is the {scalers.xp_input}, which the file lacks "
                f"(it has: {', '.join(info.xp_inputs)})",
            )
        if scalers.xp_input == "coefficients" and info.xp_length != scalers.xp_length:
            raise LayoutError(
                path,
                XP_COEFFICIENT_DATASETS[0],
                f"{info.xp_length} coefficients per band, the model was trained on "
                f"{scalers.xp_length}",
            )
        if scalers.xp_input == "sampled":
            if info.xp_flux_kind != scalers.xp_flux_kind:
                raise LayoutError(
                    path,
                    XP_SAMPLED_DATASET,
                    f"flux_kind {info.xp_flux_kind!r}, the model was trained on "
                    f"{scalers.xp_flux_kind!r} flux",
                )
            grids.append((XP_SAMPLED_DATASET, scalers.xp_wavelength_nm))
    for name, model_wl in grids:
        with h5py.File(path, "r") as h5:
            file_wl = np.asarray(h5[name].attrs["wavelength_nm"], dtype=float)
        if same_grid(file_wl, model_wl):
            continue
        covers = file_wl[0] <= model_wl[0] + GRID_TOLERANCE_NM and (
            file_wl[-1] >= model_wl[-1] - GRID_TOLERANCE_NM
        )
        if resample and covers:
            regrid[name] = _regridder(file_wl, np.asarray(model_wl, float))
            continue
        hint = (
            "; prediction.resample: true interpolates it onto the model's grid"
            if covers
            else "; it does not cover the model's grid, so it cannot be resampled"
        )
        raise LayoutError(
            path,
            name,
            f"wavelength grid {describe_grid(file_wl)} differs from the grid the model was "
            f"trained on, {describe_grid(model_wl)}{hint}",
        )
    return regrid


#: Layers a "mixed_bfloat16" compute copy runs in bfloat16: the second convolution (about
#: 80 % of the network's multiply-adds) and the pooling after it.  Measured on the benchmark
#: (benchmarks/model_speed.py, AVX512_BF16 CPU): bfloat16 for every hidden layer was ~1.55x
#: faster than float32 but moved T_eff by up to 0.06 sigma (bfloat16 keeps 8 bits: a flux near
#: 1 or a ReLU activation is rounded to ~0.4 %); these two alone: ~1.35x, <= 0.025 sigma.
BFLOAT16_LAYERS: tuple[str, ...] = ("rvs_conv2", "rvs_pool1")


def compute_copy(model: keras.Model, precision: str = "float32") -> keras.Model:
    """``model`` itself for "float32"; for "mixed_bfloat16" a copy with the same (float32)
    weights whose layers :data:`BFLOAT16_LAYERS` compute in bfloat16 (Keras mixed precision
    policy, weights cast on the fly); every other layer, the output included, stays float32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    if precision == "float32":
        return model

    def clone(layer):
        config = layer.get_config()
        if layer.name in BFLOAT16_LAYERS:
            config["dtype"] = keras.DTypePolicy(precision)
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def make_predictor(model: keras.Model, batch_size: int, *, precision: str = "float32"):
    """A function ``inputs dict -> (n, n_labels) float32`` running ``model`` in fixed batches.

    One ``tf.function`` traced once for a fixed ``(batch_size, ...)`` signature; the last
    partial batch is zero-padded, so no retracing happens whatever n is.  ``precision``
    "mixed_bfloat16" runs a bfloat16 compute copy of the weights (:func:`compute_copy`);
    inputs and outputs stay float32.
    """
    model = compute_copy(model, precision)
    names = [t.name for t in model.inputs]
    spec = {
        n: tf.TensorSpec((batch_size, *t.shape[1:]), tf.float32)
        for n, t in zip(names, model.inputs, strict=True)
    }

    @tf.function(input_signature=[spec], reduce_retracing=False)
    def step(x):
        return tf.cast(model(x, training=False), tf.float32)

    def predict(x: Mapping[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(x.values())))
        out = np.empty((n, model.outputs[0].shape[-1]), dtype=np.float32)
        for s in range(0, n, batch_size):
            e = min(s + batch_size, n)
            batch = {}
            for k in names:
                v = np.asarray(x[k][s:e], dtype=np.float32)
                if e - s < batch_size:
                    pad = np.zeros((batch_size - (e - s), *v.shape[1:]), dtype=np.float32)
                    v = np.concatenate([v, pad])
                batch[k] = v
            out[s:e] = step(batch).numpy()[: e - s]
        return out

    return predict


def predict_file(
    member_dir: str | os.PathLike,
    arrays_file: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    chunk_rows: int = 4096,
    batch_size: int = 2048,
    progress: bool = True,
    precision: str = "float32",
    rows: tuple[int, int] | None = None,
    resample: bool = False,
) -> None:
    """Predict the labels of the stars of ``arrays_file`` with one member; write ``out_path``.

    The file must keep the member's input contract (:func:`check_contract`): the same
    branches, XP form, coefficient count, wavelength grids and flux kind.  ``resample``:
    spectra on another grid that covers the member's are interpolated (linearly) onto it
    instead of refused.

    Every star, or rows ``[start, stop)`` only if ``rows`` is given (one shard: the root
    attributes ``shard_start``, ``shard_stop`` and ``n_rows_total`` record it).  Streams
    ``arrays_file`` in chunks of ``chunk_rows`` (memory independent of N).  Output HDF5
    (written atomically): ``source_id`` int64 (n,) and ``pred/<label>`` float32 (n,) in
    physical units; root attributes name the member and the inputs used.  ``precision``:
    compute precision of the network (see :func:`make_predictor`); with a value other than
    "float32" it is recorded as the root attribute ``precision``.
    """
    from tqdm.auto import tqdm

    model, scalers = load_member(member_dir)
    info = validate(arrays_file, check_values=False)
    regrid = check_contract(scalers, info, resample=resample)
    names = scalers.datasets()
    first, last = (0, info.n_rows) if rows is None else (int(rows[0]), int(rows[1]))
    n = last - first
    predict = make_predictor(model, int(batch_size), precision=precision)
    with atomic_output(out_path) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs["member_dir"] = str(member_dir)
        if rows is not None:
            h5.attrs["shard_start"], h5.attrs["shard_stop"] = first, last
            h5.attrs["n_rows_total"] = info.n_rows
        if precision != "float32":
            h5.attrs["precision"] = precision
        h5.attrs["arrays_file"] = str(arrays_file)
        h5.attrs["labels"] = json.dumps(scalers.labels)
        h5.attrs["branches"] = json.dumps(scalers.branches)
        h5.attrs["xp_input"] = scalers.xp_input or ""
        if regrid:
            h5.attrs["resampled"] = json.dumps(sorted(regrid))
        sid_ds = h5.create_dataset("source_id", shape=(n,), dtype=np.int64)
        preds = {
            lab: h5.create_dataset(f"pred/{lab}", shape=(n,), dtype=np.float32)
            for lab in scalers.labels
        }
        with tqdm(total=n, unit="star", disable=not progress, desc="predict") as bar:
            for row, block in iter_rows(arrays_file, ["source_id", *names], chunk_rows, rows):
                sid = block["source_id"]
                for name, fn in regrid.items():
                    block[name] = fn(block[name])
                _check_finite(arrays_file, block, names, sid, scalers.xp_flux_kind)
                y = scalers.unscale_labels(predict(scalers.inputs(block)))
                start = row - first
                stop = start + len(sid)
                sid_ds[start:stop] = sid
                for j, lab in enumerate(scalers.labels):
                    preds[lab][start:stop] = y[:, j]
                bar.update(len(sid))
