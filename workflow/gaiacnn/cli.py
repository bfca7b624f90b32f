"""Command line: ``gaiacnn validate FILE...``, ``gaiacnn summary FILE...``,
``gaiacnn export -o BUNDLE`` and ``gaiacnn predict BUNDLE OBSERVED.h5 -o CATALOGUE.fits``.

``validate`` checks a file against the HDF5 interchange layout and counts the rows the
workflow's import will cut (the same function counts both); ``summary`` lists every
dataset of a file and what the workflow does with it, or why it ignores it; ``export``
writes a finished run's trained ensemble as one bundle directory to share, and
``predict`` applies a bundle to any observed file (:mod:`gaiacnn.bundle`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from gaiacnn.constants import training_cuts
from gaiacnn.layout import PHOT_INPUTS, LayoutError, dataset_usage, validate
from gaiacnn.selection import FILE_CUT_MODES


def _config_settings(path: Path | None) -> dict:
    """selection.training, data.files_cuts and model.* from a workflow config file (keys
    not set there keep the workflow's defaults)."""
    out = {"training": training_cuts(), "cuts": "apply", "model": {}}
    if path is None:
        return out
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out["training"].update((doc.get("selection") or {}).get("training") or {})
    out["cuts"] = (doc.get("data") or {}).get("files_cuts", "apply")
    out["model"] = doc.get("model") or {}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gaiacnn",
        description="Tools around the Gaia-RVS hybrid-CNN workflow's HDF5 layout. "
        "The workflow itself runs with snakemake (see README).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    val = sub.add_parser(
        "validate",
        help="check files against the HDF5 interchange layout; count the rows the import cuts",
    )
    val.add_argument("files", nargs="+", type=Path)
    val.add_argument("--labels", default="", help="comma-separated labels the file must hold")
    val.add_argument(
        "--finite",
        action="store_true",
        help="also require finite model inputs and parallax > 0 (the state after the arrays stage)",
    )
    val.add_argument(
        "--sample",
        choices=("training", "observed"),
        default="observed",
        help="the file's sample: the training file also gets the training cuts (Sect. 2.5)",
    )
    val.add_argument(
        "--cuts",
        choices=FILE_CUT_MODES,
        default=None,
        help="apply: count the rows the per-star cuts remove (the workflow's default); "
        "refuse: such a row refuses the file (data.files_cuts)",
    )
    val.add_argument(
        "--config",
        type=Path,
        default=None,
        help="a workflow config file whose selection.training and data.files_cuts to use",
    )
    summ = sub.add_parser(
        "summary", help="N, branches and labels of layout files, and what each dataset is for"
    )
    summ.add_argument("files", nargs="+", type=Path)
    summ.add_argument(
        "--sample",
        choices=("training", "observed"),
        default=None,
        help="default: training if the file has labels, else observed",
    )
    summ.add_argument(
        "--branches",
        default="",
        help="model.branches, comma-separated (default: every branch the file can feed)",
    )
    summ.add_argument("--xp-input", default="auto", choices=("auto", "coefficients", "sampled"))
    summ.add_argument(
        "--phot-input",
        default="intrinsic_withheld",
        choices=PHOT_INPUTS,
        help="model.phot_input (intrinsic_with_error and intrinsic_withheld also read "
        "astrometry/parallax_error)",
    )
    summ.add_argument(
        "--labels",
        default="",
        help="model.labels, comma-separated (default: every label of the file)",
    )
    exp = sub.add_parser(
        "export", help="write a finished run's trained ensemble as one bundle directory"
    )
    exp.add_argument("-o", "--output", type=Path, required=True, help="the bundle directory")
    exp.add_argument("--results", type=Path, default=Path("results"), help="the run's results")
    exp.add_argument(
        "--config", type=Path, default=Path("config/config.yaml"), help="the run's config file"
    )
    pred = sub.add_parser(
        "predict",
        help="the catalogue of an observed file from a bundle (labels, e_*, sigma_*, flags)",
    )
    pred.add_argument("bundle", type=Path)
    pred.add_argument("observed", type=Path, help="an observed file in the HDF5 layout")
    pred.add_argument("-o", "--output", type=Path, required=True, help="catalogue FITS")
    pred.add_argument("--csv", type=Path, default=None, help="also write the catalogue as CSV")
    pred.add_argument(
        "--parquet", type=Path, default=None,
        help="the catalogue as Parquet too (default: beside the FITS file, .parquet)",
    )  # fmt: skip
    pred.add_argument("--no-parquet", action="store_true", help="no Parquet file")
    pred.add_argument("--workers", type=int, default=1, help="processes for the network")
    pred.add_argument(
        "--shard",
        default=None,
        help="a/b: only rows a*N//b .. (a+1)*N//b, shard a (0-based) of b near-equal ranges",
    )
    pred.add_argument(
        "--precision", default="float32", choices=("float32", "mixed_bfloat16"),
        help="the network's arithmetic (config prediction.precision)",
    )  # fmt: skip
    pred.add_argument(
        "--resample", action="store_true",
        help="interpolate spectra on another grid that covers the members' (else refused)",
    )  # fmt: skip
    dm = sub.add_parser(
        "datamodel",
        help="the catalogue's data model (docs/catalogue.md), generated from the code",
    )
    dm.add_argument("-o", "--output", type=Path, default=None, help="write it here (else stdout)")
    args = parser.parse_args(argv)
    if args.command in ("export", "predict"):
        return _bundle_command(args)
    if args.command == "datamodel":
        from gaiacnn import datamodel
        from gaiacnn.io import write_text_atomic

        text = datamodel.render()
        if args.output is None:
            sys.stdout.write(text)
        else:
            write_text_atomic(args.output, text)
        return 0

    status = 0
    for path in args.files:
        try:
            if args.command == "validate":
                settings = _config_settings(args.config)
                cuts = args.cuts or settings["cuts"]
                labels = [x for x in args.labels.split(",") if x] or False
                info = validate(
                    path,
                    require_labels=labels,
                    require_finite_inputs=args.finite,
                    sample=args.sample,
                    training_cuts=settings["training"],
                    cuts=cuts,
                )
                removed = sum(n for _, _, n in info.cuts)
                print(
                    f"{path}: ok, {info.n_rows} rows, branches "
                    f"{','.join(info.branches) or 'none'} (XP: {','.join(info.xp_inputs) or '-'})"
                    f", labels {','.join(info.labels) or '-'}; the import keeps "
                    f"{info.n_rows - removed} ({args.sample} cuts)"
                )
                for cut, rule, n in info.cuts:
                    print(f"  cut {cut:<24} removes {n:>8}  ({rule})")
            else:
                info = validate(path, check_values=False)
                sample = args.sample or ("training" if info.labels else "observed")
                print(
                    f"{path}\t{info.n_rows}\t{','.join(info.branches)}\t"
                    f"{','.join(info.labels) or '-'}\t{sample}"
                )
                for dataset, use in dataset_usage(
                    path,
                    sample=sample,
                    branches=[b for b in args.branches.split(",") if b],
                    xp_input=args.xp_input,
                    phot_input=args.phot_input,
                    labels=[x for x in args.labels.split(",") if x],
                ):
                    print(f"  {dataset:<28} {use}")
        except LayoutError as err:
            print(f"error: {err}", file=sys.stderr)
            status = 1
    return status


