#!/usr/bin/env python
"""Benchmark: peak memory and wall time of rendering every figure for a large catalogue.

Scales a finished run (default: the demo's ``results/``) up to ``--rows`` catalogue rows:
the training stars as they are, and observed stars drawn with replacement from the run's
observed stars (labels jittered by their ``sigma_*``, new source ids), with matching
observed arrays (every scalar and XP dataset written; the flux dataset declared but left
unwritten, so the 2401-pixel spectra read back as the HDF5 fill value 1.0 instead of
taking 4 GB of disk per 400 000 rows) and t-SNE maps.  The ensemble members are the run's.
Then runs the workflow's ``run_figures`` in a fresh process and prints its wall time, its
peak RSS and the figures drawn::

    .venv/bin/python benchmarks/figures_memory.py --rows 1000000

The truth file is not scaled (its figures are the demo's own, at the demo's size), so the
demo-only figures are not part of this measurement.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))


def scale_run(results: Path, out: Path, rows: int, seed: int = 0) -> dict:
    """Write the scaled catalogue, arrays and maps under ``out``; their paths."""
    from gaiacnn import catalogue

    rng = np.random.default_rng(seed)
    table, attrs = catalogue.read(results / "catalogue" / "catalogue.fits")
    tr = table[table["in_training"]]
    ob = table[~table["in_training"]]
    n_obs = max(1, rows - len(tr))
    pick = rng.integers(0, len(ob), n_obs)
    big = ob.iloc[pick].reset_index(drop=True)
    for name in attrs["labels"]:
        big[name] = big[name] + rng.normal(0, 1, n_obs) * big[f"sigma_{name}"].fillna(0)
    big["source_id"] = np.arange(n_obs, dtype=np.int64) + 9 * 10**17
    scaled = pd.concat([tr, big], ignore_index=True)
    scaled.attrs.update(attrs)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"catalogue": out / "catalogue.fits", "observed": out / "observed.h5"}
    catalogue.write(scaled, paths["catalogue"])
    # observed arrays: rows of the run's observed file in the order of ``pick``
    src = results / "arrays" / "observed.h5"
    src_rows = pd.Index(h5py.File(src, "r")["source_id"][:]).get_indexer(
        ob["source_id"].to_numpy()[pick]
    )
    with h5py.File(src, "r") as a, h5py.File(paths["observed"], "w") as b:
        for k, v in a.attrs.items():
            b.attrs[k] = v

        def copy(name, obj):
            if not isinstance(obj, h5py.Dataset):
                return
            if name == "source_id":
                data = big["source_id"].to_numpy()
            elif obj.ndim == 2 and obj.shape[1] > 1000:  # spectra: declared, not written
                ds = b.create_dataset(
                    name,
                    shape=(n_obs, obj.shape[1]),
                    dtype=obj.dtype,
                    chunks=(256, obj.shape[1]),
                    fillvalue=1.0,
                )
                for k, v in obj.attrs.items():
                    ds.attrs[k] = v
                return
            else:
                data = obj[:][src_rows]
            ds = b.create_dataset(name, data=data)
            for k, v in obj.attrs.items():
                ds.attrs[k] = v

        a.visititems(copy)
    maps = []
    sid_all = scaled["source_id"].to_numpy()
    for path in sorted((results / "tsne").glob("*/p*.h5")):
        with h5py.File(path, "r") as a:
            is_tr = a["in_training"][:]
            xy, like = a["xy"][:], a["training_like"][:]
            perp = float(a.attrs["perplexity"])
            thr = float(a.attrs.get("threshold", np.nan))
        obs_xy, obs_like = xy[~is_tr], like[~is_tr]
        j = rng.integers(0, len(obs_xy), n_obs)
        new = out / f"tsne_{path.parent.name}_{path.name}"
        with h5py.File(new, "w") as h5:
            h5["source_id"] = sid_all
            h5["in_training"] = np.r_[np.ones(len(tr), bool), np.zeros(n_obs, bool)]
            h5["xy"] = np.r_[xy[is_tr], obs_xy[j] + rng.normal(0, 0.3, (n_obs, 2))]
            h5["nn_training_distance"] = np.zeros(len(sid_all))
            h5["training_like"] = np.r_[np.ones(len(tr), bool), obs_like[j]]
            h5.attrs["perplexity"], h5.attrs["threshold"] = perp, thr
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


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=int, default=1_000_000, help="catalogue rows")
    p.add_argument("--results", type=Path, default=REPO / "results", help="a finished run")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/gaiacnn-figures-bench"))
    a = p.parse_args()
    if not (a.results / "catalogue" / "catalogue.fits").is_file():
        sys.exit(f"{a.results}: no catalogue; run `make demo` first (or give --results)")
    import yaml

    from gaiacnn.config import load_schema, validate_config

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg = validate_config(cfg, load_schema(REPO / "config" / "schema.yaml"))
    t0 = time.perf_counter()
    inputs = scale_run(a.results, a.workdir / f"rows{a.rows}", a.rows)
    print(f"scaled inputs written in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    out = a.workdir / f"rows{a.rows}" / "figures"
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
    took = [x for x in proc.stderr.splitlines() if " took " in x]
    print("\n".join(x.split(":")[-1].strip() for x in took))
    print(
        f"\n{a.rows} catalogue rows: {len(index['figures'])} figures in {float(wall):.0f} s, "
        f"peak RSS {float(rss) / 1024:.2f} GiB (target < 4 GiB); not drawn: "
        + ("; ".join(f"{s['function']} ({s['reason']})" for s in index["skipped"]) or "none")
    )


if __name__ == "__main__":
    main()
