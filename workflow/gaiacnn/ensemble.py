"""The ensemble: combine member predictions into labels with honest uncertainties (Sect. 3.4, 4.2).

* label = mean over the members; ``e_<label>`` = their standard deviation (model-to-model);
* the running dispersion of (CNN − reference) against the reference label over the training
  sample, fitted with a polynomial; ``sigma_<label>`` = quadrature sum of ``e_<label>`` and
  that fit evaluated at the star's CNN label (clamped to the fitted range);
* optionally (not in the paper) a factor on ``sigma_<label>`` as a function of the RVS
  S/N, fitted so that ±1σ covers 68 % of out-of-sample residuals (observed stars with
  reference labels, and training stars through the members that held them out):
  the paper's recipe is measured on the stars the network trained on, at S/N ≥ 30, and
  under-covers the noisier observed sample;
* the effective range of the training sample (Table 1): each label, G and parallax.

Everything streams over the member prediction files in row chunks.
"""

from __future__ import annotations

import json
import os
import re
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


def parse_member(name: str) -> tuple[int, int]:
    """(split, seed) of a member name made by :func:`member_name`."""
    m = re.fullmatch(r"split(\d+)_seed(\d+)", name)
    if m is None:
        raise EnsembleError(f"not an ensemble member name: {name!r} (expected splitN_seedM)")
    return int(m.group(1)), int(m.group(2))


