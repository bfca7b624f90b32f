#!/usr/bin/env python
"""Benchmark: what each way the default differs from the paper does, on the demo survey
(the README's table "Differences from the paper").

Runs the workflow on the default demo survey (config/config.yaml: 20 000 stars, 2 x 2
members) with the defaults (``default``), with config/variants/paper.yaml at the demo's
ensemble size (``paper``), and with the defaults but one setting set back to the paper's
value, once per setting where the default departs from it.  Each run goes up to the
catalogue with its flag and the evaluation tables (results/evaluation/precision.tsv and
tsne_confusion.tsv).  Runs that change nothing before a stage reuse that stage of an
earlier run (the demo survey, samples and arrays always; the t-SNE maps where only the
model changes; the members where only the calibration or the flag changes).

Printed, per run, for the observed stars truly inside the training range at S/N 15-25:
the dispersion of CNN - truth over the Cramér-Rao bound and the share within +-1 sigma,
per label; the recall of ``flag_boundary`` (any digit 1) on the spectra unlike every
training star (the demo's OB stars and M giants) and its rate on the observed stars of
the training populations; and the time of the workflow's jobs (the sum of the rules'
``benchmark:`` wall times, the reused stages included) and of the training alone.  The
run-to-run spread expected of the precision is estimated from the default run's members.

Run on demand (about 2 h on 2 cores for every setting)::

    .venv/bin/python benchmarks/paper_departures.py --workdir /tmp/paper \\
        --out benchmarks/measured/paper_departures.json

It is not a test: the numbers are one seed's.  Existing runs in --workdir are reused;
``--runs`` picks some (``default`` is always run, as the others reuse it).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_runs import (
    REPO,
    done,
    head_commit,
    made_by,
    member_spread,
    run_workflow,
    seed_from,
)

from gaiacnn import constants
from gaiacnn.tables import read_fits_columns

TARGETS = ("results/evaluation/precision.tsv", "results/evaluation/tsne_confusion.tsv")
LABELS = ("teff", "logg", "m_h", "alpha_m", "fe_h")
SNR_BIN = (15.0, 25.0)
#: the stages every run takes from ``default`` (the same survey, cuts and arrays)
INPUT_STAGES = ("demo", "samples", "arrays")


@dataclass(frozen=True)
class Run:
    """One workflow run: the setting it changes (empty for the two reference runs), the
    default's and the paper's value, its config overlay, and what it reuses of ``default``:
    the result folders (besides :data:`INPUT_STAGES`) and, in them, the files to make
    again."""

    setting: str
    default: str
    paper: str
    overlay: dict
    reuse: tuple[str, ...] = ()
    remake: tuple[str, ...] = ()
    configfiles: tuple[str, ...] = field(default=())


#: The t-SNE files that hold the training-like classification: each map (its threshold is
#: applied where the map is made) and their combination; the neighbour graph is kept.
TSNE_CLASSIFICATION = ("p[0-9]*.h5", "training_like.h5")

#: The runs, in the order they are made (the cheap ones first).  The ensemble size (paper:
#: 7 splits x 4 seeds = 28 members, Sect. 3.2) is not a run: it is the size of the run,
#: and the report gives its measured cost from the default's members.
RUNS: dict[str, Run] = {
    "default": Run("", "", "", {}, reuse=()),
    "snr_calibration": Run(
        "sigma_* calibrated against the S/N (uncertainty.snr_calibration_bins)",
        "8 bins",
        "none (Sect. 3.4)",
        {"uncertainty": {"snr_calibration_bins": 0}},
        reuse=("ensemble", "tsne", "benchmarks"),
        remake=("labels.fits", "uncertainty_model.json"),
    ),
    "input_calibration": Run(
        "sigma_* calibrated against the input-space distance "
        "(uncertainty.input_distance_calibration_bins)",
        "6 bins",
        "none (Sect. 3.4)",
        {"uncertainty": {"input_distance_calibration_bins": 0}},
        reuse=("ensemble", "tsne", "benchmarks"),
        remake=("labels.fits", "uncertainty_model.json"),
    ),
    "tsne_threshold": Run(
        "training-like threshold: the m-th nearest training spectrum "
        "(tsne.threshold_neighbours, _fraction)",
        "m = max(10, 0.3 % of the training spectra)",
        "the nearest one (Sect. 5.1)",
        {"tsne": {"threshold_neighbours": 1, "threshold_neighbours_fraction": 0.0}},
        reuse=("ensemble", "tsne", "benchmarks"),
        remake=TSNE_CLASSIFICATION,
    ),
    "input_digit": Run(
        "flag digit 9: inputs outside the training sample's (flags.input_digit)",
        "on (9 digits)",
        "off: 8 digits (Sect. 5.2)",
        {"flags": {"input_digit": False}},
        reuse=("ensemble", "tsne", "benchmarks"),
    ),
    "noise_augmentation": Run(
        "RVS noise augmentation (model.training.augment_snr_min)",
        "S/N down to 15, half the stars per epoch",
        "none",
        {"model": {"training": {"augment_snr_min": 0.0}}},
        reuse=("tsne", "benchmarks"),
    ),
    "photometry_input": Run(
        "photometry branch input (model.phot_input)",
        "intrinsic_withheld: BP − RP, G − RP, asinh 10^(0.2 M_G) from the parallax, "
        "parallax withheld below S/N 2",
        "magnitudes: G, BP, RP, parallax (Fig. 6)",
        {"model": {"phot_input": "magnitudes"}},
        reuse=("tsne", "benchmarks"),
    ),
    "parallax_withheld": Run(
        "parallax withheld below a parallax S/N (model.phot_input: intrinsic_withheld, "
        "model.training.withhold_parallax_*)",
        "below S/N 2; a fifth of the training stars per batch at random",
        "every parallax used (Sect. 3.1; here: intrinsic)",
        {"model": {"phot_input": "intrinsic"}},
        reuse=("tsne", "benchmarks"),
    ),
    "paper": Run(
        "all of config/variants/paper.yaml (at the demo's 2 x 2 members)",
        "",
        "",
        {"ensemble": {"n_splits": 2, "n_seeds": 2}},
        reuse=("tsne", "benchmarks"),
        remake=TSNE_CLASSIFICATION,
        configfiles=("config/variants/paper.yaml",),
    ),
    "max_epochs": Run(
        "cap on the epochs (model.training.max_epochs)",
        "60",
        "not stated; minimum typically after 80 epochs (Sect. 3.2): 150",
        {"model": {"training": {"max_epochs": 150}}},
        reuse=("tsne", "benchmarks"),
    ),
}


def make(name: str, workdir: Path, cores: int) -> float:
    """Make run ``name`` in ``workdir/name`` (reusing ``workdir/default``); its wall [s]."""
    run, work = RUNS[name], workdir / name
    if name != "default" and not done(work, TARGETS):
        source = workdir / "default"
        seed_from(work, source, INPUT_STAGES)
        # the benchmark files of the stages made again are overwritten by their rules
        seed_from(work, source, run.reuse, ignore=run.remake)
    files = [REPO / f for f in run.configfiles]
    return run_workflow(work, TARGETS, files, run.overlay, cores)


def job_times(work: Path) -> dict[str, float]:
    """The wall times [s] of the run's jobs from the rules' ``benchmark:`` files: all of
    them, and the training of the members."""
    total = train = 0.0
    for path in (work / "results" / "benchmarks").glob("*.tsv"):
        with path.open() as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        s = sum(float(r["s"]) for r in rows)
        total += s
        train += s if path.name.startswith("train_member") else 0.0
    return {"jobs_s": total, "training_s": train}


def training_dispersion(work: Path) -> dict[str, float]:
    """Standard deviation of CNN - reference label over the run's training stars (the
    paper's headline figure, Sect. 3.3), per label [K, dex]."""
    cat = read_fits_columns(work / "results/ensemble/labels.fits", ["source_id", *LABELS])
    with h5py.File(work / "results/arrays/training.h5", "r") as h5:
        sid = h5["source_id"][:]
        ref = {x: h5[f"labels/{x}"][:] for x in LABELS}
    idx = pd.Index(cat["source_id"].to_numpy()).get_indexer(sid)
    out = {}
    for x in LABELS:
        d = cat[x].to_numpy(float)[idx] - ref[x]
        out[x] = float(np.nanstd(d, ddof=1))
    return out


