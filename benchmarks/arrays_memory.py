#!/usr/bin/env python
"""Benchmark: wall time and peak memory of each stage up to the HDF5 arrays.

Runs the demo generator, the selection and the arrays build for N demo stars,
each stage in its own process, and prints one line per stage with its wall time
and peak resident memory (ru_maxrss of that process).  Run on demand, e.g.::

    .venv/bin/python benchmarks/arrays_memory.py --n-stars 100000 --workdir /tmp/bench

It is not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

STAGE = r"""
import json, resource, sys, time, yaml
from gaiacnn.config import load_schema, validate_config
from gaiacnn import pipeline
cfg = validate_config(json.loads(sys.argv[2]), load_schema(sys.argv[3]))
w = sys.argv[4]
t0 = time.perf_counter()
stage = sys.argv[1]
demo = [f"{w}/demo/{n}" for n in ("gaia_source.fits", "allStar.fits", "rvs_xp.h5", "truth.h5")]
if stage == "demo_survey":
    pipeline.run_demo_survey(cfg["demo"], *demo)
elif stage == "select_samples":
    pipeline.run_selection(demo[0], demo[1], f"{w}/samples/training.tsv",
        f"{w}/samples/observed.tsv", f"{w}/samples/cut_report.tsv", cfg["selection"], cfg["labels"])
else:
    sample = stage.split(":")[1]
    pipeline.run_build_arrays(demo[2], demo[0], f"{w}/samples/{sample}.tsv",
        f"{w}/arrays/{sample}.h5", sample_name=sample, labels=list(cfg["labels"]),
        rvs_cfg=cfg["rvs"], arrays_cfg=cfg["arrays"], provenance={"source": "benchmark"})
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"stage": stage, "wall_s": time.perf_counter() - t0, "peak_rss_mib": peak}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-stars", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/gaiacnn-bench"))
    parser.add_argument(
        "--stages",
        default="demo_survey,select_samples,arrays:training,arrays:observed",
        help="comma-separated stages to run",
    )
    parser.add_argument(
        "--no-crlb", action="store_true", help="skip the Cramer-Rao bounds in the demo truth file"
    )
    args = parser.parse_args()
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["demo"]["n_stars"] = args.n_stars
    if args.no_crlb:
        cfg["demo"]["crlb_inputs"] = []
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(
        f"# {args.n_stars} demo stars on {platform.node()} ({platform.machine()}, "
        f"{platform.python_version()})"
    )
    print(f"{'stage':<18} {'wall [s]':>10} {'peak RSS [MiB]':>15}")
    for stage in args.stages.split(","):
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                STAGE,
                stage,
                json.dumps(cfg),
                str(REPO / "config" / "schema.yaml"),
                str(args.workdir),
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            sys.exit(f"stage {stage} failed:\n{proc.stderr[-3000:]}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{stage:<18} {res['wall_s']:>10.1f} {res['peak_rss_mib']:>15.0f}", flush=True)


if __name__ == "__main__":
    main()
