#!/usr/bin/env python
"""Benchmark: the t-SNE classes of both modes against the threshold's support ``m``.

Reads the maps that ``tsne_scaling.py`` left in its ``--workdir`` (the joint and the
gathered scalable map of every perplexity; the map positions do not depend on the
threshold) and classifies them again with ``threshold_neighbours`` = each of ``--m`` (in
maps with fewer training stars, ``reference_training: proportional``, the same share of
them: m scaled by their number)
(the workflow's own ``gaiacnn.tsne.threshold_from_config`` / ``combine_maps``, the
other threshold settings from config/config.yaml), printing for each ``m`` the agreement of
the two modes per map and for the AND of the maps (also split into the observed stars
embedded in the scalable mode's reference maps and those placed into them), and the fraction of the
out-of-distribution populations (OB stars, M giants), of the training populations and of
the halo that is not training-like in each mode.  Seconds, no t-SNE is run::

    .venv/bin/python benchmarks/tsne_threshold_sweep.py --n-stars 60000 --seed 1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))


def load_maps(folder: Path, pattern: str, perps: list[float], obs_sid: np.ndarray) -> list:
    """(training xy, observed xy, in the reference map) of each perplexity's map, the
    observed stars in the order of ``obs_sid``; "in the reference map" (scalable maps: the
    ``n_reference_observed`` observed stars of the map's seed, ``gaiacnn.tsne.reference_rows``
    of the observed file, whose order the map keeps) is all False for a joint map."""
    import h5py

    from gaiacnn import tsne

    out = []
    for p in perps:
        hits = sorted(folder.glob(f"**/{pattern.format(p=p)}"))
        if len(hits) != 1:
            sys.exit(f"{len(hits)} maps {pattern.format(p=p)} under {folder}; need exactly one")
        with h5py.File(hits[0], "r") as h5:
            tr, xy, sid = h5["in_training"][:], h5["xy"][:].astype(float), h5["source_id"][:]
            n_ref = int(h5.attrs.get("n_reference_observed", 0))
            seed = h5.attrs.get("seed")
        if n_ref and seed is None:
            sys.exit(f"{hits[0]}: a scalable map without its seed (made before 2026-12): rerun")
        where = pd.Index(sid[~tr]).get_indexer(obs_sid)
        if (where < 0).any():
            sys.exit(f"{hits[0]}: not every observed star is in the map")
        n_obs = int((~tr).sum())
        first = np.zeros(n_obs, bool)
        if n_ref:
            first[tsne.reference_rows(n_obs, n_ref, int(seed))] = True
        out.append((xy[tr], xy[~tr][where], first[where]))
    return out


def map_distances(per_map: list, cfg: dict, m: int | None = None) -> list[tuple]:
    """Per map of :func:`load_maps`: (the observed stars' distance to their m-th nearest
    training star, the map's threshold), the workflow's threshold
    (``gaiacnn.tsne.threshold_from_config``, the ``tsne`` settings ``cfg``) with support
    ``m`` (default: the config's for the map's training stars); t-SNE units."""
    from gaiacnn import tsne

    out = []
    for train_xy, obs_xy, _ in per_map:
        thr = tsne.threshold_from_config(train_xy, cfg, neighbours=m)
        out.append((tsne.nearest_training_distance(train_xy, obs_xy, thr.neighbours), thr.value))
    return out


def map_classes(per_map: list, cfg: dict, m: int | None = None) -> list[np.ndarray]:
    """Training-like or not, per map, of the observed stars of :func:`load_maps`' maps
    (:func:`map_distances` within the threshold)."""
    return [d <= value for d, value in map_distances(per_map, cfg, m)]


def ensemble_classes(runs: list[list], cfg: dict, m: int | None = None) -> list[np.ndarray]:
    """Training-like or not, per map, of the observed stars in an ensemble of runs (each a
    :func:`load_maps` list, same perplexities): the workflow's rule
    (``gaiacnn.tsne.ensemble_training_like``, ``tsne.reference_maps`` > 1), the mean over
    the runs of each star's :func:`map_distances` distance over its run's threshold, <= 1."""
    from gaiacnn import tsne

    per_run = [map_distances(per_map, cfg, m) for per_map in runs]
    return [
        tsne.ensemble_training_like(*zip(*same_perplexity, strict=True))
        for same_perplexity in zip(*per_run, strict=True)
    ]


def _share(x: np.ndarray) -> float | None:
    """Mean of a boolean array; None (JSON null) when it is empty."""
    return float(np.mean(x)) if x.size else None


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n-stars", type=int, default=60000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/gaiacnn-tsne-bench"))
    p.add_argument("--perplexities", default="30,50,75,100")
    p.add_argument("--m", default="1,5,10,15,20,25,30,40,50,60", help="supports to try")
    p.add_argument(
        "--joint-dir", type=Path, help="folder holding the joint maps (default: under --workdir)"
    )
    p.add_argument(
        "--scalable-dir",
        type=Path,
        nargs="+",
        help="folder holding the gathered scalable maps (default: under --workdir; give it "
        "when tsne_scaling.py ran several reference sizes there); several folders (runs "
        "with other tsne seeds, so other reference subsamples): an ensemble, a star "
        "training-like in a map when the mean over the runs of its distance over the "
        "threshold is <= 1",
    )
    p.add_argument(
        "--against-joint",
        type=Path,
        metavar="DIR",
        help="compare the joint maps with the joint maps in DIR (tsne_scaling.py run with "
        "another tsne seed) instead of the scalable maps: the joint mode's own reproducibility",
    )
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--no-record", action="store_true", help="do not append to results.csv")
    a = p.parse_args()

    import h5py

    from gaiacnn import tsne
    from gaiacnn.demo.physics import OOD_POPULATIONS, POPULATION_CODES

    sys.path.insert(0, str(REPO / "benchmarks"))
    from tsne_scaling import tsne_defaults

    cfg = tsne_defaults()
    perps = [float(x) for x in a.perplexities.split(",")]
    tag = f"n{a.n_stars}_s{a.seed}"
    truth = np.load(a.workdir / f"truth_{tag}.npz")
    with h5py.File(a.workdir / f"observed_{tag}.h5", "r") as h5:
        obs_sid = h5["source_id"][:]
    pop = truth["population"][np.searchsorted(truth["source_id"], obs_sid)]
    groups = {
        "ob_m_giants": np.isin(pop, [POPULATION_CODES[x] for x in ("ob_star", "m_giant")]),
        "training_populations": ~np.isin(pop, [POPULATION_CODES[x] for x in OOD_POPULATIONS]),
        "halo": pop == POPULATION_CODES["halo"],
    }
    # the second set of maps: the scalable mode's, or (--against-joint) another joint run's;
    # the results keep the key "scalable" for it
    if a.against_joint:
        second = ("joint", [a.against_joint])
    else:
        second = ("scalable", a.scalable_dir or [a.workdir / tag])
    folders = {"joint": ("joint", [a.joint_dir or a.workdir / tag]), "scalable": second}
    runs = {
        mode: [load_maps(f, f"{kind}_p{{p:g}}.h5", perps, obs_sid) for f in dirs]
        for mode, (kind, dirs) in folders.items()
    }
    # in the reference maps of any run of the ensemble, and placed into those of every run
    in_reference = np.any([per_map[0][2] for per_map in runs["scalable"]], axis=0)
    n_training = len(runs["joint"][0][0][0])
    res: dict = {"n_stars": a.n_stars, "seed": a.seed, "n_training": n_training,
                 "second": "joint" if a.against_joint else "scalable",
                 "scalable_runs": len(runs["scalable"]),
                 "n_observed": int(obs_sid.size),
                 "n_reference_observed": int(in_reference.sum()), "sweep": {}}  # fmt: skip
    m_default = tsne.support_from_config(n_training, cfg)
    res["m_default"] = m_default
    print(f"{tag}: {n_training} training, {obs_sid.size} observed stars; the defaults "
          f"(threshold_neighbours {cfg['threshold_neighbours']}, fraction "
          f"{cfg['threshold_neighbours_fraction']}) take m = {m_default}")  # fmt: skip
    # maps with fewer training stars (reference_training proportional) ask for the support
    # of the same share of them: m scaled by their number, as the share rule of the workflow
    n_training_second = len(runs["scalable"][0][0][0])
    for m in (int(x) for x in a.m.split(",")):
        m2 = max(1, round(m * n_training_second / n_training))
        likes = {
            "joint": map_classes(runs["joint"][0], cfg, m),
            "scalable": map_classes(runs["scalable"][0], cfg, m2)
            if len(runs["scalable"]) == 1
            else ensemble_classes(runs["scalable"], cfg, m2),
        }
        both = {mode: tsne.combine_maps(v) for mode, v in likes.items()}
        agree = both["joint"] == both["scalable"]
        r = {
            "m_second": m2,
            "agreement_per_map": [
                float(np.mean(j == s)) for j, s in zip(*likes.values(), strict=True)
            ],
            "agreement": float(np.mean(agree)),
            # the observed stars embedded in the reference maps, and those placed into them
            # (null against another joint run: no star is placed there)
            "agreement_reference": None if a.against_joint else _share(agree[in_reference]),
            "agreement_placed": None if a.against_joint else _share(agree[~in_reference]),
        }
        for mode, like in both.items():
            for name, mask in groups.items():
                r[f"{mode}_{name}_outside"] = float(np.mean(~like[mask]))
        res["sweep"][m] = r
        split = ", ".join(
            f"{k} {r['agreement_' + k]:.4f}"
            for k in ("reference", "placed")
            if r["agreement_" + k] is not None
        )
        split = split + "; " if split else ""
        print(f"m={m:3d} ({m2} in the second maps) agreement {r['agreement']:.4f} ({split}per map "
              + " ".join(f"{x:.3f}" for x in r["agreement_per_map"]) + ")  not training-like, "
              f"joint/{second[0]}: OB+M giants "
              f"{r['joint_ob_m_giants_outside']:.3f}/{r['scalable_ob_m_giants_outside']:.3f}, "
              "training populations "
              f"{r['joint_training_populations_outside']:.3f}/"
              f"{r['scalable_training_populations_outside']:.3f}, halo "
              f"{r['joint_halo_outside']:.3f}/{r['scalable_halo_outside']:.3f}",
              flush=True)  # fmt: skip
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    sys.path.insert(0, str(REPO / "benchmarks"))
    import results

    results.record("tsne_threshold_sweep", a, res)


if __name__ == "__main__":
    main()
