#!/usr/bin/env python
"""Benchmark: peak memory and wall time of rendering every figure for a large catalogue.

Scales a finished run (default: the demo's ``results/``) up to ``--rows`` catalogue rows:
the training stars as they are, and observed stars drawn with replacement from the run's
observed stars (labels jittered by their ``sigma_*``, new source ids), with matching
observed arrays (every scalar and XP dataset written; the flux dataset declared but left
unwritten, so the 2401-pixel spectra read back as the HDF5 fill value 1.0 instead of
taking 4 GB of disk per 400 000 rows) and t-SNE maps.  The ensemble members are the run's.
Then runs the workflow's ``run_figures`` in a fresh process and prints its wall time, its
peak RSS and the figures drawn; for two or more --rows, the ratio of the peak RSS between
the largest and the smallest and its straight-line projection to 10^8 rows, appended to
benchmarks/results.csv (about 11 GB of disk at 10^7 rows; each N's files are removed after
it)::

    .venv/bin/python benchmarks/figures_memory.py                  # 10^6 and 10^7 rows
    .venv/bin/python benchmarks/figures_memory.py --rows 100000 --no-record

Beyond ``figures.max_observed`` observed stars the figures read a random subsample of them
(and every star with a reference label), so the peak RSS stops growing there.

The truth file is not scaled (its figures are the demo's own, at the demo's size), so the
demo-only figures are not part of this measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "workflow"))

import results  # noqa: E402

#: Catalogue rows written per step while the scaled inputs are built.
BUILD_CHUNK = 500_000


def write_scaled_arrays(src: Path, out: Path, steps, picks, first_id: int) -> None:
    """An arrays file of ``src``'s rows ``picks`` (one array per row range ``steps``),
    written a step at a time: every scalar and XP dataset copied, new source ids from
    ``first_id`` on, the spectra (more than 1000 pixels) declared but left unwritten (they
    read back as the HDF5 fill value 1.0)."""
    with h5py.File(src, "r") as a, h5py.File(out, "w") as b:
        for k, v in a.attrs.items():
            b.attrs[k] = v
        datasets: list[tuple[str, h5py.Dataset]] = []
        a.visititems(
            lambda name, obj: (
                datasets.append((name, obj)) if isinstance(obj, h5py.Dataset) else None
            )
        )
        n = steps[-1][1] if steps else 0
        for name, obj in datasets:
            spectra = obj.ndim == 2 and obj.shape[1] > 1000  # declared, not written
            ds = b.create_dataset(
                name,
                shape=(n, *obj.shape[1:]),
                dtype=obj.dtype,
                chunks=(256, obj.shape[1]) if spectra else None,
                fillvalue=1.0 if spectra else None,
            )
            for k, v in obj.attrs.items():
                ds.attrs[k] = v
            if spectra:
                continue
            values = obj[:] if name != "source_id" else None
            for (lo, hi), pick in zip(steps, picks, strict=True):
                ds[lo:hi] = (
                    np.arange(lo, hi, dtype=np.int64) + first_id
                    if name == "source_id"
                    else values[pick]
                )


def scale_run(results: Path, out: Path, rows: int, seed: int = 0) -> dict:
    """Write the scaled catalogue, arrays and maps under ``out``, a chunk of observed
    stars at a time (memory independent of ``rows``); their paths.  The catalogue holds the
    training stars, then the observed ones in the order of the scaled observed arrays file,
    and the maps the same stars in the same order, as the workflow writes them."""
    from gaiacnn import catalogue, tsne

    rng = np.random.default_rng(seed)
    table, attrs = catalogue.read(results / "catalogue" / "catalogue.fits")
    tr = table[table["in_training"]].reset_index(drop=True)
    ob = table[~table["in_training"]].reset_index(drop=True)
    n_obs = max(1, rows - len(tr))
    out.mkdir(parents=True, exist_ok=True)
    paths = {"catalogue": out / "catalogue.fits", "observed": out / "observed.h5"}
    src = results / "arrays" / "observed.h5"
    with h5py.File(src, "r") as h5:
        src_rows = pd.Index(h5["source_id"][:]).get_indexer(ob["source_id"].to_numpy())
    steps = [(s, min(n_obs, s + BUILD_CHUNK)) for s in range(0, n_obs, BUILD_CHUNK)]
    picks = [rng.integers(0, len(ob), b - a) for a, b in steps]  # observed star per new row

    def catalogue_chunks():
        yield tr
        for (a, b), pick in zip(steps, picks, strict=True):
            big = ob.iloc[pick].reset_index(drop=True)
            for name in attrs["labels"]:
                jitter = rng.normal(0, 1, b - a) * big[f"sigma_{name}"].fillna(0)
                big[name] = big[name] + jitter
            big["source_id"] = np.arange(a, b, dtype=np.int64) + 9 * 10**17
            yield big

    catalogue.write_chunks(catalogue_chunks(), len(tr) + n_obs, paths["catalogue"], attrs={**attrs})
    # observed arrays: rows of the run's observed file, star by star as in the catalogue
    src_picks = [src_rows[pick] for pick in picks]
    write_scaled_arrays(src, paths["observed"], steps, src_picks, 9 * 10**17)
    maps = []
    for path in sorted((results / "tsne").glob("*/p*.h5")):
        with h5py.File(path, "r") as a:
            is_tr = a["in_training"][:]
            xy, like, sid = a["xy"][:], a["training_like"][:], a["source_id"][:]
            attrs_map = dict(a.attrs)
        # the map's observed stars in the order of the run's catalogue
        where = pd.Index(sid[~is_tr]).get_indexer(ob["source_id"].to_numpy())
        obs_xy, obs_like = xy[~is_tr][where], like[~is_tr][where]
        new = out / f"tsne_{path.parent.name}_{path.name}"
        n_tr = int(is_tr.sum())
        with tsne.map_writer(new, n_tr + n_obs, attrs_map) as write:
            write(0, {"source_id": sid[is_tr], "in_training": np.ones(n_tr, bool),
                      "xy": xy[is_tr], "nn_training_distance": np.zeros(n_tr),
                      "training_like": np.ones(n_tr, bool)})  # fmt: skip
            for (lo, hi), pick in zip(steps, picks, strict=True):
                write(n_tr + lo, {
                    "source_id": np.arange(lo, hi, dtype=np.int64) + 9 * 10**17,
                    "in_training": np.zeros(hi - lo, bool),
                    "xy": obs_xy[pick] + rng.normal(0, 0.3, (hi - lo, 2)),
                    "nn_training_distance": np.zeros(hi - lo),
                    "training_like": obs_like[pick],
                })  # fmt: skip
        maps.append(str(new))
    members = sorted(str(p) for p in (results / "ensemble" / "members").glob("*/model.keras"))
    return {
        "catalogue": str(paths["catalogue"]),
        "training": str(results / "arrays" / "training.h5"),
        "observed": str(paths["observed"]),
        "uncertainty_model": str(results / "ensemble" / "uncertainty_model.json"),
        "maps": maps,
        "members": members,
    }


def render(inputs: dict, out: Path, cfg: dict) -> tuple[float, float, dict, list[str]]:
    """``run_figures`` in a fresh process: (wall [s], peak RSS [MiB], index, timings)."""
    code = (
        "import logging, sys, time; sys.path.insert(0, {repo!r}); "
        "from gaiacnn.memory import peak_rss_mib; "
        "logging.basicConfig(level=logging.INFO); from gaiacnn.figures.render import run_figures; "
        "t0 = time.perf_counter(); run_figures({inputs!r}, {out!r}, figures_cfg={fig!r}, "
        "snr_edges={snr!r}); print('STAGE', time.perf_counter() - t0, "
        "peak_rss_mib())"
    ).format(
        repo=str(REPO / "workflow"),
        inputs=inputs,
        out=str(out),
        fig=cfg["figures"],
        snr=cfg["evaluation"]["snr_edges"],
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(proc.stderr[-4000:])
    _, wall, rss = [x for x in proc.stdout.splitlines() if x.startswith("STAGE")][-1].split()
    index = json.loads((out / "figures.json").read_text())
    took = [x.split(":")[-1].strip() for x in proc.stderr.splitlines() if " took " in x]
    return float(wall), float(rss), index, took


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000],
                   help="catalogue rows, smallest first")  # fmt: skip
    p.add_argument("--results", type=Path, default=REPO / "results", help="a finished run")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/gaiacnn-figures-bench"))
    p.add_argument("--keep", action="store_true", help="keep each N's files")
    p.add_argument("--no-record", action="store_true", help="do not append to results.csv")
    a = p.parse_args(argv)
    if not (a.results / "catalogue" / "catalogue.fits").is_file():
        sys.exit(f"{a.results}: no catalogue; run `make demo` first (or give --results)")
    import shutil

    import yaml

    from gaiacnn.config import load_schema, validate_config

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg = validate_config(cfg, load_schema(REPO / "config" / "schema.yaml"))
    load_at_start = os.getloadavg()[0]
    measured = {}
    for rows in sorted(a.rows):
        work = a.workdir / f"rows{rows}"
        t0 = time.perf_counter()
        inputs = scale_run(a.results, work, rows)
        print(f"{rows} rows: scaled inputs written in {time.perf_counter() - t0:.0f} s",
              file=sys.stderr)  # fmt: skip
        wall, rss, index, took = render(inputs, work / "figures", cfg)
        measured[rows] = (wall, rss)
        print("\n".join(took))
        print(
            f"\n{rows} catalogue rows: {len(index['figures'])} figures in {wall:.0f} s, "
            f"peak RSS {rss / 1024:.2f} GiB; not drawn: "
            + ("; ".join(f"{s['function']} ({s['reason']})" for s in index["skipped"]) or "none")
        )
        if not a.keep:
            shutil.rmtree(work)
    sizes = sorted(measured)
    lo, hi = sizes[0], sizes[-1]
    ratio = measured[hi][1] / measured[lo][1]
    slope = (measured[hi][1] - measured[lo][1]) / (hi - lo) if hi > lo else 0.0
    projected = measured[hi][1] + slope * (10**8 - hi)
    print(f"\nmachine: {results.cpu_model()}, {results.cores()} cores; figures.max_observed "
          f"{cfg['figures']['max_observed']}")  # fmt: skip
    for n in sizes:
        print(f"figures at N = {n:.0e}: {measured[n][0]:7.1f} s {measured[n][1]:7.0f} MiB")
    print(f"peak RSS ratio {ratio:.2f}; projected to 10^8: {projected:.0f} MiB")
    if not a.no_record:
        figures = []
        for n in sizes:
            figures += [
                (f"figures: peak RSS at N = {n}", measured[n][1], "MiB"),
                (f"figures: wall at N = {n}", measured[n][0], "s"),
            ]
        figures += [
            (f"figures: peak RSS ratio N = {hi} / N = {lo}", ratio, "ratio"),
            ("figures: peak RSS projected to N = 1e8", projected, "MiB"),
        ]
        params = {"rows": sizes, "max_observed": cfg["figures"]["max_observed"]}
        # the machine's load when the benchmark began (wall times are of a shared machine
        # where it is well above 0)
        params["loadavg_1min_at_start"] = round(load_at_start, 2)
        k = results.append("figures_memory", params, figures)
        print(f"{k} rows appended to {results.RESULTS.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
