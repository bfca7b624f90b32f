"""Training-like or not: t-SNE maps of the spectra (paper Sect. 5.1, Appendix A).

The training and observed RVS spectra (or, for a survey without them, the XP spectra:
:func:`choose_spectra`) are embedded together in 2-D at several
perplexities (30, 50, 75, 100).  In each map an observed star is *training-like* when its
distance to its ``m``-th nearest training star (``threshold_neighbours``) is within a
threshold taken from the training stars' own distances to their ``m``-th nearest other
training star (``threshold_rule``: a quantile of them, or a multiple of their median); it is
training-like overall only if it is so in every map.  With ``m = 1`` this is the distance to
the nearest training star; ``m > 1`` asks for the support of several training stars (the
k-nearest-neighbour distance outlier score), so that a lone training star at the edge of
the training sample does not make a whole region of unlike spectra training-like.  ``m``
grows with the training sample (:func:`support_neighbours`).

Two modes:

* ``joint`` (the paper): one embedding of everything per perplexity;
* ``scalable`` (Gaia DR4/DR5 sizes): embed a random subsample of the observed spectra with
  the training sample (by default the same share of it, :func:`reference_training_rows`),
  then place the other observed spectra into that fixed embedding in chunks (at the
  median position of their nearest reference spectra, optionally refined by openTSNE's
  ``TSNEEmbedding.transform``), one job per chunk; several independent sets of reference
  maps (``reference_maps``, :func:`member_config`) classify a star together, by the mean
  of its distance over each map's threshold (:func:`ensemble_training_like`).

Before t-SNE the spectra may be reduced with a PCA (``pca_components``; 0 keeps all
pixels) fitted on the training spectra plus the observed ones embedded with them; t-SNE
neighbours are then found among the PCA scores.  Distances in a map are in t-SNE units.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import h5py
import numpy as np

from gaiacnn.layout import XP_SAMPLED_DATASET, LayoutError, LayoutInfo, validate, xp_datasets

#: Perplexities of the four maps (Sect. 5.1, Fig. 17 and A.1).
DEFAULT_PERPLEXITIES = (30, 50, 75, 100)
#: How the training-like distance threshold is derived from the training stars' own
#: nearest-neighbour distances in the map.
THRESHOLD_RULES = ("quantile", "median_multiple")
RVS_FLUX = "rvs/flux"


class TsneError(ValueError):
    """Inputs the t-SNE stage cannot use (no training stars, bad shapes, ...)."""


# --------------------------------------------------------------------------- spectra


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


# --------------------------------------------------------------------------- embedding


@dataclass
class NeighbourGraph:
    """What a t-SNE map needs of the spectra, computed once for every perplexity: each
    spectrum's ``k`` nearest neighbours (``indices`` (n, k) int32, euclidean ``distances``
    (n, k) float32, in the units of the reduced spectra, nearest first) and the PCA
    initialisation of the map (``init`` (n, 2), openTSNE's scaling)."""

    indices: np.ndarray
    distances: np.ndarray
    init: np.ndarray

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])


def graph_neighbours(perplexities: Sequence[float], n: int) -> int:
    """Neighbours of the shared graph: openTSNE's 3 x perplexity for the largest perplexity,
    at most ``n`` - 1."""
    return int(min(n - 1, int(3 * max(perplexities))))


def _check_perplexity(n: int, perplexity: float) -> None:
    if n <= 3 * perplexity:
        msg = f"perplexity {perplexity} needs more than {3 * perplexity:g} spectra, got {n}"
        raise TsneError(msg)


def neighbour_graph(
    x: np.ndarray, perplexities: Sequence[float], *, seed: int = 0, n_jobs: int = 1
) -> NeighbourGraph:
    """The nearest-neighbour graph of ``x`` (n, d) for maps at ``perplexities``: openTSNE's
    own approximate search (Annoy, as ``TSNE.fit`` would run it) for
    :func:`graph_neighbours` neighbours, searched once; each map takes the first 3 x its
    perplexity of them (what openTSNE's ``set_perplexity`` does), so the maps equal maps
    computed one by one without the three extra searches."""
    from openTSNE import initialization
    from openTSNE.affinity import get_knn_index

    x = np.ascontiguousarray(x, dtype=np.float64)
    for p in perplexities:
        _check_perplexity(x.shape[0], p)
    k = graph_neighbours(perplexities, x.shape[0])
    index = get_knn_index(x, "auto", k, "euclidean", n_jobs=n_jobs, random_state=seed)
    indices, distances = index.build()
    return NeighbourGraph(
        indices.astype(np.int32),
        distances.astype(np.float32),
        initialization.pca(x, 2, random_state=seed),
    )


def embed_graph(
    graph: NeighbourGraph,
    perplexity: float,
    *,
    seed: int = 0,
    n_jobs: int = 1,
    n_iter: int = 500,
):
    """openTSNE embedding (FFT gradients) at ``perplexity`` from a :class:`NeighbourGraph`,
    centred on its bounding box as openTSNE's ``transform`` centres it (in place) before
    placing new points, so the reference map and the points placed into it share one
    frame."""
    from openTSNE import TSNE
    from openTSNE.affinity import PerplexityBasedNN
    from openTSNE.nearest_neighbors import PrecomputedNeighbors

    n = graph.indices.shape[0]
    _check_perplexity(n, perplexity)
    k = min(int(3 * perplexity), graph.k)
    if k < min(n - 1, int(3 * perplexity)):
        msg = f"perplexity {perplexity} needs {int(3 * perplexity)} neighbours, graph has {graph.k}"
        raise TsneError(msg)
    knn = PrecomputedNeighbors(
        np.ascontiguousarray(graph.indices[:, :k], dtype=np.int64),
        np.ascontiguousarray(graph.distances[:, :k], dtype=np.float64),
    )
    affinities = PerplexityBasedNN(knn_index=knn, perplexity=perplexity, n_jobs=n_jobs)
    emb = TSNE(n_iter=n_iter, random_state=seed, n_jobs=n_jobs, verbose=False).fit(
        affinities=affinities, initialization=np.array(graph.init, dtype=np.float64)
    )
    emb -= (np.max(emb, axis=0) + np.min(emb, axis=0)) / 2
    return emb


