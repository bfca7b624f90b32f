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

The rules' entry points: :func:`run_train_member`, :func:`run_predict_member`,
:func:`run_gather_predictions`, :func:`run_aggregate`.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass

import h5py
import numpy as np

from gaiacnn.io import UnreadableResult, open_h5, read_json, write_text_atomic
from gaiacnn.logs import configure_tensorflow

log = logging.getLogger(__name__)

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


#: Group of a prediction file with every star's labels predicted with its parallax
#: withheld (``gaiacnn.model.predict_file(withheld_too=True)``, phot_input
#: intrinsic_withheld); ``pred`` holds the labels from the star's own inputs.
WITHHELD_GROUP = "pred_withheld"

#: The measurement noise a member can propagate through itself, per star (config
#: ``uncertainty.input_noise``; not in the paper): "parallax", drawn from the star's
#: ``astrometry/parallax_error``, and "xp", its XP coefficients drawn from
#: ``xp/*_coefficient_errors``.  The RVS spectrum's noise is not drawn: the running
#: dispersion and its S/N calibration stand for it.
NOISE_SOURCES = ("parallax", "xp")


def noise_group(group: str) -> str:
    """The prediction-file group holding the spread of ``group``'s labels under the star's
    own input noise (``pred`` -> ``pred_noise``)."""
    return f"{group}_noise"


def input_noise_settings(uncertainty_cfg: Mapping) -> dict:
    """The input noise the members draw at prediction, from config ``uncertainty``
    (``input_noise``, ``input_noise_draws``): {"sources": [...], "draws": n}, both empty
    when either is off (keys absent: off, as in runs before them)."""
    sources = list(uncertainty_cfg.get("input_noise", []))
    draws = int(uncertainty_cfg.get("input_noise_draws", 0)) if sources else 0
    return {"sources": sources if draws else [], "draws": draws}


#: Every group a prediction file may hold.
PREDICTION_GROUPS = ("pred", WITHHELD_GROUP, noise_group("pred"), noise_group(WITHHELD_GROUP))