def split_indices(
    n: int, split: int, validation_fraction: float = 0.25, base_seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Random training / validation rows (sorted int64) of a sample of ``n`` stars (Sect. 3.2).

    Depends only on ``(n, split, validation_fraction, base_seed)``: the same split number
    gives the same partition on every machine (numpy PCG64 seeded with [base_seed, split]).
    """
    if n < 2:
        raise ValueError(f"cannot split {n} stars into training and validation sets")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    if split < 0 or base_seed < 0:
        raise ValueError("split and base_seed must be >= 0")
    rng = np.random.default_rng([int(base_seed), int(split)])
    perm = rng.permutation(n)
    n_val = min(max(1, round(n * validation_fraction)), n - 1)
    return np.sort(perm[n_val:]).astype(np.int64), np.sort(perm[:n_val]).astype(np.int64)


def validation_masks(
    members: Sequence[str], n: int, validation_fraction: float, base_seed: int
) -> np.ndarray:
    """(n_members, n) bool: True where the star was in that member's validation set.

    A member never trained on its validation stars, so their predictions by that member
    are out-of-sample (used for the S/N calibration of the uncertainties).
    """
    out = np.zeros((len(members), n), dtype=bool)
    for k, name in enumerate(members):
        split, _ = parse_member(name)
        out[k, split_indices(n, split, validation_fraction, base_seed)[1]] = True
    return out


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


#: Fraction of a Gaussian within ±1σ: the coverage the S/N calibration aims at.
ONE_SIGMA_COVERAGE = 0.6827


@dataclass(frozen=True)
class SnrCalibration:
    """Factor on ``sigma`` against the RVS S/N (not in the paper): :func:`fit_snr_calibration`."""

    label: str
    snr: list[float]  # bin centres (median S/N of each equal-count bin)
    factor: list[float]  # calibrated factor of each bin (non-increasing with S/N)
    raw_factor: list[float]  # before the monotone (isotonic) smoothing
    counts: list[int]
    n_observed: int  # calibration stars from the observed sample (reference labels)
    n_validation: int  # from the training sample, out-of-sample (member validation sets)

    def __call__(self, snr: np.ndarray) -> np.ndarray:
        """The factor at S/N ``snr``: linear in log S/N between bins, constant outside;
        the largest factor where the S/N is not finite or not positive."""
        snr = np.asarray(snr, dtype=float)
        ok = np.isfinite(snr) & (snr > 0)
        out = np.full(snr.shape, max(self.factor))
        out[ok] = np.interp(np.log(snr[ok]), np.log(self.snr), self.factor)
        return out


def fit_snr_calibration(
    residual: np.ndarray,
    sigma: np.ndarray,
    snr: np.ndarray,
    label: str,
    *,
    reference_error: np.ndarray | None = None,
    from_observed: np.ndarray | None = None,
    n_bins: int,
    min_per_bin: int = DEFAULT_MIN_PER_BIN,
    coverage: float = ONE_SIGMA_COVERAGE,
) -> SnrCalibration | None:
    """Per-S/N factor k so that ±k·``sigma`` covers ``coverage`` of out-of-sample residuals.

    ``residual`` = CNN − reference label of stars the network did not train on (observed
    stars with reference labels, training stars through the members that held them out);
    ``sigma`` their uncertainty before calibration; ``reference_error`` the reference
    labels' own 1σ errors, removed in quadrature (the residual's spread is
    sqrt((k·sigma)² + reference_error²)); ``from_observed`` (bool) only counts stars.
    Star i is covered once k ≥ k_i = sqrt(max(r_i² − err_i², 0)) / sigma_i, so a bin's
    factor is the ``coverage`` quantile of its k_i.  Bins hold equal counts in S/N (at
    least ``min_per_bin`` stars each); the factors are then made non-increasing with S/N
    (isotonic fit weighted by counts): more noise never means a smaller uncertainty.
    Returns None when fewer than ``min_per_bin`` usable stars exist.
    """
    from sklearn.isotonic import IsotonicRegression

    r = np.asarray(residual, float)
    sig = np.asarray(sigma, float)
    s = np.asarray(snr, float)
    err = np.zeros_like(r) if reference_error is None else np.asarray(reference_error, float)
    err = np.where(np.isfinite(err), err, 0.0)
    obs = np.zeros(r.shape, bool) if from_observed is None else np.asarray(from_observed, bool)
    ok = np.isfinite(r) & np.isfinite(sig) & (sig > 0) & np.isfinite(s) & (s > 0)
    if ok.sum() < max(1, min_per_bin):
        return None
    r, sig, s, err, obs = r[ok], sig[ok], s[ok], err[ok], obs[ok]
    k = np.sqrt(np.maximum(r**2 - err**2, 0.0)) / sig
    bins = int(max(1, min(n_bins, s.size // max(1, min_per_bin))))
    groups = np.array_split(np.argsort(s, kind="stable"), bins)
    centres = np.array([np.median(s[g]) for g in groups])
    raw = np.array([np.quantile(k[g], coverage) for g in groups])
    counts = np.array([g.size for g in groups])
    if bins > 1:
        iso = IsotonicRegression(increasing=False).fit(centres, raw, sample_weight=counts)
        factor = iso.predict(centres)
    else:
        factor = raw
    # a bin of error-free residuals (k = 0) would zero sigma: keep a floor
    factor = np.maximum(factor, 1e-3)
    return SnrCalibration(
        label=label,
        snr=[float(c) for c in centres],
        factor=[float(f) for f in factor],
        raw_factor=[float(f) for f in raw],
        counts=[int(c) for c in counts],
        n_observed=int(obs.sum()),
        n_validation=int((~obs).sum()),
    )


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
    fits: Sequence[DispersionFit],
    training_range: Mapping,
    members: Sequence[str],
    path,
    calibrations: Mapping[str, SnrCalibration | None] | None = None,
) -> None:
    """JSON of the dispersion fits, the S/N calibrations (null where none was fitted), the
    training range and the members used."""
    doc = {
        "members": list(members),
        "training_range": dict(training_range),
        "running_dispersion": {f.label: asdict(f) for f in fits},
        "snr_calibration": {
            k: (asdict(v) if v is not None else None) for k, v in (calibrations or {}).items()
        },
    }
    write_text_atomic(path, json.dumps(doc, indent=1, sort_keys=True))


def read_uncertainty_model(path: str | os.PathLike) -> tuple[dict[str, DispersionFit], dict]:
    """Read back :func:`write_uncertainty_model`'s JSON: (fits by label, training range)."""
    doc = json.loads(Path(path).read_text())
    fits = {k: DispersionFit(**v) for k, v in doc["running_dispersion"].items()}
    return fits, doc["training_range"]


def read_snr_calibrations(path: str | os.PathLike) -> dict[str, SnrCalibration | None]:
    """The S/N calibrations of :func:`write_uncertainty_model`'s JSON, by label."""
    doc = json.loads(Path(path).read_text())
    return {
        k: (SnrCalibration(**v) if v is not None else None)
        for k, v in doc.get("snr_calibration", {}).items()
    }