def embed(x: np.ndarray, perplexity: float, *, seed: int = 0, n_jobs: int = 1, n_iter: int = 500):
    """openTSNE embedding of ``x`` (n, d) at one ``perplexity``: :func:`neighbour_graph` +
    :func:`embed_graph`."""
    graph = neighbour_graph(x, [perplexity], seed=seed, n_jobs=n_jobs)
    return embed_graph(graph, perplexity, seed=seed, n_jobs=n_jobs, n_iter=n_iter)


def portable_embedding(embedding):
    """``embedding`` without its affinities (the kNN index of every reference spectrum, the
    bulk of a pickle): what :func:`place_by_neighbours` needs, positions and optimiser
    settings."""
    from openTSNE import TSNEEmbedding

    out = TSNEEmbedding(
        np.array(embedding), embedding.affinities, **dict(embedding.gradient_descent_params)
    )
    out.affinities = None
    return out


@dataclass
class NeighbourIndex:
    """The reference spectra (reference training + observed, in map order) in a PCA space,
    to find the nearest reference spectra of new spectra once for every map (scalable mode)."""

    reducer: Reducer
    features: np.ndarray  # (n_reference, k), float32

    def query(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices, Euclidean distances) of the ``k`` nearest reference spectra of each row
        of ``x`` (raw spectra), nearest first; exact search in the index's PCA space."""
        from sklearn.neighbors import NearestNeighbors

        k = min(int(k), len(self.features))
        nn = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(self.features)
        dist, idx = nn.kneighbors(self.reducer(x))
        return idx, dist


def build_index(x_reference: np.ndarray, n_components: int, seed: int = 0) -> NeighbourIndex:
    """A :class:`NeighbourIndex` of ``x_reference`` with ``n_components`` PCA components
    (0: all pixels)."""
    reducer = fit_reducer(x_reference, n_components, seed)
    return NeighbourIndex(reducer, reducer(x_reference))


def place_by_neighbours(
    embedding,
    neighbours: np.ndarray,
    distances: np.ndarray,
    *,
    perplexity: float = 5.0,
    n_iter: int = 0,
    k_init: int = 25,
    exaggeration: float = 1.5,
) -> np.ndarray:
    """Positions (m, 2) in the fixed ``embedding`` of new points whose nearest reference
    points (``neighbours``, ``distances``: (m, k), nearest first) are known: the median
    position of the first ``k_init`` neighbours, then, if ``n_iter`` > 0, openTSNE's
    transform optimisation (learning rate 0.1, ``exaggeration`` (its default 1.5), momentum
    0.8, max_grad_norm 0.25) against the reference points only, with affinities of
    ``perplexity`` from the first 3 x ``perplexity`` neighbours.  The neighbour search is
    shared by all maps."""
    if len(neighbours) == 0:
        return np.empty((0, 2))
    ref_xy = np.asarray(embedding)
    xy = np.ascontiguousarray(np.median(ref_xy[neighbours[:, :k_init]], axis=1))
    if n_iter <= 0:
        return xy
    from openTSNE.affinity import joint_probabilities_nn
    from openTSNE.tsne import PartialTSNEEmbedding

    k = max(1, int(3 * perplexity))
    if neighbours.shape[1] < k:
        raise TsneError(
            f"place_perplexity {perplexity:g} needs {k} neighbours, got {neighbours.shape[1]}"
        )
    p_new = joint_probabilities_nn(
        np.ascontiguousarray(neighbours[:, :k], dtype=np.int64),
        np.ascontiguousarray(distances[:, :k], dtype=np.float64),
        [float(perplexity)],
        symmetrize=False,
        normalization="point-wise",
        n_reference_samples=len(ref_xy),
    )
    part = PartialTSNEEmbedding(xy, embedding, P=p_new, **embedding.gradient_descent_params)
    part.optimize(
        n_iter,
        inplace=True,
        learning_rate=0.1,
        exaggeration=exaggeration,
        momentum=0.8,
        max_grad_norm=0.25,
    )
    return np.array(part)


# --------------------------------------------------------------------------- classification


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
    patch the same share of the training sample (README: t-SNE)."""
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


def member_config(cfg: Mapping, member: int) -> dict:
    """The ``tsne`` settings of reference map set ``member`` (scalable mode, 0 ..
    ``reference_maps`` - 1): the configured ones with ``seed`` + ``member``, so each set
    draws its own reference subsample and runs its own t-SNE; set 0 is the configured seed."""
    n = int(cfg.get("reference_maps", 1))
    if not 0 <= int(member) < n:
        raise TsneError(f"reference map set {member}: the config has sets 0..{n - 1}")
    return {**cfg, "seed": int(cfg["seed"]) + int(member)}


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
    look training-like (README: t-SNE, scalable mode).  A function of ``seed`` only."""
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
