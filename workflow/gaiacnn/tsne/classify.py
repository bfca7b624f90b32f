"""Training-like or not in a t-SNE map: the threshold on the distance to the m-th nearest
training star, the classes of one map, of several perplexities (AND) and of several
reference map sets (the mean ratio to each map's threshold); rule ``tsne_classify``."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import h5py
import numpy as np

from gaiacnn import constants
from gaiacnn.io import open_h5
from gaiacnn.layout import RVS_FLUX_DATASET
from gaiacnn.tsne.features import (
    PLACED_DATASETS,
    STREAM_ROWS,
    THRESHOLD_RULES,
    TsneError,
    n_rows,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Threshold:
    """Training-like distance threshold of one map, from the training stars' NN distances."""

    rule: str
    value: float  # t-SNE units
    quantile: float
    factor: float
    median_training_nn: float  # median training m-th-neighbour distance, t-SNE units
    neighbours: int = 1  # m: the distance is to the m-th nearest training star


def _check_neighbours(n_training: int, m: int, *, others: bool) -> None:
    """Refuse ``m`` < 1, or fewer training stars than the ``m``-th neighbour needs (one more
    when the neighbours are the *other* training stars)."""
    if m < 1:
        raise TsneError(f"threshold_neighbours must be >= 1, got {m}")
    need = m + 1 if others else m
    if n_training < need:
        raise TsneError(
            f"{n_training} training stars in the map; need at least {need} "
            f"for threshold_neighbours = {m}"
        )


def support_neighbours(n_training: int, count: int, fraction: float = 0.0) -> int:
    """``m`` of the threshold, the number of training stars whose support a training-like
    star needs: ``count`` (``threshold_neighbours``), or ``fraction`` of the map's
    ``n_training`` training stars (``threshold_neighbours_fraction``, rounded) when that is
    more.  A t-SNE map of more training stars is finer grained, so a fixed count measures
    an ever smaller patch of it, which moves from one map to the next; a fraction keeps the
    patch the same share of the training sample (docs/tsne.md)."""
    if count < 1:
        raise TsneError(f"threshold_neighbours must be >= 1, got {count}")
    if not 0.0 <= fraction < 1.0:
        raise TsneError(f"threshold_neighbours_fraction must be in [0, 1), got {fraction}")
    return max(int(count), round(float(fraction) * int(n_training)))


def training_nn_distances(train_xy: np.ndarray, m: int = 1) -> np.ndarray:
    """Each training star's distance to its ``m``-th nearest *other* training star in the
    map (t-SNE units)."""
    from sklearn.neighbors import KDTree

    _check_neighbours(len(train_xy), m, others=True)
    d, _ = KDTree(train_xy).query(train_xy, k=m + 1)
    return d[:, m]


def nearest_training_distance(train_xy: np.ndarray, xy: np.ndarray, m: int = 1) -> np.ndarray:
    """Distance of each point of ``xy`` to its ``m``-th nearest training star (t-SNE units)."""
    from sklearn.neighbors import KDTree

    if len(xy) == 0:
        return np.empty(0)
    _check_neighbours(len(train_xy), m, others=False)
    d, _ = KDTree(train_xy).query(xy, k=m)
    return d[:, m - 1]


def threshold(
    train_xy: np.ndarray,
    *,
    rule: str = "quantile",
    quantile: float = 0.99,
    factor: float = 3.0,
    neighbours: int = 1,
) -> Threshold:
    """The map's threshold on the distance to the ``neighbours``-th nearest training star:
    the ``quantile`` of the training stars' own such distances (rule ``quantile``) or
    ``factor`` × their median (rule ``median_multiple``)."""
    if rule not in THRESHOLD_RULES:
        raise TsneError(f"unknown threshold rule {rule!r} (known: {', '.join(THRESHOLD_RULES)})")
    d = training_nn_distances(train_xy, neighbours)
    med = float(np.median(d))
    value = float(np.quantile(d, quantile)) if rule == "quantile" else factor * med
    return Threshold(rule, value, float(quantile), float(factor), med, int(neighbours))


def support_from_config(n_training: int, cfg: Mapping) -> int:
    """:func:`support_neighbours` of ``n_training`` training stars with the settings of the
    ``tsne`` config section ``cfg``."""
    return support_neighbours(
        n_training, int(cfg["threshold_neighbours"]), float(cfg["threshold_neighbours_fraction"])
    )


