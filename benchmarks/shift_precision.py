#!/usr/bin/env python
"""Benchmark: labels and uncertainties when the observed stars differ from the training
stars (docs/shift.md).

Runs the workflow on the default demo survey (config/config.yaml: 20 000 stars, 2 x 2
members) unshifted and with the shifted observed fields of config/variants/shift_*.yaml
(10 000 more stars, twice as far; also redder and with worse parallaxes), each with the
model choices of every *method*: ``before`` (the paper's photometry input G, BP, RP,
parallax), ``after`` (today's defaults: the distance-free photometry input with the
parallax withheld below a parallax S/N of 2, sigma calibrated against the input-space
distance too), and the choices around it one by one (``no_withholding``: every parallax
used, the default before; ``withheld_below5``: withheld below 5; ``min_per_bin_50``:
after's members, calibration bins of 50 stars; ``parallax_augment``: no_withholding with
the parallax augmentation of half the training stars per epoch; ``parallax_augment_all``:
of every training star; ``no_input_calibration``: after's members, sigma calibrated
against the S/N only; ``xp_augment``: with the XP noise augmentation; ``with_error``:
with the error of 10^(0.2 M_G) as an input; METHODS has them all).  ``before`` has the
S/N calibration only, as before the change.  Each run goes up to the
labels and the evaluation tables (``results/evaluation/shift.tsv``: the t-SNE and
figures are not needed); the demo survey and samples are made once per case and reused
by its methods.

Printed, per case and method, for the observed stars truly inside the training range
(``shifted`` = the extra field, ``observed`` = the ordinary stars): the bias of every
label per A0 bin; the dispersion over the Cramér–Rao bound at S/N 15-25 and >= 75; the
+-1 sigma coverage per label at S/N 15-25 and over all S/N (of the shifted stars also by
flag digit 9 and by whether their parallax is withheld); log g's bias and dispersion
against distance and parallax S/N; and the input-space flag digit (gaiacnn.flags) against
the > 3 sigma log g errors (recall) and on the good stars (false flags).

Run on demand (about 12 min per case and method on 2 cores)::

    .venv/bin/python benchmarks/shift_precision.py --workdir /tmp/shift \\
        --cases far --methods before after no_input_calibration parallax_augment \\
        parallax_augment_all
    .venv/bin/python benchmarks/shift_precision.py --workdir /tmp/shift \\
        --report-only --out benchmarks/measured/shift_precision.json

It is not a test: the numbers are one training's (``after_seed1`` gives a second).
Existing runs in --workdir are reused; ``--repredict`` keeps their trained members and makes
the predictions and the rest again (run the methods that reuse them, ``SAME_MEMBERS``,
first: they copy the predictions as they are).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import yaml
from snakemake.utils import update_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
# demo_runs also puts the package (workflow/) on the path
from demo_runs import (
    REPO,
    done,
    head_commit,
    made_by,
    member_spread,
    run_workflow,
    seed_from,
)

from gaiacnn import ensemble, evaluation, flags
from gaiacnn.tables import read_fits_columns

#: case -> its variant file (None: the ordinary demo)
CASES = {
    "unshifted": None,
    "far": "config/variants/shift_far.yaml",
    "far_reddened": "config/variants/shift_far_reddened.yaml",
}
#: The default before the parallax was withheld: every parallax used, and the S/N
#: calibration's bins of 50 stars (the methods measured then add it to their overlay, so
#: that each still names the settings its runs were made with).
NO_WITHHOLDING = {
    "model": {"phot_input": "intrinsic"},
    "uncertainty": {"snr_calibration_min_per_bin": 50},
}


def _then(*overlays: dict) -> dict:
    """``overlays`` merged into a new dict, as Snakemake merges config files (later ones
    win, nested keys merged)."""
    out: dict = {}
    for o in overlays:
        update_config(out, o)
    return out


#: method -> config overlay (the model choices measured)
METHODS = {
    "before": {
        "model": {"phot_input": "magnitudes"},
        "uncertainty": {"input_distance_calibration_bins": 0, "snr_calibration_min_per_bin": 50},
    },
    "after": {},
    # after, trained again with other seeds: how far two trainings differ
    "after_seed1": {"model": {"training": {"base_seed": 1}}},
    # the choices inside "after", measured one by one
    # after's members, sigma calibrated against the S/N only
    "no_input_calibration": {"uncertainty": {"input_distance_calibration_bins": 0}},
    # after's members, the S/N calibration's bins of 50 stars (the default before)
    "min_per_bin_50": {"uncertainty": {"snr_calibration_min_per_bin": 50}},
    "min_per_bin_50_seed1": {
        "model": {"training": {"base_seed": 1}},
        "uncertainty": {"snr_calibration_min_per_bin": 50},
    },
    # after's members and predictions, without the spread under the input noise in sigma
    # (the default before uncertainty.input_noise)
    "no_input_noise": {"uncertainty": {"input_noise": []}},
    "no_input_noise_seed1": {
        "model": {"training": {"base_seed": 1}},
        "uncertainty": {"input_noise": []},
    },
    # after's members, predicted again with the XP coefficients' noise drawn too
    "input_noise_xp": {"uncertainty": {"input_noise": ["parallax", "xp"]}},
    "input_noise_xp_seed1": {
        "model": {"training": {"base_seed": 1}},
        "uncertainty": {"input_noise": ["parallax", "xp"]},
    },
    # after's members, each calibration bin's factor the 84 % upper bound on its quantile
    "confidence84": {"uncertainty": {"calibration_confidence": 0.84}},
    "confidence84_seed1": {
        "model": {"training": {"base_seed": 1}},
        "uncertainty": {"calibration_confidence": 0.84},
    },
    # every parallax used (the default before), once per seed
    "no_withholding": NO_WITHHOLDING,
    "no_withholding_seed1": _then(NO_WITHHOLDING, {"model": {"training": {"base_seed": 1}}}),
    # withheld below the training sample's parallax S/N cut (5) rather than 2
    # after, with a tenth of the training stars per batch withheld instead of a fifth
    "withheld_tenth": {"model": {"training": {"withhold_parallax_fraction": 0.1}}},
    "withheld_tenth_seed1": {
        "model": {"training": {"withhold_parallax_fraction": 0.1, "base_seed": 1}}
    },
    "withheld_below5": _then(
        {"model": {"training": {"withhold_parallax_below_snr": 5.0}}},
        {"uncertainty": {"snr_calibration_min_per_bin": 50}},
    ),
    # no_withholding, with the parallax augmentation of half the training stars per epoch
    # (the default until it was found to bias the faint stars' log g), once per seed, and of
    # all
    "parallax_augment": _then(
        NO_WITHHOLDING, {"model": {"training": {"augment_parallax_snr_min": 1.0}}}
    ),
    "parallax_augment_seed1": _then(
        NO_WITHHOLDING,
        {"model": {"training": {"augment_parallax_snr_min": 1.0, "base_seed": 1}}},
    ),
    "parallax_augment_all": _then(
        NO_WITHHOLDING,
        {
            "model": {
                "training": {"augment_parallax_snr_min": 1.0, "augment_parallax_fraction": 1.0}
            }
        },
    ),
    # gentler parallax augmentations: parallax S/N down to 3 only, or a fifth of the stars
    "parallax_augment_floor3": _then(
        NO_WITHHOLDING, {"model": {"training": {"augment_parallax_snr_min": 3.0}}}
    ),
    "parallax_augment_fifth": _then(
        NO_WITHHOLDING,
        {
            "model": {
                "training": {"augment_parallax_snr_min": 1.0, "augment_parallax_fraction": 0.2}
            }
        },
    ),
    "parallax_augment_fifth_seed1": _then(
        NO_WITHHOLDING,
        {
            "model": {
                "training": {
                    "augment_parallax_snr_min": 1.0,
                    "augment_parallax_fraction": 0.2,
                    "base_seed": 1,
                }
            }
        },
    ),
    # no_withholding, with XP noise that follows the RVS augmentation (model.training.augment_xp)
    "xp_augment": _then(NO_WITHHOLDING, {"model": {"training": {"augment_xp": True}}}),
    # with the error of 10^(0.2 M_G) as a fourth photometry input (the default until the
    # error was found to tell the network how far a star is)
    "with_error": _then(NO_WITHHOLDING, {"model": {"phot_input": "intrinsic_with_error"}}),
}
#: methods that differ from another only after training: they reuse its members
SAME_MEMBERS = {
    "no_input_calibration": "after",
    "min_per_bin_50": "after",
    "min_per_bin_50_seed1": "after_seed1",
    "confidence84": "after",
    "confidence84_seed1": "after_seed1",
    "no_input_noise": "after",
    "no_input_noise_seed1": "after_seed1",
    "input_noise_xp": "after",
    "input_noise_xp_seed1": "after_seed1",
}
#: of those, the methods whose predictions are made again (another input noise drawn)
REPREDICT = {"input_noise_xp", "input_noise_xp_seed1"}
#: what --repredict removes from a run (the members stay): made again by the workflow
PREDICTED = ("results/ensemble/predictions", "results/ensemble/labels.fits",
             "results/ensemble/uncertainty_model.json", "results/evaluation")  # fmt: skip
TARGETS = ("results/evaluation/precision.tsv", "results/evaluation/shift.tsv")
LABELS = ("teff", "logg", "m_h", "alpha_m", "fe_h")


def run(work: Path, case: str, method: str, cores: int, reuse_from: Path | None) -> float:
    """Run one case x method in ``work`` up to the evaluation; return the wall time [s]
    (0 when an earlier run is reused)."""
    if done(work, TARGETS):
        return 0.0
    if method in SAME_MEMBERS:  # its source's survey too, so that nothing is trained again
        reuse_from = work.parent / f"{case}-{SAME_MEMBERS[method]}"
    if reuse_from is not None:
        seed_from(work, reuse_from, ("demo", "samples", "arrays"))
    if method in SAME_MEMBERS:
        source = work.parent / f"{case}-{SAME_MEMBERS[method]}"
        ignore = ["labels.fits", "uncertainty_model.json"]
        if method in REPREDICT:
            ignore.append("predictions")
        seed_from(work, source, ("ensemble",), ignore=ignore)
    files = [REPO / CASES[case]] if CASES[case] else []
    return run_workflow(work, TARGETS, files, METHODS[method], cores)


def input_digit(work: Path) -> pd.DataFrame:
    """The input-space digit of the run's observed stars (from its labels catalogue) against
    the > 3 sigma log g errors."""
    cat_path = work / "results/ensemble/labels.fits"
    flagged = flags.input_outside(read_fits_columns(cat_path, ["in_training", "input_distance"]))
    _, training_range = ensemble.read_uncertainty_model(
        work / "results/ensemble/uncertainty_model.json"
    )
    return evaluation.input_flag_table(
        cat_path, work / "results/demo/truth.h5", training_range, flagged=flagged
    )


def shift_rows(work: Path) -> pd.DataFrame:
    """The run's ``shift.tsv``, recomputed with today's :func:`gaiacnn.evaluation.shift_table`
    from its catalogue, truth and Gaia table (so that runs made before an axis was added
    have it too)."""
    r = work / "results"
    _, training_range = ensemble.read_uncertainty_model(r / "ensemble/uncertainty_model.json")
    member = sorted((r / "ensemble/predictions/observed").glob("*.h5"))[0]
    with h5py.File(member, "r") as h5:
        branches = json.loads(h5.attrs["branches"])
    snr_edges = yaml.safe_load((REPO / "config/config.yaml").read_text())["evaluation"]
    return evaluation.shift_table(
        r / "ensemble/labels.fits",
        r / "demo/truth.h5",
        r / "demo/gaia_source.fits",
        training_range,
        list(LABELS),
        branches,
        [*snr_edges["snr_edges"], float("inf")],
    )


def collect(work: Path, case: str, method: str, wall: float) -> dict:
    shift = shift_rows(work).assign(case=case, method=method)
    digit = input_digit(work).assign(case=case, method=method)
    commit, recorded = made_by(work)
    spread = member_spread(work, LABELS).assign(case=case, method=method)
    wall = wall or recorded
    return {
        "shift": shift,
        "digit": digit,
        "spread": spread,
        "wall_s": round(wall, 1),
        "commit": commit,
    }


def _cell(v: float, fmt: str) -> str:
    return "–" if not np.isfinite(v) else format(v, fmt)


def report(results: dict[tuple[str, str], dict], commit: str) -> str:
    shift = pd.concat([r["shift"] for r in results.values()], ignore_index=True)
    digit = pd.concat([r["digit"] for r in results.values()], ignore_index=True)
    group = np.where(shift["case"] == "unshifted", "observed", "shifted")
    sel = shift[shift["sample"] == pd.Series(group, index=shift.index)]
    made = sorted({r["commit"] for r in results.values()})
    out = [
        f"Measured with benchmarks/shift_precision.py (report at commit {commit}; runs made at "
        f"commit {', '.join(made)}).",
        "",
    ]
    fmts = {"teff": ".0f", "logg": ".3f", "m_h": ".3f", "alpha_m": ".3f", "fe_h": ".3f"}

    def binned_table(part: pd.DataFrame, heads: list[str], cell) -> list[str]:
        """Rows case | method | label | one cell per bin of ``part`` (``cell(row, label)``)."""
        edges = sorted(set(zip(part["lo"], part["hi"], strict=True)))
        lines = ["| case | method | label | " + " | ".join(heads) + " |",
                 "|---|---|---|" + "---|" * len(heads)]  # fmt: skip
        for (case, method), _ in results.items():
            for x in LABELS:
                rows = part[(part["case"] == case) & (part["method"] == method)
                            & (part["label"] == x)]  # fmt: skip
                cells = []
                for lo, hi in edges:
                    r = rows[(rows["lo"] == lo) & (rows["hi"] == hi)]
                    cells.append(cell(r.iloc[0], x) if len(r) else "–")
                lines.append(f"| {case} | {method} | {x} | " + " | ".join(cells) + " |")
        return lines

    def bin_heads(part: pd.DataFrame, name: str, above: str) -> list[str]:
        edges = sorted(set(zip(part["lo"], part["hi"], strict=True)))
        return [f"{name} {lo:g}–{hi:g}" if np.isfinite(hi) else f"{name} {above} {lo:g}"
                for lo, hi in edges]  # fmt: skip

    a0 = sel[sel["axis"] == "a0"]
    out += ["### Bias (CNN − truth) per A0 bin [K, dex], observed stars in the training range", ""]
    out += binned_table(
        a0,
        bin_heads(a0, "A0", ">"),
        lambda r, x: f"{_cell(r['bias'], fmts[x])} ({int(r['n'])})",
    )

    snr = sel[sel["axis"] == "snr"]
    out += ["", "### Dispersion / CRLB and ±1σ coverage per label", ""]
    out += ["| case | method | label | disp/CRLB S/N 15–25 | disp/CRLB S/N ≥ 75 | "
            "coverage S/N 15–25 | coverage S/N ≥ 75 | coverage, all S/N |"]  # fmt: skip
    out += ["|---|---|---|---|---|---|---|---|"]
    for (case, method), _ in results.items():
        for x in LABELS:
            rows = snr[(snr["case"] == case) & (snr["method"] == method) & (snr["label"] == x)]
            low = rows[rows["lo"] == 15.0]
            high = rows[rows["lo"] == 75.0]
            n = rows["n"].to_numpy(float)
            cov_all = float(np.nansum(rows["coverage_1sigma"] * n) / max(n.sum(), 1))
            out.append(
                f"| {case} | {method} | {x} | {_cell(low['ratio_to_crlb'].iloc[0], '.2f')} | "
                f"{_cell(high['ratio_to_crlb'].iloc[0], '.2f')} | "
                f"{_cell(low['coverage_1sigma'].iloc[0], '.3f')} | "
                f"{_cell(high['coverage_1sigma'].iloc[0], '.3f')} | {cov_all:.3f} |"
            )

    def coverage_cell(r: pd.Series, x: str) -> str:
        c = 100 * r["coverage_1sigma"]
        return f"**{_cell(c, '.1f')}**" if np.isfinite(c) and not 63 <= c <= 73 else _cell(c, ".1f")

    out += ["", "### ±1σ coverage [%] per S/N bin (outside 63–73 % in bold)", ""]
    out += binned_table(snr, bin_heads(snr, "S/N", "≥"), coverage_cell)

    names = {"distance_kpc": "distance [kpc]", "parallax_snr": "parallax S/N", "g_mag": "G [mag]"}
    for axis, name in names.items():
        part = sel[(sel["axis"] == axis) & (sel["label"] == "logg")]
        edges = sorted(set(zip(part["lo"], part["hi"], strict=True)))
        heads = [f"{lo:g}–{hi:g}" if np.isfinite(hi) else f"> {lo:g}" for lo, hi in edges]
        out += ["", f"### log g bias / dispersion [dex] against {name}", ""]
        out += ["| case | method | " + " | ".join(heads) + " |", "|---|---|" + "---|" * len(heads)]
        for (case, method), _ in results.items():
            rows = part[(part["case"] == case) & (part["method"] == method)]
            cells = []
            for lo, hi in edges:
                r = rows[(rows["lo"] == lo) & (rows["hi"] == hi)]
                cells.append(
                    f"{_cell(r['bias'].iloc[0], '+.3f')} / {_cell(r['dispersion'].iloc[0], '.3f')}"
                    f" ({int(r['n'].iloc[0])})"
                )
            out.append(f"| {case} | {method} | " + " | ".join(cells) + " |")

    low_snr = shift[(shift["axis"] == "snr") & (shift["lo"] == 15.0)]
    splits = {
        "by flag digit 9": ("digit 9", "shifted_inputs_", ("inside", "0"), ("outside", "1")),
        "parallax used or withheld": (
            "parallax",
            "shifted_parallax_",
            ("used", "used"),
            ("withheld", "withheld"),
        ),
    }
    for title, (column, prefix, *split) in splits.items():
        out += ["", f"### ±1σ coverage of the shifted stars at S/N 15–25, {title}", ""]
        out += [f"| case | method | {column} | n | " + " | ".join(LABELS) + " |"]
        out += ["|---|---|---|---|" + "---|" * len(LABELS)]
        for case, method in results:
            for sample, value in split:
                rows = low_snr[
                    (low_snr["case"] == case)
                    & (low_snr["method"] == method)
                    & (low_snr["sample"] == prefix + sample)
                ].set_index("label")
                if rows.empty or not rows["n"].max():
                    continue
                cells = [_cell(rows.loc[x, "coverage_1sigma"], ".3f") for x in LABELS]
                out.append(
                    f"| {case} | {method} | {value} | {int(rows['n'].max())} | "
                    + " | ".join(cells)
                    + " |"
                )

    out += ["", "### Input-space flag digit (digit 9) against |log g error| > 3σ", ""]
    out += ["| case | method | sample | n | flagged | > 3σ outliers | recall | false flags |"]
    out += ["|---|---|---|---|---|---|---|---|"]
    for r in digit.itertuples():
        out.append(
            f"| {r.case} | {r.method} | {r.sample} | {r.n} | {_cell(r.flagged_fraction, '.3f')} "
            f"| {r.outliers} | {_cell(r.recall, '.2f')} | {_cell(r.false_flag_fraction, '.3f')} |"
        )
    out += ["", "### Run-to-run spread, estimated from the members (observed stars in range, "
            "S/N 15–25)", ""]  # fmt: skip
    out += ["| case | method | label | member dispersions, mean ± std | spread of the "
            "ensemble (std / √members) |", "|---|---|---|---|---|"]  # fmt: skip
    fmts = {"teff": ".1f", "logg": ".4f", "m_h": ".4f", "alpha_m": ".4f", "fe_h": ".4f"}
    for (case, method), r in results.items():
        for row in r["spread"].set_index("label").loc[list(LABELS)].reset_index().itertuples():
            f = fmts[row.label]
            out.append(
                f"| {case} | {method} | {row.label} | {format(row.mean, f)} ± "
                f"{format(row.std, f)} | {format(row.ensemble_spread, f)} |"
            )
    walls = ", ".join(f"{c}/{m} {r['wall_s'] / 60:.1f} min" for (c, m), r in results.items())
    out += ["", f"Run wall times (Snakemake, all jobs up to the evaluation, 2 cores): {walls}."]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "out" / "shift")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="JSON of the results")
    parser.add_argument(
        "--report-existing",
        action="store_true",
        help="also report every other case x method already run in --workdir",
    )
    parser.add_argument(
        "--repredict",
        action="store_true",
        help="make the predictions and everything after them again with today's code and "
        "defaults, keeping each run's trained members (for a change that acts after training)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: report every case x method already run in --workdir",
    )
    args = parser.parse_args(argv)
    if args.report_only:
        args.cases, args.report_existing = [], True

    commit = head_commit()
    results: dict[tuple[str, str], dict] = {}
    for case in args.cases:
        first = None
        for method in args.methods:
            work = args.workdir / f"{case}-{method}"
            if args.repredict and method not in SAME_MEMBERS:
                for sub in PREDICTED:
                    target = work / sub
                    if target.is_dir():
                        shutil.rmtree(target)
                    elif target.exists():
                        target.unlink()
            wall = run(work, case, method, args.cores, first)
            first = first or work
            results[case, method] = collect(work, case, method, wall)
            print(f"{case}/{method}: {wall / 60:.1f} min", file=sys.stderr)
    if args.report_existing:
        for case in CASES:
            for method in METHODS:
                work = args.workdir / f"{case}-{method}"
                if (case, method) not in results and all((work / t).exists() for t in TARGETS):
                    results[case, method] = collect(work, case, method, 0.0)
    order = {c: i for i, c in enumerate(CASES)} | {m: i for i, m in enumerate(METHODS)}
    results = dict(sorted(results.items(), key=lambda kv: (order[kv[0][0]], order[kv[0][1]])))
    print(report(results, commit), end="")
    if args.out:
        doc = {
            "commit": commit,
            "runs_commit": {f"{c}/{m}": r["commit"] for (c, m), r in results.items()},
            "shift": pd.concat([r["shift"] for r in results.values()]).to_dict("records"),
            "input_digit": pd.concat([r["digit"] for r in results.values()]).to_dict("records"),
            "member_spread": pd.concat([r["spread"] for r in results.values()]).to_dict("records"),
            "wall_s": {f"{c}/{m}": r["wall_s"] for (c, m), r in results.items()},
        }
        args.out.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
