#!/usr/bin/env python
"""Benchmark: wall time and peak memory of every stage of the workflow against N.

For each --n-stars N, runs the workflow's own stage functions (the run_* entry points, as the
rules call them) on N demo stars, each stage in its own process, and records its wall time
and peak resident memory (``VmHWM`` of that process, i.e. of one workflow job;
:func:`gaiacnn.memory.peak_rss_mib`):

* demo_survey (--no-crlb: without the Cramer-Rao bounds, which the catalogue does not
  need), select_samples, the arrays of both samples;
* train: one ensemble member for --epochs epochs (training samples/s);
* predict: one member's prediction, one process per shard of ``prediction.shard_rows``
  stars (--shard-rows) of each sample, as the workflow's predict_member jobs
  (stars/s/model; the largest peak RSS of the shard jobs), then gather_predictions;
* aggregate: the ensemble's labels table of both samples (one member);
* tsne (N <= --tsne-max-n): the scalable t-SNE mode at --perplexities: neighbour graph of
  the reference training + observed stars, reference maps, neighbour index, placement shards
  (``tsne.place_shard_rows``), gather, classify; then flag_catalogue.

Results go to --out (JSON, one record per N and stage) and a Markdown table is printed.
Stages whose output exists are reused with --reuse (their recorded figures are kept).
Run on demand, e.g.::

    .venv/bin/python benchmarks/pipeline_scaling.py --n-stars 10000 100000 1000000 \\
        --workdir /tmp/bench --out benchmarks/measured/pipeline_scaling.json

It is not a test: numbers depend on the machine (and on whatever else runs on it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

#: Runs one stage in a fresh process (a workflow job's memory), prints its figures as JSON.
STAGE = r"""
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from gaiacnn.config import load_schema, validate_config
from gaiacnn import arrays, ensemble, flags, logs, selection, tsne
from gaiacnn.demo import survey
from gaiacnn.memory import peak_rss_mib
cfg = validate_config(json.loads(sys.argv[2]), load_schema(sys.argv[3]))
w, stage, extra = sys.argv[4], sys.argv[1], json.loads(sys.argv[5])
demo = [f"{w}/demo/{n}" for n in ("gaia_source.fits", "allStar.fits", "rvs_xp.h5", "truth.h5")]
arr = {s: f"{w}/arrays/{s}.h5" for s in ("training", "observed")}
member = f"{w}/ensemble/members/split0_seed0/model.keras"
labels = list(cfg["labels"])
out = {}
t0 = time.perf_counter()
if stage == "demo_survey":
    survey.run_demo_survey(cfg["demo"], *demo)
elif stage == "select_samples":
    selection.run_selection(demo[0], demo[1], f"{w}/samples/training.tsv",
        f"{w}/samples/observed.tsv", f"{w}/samples/cut_report.tsv", cfg["selection"], cfg["labels"])
elif stage.startswith("arrays:"):
    sample = stage.split(":")[1]
    arrays.run_build_arrays(demo[2], demo[0], f"{w}/samples/{sample}.tsv", arr[sample],
        sample_name=sample, labels=labels, rvs_cfg=cfg["rvs"], arrays_cfg=cfg["arrays"],
        provenance={"source": "benchmark"})
elif stage == "train":
    logs.configure_tensorflow(extra["threads"])
    from gaiacnn import model
    s = model.train_member(arr["training"], os.path.dirname(member), split=0, seed=0,
        labels=labels, branches=cfg["model"]["branches"], arch=cfg["model"]["arch"],
        training={**cfg["model"]["training"], "max_epochs": extra["epochs"], "verbose": 0})
    out = {"n_train": s["n_train"], "epochs": s["epochs_run"],
           "samples_per_s": s["n_train"] * s["epochs_run"] / s["train_seconds"]}
elif stage.startswith("count:"):
    sample = stage.split(":")[1]
    arrays.run_count_rows(arr[sample], f"{w}/arrays/{sample}_rows.json")
elif stage.startswith("predict:"):
    _, sample, shard = stage.split(":")
    ensemble.run_predict_member(member, arr[sample], f"{w}/arrays/{sample}_rows.json",
        f"{w}/predictions/{sample}/shard{shard}.h5", shard=int(shard),
        prediction_cfg=cfg["prediction"], threads=extra["threads"])
elif stage.startswith("gather:"):
    sample = stage.split(":")[1]
    ensemble.run_gather_predictions(extra["shards"], f"{w}/predictions/{sample}.h5")
elif stage == "aggregate":
    ensemble.run_aggregate([f"{w}/predictions/training.h5"], [f"{w}/predictions/observed.h5"],
        arr, f"{w}/ensemble/labels.fits", f"{w}/ensemble/uncertainty_model.json",
        labels=labels, members=["split0_seed0"], uncertainty_cfg=cfg["uncertainty"],
        training_cfg=cfg["model"]["training"], config_hash="benchmark")
