"""Command line: ``gaiacnn validate FILE...`` and ``gaiacnn summary FILE...``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gaiacnn.layout import LayoutError, validate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gaiacnn",
        description="Tools around the Gaia-RVS hybrid-CNN workflow's HDF5 layout. "
        "The workflow itself runs with snakemake (see README).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    val = sub.add_parser("validate", help="check files against the HDF5 interchange layout")
    val.add_argument("files", nargs="+", type=Path)
    val.add_argument("--labels", default="", help="comma-separated labels the file must hold")
    val.add_argument(
        "--finite",
        action="store_true",
        help="also require finite model inputs and parallax > 0 (the state after the arrays stage)",
    )
    summ = sub.add_parser("summary", help="N, branches and labels of layout files")
    summ.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)

    status = 0
    for path in args.files:
        try:
            if args.command == "validate":
                labels = [x for x in args.labels.split(",") if x] or False
                info = validate(path, require_labels=labels, require_finite_inputs=args.finite)
                print(
                    f"{path}: ok, {info.n_rows} rows, branches "
                    f"{','.join(info.branches) or 'none'}, labels {','.join(info.labels) or '-'}"
                )
            else:
                info = validate(path, check_values=False)
                print(
                    f"{path}\t{info.n_rows}\t{','.join(info.branches)}\t"
                    f"{','.join(info.labels) or '-'}"
                )
        except LayoutError as err:
            print(f"error: {err}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
