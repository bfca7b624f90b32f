#!/usr/bin/env python
"""Benchmark: the prediction job against the network alone, and the ensemble's prediction
jobs one per member against one for all members (config prediction.members_per_job).

On a synthetic layout file of --n-stars demo stars (one shard: the default
prediction.shard_rows; built once under --workdir), with --members copies of
one member (trained for a few epochs on a small file: the speed does not depend on the
weights), each measurement in a fresh process limited to --threads TensorFlow threads, as
a workflow job is:

* ``network``: the network alone (``make_predictor``) on inputs already read and scaled,
  best of --reps passes over the first --network-rows stars [stars/s];
* ``job``: the workflow's prediction job (``gaiacnn.ensemble.run_predict_members``, what
  the rules' scripts call) from the process's start to its end, interpreter, TensorFlow
  import, model load and output file included (Snakemake's own start, ~1 s a job, is
  not); per member, with the reader thread (prediction.prefetch_chunks 2) and without
  (0), and for all members in one job.  The file is dropped from the page cache before
  each job (``--warm``: not), so that the job reads it from disk, as a shard of a survey
  larger than the memory is read;
* the ratio of the job's rate per model to the network's, and the same once the job has
  started (Python, the package and TensorFlow imported: a fixed ~4 s of every job);
* with ``--input-noise-draws`` D > 0, the job for all members once more with the input
  noise drawn (``uncertainty.input_noise``: the sources of ``--input-noise``, the config's
  default parallax, D draws per star; for xp the file gets XP coefficient errors, 5 % of
  each coefficient, where it has none): what the spread under the input noise costs a
  prediction job (runs before the option drew parallax and xp);
* with ``--precision mixed_bfloat16``: how far its labels lie from float32's, max
  |delta| / sigma of each label over the demo's observed sample (--accuracy-arrays,
  predicted by a member of the demo, --accuracy-member; both made by ``make demo``).

The figures go to benchmarks/results.csv (``results.py table --benchmark predict_speed``
prints them).  Every measurement is repeated in --rounds rounds, in turn, and the medians
reported.  Run on demand (about 13 min at the defaults on 2 cores, 2 GB of disk)::

    .venv/bin/python benchmarks/predict_speed.py
    .venv/bin/python benchmarks/predict_speed.py --precision mixed_bfloat16
    .venv/bin/python benchmarks/predict_speed.py --input-noise-draws 8

It is not a test: numbers depend on the machine (and on whatever else runs on it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "workflow"))

import results  # noqa: E402

BENCHMARK = "predict_speed"


def _child_network(args: argparse.Namespace) -> dict:
    """(In a fresh process) the network alone on preloaded, scaled inputs."""
    from gaiacnn.logs import configure_tensorflow

    configure_tensorflow(args.threads)
    from gaiacnn import model as gm
    from gaiacnn.layout import iter_rows

    net, scalers = gm.load_member(args.member)
    _, block = next(iter(iter_rows(args.file, scalers.datasets(), args.network_rows)))
    x = scalers.inputs(block)
    n = len(next(iter(x.values())))
    predict = gm.make_predictor(net, args.batch_size, precision=args.precision)
    predict({k: v[: args.batch_size] for k, v in x.items()})  # trace and warm up
    best = float("inf")
    for _ in range(args.reps):
        t0 = time.perf_counter()
        predict(x)
        best = min(best, time.perf_counter() - t0)
    return {"stars": n, "wall_s": best}


def _child_accuracy(args: argparse.Namespace) -> dict:
    """(In a fresh process) max |label(precision) - label(float32)| / sigma(label) per label
    over the stars of --accuracy-arrays, sigma the label's spread over them."""
    from gaiacnn.logs import configure_tensorflow

    configure_tensorflow(args.threads)
    import numpy as np

    from gaiacnn import model as gm
    from gaiacnn.layout import iter_rows

    net, scalers = gm.load_member(args.accuracy_member)
    ref = gm.make_predictor(net, args.batch_size)
    low = gm.make_predictor(net, args.batch_size, precision=args.precision)
    a, b = [], []
    for _, block in iter_rows(args.accuracy_arrays, scalers.datasets(), args.chunk_rows):
        x = scalers.inputs(block)
        a.append(scalers.unscale_labels(ref(x)))
        b.append(scalers.unscale_labels(low(x)))
    a, b = np.concatenate(a).astype(float), np.concatenate(b).astype(float)
    dev = np.abs(b - a).max(axis=0) / a.std(axis=0)
    return {"stars": len(a), "max_dsigma": dict(zip(scalers.labels, dev.tolist(), strict=True))}


