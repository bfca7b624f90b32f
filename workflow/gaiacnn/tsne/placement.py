"""Scalable mode: the observed spectra left out of the reference maps placed into them,
shard by shard, at the median position of their nearest reference spectra (rules
``tsne_index``, ``tsne_place``, ``tsne_gather``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import h5py
import numpy as np

from gaiacnn.io import open_h5
from gaiacnn.tsne.classify import nearest_training_distance
from gaiacnn.tsne.features import (
    MAP_DATASETS,
    MAP_DTYPES,
    PLACED_DATASETS,
    STREAM_ROWS,
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
    ReferenceEmbedding,
    map_writer,
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


def _drop_self(idx: np.ndarray, dist: np.ndarray, own: np.ndarray, k: int):
    """The first ``k`` of ``k`` + 1 neighbours (``idx``, ``dist``) of each spectrum without
    the spectrum itself (its reference row ``own``; -1 for one not in the reference), or
    without the farthest where it is not among them (leave-one-out)."""
    hit = idx == np.asarray(own)[:, None]
    drop = np.where(hit.any(axis=1), hit.argmax(axis=1), idx.shape[1] - 1)
    keep = np.ones(idx.shape, bool)
    keep[np.arange(len(idx)), drop] = False
    n = len(idx)
    return idx[keep].reshape(n, -1)[:, :k], dist[keep].reshape(n, -1)[:, :k]


@dataclass
class PlacementSet:
    """One set of t-SNE maps (one per perplexity) and the neighbour index of the reference
    spectra they share: where a new spectrum lands in each map and how far it lies from
    the map's training stars (scalable mode's placement; a bundle's training-like
    classification of stars its run did not embed)."""

    index: NeighbourIndex
    maps: list[ReferenceEmbedding]

    @property
    def spectra(self) -> str:
        """The dataset the maps embed (:data:`gaiacnn.tsne.SPECTRA`)."""
        kinds = {m.spectra for m in self.maps}
        if len(kinds) != 1:
            raise TsneError(f"the reference maps embed different spectra: {sorted(kinds)}")
        return kinds.pop()

    def place(
        self,
        x: np.ndarray,
        neighbours: int,
        perplexity: float,
        n_iter: int,
        own: np.ndarray | None = None,
    ) -> list[np.ndarray]:
        """Positions (m, 2) of the spectra ``x`` (m, P) in every map: the neighbour search
        done once for all of them (:func:`place_by_neighbours` with ``neighbours``
        (``place_neighbours``), ``perplexity`` (``place_perplexity``) and ``n_iter``
        (``place_n_iter``)).  ``own``: each spectrum's row in the reference (-1: none),
        left out of its neighbours (leave-one-out, to test the placement on the
        reference's own stars)."""
        k = max(int(neighbours), int(3 * perplexity))
        if own is None:
            idx, dist = self.index.query(x, k)
        else:
            idx, dist = _drop_self(*self.index.query(x, k + 1), own, k)
        return [
            place_by_neighbours(
                m.embedding, idx, dist, perplexity=perplexity, n_iter=n_iter, k_init=neighbours
            )
            for m in self.maps
        ]

    def distances(self, x: np.ndarray, place_cfg: Mapping, own=None) -> list[np.ndarray]:
        """Per map: each spectrum's distance to the map's ``threshold.neighbours``-th nearest
        training star once placed (t-SNE units of that map); ``place_cfg``: the ``tsne``
        settings ``place_neighbours``, ``place_perplexity``, ``place_n_iter``."""
        pos = self.place(
            x,
            int(place_cfg["place_neighbours"]),
            float(place_cfg["place_perplexity"]),
            int(place_cfg["place_n_iter"]),
            own,
        )
        out = []
        for m, p in zip(self.maps, pos, strict=True):
            train_xy = np.asarray(m.embedding)[: m.n_training]
            out.append(nearest_training_distance(train_xy, p, m.threshold.neighbours))
        return out


def placed_training_like(
    sets: Sequence[PlacementSet], x: np.ndarray, place_cfg: Mapping, own=None
) -> tuple[np.ndarray, dict[float, np.ndarray]]:
    """(training-like in every perplexity, {perplexity: training-like}) of spectra ``x``
    placed into every set's maps, classified as rule ``tsne_classify`` classifies
    (Sect. 5.1): per perplexity, within the map's threshold (one set) or the mean over the
    sets of distance / threshold at most 1 (:func:`ensemble_training_like`); overall,
    training-like in every perplexity.  ``own``: per set, each spectrum's reference row
    (-1: none), left out of its neighbours."""
    from gaiacnn.tsne.classify import combine_maps, ensemble_training_like

    per_set = [
        s.distances(x, place_cfg, None if own is None else own[k]) for k, s in enumerate(sets)
    ]
    per_perp: dict[float, np.ndarray] = {}
    for j, m in enumerate(sets[0].maps):
        dist = [d[j] for d in per_set]
        thr = [s.maps[j].threshold.value for s in sets]
        if any(s.maps[j].perplexity != m.perplexity for s in sets):
            raise TsneError("the sets of maps hold different perplexities")
        per_perp[m.perplexity] = (
            dist[0] <= thr[0] if len(sets) == 1 else ensemble_training_like(dist, thr)
        )
    return combine_maps(list(per_perp.values())), per_perp


def _read_rows(ds, offset: int, rows: np.ndarray, chunk_rows: int = STREAM_ROWS) -> np.ndarray:
    """``ds[offset + rows]`` (``rows`` sorted), read a block at a time: memory ~ the rows."""
    parts = []
    for lo in range(0, rows.size, chunk_rows):
        r = rows[lo : lo + chunk_rows] + offset
        parts.append(ds[r[0] : r[-1] + 1][r - r[0]])
    return np.concatenate(parts) if parts else ds[0:0]


def map_set_reference(training, observed, map_attrs: Mapping, tsne_cfg: Mapping):
    """(training rows, observed rows) of the reference spectra of a set of classifying
    maps: a scalable set's own reference subsample (its ``seed``), or, for a joint map
    (every star embedded), every training star and ``reference_observed`` observed stars
    drawn as a scalable set of the same seed would draw them, so that the reference stays
    bounded at any N."""
    cfg = {**tsne_cfg, "seed": int(map_attrs["seed"])}
    mode = str(map_attrs.get("mode", "joint"))
    if mode == "scalable":
        return _reference_training_rows(training, observed, cfg), _reference_rows(observed, cfg)
    if mode != "joint":
        raise TsneError(f"a t-SNE map of mode {mode!r}: joint or scalable")
    return np.arange(n_rows(training), dtype=np.int64), _reference_rows(observed, cfg)


def placement_set_from_maps(
    map_files: Sequence, training, observed, tsne_cfg: Mapping
) -> tuple[PlacementSet, np.ndarray]:
    """The :class:`PlacementSet` of one set of classifying maps (``map_files``, one per
    perplexity: joint maps, or one set's gathered scalable maps), built from the run's
    arrays files: the reference spectra (:func:`map_set_reference`) in a neighbour index
    of ``place_pca_components`` PCA components, and their positions in each map with the
    map's training stars and threshold.  For a scalable set this is the index and the
    reference embeddings its placement jobs used.  Returns it and the observed rows of its
    reference.  Each map's stars are checked against the arrays files by ``source_id``."""
    from gaiacnn.tsne.classify import Threshold
    from gaiacnn.tsne.maps import embedding_from_arrays

    n_obs = n_rows(observed)
    with open_h5(map_files[0]) as h5:
        first = dict(h5.attrs)
    tr_rows, obs_rows = map_set_reference(training, observed, first, tsne_cfg)
    with open_h5(training) as h5:
        tr_sid = h5["source_id"][:][tr_rows]
    with open_h5(observed) as h5:
        obs_sid = _read_rows(h5["source_id"], 0, obs_rows)
    maps = []
    for path in map_files:
        with open_h5(path) as h5:
            a = dict(h5.attrs)
            for key in ("mode", "seed", "spectra"):
                if a.get(key) != first.get(key):
                    raise TsneError(f"{path}: {key} {a.get(key)!r}, not {first.get(key)!r}")
            missing = [k for k in MAP_DATASETS if k not in h5]
            if missing:
                raise TsneError(f"{path}: not a t-SNE map (no {', '.join(missing)})")
            n_tr = int(h5["source_id"].shape[0]) - n_obs
            sid = h5["source_id"]
            sid = np.r_[sid[: max(n_tr, 0)], _read_rows(sid, n_tr, obs_rows)]
            if n_tr != tr_rows.size or not np.array_equal(sid, np.r_[tr_sid, obs_sid]):
                raise TsneError(
                    f"{path}: its stars are not the {tr_rows.size} training stars, then the "
                    f"{n_obs} observed stars of {training} and {observed}"
                )
            xy = np.r_[h5["xy"][:n_tr], _read_rows(h5["xy"], n_tr, obs_rows)]
            try:
                thr = Threshold(
                    str(a["threshold_rule"]),
                    float(a["threshold"]),
                    float(a["threshold_quantile"]),
                    float(a["threshold_factor"]),
                    float(a["median_training_nn"]),
                    int(a["threshold_neighbours"]),
                )
            except KeyError as exc:
                raise TsneError(f"{path}: no attribute {exc} (a map of an older gaiacnn)") from None
        # openTSNE's default optimiser settings: the ones TSNE.fit used for the maps
        emb = embedding_from_arrays(np.asarray(xy, np.float64), {})
        spectra = str(a.get("spectra", tsne_spectra(training, observed, tsne_cfg)))
        maps.append(ReferenceEmbedding(emb, thr, n_tr, float(a["perplexity"]), spectra))
    x, _ = _map_spectra(training, observed, obs_rows, tr_rows, maps[0].spectra)
    index = build_index(x, int(tsne_cfg["place_pca_components"]), int(first["seed"]))
    return PlacementSet(index, maps), obs_rows


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
    xy = [[] for _ in refs]
    bar = tqdm(total=rows.size, desc=f"t-SNE placement, shard {shard}", unit="spectra")
    pset = PlacementSet(index, refs)
    for x in iter_spectra(observed, rows, step, pset.spectra):
        for parts, pos in zip(xy, pset.place(x, k_init, p_place, n_iter), strict=True):
            parts.append(pos)
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


#: No rows of a map's datasets (their types, so that a block is never cast through them).
_EMPTY = {
    name: np.empty((0, 2) if name == "xy" else (0,), dtype)
    for name, dtype in zip(MAP_DATASETS, MAP_DTYPES, strict=True)
}


class _RowStream:
    """The rows of several map-like files read one after the other, a block at a time:
    each source is (path, prefix of its datasets, first row); ``source_id`` is at the
    file's root, the :data:`PLACED_DATASETS` under the prefix (a placement shard's
    ``p30/``; a reference map's root)."""

    def __init__(self, sources: Sequence[tuple[str, str, int]], what: str):
        self._sources = list(sources)
        self._what = what
        self._h5 = None
        self._row = self._stop = 0

    def _next_source(self) -> bool:
        self.close()
        if not self._sources:
            return False
        path, prefix, first = self._sources.pop(0)
        h5 = open_h5(path)
        missing = [f"{prefix}{k}" for k in PLACED_DATASETS if f"{prefix}{k}" not in h5]
        if "source_id" not in h5:
            missing.insert(0, "source_id")
        if missing:
            h5.close()
            raise TsneError(f"{path}: no {', '.join(missing)} ({self._what})")
        self._h5, self._prefix, self._path = h5, prefix, path
        self._row, self._stop = int(first), int(h5["source_id"].shape[0])
        return True

    def take(self, n: int) -> dict[str, np.ndarray]:
        """The next ``n`` rows: ``source_id`` and the :data:`PLACED_DATASETS`."""
        parts: dict[str, list] = {k: [] for k in ("source_id", *PLACED_DATASETS)}
        while n > 0:
            if self._h5 is None or self._row >= self._stop:
                if not self._next_source():
                    raise TsneError(f"{self._what}: {n} stars fewer than the observed file needs")
                continue
            stop = min(self._stop, self._row + n)
            parts["source_id"].append(self._h5["source_id"][self._row : stop])
            for k in PLACED_DATASETS:
                parts[k].append(self._h5[f"{self._prefix}{k}"][self._row : stop])
            n -= stop - self._row
            self._row = stop
        return {k: np.concatenate(v) if v else _EMPTY[k] for k, v in parts.items()}

    def finish(self) -> None:
        """Refuse rows left over (more stars than the observed file has), then close."""
        left = self._stop - self._row if self._h5 is not None else 0
        while self._next_source():
            left += self._stop - self._row
        if left:
            raise TsneError(f"{self._what}: {left} stars more than the observed file has")

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None


def _training_rows(path, in_training: np.ndarray) -> int:
    """The number of training stars of a map, refused unless they come first."""
    n_tr = int(np.count_nonzero(in_training))
    if not in_training[:n_tr].all():
        raise TsneError(f"{path}: the training stars are not the map's first rows")
    return n_tr


def run_tsne_gather(
    reference_map,
    shard_files,
    observed,
    out_path,
    *,
    perplexity,
    tsne_cfg: Mapping,
    chunk_rows: int = STREAM_ROWS,
) -> None:
    """Rule ``tsne_gather`` (scalable mode): the reference map of one perplexity and the
    stars placed into it by every shard as one map file, in the layout of the joint mode
    (with the reference map's attributes): the map's training stars, then every observed
    star in the order of the ``observed`` arrays file (the reference map's and the
    shards' stars merged), ``chunk_rows`` at a time, so memory is independent of N.
    Every star's ``source_id`` is checked against the observed file's."""
    group = _place_group(float(perplexity))
    n_obs = n_rows(observed)
    ref_rows = _reference_rows(observed, tsne_cfg)
    with open_h5(reference_map) as h5:
        missing = [k for k in MAP_DATASETS if k not in h5]
        if missing:
            raise TsneError(f"{reference_map}: not a t-SNE map (no {', '.join(missing)})")
        attrs = dict(h5.attrs)
        in_tr = h5["in_training"][:]  # the reference sample: bounded, not N
    n_tr = _training_rows(reference_map, in_tr)
    if in_tr.size - n_tr != ref_rows.size:
        raise TsneError(
            f"{reference_map}: {in_tr.size - n_tr} observed stars, but tsne.reference_observed "
            f"takes {ref_rows.size} of the {n_obs} of {observed}: the map of another "
            "configuration or observed file"
        )
    references = _RowStream([(reference_map, "", n_tr)], f"{reference_map}, reference map")
    placed = _RowStream(
        [(path, f"{group}/", 0) for path in shard_files],
        f"the placement shards, perplexity {float(perplexity):g} ({group})",
    )
    with map_writer(out_path, n_tr + n_obs, attrs) as write, open_h5(observed) as obs:
        with open_h5(reference_map) as h5:
            for start in range(0, n_tr, chunk_rows):
                stop = min(n_tr, start + chunk_rows)
                write(start, {k: h5[k][start:stop] for k in MAP_DATASETS})
        for start in range(0, n_obs, chunk_rows):
            stop = min(n_obs, start + chunk_rows)
            sid = obs["source_id"][start:stop]
            lo, hi = np.searchsorted(ref_rows, [start, stop])
            is_ref = np.zeros(stop - start, bool)
            is_ref[ref_rows[lo:hi] - start] = True
            parts = (references.take(int(hi - lo)), placed.take(int((~is_ref).sum())))
            block = {}
            for k, v in parts[0].items():
                block[k] = np.empty((stop - start, *v.shape[1:]), v.dtype)
                block[k][is_ref], block[k][~is_ref] = v, parts[1][k]
            bad = np.flatnonzero(block["source_id"] != sid)
            if bad.size:
                i = int(bad[0])
                raise TsneError(
                    f"{out_path}: star {block['source_id'][i]} of the reference map or the "
                    f"placement shards stands at row {start + i} of {observed}, which holds "
                    f"{sid[i]}: the maps and shards were made from another observed file"
                )
            block["in_training"] = np.zeros(stop - start, bool)
            write(n_tr + start, block)
        references.finish()
        placed.finish()
