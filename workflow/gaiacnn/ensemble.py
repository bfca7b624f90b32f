"""The ensemble: combine member predictions into labels with honest uncertainties (Sect. 3.4, 4.2).

* label = mean over the members; ``e_<label>`` = their standard deviation (model-to-model);
* the running dispersion of (CNN − reference) against the reference label over the training
  sample, fitted with a polynomial; ``sigma_<label>`` = quadrature sum of ``e_<label>`` and
  that fit evaluated at the star's CNN label (clamped to the fitted range);
* the effective range of the training sample (Table 1): each label, G and parallax.

Everything streams over the member prediction files in row chunks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np

from gaiacnn.io import write_text_atomic

#: Stars per bin of the running dispersion (quantile bins of the reference label).
DEFAULT_MIN_PER_BIN = 50


class EnsembleError(ValueError):
    """Member predictions that cannot be combined (missing, different stars, ...)."""


def member_name(split: int, seed: int) -> str:
    """Name of ensemble member (split, seed), e.g. ``split3_seed1``."""
    return f"split{int(split)}_seed{int(seed)}"


def iter_member_chunks(
    paths: Sequence[str | os.PathLike], labels: Sequence[str], chunk_rows: int = 65536
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(source_id, preds)`` chunks, ``preds`` (n_members, n, n_labels) float64.

    Every member file must hold the same stars in the same order (they predict one
    arrays file); anything else is refused naming the file.
    """
    if not paths:
        raise EnsembleError("no member predictions to combine")
    files = [h5py.File(p, "r") for p in paths]
    try:
        n = files[0]["source_id"].shape[0]
        for path, h5 in zip(paths, files, strict=True):
            if h5["source_id"].shape[0] != n:
                raise EnsembleError(f"{path}: {h5['source_id'].shape[0]} stars, {paths[0]} has {n}")
            for label in labels:
                if f"pred/{label}" not in h5:
                    raise EnsembleError(f"{path}: pred/{label} missing")
        for start in range(0, n, chunk_rows):
            stop = min(start + chunk_rows, n)
            sid = files[0]["source_id"][start:stop]
            preds = np.empty((len(files), stop - start, len(labels)))
            for k, (path, h5) in enumerate(zip(paths, files, strict=True)):
                if k and not np.array_equal(h5["source_id"][start:stop], sid):
                    raise EnsembleError(f"{path}: source ids differ from {paths[0]}")
                for j, label in enumerate(labels):
                    preds[k, :, j] = h5[f"pred/{label}"][start:stop]
            yield sid, preds
    finally:
        for h5 in files:
            h5.close()


def combine(preds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and model-to-model standard deviation over axis 0 (members); ddof=1 if ≥ 2 members."""
    mean = preds.mean(axis=0)
    std = preds.std(axis=0, ddof=1) if preds.shape[0] > 1 else np.zeros_like(mean)
    return mean, std


@dataclass(frozen=True)
class DispersionFit:
    """Running dispersion of (CNN − reference) against the reference label, and its fit."""

    label: str
    centres: list[float]  # bin centres (median reference label of each bin)
    dispersion: list[float]  # standard deviation of the residuals in each bin
    counts: list[int]
    coefficients: list[float]  # numpy.polynomial.Polynomial coefficients (power basis)
    x_min: float  # the fit is evaluated on [x_min, x_max] only (clamped outside)
    x_max: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The fitted dispersion at label value(s) ``x`` (never below the smallest bin value)."""
        poly = np.polynomial.Polynomial(self.coefficients)
        value = poly(np.clip(np.asarray(x, dtype=float), self.x_min, self.x_max))
        return np.maximum(value, min(self.dispersion))


def running_dispersion(
    reference: np.ndarray,
    cnn: np.ndarray,
    label: str,
    *,
    n_bins: int,
    degree: int,
    min_per_bin: int = DEFAULT_MIN_PER_BIN,
) -> DispersionFit:
    """Bin the training stars by reference label (equal counts) and fit σ(CNN − ref) (Sect. 3.4).

    ``n_bins`` is reduced so each bin holds at least ``min_per_bin`` stars; ``degree`` is
    reduced below the number of bins.  Non-finite pairs are ignored.
    """
    ok = np.isfinite(reference) & np.isfinite(cnn)
    x = np.asarray(reference, float)[ok]
    r = np.asarray(cnn, float)[ok] - x
    if x.size < 2 * min(min_per_bin, 10):
        raise EnsembleError(f"{label}: only {x.size} training stars with finite labels")
    bins = int(max(1, min(n_bins, x.size // max(1, min_per_bin))))
    order = np.argsort(x, kind="stable")
    groups = np.array_split(order, bins)
    centres = np.array([np.median(x[g]) for g in groups])
    disp = np.array([np.std(r[g], ddof=1) for g in groups])
    counts = [int(g.size) for g in groups]
    deg = int(min(degree, bins - 1))
    if deg >= 1:
        poly = np.polynomial.Polynomial.fit(centres, disp, deg, w=np.sqrt(counts)).convert()
        coef = [float(c) for c in poly.coef]
    else:
        coef = [float(np.average(disp, weights=counts))]
    return DispersionFit(
        label=label,
        centres=[float(c) for c in centres],
        dispersion=[float(d) for d in disp],
        counts=counts,
        coefficients=coef,
        x_min=float(centres.min()),
        x_max=float(centres.max()),
    )


def total_uncertainty(e: np.ndarray, fit: DispersionFit, value: np.ndarray) -> np.ndarray:
    """``sigma`` = sqrt(e² + fit(value)²) (Sect. 3.4)."""
    return np.sqrt(np.asarray(e, float) ** 2 + fit(value) ** 2)


def effective_range(values: Mapping[str, np.ndarray], quantiles: Sequence[float]) -> dict:
    """Effective range of the training sample (Table 1): {name: [low, high]} at ``quantiles``."""
    lo_q, hi_q = quantiles
    out = {}
    for name, v in values.items():
        v = np.asarray(v, float)
        v = v[np.isfinite(v)]
        if v.size == 0:
            raise EnsembleError(f"training range of {name}: no finite value")
        out[name] = [float(np.quantile(v, lo_q)), float(np.quantile(v, hi_q))]
    return out


def write_uncertainty_model(
    fits: Sequence[DispersionFit], training_range: Mapping, members: Sequence[str], path
) -> None:
    """JSON of the dispersion fits, the training range and the members used."""
    doc = {
        "members": list(members),
        "training_range": dict(training_range),
        "running_dispersion": {f.label: asdict(f) for f in fits},
    }
    write_text_atomic(path, json.dumps(doc, indent=1, sort_keys=True))


def read_uncertainty_model(path: str | os.PathLike) -> tuple[dict[str, DispersionFit], dict]:
    """Read back :func:`write_uncertainty_model`'s JSON: (fits by label, training range)."""
    doc = json.loads(Path(path).read_text())
    fits = {k: DispersionFit(**v) for k, v in doc["running_dispersion"].items()}
    return fits, doc["training_range"]
