#!/usr/bin/env python
"""Benchmark: other ways to place spectra into the scalable mode's reference maps.

Takes the joint maps and the reference maps that ``tsne_scaling.py`` left in its
``--workdir`` and places the observed stars that are not in the reference maps again, in
each of several ways, then compares their classes (AND of the maps, the config's threshold
settings) with the joint maps' classes of the same stars:

* ``median_k<k>``: the median map position of the ``k`` nearest reference spectra (the
  workflow's ``gaiacnn.tsne.place_by_neighbours``; ``place_neighbours`` is the default),
  searched in ``place_pca_components`` PCA components;
* ``mean_k<k>``, ``nearest``: their mean position, the nearest one's position;
* ``observed_median_k<k>``: the median position of the ``k`` nearest reference *observed*
  spectra (the training spectra left out of the search);
* ``pca<c>``: the default median, neighbours searched in ``c`` PCA components (0: all
  pixels), with the time of the PCA fit and the search (``search_s``);
* ``vote_k<k>``: no position at all: training-like in a map when more than half of the
  ``k`` nearest reference spectra are training-like in that map (reference observed stars
  by the map's rule; training stars by the same rule against the other training stars);
* ``transform_n<n>_x<e>``: the default median start, then ``n`` iterations of openTSNE's
  transform optimisation with exaggeration ``e`` (``--transform``; the reference maps'
  embeddings, ``p<p>_embedding.h5``, must be in ``--reference-dir``);
* ``calibrated_shift``, ``calibrated_quantiles``: the default positions, their distance
  ratios corrected by what the same placement does to the reference observed stars
  (placed without themselves, against their embedded positions), binned by the mean
  distance to their neighbours: median log shift, or quantile mapping;
* ``placed_frame_threshold``: the default positions, but classified against a threshold
  from the training stars *placed the same way* (each from its nearest other reference
  spectra, without itself): the ``threshold_quantile`` of their distances to their m-th
  nearest other training star.

It also records ``reference_placed_vs_embedded``: how often the default placement alone
changes a class, the reference observed stars placed without themselves against their
own embedded classes in the same maps.  Minutes (the neighbour searches; no map is made,
and ``--transform`` runs only openTSNE's optimisation of the placed points)::

    .venv/bin/python benchmarks/tsne_placement_variants.py --seed 2 \\
        --joint-dir /tmp/gaiacnn-tsne-bench/n60000_s2/<tag> \\
        --reference-dir /tmp/gaiacnn-tsne-bench/n60000_s2/<tag>/<tag>
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))


def read_map(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source_id, in_training, xy) of a map file."""
    import h5py

    with h5py.File(path, "r") as h5:
        return h5["source_id"][:], h5["in_training"][:], h5["xy"][:].astype(float)


