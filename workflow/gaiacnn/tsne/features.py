"""What the t-SNE maps embed: the spectra (RVS, or XP for a survey without them), their
PCA reduction, and the rows of each sample a scalable-mode reference map holds."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import h5py
import numpy as np

from gaiacnn import layout
from gaiacnn.layout import (
    RVS_FLUX_DATASET,
    XP_SAMPLED_DATASET,
    LayoutError,
    LayoutInfo,
    validate,
    xp_datasets,
)

#: Perplexities of the four maps (Sect. 5.1, Fig. 17 and A.1).
DEFAULT_PERPLEXITIES = (30, 50, 75, 100)


#: How the training-like distance threshold is derived from the training stars' own
#: nearest-neighbour distances in the map.
THRESHOLD_RULES = ("quantile", "median_multiple")


RVS_FLUX = RVS_FLUX_DATASET  # the RVS spectra (the paper's maps)


class TsneError(ValueError):
    """Inputs the t-SNE stage cannot use (no training stars, bad shapes, ...)."""


#: Datasets of a t-SNE map file, one row per star.
MAP_DATASETS = ("source_id", "in_training", "xy", "nn_training_distance", "training_like")
#: Their types (``xy``: one (x, y) pair per star).
MAP_DTYPES = (np.int64, bool, np.float32, np.float32, bool)


#: The datasets of a map that a placement job writes per perplexity (``p30/xy`` ...).
PLACED_DATASETS = ("xy", "nn_training_distance", "training_like")

#: Rows of a map gathered or classified at a time (memory independent of the map's size).
STREAM_ROWS = 65_536


#: What the t-SNE stage can embed (``tsne.spectra``): the RVS spectra (the paper), or,
#: for surveys without them, the XP spectra: the sampled flux divided by its mean, or the
#: BP and RP coefficients divided by their first one (as the model's XP branch sees them).
SPECTRA = (RVS_FLUX, XP_SAMPLED_DATASET, "xp/coefficients")


SPECTRA_CHOICES = {"rvs": RVS_FLUX, "xp_sampled": XP_SAMPLED_DATASET, "xp_coefficients": SPECTRA[2]}


def choose_spectra(infos: Sequence[LayoutInfo], choice: str = "auto") -> str:
    """The spectra the maps embed, which every file of ``infos`` must hold: ``choice`` "rvs",
    "xp_sampled" or "xp_coefficients", or "auto": the RVS spectra where the files have them
    (Sect. 5.1), else the XP coefficients, else the XP sampled flux."""
    held = {
        RVS_FLUX: all(i.n_pixels is not None for i in infos),
        "xp/coefficients": all(i.xp_length is not None for i in infos),
        XP_SAMPLED_DATASET: all(i.xp_sampled_length is not None for i in infos),
    }
    if choice == "auto":
        for name in (RVS_FLUX, "xp/coefficients", XP_SAMPLED_DATASET):
            if held[name]:
                return name
        raise TsneError(
            "the t-SNE classification needs spectra: no rvs/flux, XP coefficients or "
            "xp/sampled_flux in both samples"
        )
    if choice not in SPECTRA_CHOICES:
        raise TsneError(f"tsne.spectra {choice!r}: auto, {', '.join(SPECTRA_CHOICES)}")
    name = SPECTRA_CHOICES[choice]
    if not held[name]:
        raise TsneError(f"tsne.spectra is {choice!r} but not every sample holds {name}")
    return name


def _datasets(spectra: str) -> tuple[str, ...]:
    return xp_datasets("coefficients") if spectra == "xp/coefficients" else (spectra,)


def n_rows(path: str | os.PathLike) -> int:
    """Number of stars (rows of ``source_id``) of an arrays file."""
    with h5py.File(path, "r") as h5:
        if "source_id" not in h5:
            raise LayoutError(path, "source_id", "dataset is missing")
        return int(h5["source_id"].shape[0])


def iter_spectra(
    path: str | os.PathLike,
    rows: np.ndarray | None = None,
    chunk_rows: int = 8192,
    spectra: str = RVS_FLUX,
) -> Iterator[np.ndarray]:
    """Yield the ``spectra`` (:data:`SPECTRA`: ``rvs/flux`` normalised flux, or the XP
    spectra as the model's XP branch normalises them) of ``rows`` (sorted; all if None) as
    float32 chunks; a non-finite value is refused naming the star (fill NaN pixels first)."""
    from gaiacnn.spectra import xp_features

    names = _datasets(spectra)
    xp_input = {"xp/coefficients": "coefficients", XP_SAMPLED_DATASET: "sampled"}.get(spectra)
    # the flux kind as the layout reads (and requires) it
    flux_kind = validate(path, check_values=False).xp_flux_kind if xp_input else None
    with h5py.File(path, "r") as h5:
        for name in names:
            if name not in h5:
                raise LayoutError(path, name, f"missing; the t-SNE classification embeds {spectra}")
        ds = {name: h5[name] for name in names}
        n = ds[names[0]].shape[0]
        rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
        for start in range(0, rows.size, chunk_rows):
            r = rows[start : start + chunk_rows]
            if r.size == 0:
                continue
            part = {name: d[r[0] : r[-1] + 1][r - r[0]] for name, d in ds.items()}
            block = part[RVS_FLUX] if xp_input is None else xp_features(part, xp_input, flux_kind)
            block = np.asarray(block, dtype=np.float32)
            bad = ~np.isfinite(block).all(axis=1)
            if bad.any():
                sid = int(h5["source_id"][r[np.argmax(bad)]]) if "source_id" in h5 else -1
                raise LayoutError(
                    path,
                    names[0],
                    f"non-finite values in {int(bad.sum())} spectra (first: source_id {sid}); "
                    "fill NaN pixels (or cut such stars) before the t-SNE",
                )
            yield block


def read_spectra(
    path: str | os.PathLike,
    rows: np.ndarray | None = None,
    chunk_rows: int = 8192,
    spectra: str = RVS_FLUX,
) -> np.ndarray:
    """All of :func:`iter_spectra` as one (n, P) float32 array."""
    parts = list(iter_spectra(path, rows, chunk_rows, spectra))
    if not parts:
        return np.empty((0, 0), np.float32)
    return np.concatenate(parts)


@dataclass
class Reducer:
    """Centring + projection on the first PCA components (identity when ``components`` is None)."""

    mean: np.ndarray | None = None
    components: np.ndarray | None = None  # (k, P)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.components is None:
            return np.asarray(x, np.float32)
        return ((x - self.mean) @ self.components.T).astype(np.float32)


def fit_reducer(x: np.ndarray, n_components: int, seed: int = 0) -> Reducer:
    """PCA with ``n_components`` (randomised SVD, seeded) fitted on ``x``; 0 = no reduction."""
    if n_components <= 0:
        return Reducer()
    from sklearn.decomposition import PCA

    k = int(min(n_components, x.shape[0], x.shape[1]))
    pca = PCA(n_components=k, svd_solver="randomized", random_state=seed).fit(x)
    return Reducer(pca.mean_.astype(np.float32), pca.components_.astype(np.float32))


def reference_set_config(cfg: Mapping, reference_set: int) -> dict:
    """The ``tsne`` settings of reference map set ``reference_set`` (scalable mode, 0 ..
    ``reference_maps`` - 1): the configured ones with ``seed`` + ``reference_set``, so each set
    draws its own reference subsample and runs its own t-SNE; set 0 is the configured seed."""
    n = int(cfg.get("reference_maps", 1))
    if not 0 <= int(reference_set) < n:
        raise TsneError(f"reference map set {reference_set}: the config has sets 0..{n - 1}")
    return {**cfg, "seed": int(cfg["seed"]) + int(reference_set)}


#: Which training stars the scalable mode's reference maps embed (``reference_training``).
REFERENCE_TRAINING = ("proportional", "all")


def reference_training_rows(
    n_training: int, n_observed: int, n_reference: int, how: str, seed: int
) -> np.ndarray:
    """Sorted rows of the training stars embedded in the scalable mode's reference maps.

    ``all``: every training star.  ``proportional``: a random subsample of the same share
    of the training sample as the ``n_reference`` observed stars are of the observed one
    (rounded), so that the reference map holds training and observed spectra in the
    proportion of the whole data, as a joint map does.  t-SNE gives each region of a map an
    area that grows with the number of spectra in it; with every training star but only a
    few observed ones (at Gaia sizes 44 780 against 20 000 of 841 300), regions where the
    observed spectra outnumber the training ones shrink around their training stars and
    look training-like (docs/tsne.md).  A function of ``seed`` only."""
    if how not in REFERENCE_TRAINING:
        raise TsneError(
            f"unknown reference_training {how!r} (known: {', '.join(REFERENCE_TRAINING)})"
        )
    if how == "all" or n_reference >= n_observed:
        return np.arange(n_training, dtype=np.int64)
    return _subsample(n_training, round(n_training * n_reference / n_observed), seed, 11)


def reference_rows(n_observed: int, n_reference: int, seed: int) -> np.ndarray:
    """Sorted rows of the observed stars embedded in the reference maps (scalable mode):
    a random subsample of ``n_reference`` (all if fewer), a function of ``seed`` only."""
    if n_reference >= n_observed:
        return np.arange(n_observed, dtype=np.int64)
    return _subsample(n_observed, n_reference, seed, 7)


def _subsample(n: int, k: int, seed: int, stream: int) -> np.ndarray:
    """Sorted random ``k`` of the rows ``0..n-1``, from the random stream (``seed``,
    ``stream``): each sample drawn by the scalable mode has its own stream."""
    rng = np.random.default_rng([int(seed), int(stream)])
    return np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)


def tsne_spectra(training, observed, tsne_cfg: Mapping) -> str:
    """The dataset the t-SNE maps embed (``tsne.spectra``; auto: the RVS spectra where both
    samples have them, else the XP spectra; :func:`gaiacnn.tsne.choose_spectra`)."""

    infos = [layout.validate(p, check_values=False) for p in (training, observed)]
    return choose_spectra(infos, str(tsne_cfg.get("spectra", "auto")))


def _map_spectra(
    training, observed, obs_rows, tr_rows=None, spectra: str = RVS_FLUX
) -> tuple[np.ndarray, np.ndarray]:
    """The spectra of a t-SNE map, in map order: the training spectra of ``tr_rows``, then
    the observed ones of ``obs_rows`` (all if None); and the in-training mask."""

    xt = read_spectra(training, tr_rows, spectra=spectra)
    xo = read_spectra(observed, obs_rows, spectra=spectra)
    if xt.shape[1] != xo.shape[1]:
        raise TsneError(f"{xt.shape[1]} training pixels but {xo.shape[1]} observed pixels")
    is_tr = np.r_[np.ones(len(xt), bool), np.zeros(len(xo), bool)]
    return np.concatenate([xt, xo]), is_tr


def _reference_rows(observed, cfg: Mapping) -> np.ndarray:
    """Observed rows embedded in the reference maps (scalable mode)."""

    n_obs = n_rows(observed)
    return reference_rows(n_obs, int(cfg["reference_observed"]), int(cfg["seed"]))


def _reference_training_rows(training, observed, cfg: Mapping) -> np.ndarray:
    """Training rows embedded in the reference maps (scalable mode, ``reference_training``)."""

    return reference_training_rows(
        n_rows(training),
        n_rows(observed),
        int(cfg["reference_observed"]),
        str(cfg["reference_training"]),
        int(cfg["seed"]),
    )