def _child_job(args: argparse.Namespace) -> dict:
    """(In a fresh process) the workflow's prediction job; its wall time from its first
    import, and that of the start (the package and TensorFlow imported) [s]."""
    t0 = time.perf_counter()
    from gaiacnn import ensemble
    from gaiacnn.logs import configure_tensorflow

    configure_tensorflow(args.threads)  # imports TensorFlow (the job then keeps its pools)
    started = time.perf_counter() - t0

    cfg = {
        "shard_rows": args.n_stars,
        "chunk_rows": args.chunk_rows,
        "batch_size": args.batch_size,
        "precision": args.precision,
        "prefetch_chunks": args.prefetch,
    }
    members = [Path(m) for m in args.member.split(",")]
    outs = [Path(args.out) / f"{m.name}.h5" for m in members]
    ensemble.run_predict_members(
        [m / "model.keras" for m in members],
        args.file,
        args.rows,
        outs,
        shard=0,
        prediction_cfg=cfg,
        noise_cfg={"sources": args.input_noise.split(","), "draws": args.noise},
        threads=args.threads,
    )
    for o in outs:
        o.unlink()
    return {"function_s": time.perf_counter() - t0, "start_s": started}


def drop_from_page_cache(path: Path) -> None:
    """Ask the kernel to forget ``path``'s cached pages (Linux; elsewhere nothing)."""
    if hasattr(os, "posix_fadvise"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def child(kind: str, args: argparse.Namespace, **extra) -> dict:
    """Run ``kind`` in a fresh Python process; its JSON result and the process's wall [s]."""
    if kind == "job" and not args.warm:
        drop_from_page_cache(args.file)
    cmd = [sys.executable, __file__, "--child", kind, "--file", str(args.file)]
    for key, value in {**vars(args), **extra}.items():
        skip = ("child", "file", "workdir", "rounds")
        if key in skip or value is None or isinstance(value, bool) or key == "input_noise_draws":
            continue
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{kind} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**out, "process_s": wall}


def add_xp_errors(path: Path) -> None:
    """Give the layout file XP coefficient errors (5 % of each coefficient) if it has none."""
    import h5py
    import numpy as np

    from gaiacnn.layout import XP_COEFFICIENT_DATASETS, XP_ERROR_DATASETS

    with h5py.File(path, "a") as h5:
        for coef, err in zip(XP_COEFFICIENT_DATASETS, XP_ERROR_DATASETS, strict=True):
            if err not in h5:
                ds = h5.create_dataset(err, shape=h5[coef].shape, dtype=np.float32)
                for s in range(0, h5[coef].shape[0], 65536):
                    ds[s : s + 65536] = 0.05 * np.abs(h5[coef][s : s + 65536])


