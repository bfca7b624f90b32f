#!/usr/bin/env python
"""Benchmark: joint vs scalable t-SNE classification (gaiacnn.tsne) on demo-physics spectra.

Builds (once, cached under --workdir) a training and an observed layout file from
N demo-physics stars: the training file holds a random ``--training-fraction`` of the
stars of the training populations with S/N >= 30 (as the paper's cuts keep), the observed
file every other star (the out-of-distribution populations included).  Then, each stage in
its own process (wall time and peak RSS per stage):

* joint mode: the neighbour graph of all spectra (``run_tsne_neighbours``, the workflow's
  code), then one map per perplexity from it (``run_tsne_joint``);
* scalable mode: the neighbour graph of the training + ``reference_observed`` observed
  spectra and the reference map of each perplexity from it, the neighbour index of the
  placement, and the placement of the other observed spectra
  into every map in shards of ``place_shard_rows``, run one shard after the other (the
  workflow runs them as parallel jobs); one set of reference maps, that of ``seed`` (the
  workflow runs ``reference_maps`` sets, set k with seed + k, each as large as this one:
  run this again with ``--tsne '{"seed": k}'`` and give the sets' folders to
  ``tsne_threshold_sweep.py --scalable-dir`` for the ensemble's classes);

and prints per perplexity and overall: the agreement of the two modes' training-like
class over the observed stars, the fraction of the out-of-distribution populations
(OB stars, M giants) and of the training populations that are not training-like, and an
extrapolation of the scalable mode's wall time to ``--extrapolate`` spectra (see the
comment at the extrapolation).
Run on demand (it takes tens of minutes at 50 000+ spectra on 2 cores)::

    .venv/bin/python benchmarks/tsne_scaling.py --n-stars 60000 --perplexities 30,50,75,100
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

#: The paper's training sample (Sect. 2.5, 5.1: 44 780 stars; 33 585 is one member's 75 %
#: training part), for the extrapolation of the reference maps.
PAPER_TRAINING = 44_780


def tsne_defaults() -> dict:
    """The ``tsne`` section of config/config.yaml, validated against the schema (defaults
    filled in): the benchmark runs what the workflow runs unless ``--tsne`` overrides it."""
    import yaml

    from gaiacnn.config import load_schema, validate_config

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    return dict(validate_config(cfg, load_schema(REPO / "config" / "schema.yaml"))["tsne"])


def build_files(workdir: Path, n: int, seed: int, training_fraction: float) -> dict:
    """training.h5, observed.h5 and truth.npz under ``workdir`` (if absent)."""
    out = {s: workdir / f"{s}_n{n}_s{seed}.h5" for s in ("training", "observed")}
    truth_path = workdir / f"truth_n{n}_s{seed}.npz"
    if all(p.is_file() for p in out.values()) and truth_path.is_file():
        return {**out, "truth": truth_path}
    from gaiacnn import layout
    from gaiacnn.constants import rvs_wavelength_nm
    from gaiacnn.demo.physics import OOD_POPULATIONS, POPULATION_CODES, simulate_stars
    from gaiacnn.spectra import fill_nan_pixels

    wl = rvs_wavelength_nm()
    ood = [POPULATION_CODES[p] for p in OOD_POPULATIONS]
    cols = {
        "source_id": ((), np.int64, {}),
        "rvs/flux": ((wl.size,), np.float32, {"wavelength_nm": wl}),
        "rvs/snr": ((), np.float32, {}),
    }
    t0 = time.perf_counter()
    chunk, blocks = 4096, []
    for i, start in enumerate(range(0, n, chunk)):
        m = min(chunk, n - start)
        truth, obs = simulate_stars(np.random.default_rng([seed, i]), m)
        flux, _ = fill_nan_pixels(obs["flux"], wl)
        blocks.append((start, flux, obs["snr"], truth["population"]))
        print(f"  simulated {start + m}/{n}", file=sys.stderr, flush=True)
    pop = np.concatenate([b[3] for b in blocks])
    snr = np.concatenate([b[2] for b in blocks])
    rng = np.random.default_rng([seed, 99])
    eligible = ~np.isin(pop, ood) & (snr >= 30)
    is_tr = eligible & (rng.random(n) < training_fraction / max(eligible.mean(), 1e-9))
    sid = np.arange(n, dtype=np.int64) + 10**15
    for sample, mask in (("training", is_tr), ("observed", ~is_tr)):
        with layout.ArraysWriter(out[sample], int(mask.sum()), cols, chunk_rows=256) as w:
            for start, flux, s, _ in blocks:
                m = mask[start : start + len(s)]
                w.append(
                    {
                        "source_id": sid[start : start + len(s)][m],
                        "rvs/flux": flux[m],
                        "rvs/snr": s[m],
                    }
                )
    np.savez(truth_path, source_id=sid, population=pop, in_training=is_tr)
    print(f"built {n} spectra ({int(is_tr.sum())} training) in "
          f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)  # fmt: skip
    return {**out, "truth": truth_path}


#: Run before a stage's clock starts (imports are a fixed cost per job, not per spectrum).
SETUP = "from gaiacnn import tsne"


def run_stage(code: str) -> tuple[float, float]:
    """Run ``code`` in a fresh Python after :data:`SETUP`; (wall s of ``code``, peak RSS MiB
    of that process)."""
    wrapper = (
        "import sys, time; sys.path.insert(0, {!r}); {}; "
        "from gaiacnn.memory import peak_rss_mib; t0 = time.perf_counter()\n"
        "{}\nprint('STAGE', time.perf_counter() - t0, "
        "peak_rss_mib())"
    ).format(str(REPO / "workflow"), SETUP, code)
    proc = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    line = [x for x in proc.stdout.splitlines() if x.startswith("STAGE")][-1]
    _, wall, rss = line.split()
    return float(wall), float(rss)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n-stars", type=int, default=60000, help="spectra, training + observed")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--training-fraction", type=float, default=0.15)
    p.add_argument("--perplexities", default="30,50,75,100")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/gaiacnn-tsne-bench"))
    p.add_argument("--tsne", default="{}", help="JSON overrides of the tsne config section")
    p.add_argument("--extrapolate", type=int, default=886_080, help="spectra to extrapolate to")
    p.add_argument("--cores", type=int, default=2, help="cores for the extrapolation")
    p.add_argument("--skip-joint", action="store_true")
    p.add_argument(
        "--reuse", action="store_true", help="skip stages whose output (same settings) exists"
    )
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--no-record", action="store_true", help="do not append to results.csv")
    a = p.parse_args()

    cfg = {**tsne_defaults(), **json.loads(a.tsne)}
    a.workdir.mkdir(parents=True, exist_ok=True)
    files = build_files(a.workdir, a.n_stars, a.seed, a.training_fraction)
    truth = np.load(files["truth"])
    import h5py

    perps = [float(x) for x in a.perplexities.split(",")]
    cfg["perplexities"] = perps  # the neighbour graph is searched for the largest
    res: dict = {"n_stars": a.n_stars, "tsne": cfg, "perplexities": {}}
    common = f"cfg = {cfg!r}"
    tr, ob = str(files["training"]), str(files["observed"])
    with h5py.File(ob, "r") as h5:
        obs_sid = h5["source_id"][:]
    n_obs = obs_sid.size
    with h5py.File(tr, "r") as h5:
        n_tr = int(h5["source_id"].shape[0])
    from gaiacnn import tsne
    from gaiacnn.demo.physics import OOD_POPULATIONS, POPULATION_CODES

    ref_rows = tsne.reference_rows(n_obs, int(cfg["reference_observed"]), int(cfg["seed"]))
    n_tr_ref = tsne.reference_training_rows(
        n_tr, n_obs, int(cfg["reference_observed"]), cfg["reference_training"], int(cfg["seed"])
    ).size
    n_placed = n_obs - ref_rows.size
    idx = np.searchsorted(truth["source_id"], obs_sid)
    pop = truth["population"][idx]
    target = np.isin(pop, [POPULATION_CODES["ob_star"], POPULATION_CODES["m_giant"]])
    in_dist = ~np.isin(pop, [POPULATION_CODES[x] for x in OOD_POPULATIONS])
    # outputs live in folders named after the settings they depend on, so --reuse can skip a
    # stage already run with the same settings (e.g. to compare placement settings)
    map_keys = ["pca_components", "n_iter", "seed", "perplexities"]
    map_keys += [k for k in cfg if k.startswith("threshold")]
    joint_dir = a.workdir / f"n{a.n_stars}_s{a.seed}" / _tag(cfg, map_keys)
    ref_dir = joint_dir / _tag(cfg, ["reference_observed", "reference_training"])
    place_dir = ref_dir / _tag(cfg, [k for k in cfg if k.startswith("place_")])
    place_dir.mkdir(parents=True, exist_ok=True)

    def stage(out: Path, code: str) -> tuple[float, float]:
        """Run ``code`` (which writes ``out``), or with --reuse take ``out`` and the wall time
        and peak memory recorded beside it when it was made."""
        measured = out.with_name(out.name + ".measured.json")
        if a.reuse and out.is_file():
            if measured.is_file():
                return tuple(json.loads(measured.read_text()))
            return np.nan, np.nan
        wall, rss = run_stage(code)
        measured.write_text(json.dumps([wall, rss]))
        return wall, rss

    graphs = {}
    for mode, folder, skip in (("joint", joint_dir, a.skip_joint), ("scalable", ref_dir, False)):
        graphs[mode] = folder / "neighbours.npz"
        if not skip:
            res[f"{mode}_graph_s"], res[f"{mode}_graph_rss_mib"] = stage(
                graphs[mode],
                f"{common}; tsne.run_tsne_neighbours({tr!r}, {ob!r}, "
                f"{str(graphs[mode])!r}, mode={mode!r}, tsne_cfg=cfg, threads={a.cores})",
            )
            print(json.dumps({f"{mode}_graph_s": res[f"{mode}_graph_s"]}), file=sys.stderr)
    for perp in perps:
        r: dict = {}
        joint_out = joint_dir / f"joint_p{perp:g}.h5"
        if not a.skip_joint:
            r["joint_s"], r["joint_rss_mib"] = stage(
                joint_out,
                f"{common}; tsne.run_tsne_joint({str(graphs['joint'])!r}, "
                f"{str(joint_out)!r}, perplexity={perp}, tsne_cfg=cfg, threads={a.cores})",
            )
        ref = ref_dir / f"p{perp:g}"
        r["reference_s"], r["reference_rss_mib"] = stage(
            ref.with_suffix(".h5"),
            f"{common}; tsne.run_tsne_reference({str(graphs['scalable'])!r}, "
            f"{str(ref_dir / f'p{perp:g}_embedding.h5')!r}, {str(ref.with_suffix('.h5'))!r}, "
            f"perplexity={perp}, tsne_cfg=cfg, threads={a.cores})",
        )
        res["perplexities"][f"{perp:g}"] = r
        print(json.dumps({f"p{perp:g}": r}), file=sys.stderr, flush=True)
    embeddings = [str(ref_dir / f"p{perp:g}_embedding.h5") for perp in perps]
    index = str(place_dir / "index.npz")
    res["index_s"], res["index_rss_mib"] = stage(
        Path(index), f"{common}; tsne.run_tsne_index({tr!r}, {ob!r}, {index!r}, tsne_cfg=cfg)"
    )
    chunks = [str(place_dir / f"shard{c}.h5") for c in range(tsne.placement_shards(n_obs, cfg))]
    place = [
        stage(
            Path(out),
            f"{common}; tsne.run_tsne_place({ob!r}, {index!r}, {embeddings!r}, {out!r}, "
            f"shard={c}, tsne_cfg=cfg)",
        )
        for c, out in enumerate(chunks)
    ]
    res["place_s"] = float(sum(w for w, _ in place))
    res["place_rss_mib"] = float(max(m for _, m in place))
    print(json.dumps({k: res[k] for k in res if k[:5] in ("index", "place")}), file=sys.stderr)
    likes: dict[str, list] = {"joint": [], "scalable": []}
    for perp in perps:
        r = res["perplexities"][f"{perp:g}"]
        scal_out = place_dir / f"scalable_p{perp:g}.h5"
        run_stage(
            f"{common}; tsne.run_tsne_gather("
            f"{str(ref_dir / f'p{perp:g}.h5')!r}, {chunks!r}, {ob!r}, {str(scal_out)!r}, "
            f"perplexity={perp}, tsne_cfg=cfg)"
        )
        for mode, path in (("joint", joint_dir / f"joint_p{perp:g}.h5"), ("scalable", scal_out)):
            if not path.is_file():
                continue
            with h5py.File(path, "r") as h5:
                o = ~h5["in_training"][:]
                where = pd.Index(h5["source_id"][:][o]).get_indexer(obs_sid)
                likes[mode].append(h5["training_like"][:][o][where])
        if len(likes["joint"]) == len(likes["scalable"]):
            r["agreement"] = float(np.mean(likes["joint"][-1] == likes["scalable"][-1]))
        for mode in likes:
            if likes[mode]:
                lk = likes[mode][-1]
                r[f"{mode}_ood_outside"] = float(np.mean(~lk[target]))
                r[f"{mode}_in_dist_outside"] = float(np.mean(~lk[in_dist]))
    overall = {m: tsne.combine_maps(v) for m, v in likes.items() if len(v) == len(perps)}
    for mode, lk in overall.items():
        res[f"{mode}_ood_outside"] = float(np.mean(~lk[target]))
        res[f"{mode}_in_dist_outside"] = float(np.mean(~lk[in_dist]))
    if len(overall) == 2:
        agree = overall["joint"] == overall["scalable"]
        res["agreement"] = float(np.mean(agree))
        placed = np.ones(n_obs, bool)
        placed[ref_rows] = False
        res["agreement_placed"] = float(np.mean(agree[placed]))
        res["agreement_reference"] = float(np.mean(agree[~placed]))
    # extrapolation to the paper's sizes (on --cores cores): the reference maps scaled
    # linearly from their measured size to reference_observed + the paper's 44 780 training
    # spectra (reference_training all) or their share (proportional: that of
    # reference_observed in the paper's observed stars) (t-SNE with FFT gradients is
    # ~linear), the placement shards spread
    # over the cores, each linear in the spectra placed and (the exact neighbour search,
    # an upper bound) in the reference spectra searched, and the index linear in the latter
    rows = res["perplexities"].values()
    n_ref = n_tr_ref + ref_rows.size
    obs_big = a.extrapolate - PAPER_TRAINING
    how = cfg["reference_training"]
    n_tr_big = tsne.reference_training_rows(PAPER_TRAINING, obs_big, ref_rows.size, how, 0).size
    n_ref_big = ref_rows.size + n_tr_big
    grow = n_ref_big / n_ref
    ref_s = (res["scalable_graph_s"] + sum(r["reference_s"] for r in rows)) * grow
    per_spectrum = res["place_s"] / max(1, n_placed) * grow
    n_place_big = max(0, obs_big - ref_rows.size)  # training stars are never placed
    res["extrapolated_s"] = ref_s + res["index_s"] * grow + per_spectrum * n_place_big / a.cores
    res["n_observed"], res["n_placed"], res["n_reference"] = n_obs, n_placed, n_ref
    print(json.dumps(res, indent=1))
    print(
        f"\n{a.n_stars} spectra ({n_obs} observed, {n_placed} placed), "
        f"{len(perps)} perplexities: agreement joint/scalable {res.get('agreement', np.nan):.4f} "
        f"(placed {res.get('agreement_placed', np.nan):.4f}, reference "
        f"{res.get('agreement_reference', np.nan):.4f}); "
        f"OB+M giants not training-like: joint {res.get('joint_ood_outside', np.nan):.3f}, "
        f"scalable {res.get('scalable_ood_outside', np.nan):.3f}; training populations: "
        f"joint {res.get('joint_in_dist_outside', np.nan):.3f}, "
        f"scalable {res.get('scalable_in_dist_outside', np.nan):.3f}\n"
        f"scalable mode extrapolated to {a.extrapolate} spectra x {len(perps)} perplexities "
        f"on {a.cores} cores: {res['extrapolated_s'] / 60:.1f} min "
        f"(reference maps of {n_ref_big} spectra {ref_s:.0f} s, placement into all maps "
        f"{per_spectrum * 1e3:.3f} ms/spectrum)"
    )
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    sys.path.insert(0, str(REPO / "benchmarks"))
    import results

    results.record("tsne_scaling", a, res)


def _tag(cfg: dict, keys: list[str]) -> str:
    """A short, stable name for the values of ``keys`` in ``cfg``."""
    import hashlib

    text = json.dumps({k: cfg[k] for k in sorted(keys)}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


if __name__ == "__main__":
    main()
