"""Scalable mode: the observed spectra left out of the reference maps placed into them,
shard by shard, at the median position of their nearest reference spectra (rules
``tsne_index``, ``tsne_place``, ``tsne_gather``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import h5py
import numpy as np

from gaiacnn.io import open_h5
from gaiacnn.tsne.classify import nearest_training_distance
from gaiacnn.tsne.features import (
    Reducer,
    TsneError,
    _map_spectra,
    _reference_rows,
    _reference_training_rows,
    fit_reducer,
    iter_spectra,
    n_rows,
    tsne_spectra,
)
from gaiacnn.tsne.maps import (
    MAP_DATASETS,
    PLACED_DATASETS,
    _write_map,
    read_reference_embedding,
)

log = logging.getLogger(__name__)


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


def write_index(path, index: NeighbourIndex) -> None:
    """``index`` as an ``.npz`` of arrays: ``features`` (n_reference, k) and, for a PCA,
    its ``mean`` (P,) and ``components`` (k, P).  Data only: reading it runs no code."""
    from gaiacnn.io import atomic_output

    arrays = {"features": np.asarray(index.features, np.float32)}
    if index.reducer.components is not None:
        arrays["mean"] = np.asarray(index.reducer.mean, np.float32)
        arrays["components"] = np.asarray(index.reducer.components, np.float32)
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def read_index(path) -> NeighbourIndex:
    """The :class:`NeighbourIndex` of a file of :func:`write_index` (numerical arrays only:
    reading it runs no code); anything else is refused (:class:`TsneError` naming it)."""
    from gaiacnn.io import read_npz

    what = "a t-SNE neighbour index (rule tsne_index)"
    arrays = read_npz(path, what, TsneError)

    def refuse(why: str):
        return TsneError(f"{path}: not {what} ({why})")

    features, mean, comps = (arrays.get(k) for k in ("features", "mean", "components"))
    if features is None or features.ndim != 2 or features.dtype.kind != "f":
        raise refuse("no 2-d floating-point 'features'")
    if (mean is None) != (comps is None) or set(arrays) - {"features", "mean", "components"}:
        raise refuse(f"datasets {sorted(arrays)}")
    if comps is not None and (
        comps.ndim != 2 or mean.shape != comps.shape[1:] or comps.shape[0] != features.shape[1]
    ):
        raise refuse(f"mean {mean.shape}, components {comps.shape}, features {features.shape}")
    return NeighbourIndex(Reducer(mean, comps), features)


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


def run_tsne_index(training, observed, out_path, *, tsne_cfg) -> None:
    """Rule ``tsne_index`` (scalable mode): the reference spectra (the reference training and
    observed subsamples, in map order) in ``place_pca_components`` PCA components, so each
    placement job searches the nearest reference spectra once for all the maps."""
    x, _ = _map_spectra(
        training,
        observed,
        _reference_rows(observed, tsne_cfg),
        _reference_training_rows(training, observed, tsne_cfg),
        tsne_spectra(training, observed, tsne_cfg),
    )
    index = build_index(x, int(tsne_cfg["place_pca_components"]), int(tsne_cfg["seed"]))
    log.info("neighbour index: %d reference spectra in %d dimensions", *index.features.shape)
    write_index(out_path, index)


def _place_group(perplexity: float) -> str:
    return f"p{perplexity:g}"


def placement_shards(n_observed: int, tsne_cfg: Mapping) -> int:
    """Number of placement shards (scalable mode): the observed stars left out of the
    reference maps, in shards of ``tsne.place_shard_rows``."""
    from gaiacnn import shards

    n_ref = min(int(tsne_cfg["reference_observed"]), int(n_observed))
    return shards.n_shards(int(n_observed) - n_ref, int(tsne_cfg["place_shard_rows"]))


def run_tsne_place(observed, index_path, embedding_paths, out_path, *, shard, tsne_cfg) -> None:
    """Rule ``tsne_place`` (scalable mode): place one shard of the observed spectra that are
    not in the reference maps (``tsne.place_shard_rows`` of them) into every map, searching
    their nearest reference spectra once (in the neighbour index) for all of them, and
    classify them against each map's training stars.  One group per perplexity (``p30/xy``
    ...) in the output file.  Memory ~ the shard and the reference maps, not N."""
    from tqdm.auto import tqdm

    from gaiacnn import shards
    from gaiacnn.io import atomic_output

    index = read_index(index_path)
    refs = [read_reference_embedding(path) for path in embedding_paths]
    n_obs = n_rows(observed)
    ref_rows = _reference_rows(observed, tsne_cfg)
    start, stop = shards.shard_range(
        n_obs - ref_rows.size, int(tsne_cfg["place_shard_rows"]), int(shard)
    )
    rows = shards.complement_slice(n_obs, ref_rows, start, stop)
    step = int(tsne_cfg["place_chunk_rows"])
    p_place, n_iter = float(tsne_cfg["place_perplexity"]), int(tsne_cfg["place_n_iter"])
    k_init = int(tsne_cfg["place_neighbours"])
    k = max(k_init, int(3 * p_place))
    xy = [[] for _ in refs]
    bar = tqdm(total=rows.size, desc=f"t-SNE placement, shard {shard}", unit="spectra")
    spectra = {ref.spectra for ref in refs}
    if len(spectra) != 1:
        raise TsneError(f"the reference maps embed different spectra: {sorted(spectra)}")
    for x in iter_spectra(observed, rows, step, spectra.pop()):
        idx, dist = index.query(x, k)
        for parts, ref in zip(xy, refs, strict=True):
            parts.append(
                place_by_neighbours(
                    ref.embedding, idx, dist, perplexity=p_place, n_iter=n_iter, k_init=k_init
                )
            )
        bar.update(len(x))
    bar.close()
    with h5py.File(observed, "r") as h5:
        sid = h5["source_id"][rows[0] : rows[-1] + 1][rows - rows[0]] if rows.size else []
    with atomic_output(out_path) as tmp, h5py.File(tmp, "w") as h5:
        h5["source_id"] = np.asarray(sid, dtype=np.int64)
        h5.attrs["shard"] = int(shard)
        for parts, ref in zip(xy, refs, strict=True):
            thr, n_tr = ref.threshold, ref.n_training
            pos = np.concatenate(parts) if parts else np.empty((0, 2))
            train_xy = np.asarray(ref.embedding)[:n_tr]
            dist = nearest_training_distance(train_xy, pos, thr.neighbours)
            g = h5.create_group(_place_group(ref.perplexity))
            for name, values in zip(PLACED_DATASETS, (pos, dist, dist <= thr.value), strict=True):
                g[name] = values
            g["xy"].attrs["unit"] = "t-SNE units"
            g.attrs["threshold"] = thr.value
            log.info(
                "perplexity %g: %d of %d placed spectra training-like",
                ref.perplexity,
                int((dist <= thr.value).sum()),
                rows.size,
            )


def run_tsne_gather(reference_map, shard_files, out_path, *, perplexity) -> None:
    """Rule ``tsne_gather`` (scalable mode): the reference map of one perplexity and the
    stars placed into it by every shard as one map file, in the layout of the joint mode
    (with the reference map's attributes)."""
    parts: dict[str, list] = {k: [] for k in MAP_DATASETS}
    with open_h5(reference_map) as h5:
        attrs = dict(h5.attrs)
        for k in MAP_DATASETS:
            parts[k].append(h5[k][:])
    group = _place_group(float(perplexity))
    for path in shard_files:
        with open_h5(path) as h5:
            if group not in h5:
                raise KeyError(f"{path}: no placement for perplexity {perplexity:g} ({group})")
            sid = h5["source_id"][:]
            parts["source_id"].append(sid)
            parts["in_training"].append(np.zeros(sid.size, bool))
            for k in PLACED_DATASETS:
                parts[k].append(h5[group][k][:])
    _write_map(out_path, {k: np.concatenate(v) for k, v in parts.items()}, attrs)