def prepare(args: argparse.Namespace) -> tuple[Path, Path, list[Path]]:
    """The layout file, its row count and the members (built once under --workdir)."""
    import model_speed

    from gaiacnn import shards

    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    file = model_speed.build_layout(
        work / f"observed_n{args.n_stars}_s{args.seed}.h5", args.n_stars, args.seed
    )
    rows = work / f"observed_n{args.n_stars}_s{args.seed}_rows.json"
    if not rows.is_file():
        shards.write_row_count(file, rows)
    small = model_speed.build_layout(work / "train_n4000_s1.h5", 4000, 1)
    member = model_speed.quick_member(small, work, 4000, 2)
    members = []
    for k in range(args.members):
        d = work / f"member{k}"
        if not (d / "model.keras").is_file():
            shutil.copytree(member, d, dirs_exist_ok=True)
        members.append(d)
    return file, rows, members


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/gaiacnn-predict-bench"))
    p.add_argument("--n-stars", type=int, default=200_000,
                   help="stars of the shard (the default: prediction.shard_rows)")  # fmt: skip
    p.add_argument("--members", type=int, default=4, help="ensemble members")
    p.add_argument("--threads", type=int, default=2, help="TensorFlow threads (the rule's)")
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--chunk-rows", type=int, default=8192)
    p.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"])
    p.add_argument("--network-rows", type=int, default=32768)
    p.add_argument("--reps", type=int, default=3, help="passes of the network alone (best)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of all measurements")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--accuracy-member", type=Path,
                   default=REPO / "results/ensemble/members/split0_seed0")  # fmt: skip
    p.add_argument("--accuracy-arrays", type=Path, default=REPO / "results/arrays/observed.h5")
    p.add_argument("--warm", action="store_true", help="keep the file in the page cache")
    p.add_argument("--no-record", action="store_true", help="do not append to results.csv")
    # the fresh processes' own arguments
    p.add_argument("--child", choices=["network", "job", "accuracy"], help=argparse.SUPPRESS)
    p.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--rows", help=argparse.SUPPRESS)
    p.add_argument("--member", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--prefetch", type=int, default=2, help=argparse.SUPPRESS)
    p.add_argument("--noise", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--input-noise", default="parallax",
                   help="comma-separated sources drawn (parallax, xp)")  # fmt: skip
    p.add_argument("--input-noise-draws", type=int, default=0,
                   help="also time the job for all members with the input noise drawn")  # fmt: skip
    a = p.parse_args(argv)
    if a.child:
        run = {"network": _child_network, "job": _child_job, "accuracy": _child_accuracy}
        res = run[a.child](a)
        print(json.dumps(res))
        return 0

    a.file, a.rows, members = prepare(a)
    out = a.workdir / "out"
    out.mkdir(exist_ok=True)
    n, m = a.n_stars, len(members)
    print(f"{n} stars, {m} members, {a.threads} threads, {a.precision}", file=sys.stderr)
    # rounds of every measurement in turn, so that a slower spell of the machine (other
    # processes, its clock) weighs on all of them alike; the medians are reported
    kinds = {
        "one member per job, prefetch 2": (1, 2, 0),
        "one member per job, prefetch 0": (1, 0, 0),
        f"all {m} members in one job, prefetch 2": (m, 2, 0),
    }
    draws = a.input_noise_draws
    if draws and "xp" in a.input_noise.split(","):
        add_xp_errors(a.file)
        kinds[f"all {m} members in one job, prefetch 2, input noise {draws} draws"] = (m, 2, draws)
    net_rates: list[float] = []
    walls: dict[str, list[dict]] = {name: [] for name in kinds}
    for r in range(a.rounds):
        net = child("network", a, member=members[0])
        net_rates.append(net["stars"] / net["wall_s"])
        print(f"round {r + 1}: network alone {net_rates[-1]:.0f} stars/s", file=sys.stderr)
        for name, (k, prefetch, noise) in kinds.items():
            who = ",".join(map(str, members[:k]))
            walls[name].append(child("job", a, member=who, out=out, prefetch=prefetch, noise=noise))
            print(f"  {name}: {walls[name][-1]['process_s']:.1f} s", file=sys.stderr)
    net_rate = statistics.median(net_rates)

    params = {
        "input_noise_draws": draws,
        "input_noise": a.input_noise if draws else "",
        "n_stars": n,
        "threads": a.threads,
        "batch_size": a.batch_size,
        "chunk_rows": a.chunk_rows,
        "precision": a.precision,
        "page_cache": "warm" if a.warm else "dropped",
        "rounds": a.rounds,
    }
    figures = [("network alone", net_rate, "stars/s/model")]
    print(f"\nmachine: {results.cpu_model()}, {results.cores()} cores; {n} stars per job; "
          f"medians of {a.rounds} rounds")  # fmt: skip
    head = ("wall [s]", "start [s]", "stars/s/model", "/ network", "after start")
    print(f"{'':42s} " + " ".join(f"{h:>13s}" for h in head))
    spread = f"{min(net_rates):.0f}-{max(net_rates):.0f}"
    print(f"{'network alone (inputs in memory)':42s} {'':>13s} {'':>13s} {net_rate:13.0f}"
          f"   (rounds: {spread})")  # fmt: skip
    med = {}
    for name, (k, *_) in kinds.items():
        wall = statistics.median(w["process_s"] for w in walls[name])
        start = statistics.median(w["start_s"] for w in walls[name])
        rate = n * k / wall
        # the job's rate once TensorFlow is up: the process wall less its start
        running = n * k / (wall - start)
        med[name] = wall
        print(f"{name:42s} {wall:13.1f} {start:13.1f} {rate:13.0f} {rate / net_rate:13.2f} "
              f"{running / net_rate:13.2f}")  # fmt: skip
        figures += [
            (f"job: {name}: wall", wall, "s"),
            (f"job: {name}: start (Python, the package, TensorFlow)", start, "s"),
            (f"job: {name}: rate", rate, "stars/s/model"),
            (f"job: {name}: rate / network alone", rate / net_rate, "ratio"),
            (f"job: {name}: rate after the start / network alone", running / net_rate, "ratio"),
        ]
    one = med["one member per job, prefetch 2"] * m
    allm = med[f"all {m} members in one job, prefetch 2"]
    print(f"\nthe ensemble ({m} members): {m} jobs of one member {one:.1f} s, "
          f"one job of all {allm:.1f} s ({one / allm:.2f}x)")  # fmt: skip
    figures += [
        (f"ensemble of {m}: one job per member: wall", one, "s"),
        (f"ensemble of {m}: one job for all: wall", allm, "s"),
    ]
    if draws:
        noisy = med[f"all {m} members in one job, prefetch 2, input noise {draws} draws"]
        print(f"with the input noise ({draws} draws): {noisy:.1f} s ({noisy / allm:.2f}x)")
        figures.append((f"ensemble of {m}: input noise {draws} draws / none: wall", noisy / allm,
                        "ratio"))  # fmt: skip
    if a.precision != "float32":
        if (a.accuracy_member / "model.keras").is_file() and a.accuracy_arrays.is_file():
            acc = child("accuracy", a)
            dev = ", ".join(f"{k} {v:.3f}" for k, v in acc["max_dsigma"].items())
            print(f"labels, {a.precision} against float32, max |delta| / sigma over "
                  f"{acc['stars']} stars of {a.accuracy_arrays}: {dev}")  # fmt: skip
            figures += [
                (f"{a.precision} against float32: max |delta| / sigma, {k}", v, "sigma")
                for k, v in acc["max_dsigma"].items()
            ]
        else:
            print(f"no {a.accuracy_member} or {a.accuracy_arrays} (make demo makes them): "
                  "the labels' deviation from float32 is not measured")  # fmt: skip
    if not a.no_record:
        k = results.append(BENCHMARK, params | {"members": m}, figures)
        print(f"{k} rows appended to {results.RESULTS.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