elif stage == "tsne_neighbours":
    tsne.run_tsne_neighbours(arr["training"], arr["observed"], f"{w}/tsne/neighbours.npz",
        mode="scalable", tsne_cfg=cfg["tsne"], threads=extra["threads"])
elif stage.startswith("tsne_reference:"):
    p = float(stage.split(":")[1])
    tsne.run_tsne_reference(f"{w}/tsne/neighbours.npz", f"{w}/tsne/p{p:g}/embedding.h5",
        f"{w}/tsne/p{p:g}/reference.h5", perplexity=p, tsne_cfg=cfg["tsne"],
        threads=extra["threads"])
elif stage == "tsne_index":
    tsne.run_tsne_index(arr["training"], arr["observed"], f"{w}/tsne/index.npz",
        tsne_cfg=cfg["tsne"])
elif stage.startswith("tsne_place:"):
    shard = int(stage.split(":")[1])
    embeddings = [f"{w}/tsne/p{p:g}/embedding.h5" for p in cfg["tsne"]["perplexities"]]
    tsne.run_tsne_place(arr["observed"], f"{w}/tsne/index.npz", embeddings,
        f"{w}/tsne/shard{shard}.h5", shard=shard, tsne_cfg=cfg["tsne"])
elif stage == "tsne_gather_classify":
    maps = []
    for p in cfg["tsne"]["perplexities"]:
        maps.append(f"{w}/tsne/p{p:g}.h5")
        tsne.run_tsne_gather(f"{w}/tsne/p{p:g}/reference.h5", extra["shards"],
            arr["observed"], maps[-1], perplexity=p, tsne_cfg=cfg["tsne"])
    tsne.run_tsne_classify(maps, arr["observed"], f"{w}/tsne/training_like.h5")
elif stage == "flag_catalogue":
    flags.run_flag_catalogue(f"{w}/ensemble/labels.fits", f"{w}/tsne/training_like.h5",
        f"{w}/ensemble/uncertainty_model.json", f"{w}/catalogue/catalogue.fits", None,
        labels=labels)
else:
    raise SystemExit(f"unknown stage {stage}")
out.update(wall_s=time.perf_counter() - t0,
           peak_rss_mib=peak_rss_mib())
