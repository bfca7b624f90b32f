#!/usr/bin/env python
"""benchmarks/results.csv: every benchmark's measurements, one row each.

Columns: ``date`` (UTC, ISO 8601), ``commit`` (short hash, ``+dirty`` when the tree had
changes), ``cores`` and ``cpu`` (the machine), ``benchmark`` (the script's name),
``parameters`` (JSON, keys sorted: what was measured with what), ``figure`` (what was
measured), ``value`` and ``unit``.  The benchmarks append to it (:func:`append`); the
README's performance table is printed from it::

    .venv/bin/python benchmarks/results.py table                 # every benchmark
    .venv/bin/python benchmarks/results.py table --benchmark predict_speed

``table`` keeps the newest row of each (benchmark, parameters, figure), where parameters
that only say under what it ran (the machine's load, ``machine.*``) do not count, and names
the machine and commit of each benchmark's rows.  Not a test: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results.csv"
COLUMNS = ("date", "commit", "cores", "cpu", "benchmark", "parameters", "figure", "value", "unit")


def head_commit() -> str:
    """The repository's short HEAD commit (with ``+dirty`` when the tree has changes other
    than the rows the benchmarks appended to results.csv)."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        [
            "git",
            "-C",
            str(REPO),
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            f":!{RESULTS.relative_to(REPO)}",
        ],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return commit + ("+dirty" if dirty else "")


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo; ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cores() -> int:
    """CPU cores this process may run on (the affinity mask: a container's or a job's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def append(
    benchmark: str,
    parameters: Mapping,
    figures: Iterable[tuple[str, float, str]],
    path: Path = RESULTS,
    *,
    measured: Mapping | None = None,
) -> int:
    """Append one row per ``(figure, value, unit)`` of ``figures``, measured with
    ``parameters``, to ``path`` (its header written when it is new); return the rows
    written.  ``measured`` overrides the date, commit, cores and cpu of this run and
    machine (rows of an earlier measurement)."""
    stamp = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    common = {
        "date": stamp,
        "commit": head_commit(),
        "cores": cores(),
        "cpu": cpu_model(),
        **(measured or {}),
        "benchmark": benchmark,
        "parameters": json.dumps(dict(parameters), sort_keys=True),
    }
    rows = [{**common, "figure": f, "value": f"{float(v):.6g}", "unit": u} for f, v, u in figures]
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        if new:
            writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def _unit(key: str) -> str:
    """A figure's unit from its name's ending (``_s``, ``_min``, ``_mib``, ``_ms``)."""
    for end, unit in (("_s", "s"), ("_min", "min"), ("_mib", "MiB"), ("_ms", "ms")):
        if key.endswith(end):
            return unit
    return ""


def flatten(doc: Mapping, prefix: str = "") -> tuple[dict, list[tuple[str, float, str]]]:
    """A benchmark's nested results as (parameters, figures): every number a figure named
    by its path (``perplexities.30.joint_s``; list items by their index), every text or
    true/false a parameter."""
    params: dict = {}
    figures: list[tuple[str, float, str]] = []

    def walk(value, path: str) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                walk(v, f"{path}.{i}")
        elif isinstance(value, bool) or isinstance(value, str) or value is None:
            params[path] = value
        elif isinstance(value, int | float):
            figures.append((path, float(value), _unit(path.rsplit(".", 1)[-1])))

    walk(doc, prefix)
    return params, figures


#: Top-level keys of a benchmark's results that hold its settings, not what it measured.
SETTINGS_KEYS = ("tsne", "config", "machine")


def append_results(benchmark: str, parameters: Mapping, doc: Mapping, **kw) -> int:
    """:func:`append` every number of ``doc`` (a benchmark's results: :func:`flatten`),
    its text values and its :data:`SETTINGS_KEYS` added to ``parameters``."""
    settings = {k: v for k, v in doc.items() if k in SETTINGS_KEYS}
    texts, figures = flatten({k: v for k, v in doc.items() if k not in SETTINGS_KEYS})
    flat_settings = dict(flatten(settings)[0])
    flat_settings |= {name: value for name, value, _ in flatten(settings)[1]}
    return append(benchmark, {**parameters, **flat_settings, **texts}, figures, **kw)


def record(benchmark: str, args, doc: Mapping, path: Path = RESULTS) -> None:
    """What a benchmark's ``main`` ends with: unless ``args.no_record``, its results ``doc``
    appended (:func:`append_results`) with its command-line ``args`` (an argparse
    namespace, less ``json`` and ``no_record``) as the parameters."""
    if getattr(args, "no_record", False):
        return
    run = {k: v for k, v in vars(args).items() if k not in ("json", "no_record")}
    run = json.loads(json.dumps(run, default=str))  # paths as text
    k = append_results(benchmark, run, doc, path=path)
    print(f"{k} rows appended to {path}", file=sys.stderr)


def import_json(path: Path, results_path: Path = RESULTS) -> int:
    """Rows for a results JSON that a benchmark wrote before results.csv existed, named
    ``<benchmark>_n<stars>[_<run>].json``: its numbers as figures, the rest of its name as
    the parameter ``run``, date and commit those of the commit that added the file,
    machine unknown (these runs did not record it); return the rows written."""
    import re

    m = re.fullmatch(r"(?P<bench>[a-z_]+?)_(?P<run>n\d+.*)", path.stem)
    if m is None:
        raise ValueError(f"{path.name}: not <benchmark>_n<stars>[_<run>].json")
    log = subprocess.run(
        ["git", "-C", str(REPO), "log", "--diff-filter=A", "--format=%h %cI", "--", str(path)],
        capture_output=True,
        text=True,
    ).stdout.split()
    commit, date = (log[-2], log[-1]) if len(log) >= 2 else ("unknown", "unknown")
    doc = json.loads(path.read_text())
    measured = {"date": date, "commit": commit, "cores": "unknown", "cpu": "unknown"}
    return append_results(m["bench"], {"run": m["run"]}, doc, path=results_path, measured=measured)


def read(path: Path = RESULTS) -> list[dict]:
    """The rows of ``path`` (a missing file: none); a file with other columns is refused."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(f"{path}: columns {reader.fieldnames}, expected {list(COLUMNS)}")
        return list(reader)


def latest(
    rows: list[dict],
    benchmarks: Iterable[str] | None = None,
    match: Iterable[str] | None = None,
) -> list[dict]:
    """The newest row of each (benchmark, parameters, figure), in the order first seen;
    only of ``benchmarks`` and of figures containing one of ``match``, if given."""
    keep = set(benchmarks) if benchmarks else None
    words = list(match or [])
    out: dict[tuple, dict] = {}
    for r in rows:
        if keep is not None and r["benchmark"] not in keep:
            continue
        if words and not any(w in r["figure"] for w in words):
            continue
        key = (r["benchmark"], _defining(r["parameters"]), r["figure"])
        if key not in out or r["date"] >= out[key]["date"]:
            out[key] = r
    return list(out.values())


#: Parameters that say under what a measurement ran, not what was measured: a newer row
#: that differs from an older one only in these supersedes it.
CONTEXT_PARAMS = ("loadavg_1min_at_start", "file")
CONTEXT_PREFIXES = ("machine.",)


def _defining(text: str) -> str:
    """The parameters (JSON) less :data:`CONTEXT_PARAMS` and ``machine.*``."""
    doc = json.loads(text)
    return json.dumps(
        {
            k: v
            for k, v in doc.items()
            if k not in CONTEXT_PARAMS and not k.startswith(CONTEXT_PREFIXES)
        },
        sort_keys=True,
    )


def _params(text: str) -> str:
    return ", ".join(f"{k} {v}" for k, v in json.loads(text).items()) or "defaults"


def _value(v: float) -> str:
    """1 234 567 (thin groups) from 1000 up, else 3 significant digits."""
    return f"{v:,.0f}".replace(",", " ") if abs(v) >= 1000 else f"{v:.3g}"


def table(rows: list[dict]) -> str:
    """A markdown table of ``rows``: per benchmark and parameters a heading row (the
    parameters that define the measurement, the machine and the commit), then each figure,
    value and unit; and a line naming the commits, machines and dates they were measured
    on."""
    lines = ["| figure | value | unit |", "|---|---:|---|"]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:  # each benchmark's rows together, its groups in the order first seen
        groups.setdefault((r["benchmark"], r["parameters"]), []).append(r)
    order = list(dict.fromkeys(r["benchmark"] for r in rows))
    for (bench, params), members in sorted(groups.items(), key=lambda g: order.index(g[0][0])):
        r = members[0]
        where = f"{r['cpu']}, {r['cores']} cores, {r['commit']}"
        lines.append(f"| **{bench}** ({_params(_defining(params))}; {where}) | | |")
        for r in members:
            figure = r["figure"].replace("|", "\\|")  # a pipe would end the cell
            lines.append(f"| {figure} | {_value(float(r['value']))} | {r['unit']} |")
    commits = sorted({r["commit"] for r in rows})
    machines = sorted({f"{r['cpu']}, {r['cores']} cores" for r in rows})
    dates = sorted(r["date"][:10] for r in rows)
    span = f"{dates[0]} to {dates[-1]}" if dates else "no rows"
    lines += [
        "",
        f"From benchmarks/results.csv: commit {', '.join(commits) or '-'}; "
        f"{'; '.join(machines) or '-'}; {span}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("table", help="print the newest figures as a markdown table")
    t.add_argument("--benchmark", nargs="+", help="only these benchmarks")
    t.add_argument("--match", nargs="+", help="only figures containing one of these")
    t.add_argument("--file", type=Path, default=RESULTS)
    i = sub.add_parser("import-json", help="append the figures of older results JSON files")
    i.add_argument("json", type=Path, nargs="+")
    i.add_argument("--file", type=Path, default=RESULTS)
    a = p.parse_args(argv)
    if a.command == "import-json":
        for path in a.json:
            print(f"{path.name}: {import_json(path, a.file)} rows", file=sys.stderr)
        return 0
    rows = latest(read(a.file), a.benchmark, a.match)
    sys.stdout.write(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
