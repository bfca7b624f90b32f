"""Noise augmentation of the training batches (RVS, parallax, XP)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import h5py
import numpy as np

from gaiacnn.layout import (
    PARALLAX_ERROR_DATASET,
    RVS_FLUX_ERROR_DATASET,
    RVS_SNR_DATASET,
    XP_COEFFICIENT_DATASETS,
    XP_ERROR_DATASETS,
    LayoutError,
    label_dataset,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

from gaiacnn.model.scalers import _gather
from gaiacnn.model.settings import PARALLAX_DATASET, RVS_DATASET

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
        has_err = RVS_FLUX_ERROR_DATASET in h5
        if RVS_SNR_DATASET not in h5:
            raise LayoutError(path, RVS_SNR_DATASET, "missing; noise augmentation needs the S/N")
    names = [RVS_SNR_DATASET, RVS_FLUX_ERROR_DATASET if has_err else RVS_DATASET]
    data = _gather(path, names, rows)
    snr = data[RVS_SNR_DATASET].astype(np.float64)
    if has_err:
        unit = data[RVS_FLUX_ERROR_DATASET].astype(np.float32)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            unit = (np.abs(data[RVS_DATASET]) / snr[:, None]).astype(np.float32)
    unit[~np.isfinite(unit)] = 0.0
    return unit[..., None], snr


class AugmentedBatches:
    """Shuffled training batches whose RVS spectra get :func:`augment_rvs` noise (when
    ``noise_unit`` is given) and whose parallaxes get :func:`augment_parallax` noise, or are
    withheld for a ``withhold_fraction`` of the stars (when ``phot_raw``, the photometry
    branch's datasets, and ``phot_fn``, datasets -> scaled input, are given).

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
        withhold_fraction=0.0,
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
        # a random fraction of the stars per batch get their parallax withheld (set to NaN,
        # which the "intrinsic_withheld" input marks as withheld)
        self.withhold_fraction = float(withhold_fraction)
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
            if self.parallax_snr_min > 0 and self.parallax_fraction > 0:
                block[PARALLAX_DATASET], block[PARALLAX_ERROR_DATASET] = augment_parallax(
                    block[PARALLAX_DATASET],
                    block[PARALLAX_ERROR_DATASET],
                    prng,
                    snr_min=self.parallax_snr_min,
                    fraction=self.parallax_fraction,
                )
            if self.withhold_fraction > 0:
                wrng = np.random.default_rng([self.seed, epoch, i, 4])
                withhold = wrng.random(len(idx)) < self.withhold_fraction
                block[PARALLAX_DATASET] = np.where(withhold, np.nan, block[PARALLAX_DATASET])
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
