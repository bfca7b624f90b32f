#!/usr/bin/env python
"""Benchmark: the demo's precision per input shape (README, "Bring your own data").

Runs the workflow on the default demo survey (config/config.yaml: 20 000 stars, 2 x 2
members) once per input shape, each written by the demo's own ``demo.datasets``
(config/variants/shape_*.yaml; "full" is the default), up to the precision table
(``results/evaluation/precision.tsv``; the t-SNE and figures are not needed for it).  The
demo survey and the samples are made once and reused by the other shapes (the survey does
not depend on ``demo.datasets``).  For every shape and label it reports, for the observed
stars inside the training range at S/N 15-25 (the paper's lowest bin, Fig. 16): the
dispersion of CNN - truth, its ratio to the Cramer-Rao bound and the +-1 sigma coverage,
and the wall time of the run (Snakemake's, all jobs).

Run on demand (about 15 min per shape on 2 cores)::

    .venv/bin/python benchmarks/shape_precision.py --workdir /tmp/shapes \\
        --out benchmarks/measured/shape_precision.json

It is not a test: the numbers are one seed's.  Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
#: shape -> its variant file (None: the default demo, every Gaia DR3 input)
SHAPES = {
    "full": None,
    "xp_sampled": "config/variants/shape_xp_sampled.yaml",
    "xp_coefficients": "config/variants/shape_xp_coefficients.yaml",
    "rvs_only": "config/variants/shape_rvs_only.yaml",
}
TARGET = "results/evaluation/precision.tsv"


def run_shape(work: Path, variant: str | None, cores: int, reuse_from: Path | None) -> float:
    """Run one shape in ``work`` to the precision table; return the wall time [s]."""
    (work / "config").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "config" / "config.yaml", work / "config" / "config.yaml")
    if reuse_from is not None:
        for sub in ("demo", "samples"):
            if not (work / "results" / sub).exists():
                shutil.copytree(reuse_from / "results" / sub, work / "results" / sub)
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--directory", str(work)]
    cmd += ["--cores", str(cores), TARGET]
    if variant:
        cmd += ["--configfile", str(work / "config" / "config.yaml"), str(REPO / variant)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{work}: snakemake failed:\n{proc.stderr[-4000:]}")
    return wall


def rows_of(work: Path, shape: str, wall: float) -> list[dict]:
    table = pd.read_csv(work / TARGET, sep="\t")
    sel = table[(table["sample"] == "observed_in_range") & (table["snr_min"] == 15.0)]
    return [
        {
            "shape": shape,
            "label": row.label,
            "n": int(row.n),
            "dispersion": float(row.dispersion),
            "ratio_to_crlb": float(row.ratio_to_crlb),
            "coverage_1sigma": float(row.coverage_1sigma),
            "wall_s": round(wall, 1),
        }
        for row in sel.itertuples()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "out" / "shapes")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="JSON of the results")
    args = parser.parse_args(argv)

    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    records: list[dict] = []
    first = None
    for shape in args.shapes:
        work = args.workdir / shape
        wall = run_shape(work, SHAPES[shape], args.cores, first)
        first = first or work
        records += rows_of(work, shape, wall)
        print(f"{shape}: {wall / 60:.1f} min", file=sys.stderr)
    print(f"Observed stars inside the training range, S/N 15-25 (commit {commit}):\n")
    print("| shape | label | n | dispersion | ratio to CRLB | 1σ coverage | run wall time |")
    print("|---|---|---|---|---|---|---|")
    for r in records:
        print(
            f"| {r['shape']} | {r['label']} | {r['n']} | {r['dispersion']:.4g} | "
            f"{r['ratio_to_crlb']:.2f} | {r['coverage_1sigma']:.2f} | {r['wall_s'] / 60:.1f} min |"
        )
    if args.out:
        args.out.write_text(json.dumps({"commit": commit, "rows": records}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