def collect(name: str, work: Path) -> dict:
    """The run's figures (see the module's docstring)."""
    prec = pd.read_csv(work / "results/evaluation/precision.tsv", sep="\t")
    sel = prec[(prec["sample"] == "observed_in_range") & (prec["snr_min"] == SNR_BIN[0])]
    sel = sel.set_index("label").loc[list(LABELS)]
    conf = pd.read_csv(work / "results/evaluation/tsne_confusion.tsv", sep="\t")
    conf = conf.set_index("population")
    commit, wall = made_by(work)
    return {
        "commit": commit,
        "wall_s": wall,
        **job_times(work),
        "n_stars": int(sel["n"].iloc[0]),
        "ratio_to_crlb": sel["ratio_to_crlb"].to_dict(),
        "coverage_1sigma": sel["coverage_1sigma"].to_dict(),
        "dispersion": sel["dispersion"].to_dict(),
        "training_dispersion": training_dispersion(work),
        "flag_recall": float(conf.loc["ALL ob_star+m_giant", "fraction_any_1"]),
        "tsne_recall": float(conf.loc["ALL ob_star+m_giant", "fraction_tsne_1"]),
        "flag_rate_training_populations": float(
            conf.loc["ALL training populations", "fraction_any_1"]
        ),
        "tsne_rate_training_populations": float(
            conf.loc["ALL training populations", "fraction_tsne_1"]
        ),
        "n_unlike": int(conf.loc["ALL ob_star+m_giant", "n"]),
    }


