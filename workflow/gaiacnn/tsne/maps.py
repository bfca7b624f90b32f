"""The t-SNE maps: the nearest-neighbour graph shared by every perplexity, the embedding,
the map files (rules ``tsne_neighbours``, ``tsne_joint``, ``tsne_reference``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import h5py
import numpy as np

from gaiacnn import layout
from gaiacnn.layout import RVS_FLUX_DATASET
from gaiacnn.tsne.classify import (
    Threshold,
    _warn_thin_support,
    classify,
    threshold_from_config,
)
from gaiacnn.tsne.features import (
    MAP_DATASETS,
    MAP_DTYPES,
    TsneError,
    _map_spectra,
    _reference_rows,
    _reference_training_rows,
    fit_reducer,
    tsne_spectra,
)

log = logging.getLogger(__name__)


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


def embedding_from_arrays(xy: np.ndarray, gradient_descent_params: Mapping):
    """An openTSNE ``TSNEEmbedding`` of positions ``xy`` (n, 2) and optimiser settings
    ``gradient_descent_params``, without affinities: what :func:`place_by_neighbours` needs
    of a reference map.  openTSNE's constructor asks for an affinity object only to check
    its size, so an empty n x n ``PrecomputedAffinities`` stands in and is then dropped."""
    import scipy.sparse as sp
    from openTSNE import TSNEEmbedding
    from openTSNE.affinity import PrecomputedAffinities

    n = len(xy)
    stand_in = PrecomputedAffinities(sp.csr_matrix((n, n)), normalize=False)
    out = TSNEEmbedding(np.asarray(xy, np.float64), stand_in, **dict(gradient_descent_params))
    out.affinities = None
    return out


def portable_embedding(embedding):
    """``embedding`` without its affinities (the kNN index of every reference spectrum, most
    of its size): its positions and optimiser settings, all a reference embedding file
    keeps (:func:`write_reference_embedding`)."""
    return embedding_from_arrays(np.array(embedding), embedding.gradient_descent_params)


#: ``format`` attribute of a reference embedding file (:func:`write_reference_embedding`).
REFERENCE_EMBEDDING_FORMAT = "gaiacnn t-SNE reference embedding 1"

#: openTSNE optimiser settings a reference embedding file may hold, each a JSON scalar.
_OPTIMISER_SETTINGS = frozenset(
    {"learning_rate", "momentum", "theta", "max_grad_norm", "max_step_norm", "n_jobs",
     "verbose", "callbacks", "callbacks_every_iters", "negative_gradient_method",
     "n_interpolation_points", "min_num_intervals", "ints_in_interval", "dof"}
)  # fmt: skip


@dataclass
class ReferenceEmbedding:
    """What a placement job needs of one reference map (scalable mode): the embedding
    (positions, training stars first, and openTSNE's optimiser settings), its threshold,
    its number of training stars, its perplexity and the spectra it embeds."""

    embedding: object  # openTSNE TSNEEmbedding without affinities
    threshold: Threshold
    n_training: int
    perplexity: float
    spectra: str


def write_reference_embedding(path, ref: ReferenceEmbedding) -> None:
    """``ref`` as HDF5: the positions ``xy`` (n, 2) float64 and, as attributes, the
    perplexity, the number of training stars, the spectra, and the threshold and the
    optimiser settings as JSON.  Data only: reading it runs no code."""
    import json
    from dataclasses import asdict

    from gaiacnn.io import atomic_output

    params = dict(ref.embedding.gradient_descent_params)
    unknown = set(params) - _OPTIMISER_SETTINGS
    if unknown or params.get("callbacks") is not None:
        raise TsneError(f"cannot save openTSNE settings {sorted(unknown) or ['callbacks']}")
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as h5:
        h5["xy"] = np.asarray(ref.embedding, np.float64)
        h5["xy"].attrs["unit"] = "t-SNE units"
        h5.attrs["format"] = REFERENCE_EMBEDDING_FORMAT
        h5.attrs["perplexity"] = float(ref.perplexity)
        h5.attrs["n_training"] = int(ref.n_training)
        h5.attrs["spectra"] = str(ref.spectra)
        thr = asdict(ref.threshold)
        thr["neighbours"] = int(thr["neighbours"])
        h5.attrs["threshold"] = json.dumps(thr)
        h5.attrs["gradient_descent_params"] = json.dumps(params)


def read_reference_embedding(path) -> ReferenceEmbedding:
    """The :class:`ReferenceEmbedding` of a file of :func:`write_reference_embedding`, the
    openTSNE embedding rebuilt from its arrays; anything else is refused
    (:class:`TsneError` naming the file)."""
    import json

    def refuse(why: str):
        return TsneError(f"{path}: not a t-SNE reference embedding ({why}); rerun tsne_reference")

    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise refuse(f"not an HDF5 file: {exc}") from None
    with h5:
        if h5.attrs.get("format") != REFERENCE_EMBEDDING_FORMAT:
            raise refuse(f"format attribute {h5.attrs.get('format')!r}")
        try:
            xy = np.asarray(h5["xy"][()], np.float64)
            perplexity, n_tr = float(h5.attrs["perplexity"]), int(h5.attrs["n_training"])
            spectra = str(h5.attrs["spectra"])
            thr = json.loads(h5.attrs["threshold"])
            params = json.loads(h5.attrs["gradient_descent_params"])
        except (KeyError, TypeError, ValueError) as exc:
            raise refuse(str(exc)) from None
    if xy.ndim != 2 or xy.shape[1] != 2 or not np.isfinite(xy).all():
        raise refuse(f"xy of shape {xy.shape}, or not finite")
    if not 0 < n_tr <= len(xy):
        raise refuse(f"{n_tr} training stars of {len(xy)}")
    if not isinstance(params, dict) or set(params) - _OPTIMISER_SETTINGS:
        raise refuse("unknown optimiser settings")
    if any(isinstance(v, (dict, list)) for v in params.values()) or params.get("callbacks"):
        raise refuse("optimiser settings that are not plain values")
    try:
        threshold = Threshold(**thr)
    except TypeError as exc:
        raise refuse(f"threshold: {exc}") from None
    return ReferenceEmbedding(
        embedding_from_arrays(xy, params), threshold, n_tr, perplexity, spectra
    )


@contextmanager
def map_writer(out_path, n_rows: int, attrs: Mapping) -> Iterator[Callable[[int, Mapping], None]]:
    """A t-SNE map file (:data:`MAP_DATASETS`) of ``n_rows`` stars written a block of rows
    at a time: yields ``write(first_row, data)``.  The file appears, atomically, only when
    the block closes without error.

    A map holds its training stars first, then its observed stars; a map that classifies
    (joint, or gathered in scalable mode) holds every observed star in the observed
    arrays file's order, which lets :func:`gaiacnn.tsne.run_tsne_classify` read it in
    step with that file."""
    from gaiacnn.io import atomic_output

    with atomic_output(out_path) as tmp, h5py.File(tmp, "w") as h5:
        for name, dtype in zip(MAP_DATASETS, MAP_DTYPES, strict=True):
            h5.create_dataset(name, (n_rows, 2) if name == "xy" else (n_rows,), dtype)
        h5["xy"].attrs["unit"] = "t-SNE units"
        for k, v in attrs.items():
            h5.attrs[k] = v

        def write(first: int, data: Mapping) -> None:
            for name, dtype in zip(MAP_DATASETS, MAP_DTYPES, strict=True):
                block = np.asarray(data[name], dtype)
                h5[name][first : first + len(block)] = block

        yield write


def _write_map(out_path, data: Mapping[str, np.ndarray], attrs: Mapping) -> None:
    """One t-SNE map file (:data:`MAP_DATASETS`): every star of both samples (training
    first), its position, its distance to the nearest training star and its class."""
    with map_writer(out_path, len(data["source_id"]), attrs) as write:
        write(0, data)


def _map_attrs(cfg: Mapping, perplexity: float, thr, mode: str, **extra) -> dict:
    return {
        "perplexity": float(perplexity),
        "mode": mode,
        "pca_components": int(cfg["pca_components"]),
        "threshold_rule": thr.rule,
        "threshold": thr.value,
        "threshold_quantile": thr.quantile,
        "threshold_factor": thr.factor,
        "threshold_neighbours": thr.neighbours,
        "median_training_nn": thr.median_training_nn,
        # the map's seed: with n_reference_observed, the observed stars of a scalable
        # reference map (gaiacnn.tsne.reference_rows)
        "seed": int(cfg["seed"]),
        **extra,
    }


def run_tsne_neighbours(training, observed, out_path, *, mode: str, tsne_cfg, threads=1) -> None:
    """Rule ``tsne_neighbours``: the nearest-neighbour graph and PCA initialisation shared by
    the maps of every perplexity (:func:`gaiacnn.tsne.neighbour_graph`), of the training +
    observed spectra (``mode`` joint) or of the reference training + observed spectra
    (``mode`` scalable), as an ``.npz``: ``source_id``, ``in_training``, ``indices``,
    ``distances``, ``init``."""
    from gaiacnn.io import atomic_output

    if mode not in ("joint", "scalable"):
        raise ValueError(f"t-SNE mode {mode!r}: joint or scalable")
    obs_rows = tr_rows = None
    if mode == "scalable":
        obs_rows = _reference_rows(observed, tsne_cfg)
        tr_rows = _reference_training_rows(training, observed, tsne_cfg)
        _warn_thin_support(tr_rows.size, tsne_cfg)
    spectra = tsne_spectra(training, observed, tsne_cfg)
    x, is_tr = _map_spectra(training, observed, obs_rows, tr_rows, spectra)
    seed = int(tsne_cfg["seed"])
    z = fit_reducer(x, int(tsne_cfg["pca_components"]), seed)(x)
    del x
    perps = [float(p) for p in tsne_cfg["perplexities"]]
    log.info(
        "t-SNE neighbours (%s) of %s: %d training + %d observed spectra in %d dims, %d neighbours",
        mode,
        spectra,
        int(is_tr.sum()),
        int((~is_tr).sum()),
        z.shape[1],
        graph_neighbours(perps, z.shape[0]),
    )
    graph = neighbour_graph(z, perps, seed=seed, n_jobs=threads)
    obs_sid = layout.read_column(observed, "source_id")
    tr_sid = layout.read_column(training, "source_id")
    sid = np.r_[
        tr_sid if tr_rows is None else tr_sid[tr_rows],
        obs_sid if obs_rows is None else obs_sid[obs_rows],
    ]
    with atomic_output(out_path) as tmp, open(tmp, "wb") as fh:
        np.savez(
            fh,
            source_id=sid,
            in_training=is_tr,
            indices=graph.indices,
            distances=graph.distances,
            init=graph.init,
            spectra=np.array(spectra),
        )


def _embed_and_classify(graph_path, perplexity, cfg: Mapping, threads: int):
    """The map at ``perplexity`` of the spectra of a ``tsne_neighbours`` graph file, and
    its classes.  Returns (embedding, map data, threshold)."""

    from gaiacnn.io import read_npz

    npz = read_npz(graph_path, "a t-SNE neighbour graph (rule tsne_neighbours)", TsneError)
    missing = {"source_id", "in_training", "indices", "distances", "init"} - set(npz)
    if missing:
        raise TsneError(
            f"{graph_path}: not a t-SNE neighbour graph (no {', '.join(sorted(missing))})"
        )
    sid, is_tr = npz["source_id"], npz["in_training"]
    graph = NeighbourGraph(npz["indices"], npz["distances"], npz["init"])
    spectra = str(npz["spectra"]) if "spectra" in npz else RVS_FLUX_DATASET
    del npz
    log.info(
        "t-SNE map, perplexity %g: %d training + %d observed spectra",
        perplexity,
        int(is_tr.sum()),
        int((~is_tr).sum()),
    )
    emb = embed_graph(
        graph, perplexity, seed=int(cfg["seed"]), n_jobs=threads, n_iter=cfg["n_iter"]
    )
    del graph
    xy = np.asarray(emb)
    thr = threshold_from_config(xy[is_tr], cfg)
    dist, like = classify(xy, is_tr, thr)
    data = dict(zip(MAP_DATASETS, (sid, is_tr, xy, dist, like), strict=True))
    data["spectra"] = spectra
    log.info(
        "perplexity %g: threshold %.4g (%s), %d of %d observed stars training-like",
        perplexity,
        thr.value,
        thr.rule,
        int(like[~is_tr].sum()),
        int((~is_tr).sum()),
    )
    return emb, data, thr


def run_tsne_joint(graph_path, out_path, *, perplexity, tsne_cfg, threads=1) -> None:
    """Rule ``tsne_joint``: one joint map of the training + observed spectra (Sect. 5.1)."""
    _, data, thr = _embed_and_classify(graph_path, perplexity, tsne_cfg, threads)
    attrs = _map_attrs(tsne_cfg, perplexity, thr, "joint", spectra=data.pop("spectra"))
    _write_map(out_path, data, attrs)


def run_tsne_reference(
    graph_path, embedding_out, map_out, *, perplexity, tsne_cfg, threads=1
) -> None:
    """Rule ``tsne_reference`` (scalable mode): embed the reference spectra (a random
    subsample of the observed ones and the training ones of ``reference_training``); save
    the embedding for the placement jobs (:func:`write_reference_embedding`) and the map."""
    emb, data, thr = _embed_and_classify(graph_path, perplexity, tsne_cfg, threads)
    n_tr = int(data["in_training"].sum())
    spectra = data.pop("spectra")
    write_reference_embedding(
        embedding_out,
        ReferenceEmbedding(portable_embedding(emb), thr, n_tr, float(perplexity), spectra),
    )
    n_ref = int((~data["in_training"]).sum())
    attrs = _map_attrs(
        tsne_cfg,
        perplexity,
        thr,
        "scalable",
        n_reference_observed=n_ref,
        n_reference_training=n_tr,
        reference_training=str(tsne_cfg["reference_training"]),
        spectra=spectra,
    )
    _write_map(map_out, data, attrs)
