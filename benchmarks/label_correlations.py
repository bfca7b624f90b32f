#!/usr/bin/env python
"""Benchmark: the catalogue's label error correlations (rho_<a>__<b>) against the truth.

On a demo run's catalogue (the demo knows each star's true labels), per label pair and S/N
bin (evaluation.snr_edges), the measured correlation of CNN − truth over the observed stars
inside the training range by their true labels (training populations only, as
``results/evaluation/precision.tsv`` counts them; residuals beyond 5 robust standard
deviations left out, as the fit leaves them out) against the median published rho of the
same stars.  A pair and bin passes when they differ by at most --tolerance (0.1, issue
31).  Run on demand after ``make demo``::

    .venv/bin/python benchmarks/label_correlations.py
    .venv/bin/python benchmarks/label_correlations.py --catalogue other/catalogue.fits \\
        --truth other/truth.h5 --model other/uncertainty_model.json --no-record

It prints one row per pair and bin and the number that pass; the figures go to
benchmarks/results.csv.  It is not a test: the numbers are those of one run's sample.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "workflow"))

import results  # noqa: E402

BENCHMARK = "label_correlations"


def measured_rho(ra: np.ndarray, rb: np.ndarray) -> float:
    """Pearson correlation of two residual arrays, each clipped at 5 robust sigma."""
    from gaiacnn.ensemble import _clipped

    keep = _clipped(ra) & _clipped(rb)
    return float(np.corrcoef(ra[keep], rb[keep])[0, 1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--catalogue", type=Path, default=REPO / "results/catalogue/catalogue.fits")
    p.add_argument("--truth", type=Path, default=REPO / "results/demo/truth.h5")
    p.add_argument("--model", type=Path, default=REPO / "results/ensemble/uncertainty_model.json")
    p.add_argument("--snr-edges", type=float, nargs="+", default=[15.0, 25.0, 35.0, 75.0])
    p.add_argument("--tolerance", type=float, default=0.1)
    p.add_argument("--min-stars", type=int, default=50, help="fewest stars a bin is judged on")
    p.add_argument(
        "--stars", choices=("observed", "ordinary", "shifted"), default="observed",
        help="the observed stars judged: all, or those of demo.shift only (shifted), or the "
        "others (ordinary)",
    )  # fmt: skip
    p.add_argument("--no-record", action="store_true", help="do not append to results.csv")
    a = p.parse_args(argv)

    from gaiacnn import catalogue, ensemble, evaluation

    attrs = catalogue.read_attrs(a.catalogue)
    labels = attrs["labels"]
    pairs = ensemble.correlation_pairs(labels)
    columns = ["source_id", "in_training", *labels, *(f"sigma_{x}" for x in labels)]
    columns += [ensemble.correlation_column(pr) for pr in pairs]
    _, training_range = ensemble.read_uncertainty_model(a.model)
    data = evaluation._with_truth(a.catalogue, a.truth, columns, labels)
    inside = ~data.cat["in_training"].to_numpy(bool) & data.truly_inside(training_range)
    if a.stars != "observed":
        inside &= data.shifted if a.stars == "shifted" else ~data.shifted
    edges = [*a.snr_edges, np.inf]
    rows, figures, n_pass, n_judged = [], [], 0, 0
    for pair in pairs:
        col = ensemble.correlation_column(pair)
        ra, rb = (data.cat[x].to_numpy(float) - data.truth[x] for x in pair)
        for lo, hi in itertools.pairwise(edges):
            sel = inside & (data.snr >= lo) & (data.snr < hi) & np.isfinite(ra) & np.isfinite(rb)
            n = int(sel.sum())
            if n < 3:
                continue
            got = measured_rho(ra[sel], rb[sel])
            published = float(np.median(data.cat[col].to_numpy(float)[sel]))
            judged = n >= a.min_stars
            ok = abs(got - published) <= a.tolerance
            n_judged += judged
            n_pass += judged and ok
            verdict = ("pass" if ok else "FAIL") if judged else "too few"
            rows.append((f"{pair[0]}-{pair[1]}", lo, hi, n, got, published, verdict))
            name = f"{pair[0]}-{pair[1]} S/N {lo:g}-{hi:g}"
            figures += [(f"{name}: measured rho", got, "rho"),
                        (f"{name}: published rho (median)", published, "rho"),
                        (f"{name}: stars", n, "stars")]  # fmt: skip
    print(f"{'pair':14s} {'S/N':>10s} {'stars':>6s} {'measured':>9s} {'published':>9s}  verdict")
    for pair, lo, hi, n, got, pub, verdict in rows:
        print(f"{pair:14s} {f'{lo:g}-{hi:g}':>10s} {n:6d} {got:+9.3f} {pub:+9.3f}  {verdict}")
    print(f"\n{n_pass} of {n_judged} pair-bins (>= {a.min_stars} stars) within ±{a.tolerance}")
    figures.append(("pair-bins within tolerance", n_pass, "count"))
    figures.append(("pair-bins judged", n_judged, "count"))
    if not a.no_record:
        params = {"catalogue": str(a.catalogue), "tolerance": a.tolerance, "stars": a.stars,
                  "snr_edges": a.snr_edges, "min_stars": a.min_stars}  # fmt: skip
        k = results.append(BENCHMARK, params, figures)
        print(f"{k} rows appended to {results.RESULTS.relative_to(REPO)}", file=sys.stderr)
    return 0 if n_pass == n_judged else 1


if __name__ == "__main__":
    sys.exit(main())