#: how each label's dispersion is written [K, dex]
LABEL_FMT = {"teff": ".0f", "logg": ".3f", "m_h": ".3f", "alpha_m": ".3f", "fe_h": ".3f"}


#: the paper's dispersions as it writes them (Sect. 3.3)
PAPER_FMT = {"teff": ".0f", "logg": ".2f", "m_h": ".2f", "alpha_m": ".2f", "fe_h": ".2f"}


def _labels(values: dict[str, float], fmt: str | dict[str, str]) -> str:
    """``a / b / c / d / e``: the labels' values in :data:`LABELS` order."""
    fmts = fmt if isinstance(fmt, dict) else dict.fromkeys(LABELS, fmt)
    return " / ".join(format(values[x], fmts[x]) for x in LABELS)


def report(results: dict[str, dict], spread: pd.DataFrame, commit: str) -> str:
    """The markdown table of the runs, with the notes that read it."""
    made = sorted({r["commit"] for r in results.values()})
    base = results["default"]
    out = [
        f"Measured with `benchmarks/paper_departures.py` (report at commit {commit}; runs "
        f"made at commit {', '.join(made)}), on the default demo survey, 2 cores. "
        f"Precision: the {base['n_stars']} observed stars truly inside the training range "
        f"at S/N {SNR_BIN[0]:g}–{SNR_BIN[1]:g}, per label Teff / log g / [M/H] / [α/M] / "
        "[Fe/H]. Flag: `flag_boundary` with any digit 1, on the "
        f"{base['n_unlike']} observed OB stars and M giants (unlike every training star; "
        "recall) and on the observed stars of the training populations. Job time: the sum "
        "of the rules' `benchmark:` wall times (training in brackets).",
        "",
        "| run: the default, but | default | paper | disp / CRLB | ±1σ coverage | flag recall "
        "| flagged, training populations (t-SNE digit) | job time [min] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        run = RUNS[name]
        title = {
            "default": "**the default** (config/config.yaml)",
            "paper": "**the paper** (config/variants/paper.yaml, 2 × 2 members)",
        }.get(name, run.setting)
        out.append(
            f"| {title} | {run.default} | {run.paper} | {_labels(r['ratio_to_crlb'], '.2f')} | "
            f"{_labels(r['coverage_1sigma'], '.2f')} | {r['flag_recall']:.3f} | "
            f"{r['flag_rate_training_populations']:.3f} ({r['tsne_rate_training_populations']:.3f})"
            f" | {r['jobs_s'] / 60:.1f} "
            f"({r['training_s'] / 60:.1f}) |"
        )
    per_member = base["training_s"] / 4 / 60
    out.append(
        "| ensemble size (ensemble.n_splits × n_seeds) | 2 × 2 (demo; config/gaia_dr3.yaml: "
        "7 × 4) | 7 × 4 (Sect. 3.2) | not run | not run | – | – | "
        f"training × 7: {per_member * 28:.0f} for 28 members ({per_member:.1f} each) |"
    )
    paper_run = results.get("paper")
    out += [
        "",
        "Dispersion of CNN − reference over the training stars (the paper's headline "
        "figure, Sect. 3.3; Teff / log g / [M/H] / [α/M] / [Fe/H]): the paper "
        + _labels(
            constants.PAPER_TRAINING_DISPERSION, {"teff": ".0f"} | dict.fromkeys(LABELS[1:], ".2f")
        )
        + f" on 44 780 stars; the demo's default {_labels(base['training_dispersion'], LABEL_FMT)}"
        + (
            f", the paper preset {_labels(paper_run['training_dispersion'], LABEL_FMT)}"
            if paper_run
            else ""
        )
        + ".",
    ]
    sp = spread.set_index("label").loc[list(LABELS)]
    ratio = sp["ensemble_spread"] / pd.Series(base["dispersion"]).loc[list(LABELS)]
    out += [
        "",
        "Run-to-run spread (from the default's members: their dispersions' standard "
        "deviation over √members, relative to the ensemble's dispersion): "
        + " / ".join(f"{v:.1%}" for v in ratio.to_numpy())
        + ". Differences in disp / CRLB smaller than about twice that are noise.",
    ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "out" / "paper")
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="JSON of the results")
    args = parser.parse_args(argv)

    names = ["default", *[n for n in RUNS if n in args.runs and n != "default"]]
    results = {}
    for name in names:
        wall = make(name, args.workdir, args.cores)
        results[name] = collect(name, args.workdir / name)
        print(f"{name}: {wall / 60:.1f} min", file=sys.stderr)
    spread = member_spread(args.workdir / "default", LABELS, SNR_BIN)
    commit = head_commit()
    print(report(results, spread, commit), end="")
    if args.out:
        doc = {
            "commit": commit,
            "runs": results,
            "member_spread": spread.to_dict("records"),
            "settings": {n: {"overlay": RUNS[n].overlay} for n in results},
        }
        args.out.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