def threshold_from_config(
    train_xy: np.ndarray, cfg: Mapping, neighbours: int | None = None
) -> Threshold:
    """:func:`threshold` with the settings of the ``tsne`` config section ``cfg``; the
    support ``neighbours`` (m) is :func:`support_neighbours` of the map's training stars
    unless given."""
    if neighbours is None:
        neighbours = support_from_config(len(train_xy), cfg)
    return threshold(
        train_xy,
        rule=cfg["threshold_rule"],
        quantile=float(cfg["threshold_quantile"]),
        factor=float(cfg["threshold_factor"]),
        neighbours=int(neighbours),
    )


def classify(
    xy: np.ndarray, is_training: np.ndarray, thr: Threshold
) -> tuple[np.ndarray, np.ndarray]:
    """(distance to the ``thr.neighbours``-th nearest training star, training-like) for every
    point of ``xy``.  Training stars are training-like by definition (distance 0)."""
    is_training = np.asarray(is_training, bool)
    dist = np.zeros(len(xy))
    dist[~is_training] = nearest_training_distance(
        xy[is_training], xy[~is_training], thr.neighbours
    )
    return dist, dist <= thr.value


def combine_maps(training_like: Sequence[np.ndarray]) -> np.ndarray:
    """Training-like overall: so in every map (Sect. 5.1)."""
    if not training_like:
        raise TsneError("no t-SNE map to combine")
    return np.logical_and.reduce([np.asarray(t, bool) for t in training_like])


def ensemble_training_like(
    distances: Sequence[np.ndarray], thresholds: Sequence[float]
) -> np.ndarray:
    """Training-like in one perplexity's ensemble of maps (scalable mode, ``reference_maps``
    > 1): the mean over the maps of a star's distance to its m-th nearest training star over
    that map's threshold is at most 1.  Each map is a t-SNE run of its own reference
    subsample, so its distances are in its own units; the ratio puts them on one scale,
    and the mean smooths t-SNE's map-to-map scatter near the threshold.  ``distances``:
    one array per map, the same stars in the same order [t-SNE units of that map]."""
    if len(distances) != len(thresholds) or not distances:
        raise TsneError(f"{len(distances)} maps' distances but {len(thresholds)} thresholds")
    ratio = np.mean(
        [np.asarray(d, float) / float(t) for d, t in zip(distances, thresholds, strict=True)],
        axis=0,
    )
    return ratio <= 1.0


#: Above this share of a reference map's training stars, the threshold's support m is
#: warned about: the validated maps ask for 0.3-0.5 % of them (docs/tsne.md).
MAX_SUPPORT_SHARE = 0.01


def _warn_thin_support(n_training: int, cfg: Mapping) -> None:
    """Warn when a reference map holds so few training stars that the threshold's support
    m is more than :data:`MAX_SUPPORT_SHARE` of them (its classes then move from map to
    map); more ``reference_observed`` brings more training stars in with them."""

    m = support_from_config(n_training, cfg)
    if m > MAX_SUPPORT_SHARE * n_training:
        log.warning(
            "the reference maps hold %d training stars, and the threshold asks for the "
            "support of m = %d of them (%.1f %%, more than %g %%): the classes will be noisy; "
            "raise tsne.reference_observed (with reference_training proportional the "
            "training stars grow with it)",
            n_training,
            m,
            100.0 * m / max(n_training, 1),
            100 * MAX_SUPPORT_SHARE,
        )