print(json.dumps(out))
"""


def run_stage(stage: str, cfg: dict, workdir: Path, **extra) -> dict:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            STAGE,
            stage,
            json.dumps(cfg),
            str(REPO / "config" / "schema.yaml"),
            str(workdir),
            json.dumps(extra),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "workflow")},
    )
    if proc.returncode != 0:
        sys.exit(f"stage {stage} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def n_rows(path: Path) -> int:
    import h5py

    with h5py.File(path, "r") as h5:
        return int(h5["source_id"].shape[0])


def bench_one(n_stars: int, args, cfg: dict, records: list) -> None:
    from gaiacnn import shards, tsne

    w = args.workdir / f"n{n_stars}"
    w.mkdir(parents=True, exist_ok=True)
    cfg = json.loads(json.dumps(cfg))
    cfg["demo"]["n_stars"] = n_stars
    done_file = w / "measured.json"
    done = json.loads(done_file.read_text()) if args.reuse and done_file.exists() else {}

    def stage(name: str, output: Path, **extra) -> dict:
        if name in done and output.exists():
            res = done[name]
        else:
            res = run_stage(name, cfg, w, threads=args.cores, **extra)
            done[name] = res
            done_file.write_text(json.dumps(done, indent=1))
        rec = {"n_stars": n_stars, "stage": name, **res}
        records.append(rec)
        figures = ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in res.items()
            if k not in ("wall_s", "peak_rss_mib")
        )
        print(
            f"{n_stars:>9} {name:<24} {res['wall_s']:>9.1f} s {res['peak_rss_mib']:>8.0f} MiB"
            + (f"  ({figures})" if figures else ""),
            flush=True,
        )
        return res

    stage("demo_survey", w / "demo/truth.h5")
    stage("select_samples", w / "samples/observed.tsv")
    for sample in ("training", "observed"):
        stage(f"arrays:{sample}", w / f"arrays/{sample}.h5")
    member = w / "ensemble/members/split0_seed0"
    if args.member and "train" not in done:  # predict with a member trained elsewhere
        member.mkdir(parents=True, exist_ok=True)
        for name in ("model.keras", "scalers.json"):
            (member / name).unlink(missing_ok=True)
            (member / name).symlink_to((args.member / name).resolve())
        print(f"{n_stars:>9} train: skipped, predicting with {args.member}", flush=True)
    else:
        stage("train", member / "model.keras", epochs=args.epochs)
    for sample in ("training", "observed"):
        stage(f"count:{sample}", w / f"arrays/{sample}_rows.json")
        n = n_rows(w / f"arrays/{sample}.h5")
        parts = []
        for k in range(shards.n_shards(n, cfg["prediction"]["shard_rows"])):
            parts.append(str(w / f"predictions/{sample}/shard{k}.h5"))
            res = stage(f"predict:{sample}:{k}", Path(parts[-1]))
            start, stop = shards.shard_range(n, cfg["prediction"]["shard_rows"], k)
            res["stars_per_s"] = (stop - start) / res["wall_s"]
            records[-1]["stars_per_s"] = res["stars_per_s"]
        stage(f"gather:{sample}", w / f"predictions/{sample}.h5", shards=parts)
    stage("aggregate", w / "ensemble/labels.fits")
    if n_stars > args.tsne_max_n:
        print(f"{n_stars:>9} t-SNE skipped (N > --tsne-max-n {args.tsne_max_n})", flush=True)
        return
    stage("tsne_neighbours", w / "tsne/neighbours.npz")
    for p in cfg["tsne"]["perplexities"]:
        stage(f"tsne_reference:{p:g}", w / f"tsne/p{p:g}/reference.h5")
    stage("tsne_index", w / "tsne/index.npz")
    n_obs = n_rows(w / "arrays/observed.h5")
    parts = []
    for k in range(tsne.placement_shards(n_obs, cfg["tsne"])):
        parts.append(str(w / f"tsne/shard{k}.h5"))
        stage(f"tsne_place:{k}", Path(parts[-1]))
    stage("tsne_gather_classify", w / "tsne/training_like.h5", shards=parts)
    stage("flag_catalogue", w / "catalogue/catalogue.fits")


def markdown(records: list) -> str:
    """One row per N and stage kind: wall time (summed over shards) and the largest peak
    RSS of one job."""
    rows: dict = {}
    for r in records:
        kind = r["stage"].split(":")[0]
        if kind in ("predict", "arrays", "count", "gather"):
            kind += ":" + r["stage"].split(":")[1]
        key = (r["n_stars"], kind)
        agg = rows.setdefault(key, {"wall_s": 0.0, "peak_rss_mib": 0.0, "jobs": 0})
        agg["wall_s"] += r["wall_s"]
        agg["peak_rss_mib"] = max(agg["peak_rss_mib"], r["peak_rss_mib"])
        agg["jobs"] += 1
        for k in ("samples_per_s", "stars_per_s"):
            if k in r:
                agg[k] = min(agg.get(k, float("inf")), r[k])
    lines = [
        "| N stars | stage | jobs | wall [s] | peak RSS per job [MiB] | rate |",
        "|---:|---|---:|---:|---:|---|",
    ]
    for (n, kind), a in rows.items():
        rate = ""
        if "samples_per_s" in a:
            rate = f"{a['samples_per_s']:.0f} training samples/s"
        elif "stars_per_s" in a:
            rate = f"{a['stars_per_s']:.0f} stars/s/model (slowest shard)"
        cells = [f"{n:,}", kind, str(a["jobs"]), f"{a['wall_s']:.1f}"]
        lines.append("| " + " | ".join([*cells, f"{a['peak_rss_mib']:.0f}", rate]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-stars", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/gaiacnn-bench"))
    parser.add_argument("--out", type=Path, help="write the records here (JSON)")
    parser.add_argument("--cores", type=int, default=2, help="threads of the TF/t-SNE jobs")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the timed training")
    parser.add_argument(
        "--member",
        type=Path,
        help="predict with this member folder where no training was measured (--reuse)",
    )
    parser.add_argument("--shard-rows", type=int, help="prediction.shard_rows (default: config)")
    parser.add_argument("--tsne-max-n", type=int, default=100_000, help="t-SNE only up to N")
    parser.add_argument("--perplexities", type=float, nargs="+", help="default: config")
    parser.add_argument("--with-crlb", action="store_true", help="demo truth with the CRLBs")
    parser.add_argument("--reuse", action="store_true", help="keep stages already measured")
    args = parser.parse_args()
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    if not args.with_crlb:
        cfg["demo"]["crlb_inputs"] = []
    if args.shard_rows:
        cfg["prediction"]["shard_rows"] = args.shard_rows
    if args.perplexities:
        cfg["tsne"]["perplexities"] = args.perplexities
    cfg["tsne"]["mode"] = "scalable"
    machine = (
        f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}), {time.strftime('%Y-%m-%d')}"
    )
    print(f"# {machine}; prediction.shard_rows {cfg['prediction']['shard_rows']}")
    print(f"{'N':>9} {'stage':<24} {'wall':>11} {'peak RSS':>12}")
    records: list = []
    for n in args.n_stars:
        bench_one(n, args, cfg, records)
    table = markdown(records)
    print("\n" + table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "machine": machine,
                    "shard_rows": cfg["prediction"]["shard_rows"],
                    "records": records,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
