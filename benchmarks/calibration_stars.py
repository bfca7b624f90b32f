#!/usr/bin/env python
"""Benchmark: what the S/N calibration sees on its training stars, against the truth.

The S/N calibration (uncertainty.snr_calibration_bins) fits each bin's factor on
calibration stars it only knows through their reference labels: a held-out training star
counts as covered when |CNN − reference| <= sqrt(sigma² + err²), err the reference
label's own error.  On a demo run (the demo knows each star's true labels) this prints, per
label and S/N bin, for the held-out training stars (each predicted by the members that did
not train on it, as the calibration predicts them) with the catalogue's calibrated sigma:

* ``truth``: the fraction with |CNN − truth| <= sigma, what a user wants (68.3 %);
* ``reference``: the fraction covered against the reference, what the calibration fitted;
* ``expected``: the reference coverage those same true errors would give on average over
  fresh reference noise (``--draws`` draws of N(0, err²)): where it differs from
  ``reference``, the one realization of the reference labels' noise moved the factor;
* the median reference error and the 68.3 % quantile of |CNN − truth|.

Where the reference errors are as large as the CNN's, ``reference`` hardly moves with the
factor, so a few points of reference noise move the truth coverage by many.  Run on demand
after ``make demo`` (or on a shift run)::

    .venv/bin/python benchmarks/calibration_stars.py
    .venv/bin/python benchmarks/calibration_stars.py --results /tmp/shift/unshifted-after/results

It is not a test: the numbers are those of one run's sample; nothing is recorded.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "workflow"))

COVERAGE = 0.6827


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=REPO / "results", help="a run's results/")
    p.add_argument("--snr-edges", type=float, nargs="+", default=[25.0, 35.0, 50.0, 75.0, 150.0])
    p.add_argument("--draws", type=int, default=200, help="reference-noise draws (expected)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    import json

    import h5py

    from gaiacnn import catalogue, ensemble, layout
    from gaiacnn.tables import read_fits_columns

    res = a.results
    attrs = catalogue.read_attrs(res / "ensemble" / "labels.fits")
    labels = list(attrs["labels"])
    members = list(attrs["members"])
    training = res / "arrays" / "training.h5"
    preds = [res / "ensemble" / "predictions" / "training" / f"{m}.h5" for m in members]
    # the members' validation sets, from the training settings they recorded
    history = json.loads((res / "ensemble" / "members" / members[0] / "history.json").read_text())
    settings = history["summary"]["training"]
    fraction, base_seed = float(settings["validation_fraction"]), int(settings["base_seed"])
    ref = np.column_stack([layout.read_column(training, f"labels/{x}") for x in labels])
    err = np.column_stack([layout.read_column(training, f"labels/{x}_err") for x in labels])
    snr = layout.read_column(training, "rvs/snr")
    held = ensemble.validation_masks(members, len(ref), fraction, base_seed)
    # the held-out mean of each star, as the calibration forms it (catalogue.fit)
    chunks = list(catalogue._combine_sample(preds, labels, 65536, held, "pred", False))
    sid = np.concatenate([c[0] for c in chunks])
    oof = np.concatenate([c[3] for c in chunks])
    cat = read_fits_columns(res / "ensemble" / "labels.fits",
                            ["source_id", *(f"sigma_{x}" for x in labels)])  # fmt: skip
    row = {s: i for i, s in enumerate(np.asarray(cat["source_id"]))}
    at = np.array([row[s] for s in sid])
    with h5py.File(res / "demo" / "truth.h5", "r") as h5:
        t_sid = h5["source_id"][:]
        truth_all = np.column_stack([h5[f"truth/{x}"][:] for x in labels])
    t_row = {s: i for i, s in enumerate(t_sid)}
    truth = truth_all[[t_row[s] for s in sid]]
    rng = np.random.default_rng(a.seed)
    edges = [*a.snr_edges, np.inf]
    print(f"{res}: {len(sid)} training stars, {len(members)} members")
    print(f"{'label':8s} {'S/N':>9s} {'stars':>6s} {'truth':>6s} {'reference':>9s} "
          f"{'expected':>8s} {'err':>9s} {'q68|t|':>9s}")  # fmt: skip
    for j, x in enumerate(labels):
        sigma = np.asarray(cat[f"sigma_{x}"], float)[at]
        t = oof[:, j] - truth[:, j]
        r = oof[:, j] - ref[:, j]
        e = np.where(np.isfinite(err[:, j]), err[:, j], 0.0)
        for lo, hi in itertools.pairwise(edges):
            sel = (snr >= lo) & (snr < hi) & np.isfinite(t) & np.isfinite(r) & np.isfinite(sigma)
            n = int(sel.sum())
            if n < 20:
                continue
            bound = np.sqrt(sigma[sel] ** 2 + e[sel] ** 2)
            cov_truth = np.mean(np.abs(t[sel]) <= sigma[sel])
            cov_ref = np.mean(np.abs(r[sel]) <= bound)
            noise = rng.normal(size=(a.draws, n)) * e[sel]
            expected = np.mean(np.abs(t[sel] + noise) <= bound)
            q68 = np.quantile(np.abs(t[sel]), COVERAGE)
            print(f"{x:8s} {f'{lo:g}-{hi:g}':>9s} {n:6d} {cov_truth:6.3f} {cov_ref:9.3f} "
                  f"{expected:8.3f} {np.median(e[sel]):9.4g} {q68:9.4g}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