class _MapReader:
    """One classifying map file (joint, or gathered in scalable mode), its observed stars
    read in step with the observed arrays file (:func:`gaiacnn.tsne.map_writer`)."""

    def __init__(self, path, n_observed: int):
        self.path = path
        self._h5 = h5 = open_h5(path)
        missing = [k for k in ("source_id", "in_training", *PLACED_DATASETS) if k not in h5]
        if missing:
            h5.close()
            raise TsneError(f"{path}: not a t-SNE map (no {', '.join(missing)})")
        self.perplexity = float(h5.attrs["perplexity"])
        self.threshold = float(h5.attrs["threshold"])
        self.spectra = str(h5.attrs.get("spectra", RVS_FLUX_DATASET))
        self.n_training = int(h5["source_id"].shape[0]) - int(n_observed)
        if self.n_training < 0 or not h5["in_training"][: self.n_training].all():
            h5.close()
            raise TsneError(
                f"{path}: not a map of the training stars then the {n_observed} observed "
                "stars of the observed file"
            )

    def observed(self, start: int, stop: int, sid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(distance to the m-th nearest training star, training-like) of the observed
        stars ``start:stop`` of the observed file, whose ``source_id`` are ``sid``."""
        h5, a, b = self._h5, self.n_training + start, self.n_training + stop
        m_sid = h5["source_id"][a:b]
        bad = np.flatnonzero((m_sid != sid) | h5["in_training"][a:b])
        if bad.size:
            i = int(bad[0])
            raise TsneError(
                f"{self.path}: row {a + i} holds star {m_sid[i]}, the observed file's row "
                f"{start + i} star {sid[i]}: the map's observed stars are not the observed "
                "file's in its order (a map of another file, or gathered by a version "
                "before 2026-12: run `snakemake --forcerun tsne_gather`)"
            )
        return h5["nn_training_distance"][a:b], h5["training_like"][a:b]

    def close(self) -> None:
        self._h5.close()


def run_tsne_classify(map_files, observed, out_path, *, chunk_rows: int = STREAM_ROWS) -> None:
    """Rule ``tsne_classify``: training-like in every perplexity's map (Sect. 5.1), per
    observed star, in the order of the observed arrays file, ``chunk_rows`` stars at a
    time (memory independent of N).  Several maps of one perplexity (scalable mode,
    ``reference_maps`` > 1) are one ensemble (:func:`gaiacnn.tsne.ensemble_training_like`);
    a lone map gives its own classes."""
    from gaiacnn.io import atomic_output

    n_obs = n_rows(observed)
    readers: list[_MapReader] = []
    try:
        for path in map_files:
            readers.append(_MapReader(path, n_obs))
        _classify_maps(readers, observed, n_obs, out_path, chunk_rows, atomic_output)
    finally:
        for r in readers:
            r.close()


def _classify_maps(readers, observed, n_obs: int, out_path, chunk_rows: int, atomic_output):
    spectra = {r.spectra for r in readers}
    if len(spectra) != 1:
        raise TsneError(f"the maps embed different spectra: {sorted(spectra)}")
    per_perp: dict[float, list[_MapReader]] = {}
    for r in readers:
        per_perp.setdefault(r.perplexity, []).append(r)
    counts = {len(v) for v in per_perp.values()}
    if len(counts) != 1:
        raise TsneError(f"unequal numbers of maps per perplexity: {sorted(counts)}")
    perps = list(per_perp)
    n_like = np.zeros(len(perps) + 1, np.int64)
    with (
        atomic_output(out_path) as tmp,
        h5py.File(tmp, "w") as h5,
        open_h5(observed) as obs,
    ):
        names = ["training_like", *(f"training_like_p{p:g}" for p in perps)]
        h5.create_dataset("source_id", (n_obs,), np.int64)
        for name in names:
            h5.create_dataset(name, (n_obs,), bool)
        for start in range(0, n_obs, chunk_rows):
            stop = min(n_obs, start + chunk_rows)
            sid = obs["source_id"][start:stop]
            likes = []
            for maps in per_perp.values():
                dist, like = zip(*(r.observed(start, stop, sid) for r in maps), strict=True)
                thr = [r.threshold for r in maps]
                likes.append(like[0] if len(maps) == 1 else ensemble_training_like(dist, thr))
            blocks = [combine_maps(likes), *likes]
            h5["source_id"][start:stop] = sid
            for name, block, k in zip(names, blocks, range(len(names)), strict=True):
                h5[name][start:stop] = block
                n_like[k] += int(np.count_nonzero(block))
        h5.attrs["perplexities"] = perps
        h5.attrs["maps_per_perplexity"] = counts.pop()
        h5.attrs["spectra"] = next(iter(spectra))
    log.info(
        "t-SNE of %s: %d of %d observed stars (%.1f %%) training-like in all %d perplexities "
        "(%s); the paper: %s (Sect. 5.1)",
        next(iter(spectra)),
        n_like[0],
        n_obs,
        100.0 * n_like[0] / n_obs if n_obs else float("nan"),
        len(perps),
        ", ".join(f"p{p:g}: {int(x)}" for p, x in zip(perps, n_like[1:], strict=True)),
        constants.paper_fraction(constants.PAPER_TRAINING_LIKE),
    )
