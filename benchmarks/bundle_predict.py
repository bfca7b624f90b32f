#!/usr/bin/env python
"""Benchmark: ``gaiacnn predict`` (a bundle applied to an observed file) against N.

Scales a finished run's observed arrays file (default: the demo's ``results/``) to each
--rows N: stars drawn with replacement from the run's observed stars, new source ids,
every scalar and XP dataset written a chunk at a time, the RVS flux declared but left
unwritten (it reads back as the HDF5 fill value 1.0: the network's arithmetic is the same,
the disk is spared 10 GB per 10^6 stars). Then runs ``gaiacnn.bundle.predict`` with the
run's bundle (``results/bundle``) in a fresh process and prints its wall time, its stars/s
and its peak RSS (VmHWM); for two or more N, the ratio of the peak RSS between the largest
and the smallest; the figures go to benchmarks/results.csv::

    .venv/bin/python benchmarks/bundle_predict.py                       # 10^5 and 10^6
    .venv/bin/python benchmarks/bundle_predict.py --rows 20000 --no-record

It is not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "workflow"))

import results  # noqa: E402
from figures_memory import write_scaled_arrays  # noqa: E402

#: Stars written per step while the scaled file is built.
BUILD_CHUNK = 200_000


def scale_observed(src: Path, out: Path, rows: int, seed: int = 0) -> Path:
    """``rows`` stars drawn from ``src`` (see the module's docstring), written to ``out``
    (:func:`figures_memory.write_scaled_arrays`)."""
    rng = np.random.default_rng(seed)
    with h5py.File(src, "r") as h5:
        n_src = h5["source_id"].shape[0]
    steps = [(s, min(rows, s + BUILD_CHUNK)) for s in range(0, rows, BUILD_CHUNK)]
    picks = [rng.integers(0, n_src, hi - lo) for lo, hi in steps]
    write_scaled_arrays(src, out, steps, picks, 8 * 10**17)
    return out


def run_predict(bundle: Path, observed: Path, out: Path, workers: int) -> dict:
    """``gaiacnn.bundle.predict`` in a fresh process: wall [s] and peak RSS [MiB]."""
    code = (
        "import json, sys, time; sys.path.insert(0, {repo!r}); "
        "from gaiacnn import bundle; from gaiacnn.memory import peak_rss_mib; "
        "t0 = time.perf_counter(); bundle.predict({b!r}, {o!r}, {f!r}, workers={w}); "
        "print('STAGE', json.dumps({{'wall_s': time.perf_counter() - t0, "
        "'peak_rss_mib': peak_rss_mib()}}))"
    ).format(repo=str(REPO / "workflow"), b=str(bundle), o=str(observed), f=str(out), w=workers)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(proc.stderr[-4000:])
    line = [x for x in proc.stdout.splitlines() if x.startswith("STAGE")][-1]
    return json.loads(line.split(" ", 1)[1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--results", type=Path, default=REPO / "results", help="a finished run")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/gaiacnn-bundle-bench"))
    p.add_argument("--no-record", action="store_true", help="do not append to results.csv")
    a = p.parse_args(argv)
    bundle = a.results / "bundle"
    if not (bundle / "MANIFEST.sha256").is_file():
        sys.exit(f"{bundle}: no bundle; run `make demo` first (or give --results)")
    load_at_start = os.getloadavg()[0]
    measured = {}
    for n in sorted(a.rows):
        work = a.workdir / f"rows{n}"
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        observed = scale_observed(a.results / "arrays" / "observed.h5", work / "observed.h5", n)
        print(f"{n} stars: file written in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        measured[n] = r = run_predict(bundle, observed, work / "catalogue.fits", a.workers)
        r["stars_per_s"] = n / r["wall_s"]
        print(f"  predict: {r['wall_s']:.1f} s ({r['stars_per_s']:.0f} stars/s for the "
              f"ensemble), peak RSS {r['peak_rss_mib']:.0f} MiB", file=sys.stderr)  # fmt: skip
        shutil.rmtree(work)
    sizes = sorted(measured)
    ratio = measured[sizes[-1]]["peak_rss_mib"] / measured[sizes[0]]["peak_rss_mib"]
    print(f"\nmachine: {results.cpu_model()}, {results.cores()} cores; workers {a.workers}")
    for n in sizes:
        r = measured[n]
        print(f"N = {n:.0e}: {r['wall_s']:8.1f} s {r['stars_per_s']:8.0f} stars/s "
              f"{r['peak_rss_mib']:7.0f} MiB")  # fmt: skip
    print(f"peak RSS ratio N = {sizes[-1]} / N = {sizes[0]}: {ratio:.2f}")
    if not a.no_record:
        figures = []
        for n in sizes:
            r = measured[n]
            figures += [
                (f"predict: peak RSS at N = {n}", r["peak_rss_mib"], "MiB"),
                (f"predict: wall at N = {n}", r["wall_s"], "s"),
                (f"predict: rate at N = {n}", r["stars_per_s"], "stars/s (ensemble)"),
            ]
        figures.append(
            (f"predict: peak RSS ratio N = {sizes[-1]} / N = {sizes[0]}", ratio, "ratio")
        )
        params = {"rows": sizes, "workers": a.workers,
                  "loadavg_1min_at_start": round(load_at_start, 2)}  # fmt: skip
        k = results.append("bundle_predict", params, figures)
        print(f"{k} rows appended to {results.RESULTS.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