def _bundle_command(args) -> int:
    """``gaiacnn export`` and ``gaiacnn predict``: one error line on a refused input."""
    import logging
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    from gaiacnn import bundle
    from gaiacnn.io import UnreadableResult

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        if args.command == "export":
            b = bundle.export_results(args.results, args.config, args.output)
            print(f"{b.path}: {len(b.members)} members, labels {','.join(b.labels)}; "
                  f"model card {b.path / bundle.MODEL_CARD_FILE}")  # fmt: skip
            return 0
        shard = None
        if args.shard:
            a, sep, b_ = args.shard.partition("/")
            if not sep or not a.isdigit() or not b_.isdigit():
                raise ValueError(f"--shard {args.shard!r}: a/b, e.g. 0/4")
            shard = (int(a), int(b_))
        out = bundle.predict(
            args.bundle, args.observed, args.output, csv_out=args.csv, workers=args.workers,
            parquet_out=None if args.no_parquet else (
                args.parquet or args.output.with_suffix(".parquet")),
            shard=shard, settings={"precision": args.precision, "resample": args.resample},
        )  # fmt: skip
        print(f"{args.output}: {out['stars']} stars (rows {out['rows'][0]}..{out['rows'][1]})")
        return 0
    except (bundle.BundleError, LayoutError, UnreadableResult, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