def iter_member_chunks(
    paths: Sequence[str | os.PathLike],
    labels: Sequence[str],
    chunk_rows: int = 65536,
    group: str = "pred",
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(source_id, preds)`` chunks, ``preds`` (n_members, n, n_labels) float64,
    from the ``group`` of the files (``pred``, or :data:`WITHHELD_GROUP`).

    Every member file must hold the same stars in the same order (they predict one
    arrays file); anything else is refused naming the file.
    """
    if not paths:
        raise EnsembleError("no member predictions to combine")
    files = [open_h5(p) for p in paths]
    try:
        n = files[0]["source_id"].shape[0]
        for path, h5 in zip(paths, files, strict=True):
            if h5["source_id"].shape[0] != n:
                raise EnsembleError(f"{path}: {h5['source_id'].shape[0]} stars, {paths[0]} has {n}")
            for label in labels:
                if f"{group}/{label}" not in h5:
                    raise EnsembleError(f"{path}: {group}/{label} missing")
        for start in range(0, n, chunk_rows):
            stop = min(start + chunk_rows, n)
            sid = files[0]["source_id"][start:stop]
            preds = np.empty((len(files), stop - start, len(labels)))
            for k, (path, h5) in enumerate(zip(paths, files, strict=True)):
                if k and not np.array_equal(h5["source_id"][start:stop], sid):
                    raise EnsembleError(f"{path}: source ids differ from {paths[0]}")
                for j, label in enumerate(labels):
                    preds[k, :, j] = h5[f"{group}/{label}"][start:stop]
            yield sid, preds
    finally:
        for h5 in files:
            h5.close()


def has_noise(paths: Sequence[str | os.PathLike], group: str = "pred") -> bool:
    """Whether the member files hold the input noise's spread of ``group``
    (:func:`noise_group`); refused when some do and some do not."""
    held = []
    for p in paths:
        with open_h5(p) as h5:
            held.append(noise_group(group) in h5)
    if any(held) and not all(held):
        raise EnsembleError(
            f"{paths[held.index(False)]}: no {noise_group(group)}, {paths[held.index(True)]} "
            "has it: the members were predicted with different uncertainty.input_noise"
        )
    return bool(held) and all(held)


def member_noise(noise: np.ndarray) -> np.ndarray:
    """(n, n_labels) the spread under the input noise of the ensemble's mean label: the
    root mean square over the members (axis 0) of each member's spread.  The members read
    the same noisy inputs, so their errors from it move together and do not average out."""
    return np.sqrt(np.mean(np.asarray(noise, float) ** 2, axis=0))


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
    # second axis (not in the paper): a further factor against the star's distance from
    # the training stars' input space (gaiacnn.flags.input_space_distance), fitted on the
    # same stars after the S/N factor
    input_distance: list[float] | None = None  # bin centres (median distance)
    input_upper: list[float] | None = None  # each bin's largest distance
    input_factor: list[float] | None = None
    input_raw_factor: list[float] | None = None
    input_counts: list[int] | None = None
    # stars whose parallax the network did not use (phot_input intrinsic_withheld): an
    # uncertainty added in quadrature to theirs, in the label's unit (None: too few such
    # calibration stars, and they are calibrated as the others)
    withheld_floor: float | None = None
    withheld_count: int | None = None  # calibration stars it was fitted on
    # what the factor scales (:data:`CALIBRATION_FORMS`): "dispersion", the running
    # dispersion D only, sigma = sqrt(e² + (k·D)²), so that sigma >= e for every star;
    # "total" (uncertainty models before 2026-12), the whole sqrt(e² + D²)
    form: str = "total"
    # each bin's 68 % confidence interval on its raw factor (quantile_interval; None in
    # uncertainty models before it): how well the calibration stars pin it down
    factor_interval: list[list[float]] | None = None

    def __call__(
        self,
        snr: np.ndarray,
        input_distance: np.ndarray | None = None,
        withheld: np.ndarray | None = None,
        sigma: np.ndarray | None = None,
    ) -> np.ndarray:
        """The factor at S/N ``snr`` (and input-space distance ``input_distance`` when the
        calibration has that axis): linear in log S/N between bins, constant outside; the
        largest factor where a value is not finite (or a S/N not positive).  The distance
        axis is piecewise constant: the factor of the star's bin.

        ``withheld`` (bool), the stars whose parallax the network did not use, with
        ``sigma`` their uncertainty before calibration, when the calibration has their
        ``withheld_floor``: their factor is sqrt(k(S/N)² + (floor / sigma)²), so that
        the calibrated uncertainty is sqrt((k · sigma)² + floor²) (no distance factor:
        the floor stands for what the missing parallax costs)."""
        out = _interp_log(snr, self.snr, self.factor)
        base = out
        if self.input_factor is not None and input_distance is not None:
            # the factor of the bin the star falls in (bins end at input_upper); beyond the
            # last bin, and where the distance is not finite, the last (largest) factor
            d = np.asarray(input_distance, dtype=float)
            j = np.searchsorted(np.asarray(self.input_upper), np.where(np.isfinite(d), d, np.inf))
            out = out * np.asarray(self.input_factor)[np.minimum(j, len(self.input_factor) - 1)]
        if self.withheld_floor is not None and withheld is not None:
            if sigma is None:
                raise ValueError("the withheld stars' calibration needs their sigma")
            with np.errstate(divide="ignore", invalid="ignore"):
                own = np.sqrt(base**2 + (self.withheld_floor / np.asarray(sigma, float)) ** 2)
            out = np.where(np.asarray(withheld, bool), own, out)
        return out

    def apply(
        self,
        sigma: np.ndarray,
        spread: np.ndarray,
        snr: np.ndarray,
        input_distance: np.ndarray | None = None,
        withheld: np.ndarray | None = None,
    ) -> np.ndarray:
        """The calibrated uncertainty of stars whose paper uncertainty is ``sigma`` =
        sqrt(e² + D²) and members' spread ``spread`` = e (label units): with k the factor
        (:meth:`__call__`, S/N and input-distance axes) and D = sqrt(sigma² − e²),
        sqrt(e² + (k·D)²) (form "dispersion"), or, for the stars whose parallax the network
        did not use, sqrt(e² + (k(S/N)·D)² + floor²): never below e.  Form "total" (older
        models): k·sigma, and sqrt((k(S/N)·sigma)² + floor²)."""
        sigma = np.asarray(sigma, float)
        if self.form == "total":
            return sigma * self(snr, input_distance, withheld, sigma)
        if self.form != "dispersion":
            raise ValueError(f"S/N calibration of unknown form {self.form!r}")
        e = np.asarray(spread, float)
        d = np.sqrt(np.maximum(sigma**2 - e**2, 0.0))
        out = np.sqrt(e**2 + (self(snr, input_distance) * d) ** 2)
        if self.withheld_floor is not None and withheld is not None:
            k = _interp_log(snr, self.snr, self.factor)
            own = np.sqrt(e**2 + (k * d) ** 2 + self.withheld_floor**2)
            out = np.where(np.asarray(withheld, bool), own, out)
        return out


#: What a :class:`SnrCalibration`'s factor scales: the running dispersion only (sigma >= e),
#: or the whole paper uncertainty (uncertainty models before 2026-12).
CALIBRATION_FORMS = ("dispersion", "total")


def _upper_rank(n: int, coverage: float, confidence: float) -> int:
    """The rank m (1-based, at most n) of the smallest order statistic X_(m) of n values
    that lies above the population's ``coverage`` quantile with probability
    ``confidence``: P(X_(m) >= q) = P(Binomial(n, coverage) <= m - 1)."""
    from scipy.stats import binom

    return min(int(binom.ppf(confidence, n, coverage)) + 1, n)


def coverage_quantile(values: np.ndarray, coverage: float, confidence: float = 0.5) -> float:
    """The ``coverage`` quantile of ``values`` (a sample of calibration stars), or, with
    ``confidence`` > 0.5, an upper confidence bound on it: the smallest order statistic that
    lies above the population's ``coverage`` quantile with probability ``confidence``
    (binomial, distribution-free).  A bin of few calibration stars then errs on the wide
    side by about sqrt(coverage (1 - coverage) / n) in coverage; 0.5 is the plain quantile
    (numpy's linear interpolation)."""
    v = np.asarray(values, float)
    if confidence <= 0.5:
        return float(np.quantile(v, coverage))
    return float(np.sort(v)[_upper_rank(v.size, coverage, confidence) - 1])


def quantile_interval(
    values: np.ndarray, coverage: float, confidence: float = 0.6827
) -> tuple[float, float]:
    """(low, high): a ``confidence`` interval on the population's ``coverage`` quantile from
    the sample ``values``, between two order statistics (binomial, distribution-free; each
    side misses with probability (1 - confidence) / 2 at most).  How well a calibration
    bin's factor is known: wide where its stars' reference labels are as noisy as the CNN's
    (their k_i spread from 0 to many times the factor)."""
    from scipy.stats import binom

    v = np.sort(np.asarray(values, float))
    n = v.size
    if n == 0:
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2.0
    # P(X_(m) <= q) = P(Binomial(n, coverage) >= m): the largest m with that >= 1 - tail
    lo = int(binom.ppf(tail, n, coverage))
    return float(v[min(max(lo, 1), n) - 1]), float(v[_upper_rank(n, coverage, 1.0 - tail) - 1])


def _interp_log(x: np.ndarray, centres: Sequence[float], factor: Sequence[float]) -> np.ndarray:
    """``factor`` interpolated linearly in log ``x`` between ``centres``, constant outside;
    the largest factor where ``x`` is not finite or not positive."""
    x = np.asarray(x, dtype=float)
    ok = np.isfinite(x) & (x > 0)
    out = np.full(x.shape, max(factor))
    out[ok] = np.interp(np.log(x[ok]), np.log(centres), factor)
    return out


def _equal_count(x: np.ndarray, n_bins: int, min_per_bin: int) -> list[np.ndarray]:
    """Up to ``n_bins`` equal-count groups (index arrays) of ``x``, in increasing ``x``, of
    at least ``min_per_bin`` each (one group when too few)."""
    bins = int(max(1, min(n_bins, x.size // max(1, min_per_bin))))
    return np.array_split(np.argsort(x, kind="stable"), bins)


def _group_factor(
    k: np.ndarray,
    x: np.ndarray,
    groups: list[np.ndarray],
    coverage: float,
    increasing: bool,
    confidence: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(centres = median x, ``coverage`` quantile of k, its isotonic fit, counts) of the
    star ``groups`` (index arrays, in increasing x)."""
    from sklearn.isotonic import IsotonicRegression

    bins = len(groups)
    centres = np.array([np.median(x[g]) for g in groups])
    raw = np.array([coverage_quantile(k[g], coverage, confidence) for g in groups])
    counts = np.array([g.size for g in groups])
    if bins > 1:
        iso = IsotonicRegression(increasing=increasing).fit(centres, raw, sample_weight=counts)
        factor = iso.predict(centres)
    else:
        factor = raw
    return centres, raw, factor, counts


#: Bin edges of the input-space distance axis (1 = the flag's threshold): finer outside.
INPUT_DISTANCE_EDGES = (0.0, 0.5, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0)


def _edge_groups(d: np.ndarray, n_bins: int, min_per_bin: int) -> list[np.ndarray]:
    """Stars grouped in bins of the input-space distance ``d``, in increasing ``d``:
    equal-count bins inside (d <= 1, half of ``n_bins``), :data:`INPUT_DISTANCE_EDGES`
    outside, where calibration stars are few.  An outside bin with fewer than
    ``min_per_bin`` stars is merged into the next one out (the last into the one before);
    all of them into the last inside bin when they hold fewer than ``min_per_bin`` in all.
    Inside and outside stars never share a bin otherwise."""
    order = np.argsort(d, kind="stable")
    inside = order[d[order] <= 1.0]
    n_in = int(max(1, min(max(1, n_bins // 2), inside.size // max(1, min_per_bin))))
    groups = [g for g in np.array_split(inside, n_in) if g.size]
    edges = [e for e in INPUT_DISTANCE_EDGES if e >= 1.0] + [np.inf]
    outside = [order[(d[order] > lo) & (d[order] <= hi)] for lo, hi in itertools.pairwise(edges)]
    outside = [g for g in outside if g.size]
    merged: list[np.ndarray] = []
    carry = np.array([], dtype=order.dtype)
    for g in outside:
        g = np.concatenate([carry, g])
        if g.size < min_per_bin:
            carry = g
        else:
            merged.append(g)
            carry = np.array([], dtype=order.dtype)
    if carry.size:
        if merged:
            merged[-1] = np.concatenate([merged[-1], carry])
        elif groups:
            groups[-1] = np.concatenate([groups[-1], carry])
        else:
            merged.append(carry)
    return groups + merged


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
    input_distance: np.ndarray | None = None,
    input_bins: int = 0,
    withheld: np.ndarray | None = None,
    confidence: float = 0.5,
    spread: np.ndarray | None = None,
) -> SnrCalibration | None:
    """Per-S/N factor k so that ±k·``sigma`` covers ``coverage`` of out-of-sample residuals.

    With ``spread`` (the members' spread e of the same stars, so that ``sigma`` =
    sqrt(e² + D²)), k scales the running dispersion D only: the calibrated uncertainty is
    sqrt(e² + (k·D)²), never below e (form "dispersion", :meth:`SnrCalibration.apply`),
    and everything below holds with k_i = sqrt(max(r_i² − err_i² − e_i², 0)) / D_i.

    ``residual`` = CNN − reference label of stars the network did not train on (observed
    stars with reference labels, training stars through the members that held them out);
    ``sigma`` their uncertainty before calibration; ``reference_error`` the reference
    labels' own 1σ errors, removed in quadrature (the residual's spread is
    sqrt((k·sigma)² + reference_error²)); ``from_observed`` (bool) only counts stars.
    Star i is covered once k ≥ k_i = sqrt(max(r_i² − err_i², 0)) / sigma_i, so a bin's
    factor is the ``coverage`` quantile of its k_i.  Bins hold equal counts in S/N (at
    least ``min_per_bin`` stars each); the factors are then made non-increasing with S/N
    (isotonic fit weighted by counts): more noise never means a smaller uncertainty.

    With ``input_distance`` (of the same stars: :func:`gaiacnn.flags.input_space_distance`)
    and ``input_bins`` > 0, a second factor is fitted the same way on k_i / k(S/N_i), made
    non-decreasing with the distance: a star farther from the training stars' photometry
    and parallaxes than the calibration stars of its S/N gets a larger uncertainty, as
    far as calibration stars reach there (an observed sample farther, redder or with worse
    parallaxes than the training stars; not in the paper).  Stars with a non-finite
    distance are left out of that second fit only.

    ``withheld`` (bool, of the same stars): those whose parallax the network did not use
    (``phot_input: intrinsic_withheld``), a regime of their own: the S/N factor and the
    distance axis are fitted on the other stars, and, when at least ``min_per_bin`` of
    them are calibration stars, the withheld stars get an uncertainty ``withheld_floor``
    added in quadrature to their S/N-calibrated one, what the missing parallax costs: the
    ``coverage`` quantile of r_i² − err_i² − (k(S/N_i) sigma_i)² over them (its root; 0
    where negative).  A floor rather than a factor of their own: the calibration stars of
    that regime are mostly training stars predicted without their parallax (bright, high
    S/N), and a factor fitted there would scale the already large sigma of a faint star
    as much as the small sigma of a bright one.
    Returns None when fewer than ``min_per_bin`` usable stars exist.
    """
    r = np.asarray(residual, float)
    sig = np.asarray(sigma, float)
    s = np.asarray(snr, float)
    err = np.zeros_like(r) if reference_error is None else np.asarray(reference_error, float)
    err = np.where(np.isfinite(err), err, 0.0)
    obs = np.zeros(r.shape, bool) if from_observed is None else np.asarray(from_observed, bool)
    wh = np.zeros(r.shape, bool) if withheld is None else np.asarray(withheld, bool)
    form = "total" if spread is None else "dispersion"
    e = np.zeros_like(r) if spread is None else np.asarray(spread, float)
    if form == "dispersion":  # the factor scales D = sqrt(sigma² − e²)
        sig = np.sqrt(np.maximum(sig**2 - e**2, 0.0))
    ok = np.isfinite(r) & np.isfinite(sig) & (sig > 0) & np.isfinite(s) & (s > 0) & np.isfinite(e)
    if (ok & ~wh).sum() < max(1, min_per_bin):
        return None
    r, sig, s, err, obs, wh, e = r[ok], sig[ok], s[ok], err[ok], obs[ok], wh[ok], e[ok]
    k = np.sqrt(np.maximum(r**2 - err**2 - e**2, 0.0)) / sig
    # equal-count S/N bins of at least min_per_bin stars: the coverage quantile of k per
    # bin, made non-increasing with S/N (isotonic fit weighted by counts)
    k_used, s_used = k[~wh], s[~wh]
    groups = _equal_count(s_used, n_bins, min_per_bin)
    centres, raw, factor, counts = _group_factor(
        k_used, s_used, groups, coverage, False, confidence
    )
    # a bin of error-free residuals (k = 0) would zero sigma: keep a floor
    factor = np.maximum(factor, 1e-3)
    # how well each bin's factor is known (its 68 % interval)
    intervals = [quantile_interval(k_used[g], coverage) for g in groups]
    extra: dict = {"factor_interval": [[float(a), float(b)] for a, b in intervals]}
    if wh.sum() >= max(1, min_per_bin):
        # star i is covered once r_i² - err_i² <= (k(S/N_i) sigma_i)² + floor²
        excess = (
            r[wh] ** 2 - err[wh] ** 2 - e[wh] ** 2
            - (_interp_log(s[wh], centres, factor) * sig[wh]) ** 2
        )  # fmt: skip
        extra.update(
            withheld_floor=float(
                np.sqrt(max(coverage_quantile(excess, coverage, confidence), 0.0))
            ),
            withheld_count=int(wh.sum()),
        )
    if input_distance is not None and input_bins > 0:
        d = np.asarray(input_distance, float)[ok]
        good = np.isfinite(d) & ~wh
        if good.sum() >= max(1, min_per_bin):
            u = k[good] / _interp_log(s[good], centres, factor)
            groups = _edge_groups(d[good], input_bins, min_per_bin)
            dc, draw, dfac, dcounts = _group_factor(u, d[good], groups, coverage, True, confidence)
            extra.update(
                input_distance=[float(c) for c in dc],
                input_upper=[float(d[good][g].max()) for g in groups],
                input_factor=[float(f) for f in np.maximum(dfac, 1e-3)],
                input_raw_factor=[float(f) for f in draw],
                input_counts=[int(c) for c in dcounts],
            )
    return SnrCalibration(
        label=label,
        snr=[float(c) for c in centres],
        factor=[float(f) for f in factor],
        raw_factor=[float(f) for f in raw],
        counts=[int(c) for c in counts],
        n_observed=int(obs.sum()),
        n_validation=int((~obs).sum()),
        form=form,
        **extra,
    )


#: Label pairs whose error correlation the catalogue publishes (columns rho_<a>__<b>, not
#: in the paper); [Fe/H] stands in for a missing [M/H].
CORRELATION_PAIRS = (("teff", "logg"), ("teff", "m_h"), ("logg", "m_h"), ("m_h", "alpha_m"))


def correlation_pairs(labels: Sequence[str]) -> list[tuple[str, str]]:
    """The :data:`CORRELATION_PAIRS` of ``labels`` ([Fe/H] for a missing [M/H])."""
    metal = "m_h" if "m_h" in labels else ("fe_h" if "fe_h" in labels else None)
    out = []
    for a, b in CORRELATION_PAIRS:
        a, b = (metal if x == "m_h" else x for x in (a, b))
        if a in labels and b in labels and (a, b) not in out:
            out.append((a, b))
    return out


@dataclass(frozen=True)
class LabelCorrelation:
    """The correlation of two labels' errors against S/N (not in the paper):
    :func:`fit_label_correlation`."""

    labels: tuple[str, str]
    snr: list[float]  # bin centres (median S/N of each equal-count bin)
    rho: list[float]  # the errors' correlation in each bin
    counts: list[int]

    def __call__(self, snr: np.ndarray) -> np.ndarray:
        """rho at S/N ``snr``: linear in log S/N between the bin centres, constant beyond;
        the median over the bins where the S/N is not finite or not positive."""
        x = np.asarray(snr, dtype=float)
        ok = np.isfinite(x) & (x > 0)
        out = np.full(x.shape, float(np.median(self.rho)))
        out[ok] = np.interp(np.log(x[ok]), np.log(self.snr), self.rho)
        return out


def _clipped(r: np.ndarray, n_mad: float = 5.0) -> np.ndarray:
    """Where ``r`` is within ``n_mad`` robust standard deviations (1.4826 MAD) of its median."""
    med = np.median(r)
    mad = 1.4826 * np.median(np.abs(r - med))
    return np.abs(r - med) <= n_mad * mad if mad > 0 else np.ones(r.shape, bool)


def fit_label_correlation(
    residuals: Mapping[str, np.ndarray],
    reference_errors: Mapping[str, np.ndarray],
    snr: np.ndarray,
    pair: tuple[str, str],
    *,
    n_bins: int,
    min_per_bin: int = DEFAULT_MIN_PER_BIN,
) -> LabelCorrelation | None:
    """The correlation of the CNN's errors in the two labels of ``pair`` per equal-count
    S/N bin, from out-of-sample residuals r = CNN − reference (the stars of the S/N
    calibration): cov(r_a, r_b) / sqrt((var r_a − <err_a²>)(var r_b − <err_b²>)), the
    reference labels' own errors (``reference_errors``) taken as independent between the
    labels and removed from the variances; residuals beyond 5 robust standard deviations
    are left out, and rho is clipped to [-1, 1].  None with fewer than ``min_per_bin``
    stars having both residuals."""
    a, b = pair
    ra, rb = (np.asarray(residuals[x], float) for x in pair)
    ea, eb = (np.nan_to_num(np.asarray(reference_errors[x], float)) for x in pair)
    s = np.asarray(snr, float)
    ok = np.isfinite(ra) & np.isfinite(rb) & np.isfinite(s) & (s > 0)
    if ok.sum() < max(2, min_per_bin):
        return None
    ra, rb, ea, eb, s = ra[ok], rb[ok], ea[ok], eb[ok], s[ok]
    bins = int(max(1, min(n_bins, s.size // max(1, min_per_bin))))
    centres, rho, counts = [], [], []
    for g in np.array_split(np.argsort(s, kind="stable"), bins):
        keep = g[_clipped(ra[g]) & _clipped(rb[g])]
        x, y = ra[keep], rb[keep]
        cov = float(np.mean((x - x.mean()) * (y - y.mean())))
        va = max(float(np.var(x) - np.mean(ea[keep] ** 2)), 1e-12)
        vb = max(float(np.var(y) - np.mean(eb[keep] ** 2)), 1e-12)
        centres.append(float(np.median(s[g])))
        rho.append(float(np.clip(cov / np.sqrt(va * vb), -1.0, 1.0)))
        counts.append(int(keep.size))
    return LabelCorrelation((a, b), centres, rho, counts)


def correlation_column(pair: Sequence[str]) -> str:
    """The catalogue column of a pair's correlation: ``rho_<a>__<b>``."""
    return f"rho_{pair[0]}__{pair[1]}"


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
    correlations: Sequence[LabelCorrelation] = (),
) -> None:
    """JSON of the dispersion fits, the S/N calibrations (null where none was fitted), the
    label error correlations, the training range and the members used."""
    doc = {
        "members": list(members),
        "training_range": dict(training_range),
        "running_dispersion": {f.label: asdict(f) for f in fits},
        "snr_calibration": {
            k: (asdict(v) if v is not None else None) for k, v in (calibrations or {}).items()
        },
        "label_correlation": [asdict(c) for c in correlations],
    }
    write_text_atomic(path, json.dumps(doc, indent=1, sort_keys=True))


def read_uncertainty_model(path: str | os.PathLike) -> tuple[dict[str, DispersionFit], dict]:
    """Read back :func:`write_uncertainty_model`'s JSON: (fits by label, training range)."""
    what = "an uncertainty model (rule aggregate_ensemble)"
    doc = read_json(path, what, ["running_dispersion", "training_range"])
    try:
        fits = {k: DispersionFit(**v) for k, v in doc["running_dispersion"].items()}
    except (TypeError, AttributeError) as exc:
        raise UnreadableResult(f"{path}: not {what} ({exc})") from None
    return fits, doc["training_range"]


def run_train_member(
    train_file,
    model_out,
    *,
    split: int,
    seed: int,
    labels,
    branches,
    arch,
    training,
    xp_input: str = "auto",
    phot_input: str = "magnitudes",
    threads=1,
) -> None:
    """Rule ``train_member``: one ensemble member (model.keras, scalers.json, history.json)."""
    configure_tensorflow(threads)
    from gaiacnn import model

    summary = model.train_member(
        train_file,
        os.path.dirname(model_out),
        split=int(split),
        seed=int(seed),
        labels=labels,
        branches=branches,
        arch=arch,
        training=training,
        xp_input=xp_input,
        phot_input=phot_input,
    )
    log.info(
        "member split%s_seed%s: phot input %s, parallax augmentation %s",
        split,
        seed,
        summary["phot_input"] or "none",
        "on" if summary["parallax_augmentation"] else "off",
    )
    log.info(
        "member split%s_seed%s: branches %s (XP input: %s), labels %s; stars with a NaN label "
        "(left out of that label's loss): %s",
        split,
        seed,
        ", ".join(summary["branches"]),
        summary["xp_input"] or "none",
        ", ".join(summary["labels"]),
        ", ".join(f"{k} {v}" for k, v in summary["n_nan_labels"].items()),
    )
    log.info(
        "member split%s_seed%s: %d train / %d validation stars, best epoch %d of %d, "
        "val loss %.5f, %.0f s",
        split,
        seed,
        summary["n_train"],
        summary["n_validation"],
        summary["best_epoch"],
        summary["epochs_run"],
        summary["best_val_loss"],
        summary["train_seconds"],
    )


def run_predict_member(
    model_file,
    arrays_file,
    rows_json,
    out_path,
    *,
    shard,
    prediction_cfg,
    noise_cfg=None,
    withheld_too=False,
    threads=1,
) -> None:
    """Rule ``predict_member``: one member's labels for one shard of one sample
    (:func:`run_predict_members` with one member)."""
    run_predict_members(
        [model_file],
        arrays_file,
        rows_json,
        [out_path],
        shard=shard,
        prediction_cfg=prediction_cfg,
        noise_cfg=noise_cfg,
        withheld_too=withheld_too,
        threads=threads,
    )


def run_predict_members(
    model_files: Sequence,
    arrays_file,
    rows_json,
    out_paths: Sequence,
    *,
    shard,
    prediction_cfg,
    noise_cfg=None,
    withheld_too=False,
    threads=1,
) -> None:
    """Rule ``predict_shard`` (``prediction.members_per_job: all``): every member's labels
    for one shard (rows ``[shard x shard_rows, (shard + 1) x shard_rows)``) of one sample,
    the shard read and checked once for all members (:func:`gaiacnn.model.predict_members`);
    ``withheld_too`` (the training sample's) also with every parallax withheld (a member
    with ``phot_input: intrinsic_withheld``); ``noise_cfg`` {"sources", "draws"}: the
    input noise drawn (:func:`gaiacnn.model.predict_members`; None: none)."""
    from gaiacnn import layout, shards

    n_rows = shards.read_row_count(rows_json)
    n_file = layout.validate(arrays_file, check_values=False).n_rows
    if n_file != n_rows:
        raise shards.ShardError(
            f"{arrays_file} holds {n_file} stars but {rows_json} counts {n_rows}: "
            "the arrays changed after the shards were counted; rerun the workflow"
        )
    start, stop = shards.shard_range(n_rows, int(prediction_cfg["shard_rows"]), int(shard))
    log.info(
        "shard %d: stars %d..%d of %d, %d member(s)",
        int(shard),
        start,
        stop - 1,
        n_rows,
        len(model_files),
    )
    configure_tensorflow(threads)
    from gaiacnn import model

    model.predict_members(
        [os.path.dirname(f) for f in model_files],
        arrays_file,
        list(out_paths),
        chunk_rows=prediction_cfg["chunk_rows"],
        batch_size=prediction_cfg["batch_size"],
        precision=prediction_cfg["precision"],
        rows=(start, stop),
        resample=bool(prediction_cfg.get("resample", False)),
        withheld_too=bool(withheld_too),
        prefetch_chunks=int(prediction_cfg.get("prefetch_chunks", 2)),
        noise_draws=int((noise_cfg or {}).get("draws", 0)),
        noise_sources=list((noise_cfg or {}).get("sources", [])),
    )


def run_gather_predictions(shard_files: Sequence, out_path) -> None:
    """Rule ``gather_predictions``: one member's shards of one sample as one prediction
    file (the layout of :func:`gaiacnn.model.predict_file` for the whole sample), checking
    that the shards tile the sample in order.  Streams one shard at a time."""
    from gaiacnn import shards
    from gaiacnn.io import atomic_output

    if not shard_files:
        raise shards.ShardError("no prediction shards to gather")
    spans, labels = [], None
    for path in shard_files:
        with open_h5(path) as h5:
            spans.append(
                (
                    int(h5.attrs["shard_start"]),
                    int(h5.attrs["shard_stop"]),
                    int(h5.attrs["n_rows_total"]),
                )
            )
            names = sorted(h5["pred"])
            shard_groups = [g for g in PREDICTION_GROUPS if g in h5]
            if labels is None:
                labels, attrs, groups = names, dict(h5.attrs), shard_groups
            elif names != labels:
                raise shards.ShardError(f"{path}: labels {names}, {shard_files[0]} has {labels}")
            elif shard_groups != groups:
                raise shards.ShardError(
                    f"{path}: prediction groups {shard_groups}, {shard_files[0]} has {groups}"
                )
    n = spans[0][2]
    expected = 0
    for path, (start, stop, total) in zip(shard_files, spans, strict=True):
        if start != expected or total != n:
            raise shards.ShardError(
                f"{path}: rows {start}..{stop} of {total}, expected the shard from row "
                f"{expected} of {n}: the shards do not tile the sample"
            )
        expected = stop
    if expected != n:
        raise shards.ShardError(f"the shards end at row {expected}, the sample has {n} rows")
    for key in ("shard_start", "shard_stop", "n_rows_total"):
        attrs.pop(key)
    with atomic_output(out_path) as tmp, h5py.File(tmp, "w") as out:
        out.attrs.update(attrs)
        out.attrs["n_shards"] = len(shard_files)
        sid = out.create_dataset("source_id", shape=(n,), dtype=np.int64)
        preds = {
            f"{g}/{lab}": out.create_dataset(f"{g}/{lab}", shape=(n,), dtype=np.float32)
            for g in groups
            for lab in labels
        }
        for path, (start, stop, _) in zip(shard_files, spans, strict=True):
            with h5py.File(path, "r") as h5:
                sid[start:stop] = h5["source_id"][:]
                for name, ds in preds.items():
                    ds[start:stop] = h5[name][:]
    log.info("%d stars from %d shards", n, len(shard_files))


def run_aggregate(
    training_preds,
    observed_preds,
    arrays,
    fits_out,
    model_out,
    *,
    csv_out=None,
    labels,
    members,
    uncertainty_cfg,
    training_cfg,
    config_hash,
    flags_cfg=None,
) -> None:
    """Rule ``aggregate_ensemble``: the labels table (the catalogue before the flag) and the
    uncertainty model; ``csv_out`` None (the workflow's: the CSV comes with the flagged
    catalogue) writes no CSV; ``flags_cfg`` (config ``flags``) sets the
    input-space distance."""
    flags_cfg = flags_cfg or {"input_neighbours": 10, "input_quantile": 0.99}
    from gaiacnn import catalogue

    predictions = {"training": list(training_preds), "observed": list(observed_preds)}
    agg = catalogue.fit(
        predictions,
        arrays,
        labels=labels,
        members=members,
        n_bins=uncertainty_cfg["dispersion_bins"],
        degree=uncertainty_cfg["polynomial_degree"],
        range_quantiles=uncertainty_cfg["range_quantiles"],
        calibration_bins=uncertainty_cfg["snr_calibration_bins"],
        calibration_min_per_bin=uncertainty_cfg["snr_calibration_min_per_bin"],
        calibration_confidence=uncertainty_cfg["calibration_confidence"],
        subtract_reference_errors=uncertainty_cfg["subtract_reference_errors"],
        input_calibration_bins=uncertainty_cfg["input_distance_calibration_bins"],
        input_neighbours=flags_cfg["input_neighbours"],
        input_quantile=flags_cfg["input_quantile"],
        validation_fraction=training_cfg["validation_fraction"],
        base_seed=training_cfg["base_seed"],
        config_hash=config_hash,
        input_noise=bool(input_noise_settings(uncertainty_cfg)["draws"]),
    )
    fits_, training_range, calibrations = agg.fits, agg.training_range, agg.calibrations
    for fit in fits_:
        log.info(
            "running dispersion of %s: %s",
            fit.label,
            ", ".join(f"{c:.3g}:{d:.3g}" for c, d in zip(fit.centres, fit.dispersion, strict=True)),
        )
    for label, cal in calibrations.items():
        if cal is not None:
            log.info(
                "S/N calibration of sigma_%s (%d observed + %d held-out training stars): %s",
                label,
                cal.n_observed,
                cal.n_validation,
                ", ".join(
                    f"S/N {s:.3g}: x{f:.3g}" for s, f in zip(cal.snr, cal.factor, strict=True)
                ),
            )
            if cal.input_factor is not None:
                log.info(
                    "  then against the input-space distance: %s",
                    ", ".join(
                        f"{d:.3g}: x{f:.3g}"
                        for d, f in zip(cal.input_distance, cal.input_factor, strict=True)
                    ),
                )
            if cal.withheld_floor is not None:
                log.info(
                    "  stars with the parallax withheld (%d calibration stars): %.3g added "
                    "in quadrature",
                    cal.withheld_count,
                    cal.withheld_floor,
                )
    write_uncertainty_model(
        fits_, training_range, members, model_out, calibrations, agg.correlations
    )
    # the catalogue a chunk of stars at a time (memory independent of the observed sample)
    n_rows = agg.n_rows["training"] + agg.n_rows["observed"]
    chunks = catalogue.iter_table(agg, predictions, arrays)
    catalogue.write_chunks(chunks, n_rows, fits_out, csv_out, attrs=agg.attrs)
    log.info(
        "catalogue: %d stars (%d training), %d members",
        n_rows,
        agg.n_rows["training"],
        len(members),
    )