def without_self(idx: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
    """Row i of ``values`` (default ``idx``), neighbours of point i nearest first, without
    point i itself where it is among them (else without the last): one column fewer."""
    values = idx if values is None else values
    n, k = idx.shape
    is_self = idx == np.arange(n)[:, None]
    drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k - 1)
    keep = np.ones((n, k), bool)
    keep[np.arange(n), drop] = False
    return values[keep].reshape(n, k - 1)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n-stars", type=int, default=60000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/gaiacnn-tsne-bench"))
    p.add_argument("--joint-dir", type=Path, required=True, help="folder of joint_p<p>.h5")
    p.add_argument(
        "--reference-dir", type=Path, required=True, help="folder of the reference maps p<p>.h5"
    )
    p.add_argument("--perplexities", default="30,50,75,100")
    p.add_argument("--k", default="5,10,25,50,100", help="neighbours of the median variants")
    p.add_argument(
        "--pca",
        default="100,300,0",
        help="PCA components of the search variants (timed: PCA fit + search, seconds)",
    )
    p.add_argument(
        "--transform",
        default="",
        help="n_iter:exaggeration pairs of transform variants, e.g. 100:1.5,250:1 (minutes each)",
    )
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--no-record", action="store_true", help="do not append to results.csv")
    a = p.parse_args()

    from gaiacnn import tsne

    sys.path.insert(0, str(REPO / "benchmarks"))
    from tsne_scaling import tsne_defaults
    from tsne_threshold_sweep import load_maps, map_classes

    cfg = tsne_defaults()
    perps = [float(x) for x in a.perplexities.split(",")]
    tag = f"n{a.n_stars}_s{a.seed}"
    train_path, obs_path = (a.workdir / f"{s}_{tag}.h5" for s in ("training", "observed"))
    x_train, x_obs = tsne.read_spectra(train_path), tsne.read_spectra(obs_path)
    import h5py

    with h5py.File(obs_path, "r") as h5:
        obs_sid = h5["source_id"][:]

    # the reference maps: training stars, then the reference observed ones (map order)
    refs = [read_map(a.reference_dir / f"p{q:g}.h5") for q in perps]
    sid, is_tr, _ = refs[0]
    for other, _, _ in refs[1:]:
        if not np.array_equal(other, sid):
            sys.exit("the reference maps do not hold the same stars in the same order")
    obs_row = pd.Index(obs_sid).get_indexer(sid[~is_tr])
    x_ref = np.concatenate([x_train, x_obs[obs_row]])
    placed = np.ones(obs_sid.size, bool)
    placed[obs_row] = False
    x_placed = x_obs[placed]

    # the joint classes of the placed stars
    joint_maps = load_maps(a.joint_dir, "joint_p{p:g}.h5", perps, obs_sid[placed])
    joint = tsne.combine_maps(map_classes(joint_maps, cfg))
    thresholds = [tsne.threshold_from_config(xy[tr], cfg) for _, tr, xy in refs]
    m = thresholds[0].neighbours
    n_place = int(cfg["place_neighbours"])
    res: dict = {"n_stars": a.n_stars, "seed": a.seed, "n_reference_observed": int(obs_row.size),
                 "n_placed": int(placed.sum()), "m": m, "variants": {}}  # fmt: skip
    print(f"{tag}: {int(is_tr.sum())} training, {obs_row.size} reference and "
          f"{int(placed.sum())} placed observed stars; m = {m}; joint: "
          f"{np.mean(~joint):.4f} of the placed stars not training-like", flush=True)  # fmt: skip

    def record(name: str, per_map: list[np.ndarray], seconds: float = 0.0) -> None:
        """Record and print the placed stars' classes ``per_map`` (training-like per map)."""
        scal = tsne.combine_maps(per_map)
        r = {
            "agreement_placed": float(np.mean(scal == joint)),
            "joint_not_training_like": float(np.mean(~joint)),
            "scalable_not_training_like": float(np.mean(~scal)),
            "search_s": seconds,
        }
        res["variants"][name] = r
        print(f"{name:24s} agreement {r['agreement_placed']:.4f}; not training-like joint "
              f"{r['joint_not_training_like']:.4f}, placed {r['scalable_not_training_like']:.4f}",
              flush=True)  # fmt: skip

    def in_maps(place) -> list[np.ndarray]:
        """``place(map xy)`` (positions of the placed stars) in every reference map."""
        return [place(xy) for _, _, xy in refs]

    def distances(per_map_xy: list[np.ndarray]) -> list[np.ndarray]:
        """Per map: distance of the positions ``per_map_xy`` to their m-th nearest training
        star (t-SNE units)."""
        return [
            tsne.nearest_training_distance(xy[tr], pos, m)
            for (_, tr, xy), pos in zip(refs, per_map_xy, strict=True)
        ]

    def ratios(per_map_xy: list[np.ndarray]) -> list[np.ndarray]:
        """:func:`distances` over the map's threshold (training-like when <= 1)."""
        return [d / t.value for d, t in zip(distances(per_map_xy), thresholds, strict=True)]

    def score(name: str, per_map_xy, threshold_values=None, seconds: float = 0.0) -> None:
        """Classify the placed stars at ``per_map_xy`` in every map; record and print."""
        values = threshold_values or [t.value for t in thresholds]
        per_map = [d <= v for d, v in zip(distances(per_map_xy), values, strict=True)]
        record(name, per_map, seconds)

    seed = int(cfg["seed"])
    index = tsne.build_index(x_ref, int(cfg["place_pca_components"]), seed)
    k_list = [int(k) for k in a.k.split(",")]
    idx, dist = index.query(x_placed, max([*k_list, n_place]))
    median = {
        k: in_maps(lambda xy, k=k: tsne.place_by_neighbours(xy, idx, dist, k_init=k))
        for k in {*k_list, n_place}
    }
    for k in k_list:
        score(f"median_k{k}", median[k])
    score(f"mean_k{n_place}", in_maps(lambda xy: np.mean(xy[idx[:, :n_place]], axis=1)))
    # the reference spectra's own classes per map, and the placed stars' vote of theirs
    ref_like = []
    for (_, tr, xy), thr in zip(refs, thresholds, strict=True):
        like = np.empty(tr.size, bool)
        like[~tr] = tsne.nearest_training_distance(xy[tr], xy[~tr], m) <= thr.value
        like[tr] = tsne.training_nn_distances(xy[tr], m) <= thr.value
        ref_like.append(like)
    for k in k_list:
        votes = [like[idx[:, :k]].mean(axis=1) > 0.5 for like in ref_like]
        record(f"vote_k{k}", votes)
    score("nearest", in_maps(lambda xy: xy[idx[:, 0]]))
    # neighbours among the reference *observed* spectra only (map rows after the training's)
    n_tr = int(is_tr.sum())
    obs_index = tsne.NeighbourIndex(index.reducer, index.features[n_tr:])
    o_idx, o_dist = obs_index.query(x_placed, max([*k_list, n_place]))
    o_idx = o_idx + n_tr
    for k in k_list:
        score(
            f"observed_median_k{k}",
            in_maps(lambda xy, k=k: tsne.place_by_neighbours(xy, o_idx, o_dist, k_init=k)),
        )

    # the default positions, their distances corrected for what placement does to them:
    # the reference observed stars placed the same way (each from its nearest other
    # reference spectra, without itself) against their embedded positions, per map, in 20
    # bins of the mean distance to those neighbours in the PCA space (noisier spectra lie
    # farther from theirs): shift by the median log ratio, or map quantile to quantile
    l_idx, l_dist = index.query(x_ref[n_tr:], n_place + 1)
    l_idx, l_dist = without_self(l_idx), without_self(l_idx, l_dist)
    feat_ref, feat = np.log(l_dist.mean(axis=1)), np.log(dist[:, :n_place].mean(axis=1))
    edges = np.quantile(feat_ref, np.linspace(0, 1, 21))[1:-1]
    bin_ref, bin_new = np.digitize(feat_ref, edges), np.digitize(feat, edges)
    placed_r = ratios(median[n_place])
    loo_r = ratios(in_maps(lambda xy: np.median(xy[l_idx], axis=1)))
    emb_r = ratios(in_maps(lambda xy: xy[n_tr:]))  # reference observed rows follow the training's
    shifted, mapped = [], []
    for r_new, r_loo, r_emb in zip(placed_r, loo_r, emb_r, strict=True):
        log_new, log_loo, log_emb = np.log(r_new), np.log(r_loo), np.log(r_emb)
        shift, quant = np.empty_like(log_new), np.empty_like(log_new)
        for b in range(len(edges) + 1):
            new, ref = bin_new == b, bin_ref == b
            shift[new] = log_new[new] + np.median(log_emb[ref] - log_loo[ref])
            q = np.searchsorted(np.sort(log_loo[ref]), log_new[new]) / ref.sum()
            quant[new] = np.quantile(log_emb[ref], np.clip(q, 0, 1))
        shifted.append(shift <= 0)
        mapped.append(quant <= 0)
    # how often placement alone (no second map) changes a class: the reference observed
    # stars placed without themselves against their own embedded classes, same map
    loo_like = tsne.combine_maps([r <= 1 for r in loo_r])
    emb_like = tsne.combine_maps([r <= 1 for r in emb_r])
    res["reference_placed_vs_embedded"] = float(np.mean(loo_like == emb_like))
    print(f"reference observed stars placed without themselves: their class in the same maps "
          f"as embedded on {res['reference_placed_vs_embedded']:.4f}; not training-like "
          f"embedded {np.mean(~emb_like):.4f}, placed {np.mean(~loo_like):.4f}")  # fmt: skip
    record("calibrated_shift", shifted)
    record("calibrated_quantiles", mapped)

    # the default positions against a threshold from the training stars placed the same way
    from sklearn.neighbors import KDTree

    t_idx, _ = index.query(x_ref[:n_tr], n_place + 1)
    t_idx = without_self(t_idx)
    values = []
    for _, tr, xy in refs:
        placed_train = np.median(xy[t_idx], axis=1)  # training rows come first in the map
        d, i = KDTree(xy[tr]).query(placed_train, k=m + 1)
        d_other = without_self(i, d)[:, m - 1]
        values.append(float(np.quantile(d_other, float(cfg["threshold_quantile"]))))
    res["map_thresholds"] = [t.value for t in thresholds]
    res["placed_frame_thresholds"] = values
    score("placed_frame_threshold", median[n_place], values)

    for c in (int(x) for x in a.pca.split(",")):
        t0 = time.perf_counter()
        c_idx, c_dist = tsne.build_index(x_ref, c, seed).query(x_placed, n_place)
        seconds = time.perf_counter() - t0
        score(
            f"pca{c}",
            in_maps(
                lambda xy, i=c_idx, d=c_dist: tsne.place_by_neighbours(xy, i, d, k_init=n_place)
            ),
            seconds=seconds,
        )
    pairs = [[float(x) for x in pair.split(":")] for pair in filter(None, a.transform.split(","))]
    models = [
        tsne.read_reference_embedding(a.reference_dir / f"p{q:g}_embedding.h5").embedding
        for q in (perps if pairs else [])
    ]
    for n_iter, ex in pairs:
        t0 = time.perf_counter()
        per_map = [
            tsne.place_by_neighbours(
                emb, idx, dist, perplexity=float(cfg["place_perplexity"]), n_iter=int(n_iter),
                k_init=n_place, exaggeration=ex,
            )
            for emb in models
        ]  # fmt: skip
        seconds = time.perf_counter() - t0
        score(f"transform_n{n_iter:g}_x{ex:g}", per_map, seconds=seconds)
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    sys.path.insert(0, str(REPO / "benchmarks"))
    import results

    results.record("tsne_placement_variants", a, res)


if __name__ == "__main__":
    main()
