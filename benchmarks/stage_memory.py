#!/usr/bin/env python
"""Benchmark: peak memory of the catalogue's stages against the number of observed stars.

For each --rows N it writes synthetic inputs in the workflow's formats (built a chunk at a
time, under --workdir): a training sample of --training stars and an observed sample of N
(arrays with the scalar datasets the stages read: photometry, parallaxes, positions, S/N,
reference labels for a fixed --references observed stars, as a survey's crossmatch gives
a number of them independent of N), the prediction files of --members members for both
samples (with the training sample's withheld-parallax copies) and a t-SNE classification.
Then it runs each stage's own function, as its rule's script calls it, in a fresh process,
and prints its wall time and peak RSS (``gaiacnn.memory.peak_rss_mib``, VmHWM):

* ``aggregate_ensemble``: ``gaiacnn.ensemble.run_aggregate`` (the labels table, FITS);
* ``flag_catalogue``: ``gaiacnn.flags.run_flag_catalogue`` (the catalogue, FITS and Parquet,
  the workflow's default files; ``--csv`` adds the opt-in CSV);
* ``hats_catalogue``: ``gaiacnn.hats.run_hats_catalogue`` (the HATS copy of the Parquet
  catalogue, rule hats_catalogue, opt-in in the workflow).  Its memory grows with the
  largest partition (printed), up to ``--hats-partition-rows`` (default
  ``gaiacnn.hats.PARTITION_ROWS``), reached at about 10^7 stars at the default: below a
  smaller limit that both N reach, the ratio shows whether it depends on N itself;
* ``tsne_gather``: ``gaiacnn.tsne.run_tsne_gather`` (scalable mode: each perplexity's reference
  map and placement shards as one map, in one process one after the other);
* ``tsne_classify``: ``gaiacnn.tsne.run_tsne_classify`` (the maps of every perplexity and
  reference map set read side by side).

The t-SNE inputs follow config.yaml's ``tsne`` settings (reference_observed, place_shard_rows,
perplexities, reference_maps), with random map positions.

The ratio of the peak RSS between the largest and the smallest N says whether a stage's
memory is flat in N (1.0) or grows; the straight line through the two points projects it
to 10^8 stars.  The figures go to benchmarks/results.csv.  Run on demand (about 25 min
and 7 GB of disk at the defaults on 2 cores; each N's files are removed after it)::

    .venv/bin/python benchmarks/stage_memory.py
    .venv/bin/python benchmarks/stage_memory.py --rows 100000 1000000 --no-record

It is not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "workflow"))

import results  # noqa: E402

BENCHMARK = "stage_memory"
LABELS = ["teff", "logg", "m_h", "alpha_m", "fe_h"]
STAGES = ("aggregate_ensemble", "flag_catalogue", "hats_catalogue", "tsne_gather", "tsne_classify")
#: rows written per step while the synthetic inputs are built
BUILD_CHUNK = 500_000


def _members(n: int) -> list[str]:
    return [f"split{k // 2}_seed{k % 2}" for k in range(n)]


def build(work: Path, n_obs: int, n_tr: int, n_ref: int, n_members: int, seed: int) -> dict:
    """The synthetic inputs of one N (see the module's docstring); their paths."""
    import h5py
    import numpy as np

    rng = np.random.default_rng(seed)
    work.mkdir(parents=True, exist_ok=True)
    members = _members(n_members)
    arrays, preds = {}, {"training": [], "observed": []}
    scalars = (
        *("phot/g", "phot/bp", "phot/rp", "astrometry/parallax", "astrometry/parallax_error"),
        *("astrometry/ra", "astrometry/dec", "rvs/snr"),
    )
    for sample, n, first in (("training", n_tr, 10**12), ("observed", n_obs, 2 * 10**12)):
        path = work / f"{sample}.h5"
        files = {m: h5py.File(work / f"{sample}_{m}.h5", "w") for m in members}
        with h5py.File(path, "w") as h5:
            h5.attrs["schema_version"] = 1
            h5.create_dataset("source_id", (n,), np.int64)
            for name in scalars:
                h5.create_dataset(name, (n,), np.float32)
            for x in LABELS:
                for suffix in ("", "_err"):
                    h5.create_dataset(f"labels/{x}{suffix}", (n,), np.float32, fillvalue=np.nan)
            groups = ["pred", "pred_withheld"] if sample == "training" else ["pred"]
            for f in files.values():
                f.attrs["branches"] = json.dumps(["rvs", "phot", "xp"])
                f.attrs["xp_input"] = "coefficients"
                f.attrs["parallax_withheld_snr"] = 2.0
                if sample == "training":
                    f.attrs["withheld_predictions"] = True
                f.create_dataset("source_id", (n,), np.int64)
                for g in groups:
                    for x in LABELS:
                        f.create_dataset(f"{g}/{x}", (n,), np.float32)
            for start in range(0, n, BUILD_CHUNK):
                stop = min(start + BUILD_CHUNK, n)
                k = stop - start
                sid = np.arange(start, stop, dtype=np.int64) + first
                g = rng.uniform(8, 14.5, k)
                block = {
                    "phot/g": g,
                    "phot/bp": g + rng.uniform(0.2, 0.9, k),
                    "phot/rp": g - rng.uniform(0.4, 1.1, k),
                    "astrometry/parallax": rng.lognormal(0.0, 0.7, k),
                    "astrometry/parallax_error": rng.uniform(0.02, 0.3, k),
                    "astrometry/ra": rng.uniform(0, 360, k),
                    "astrometry/dec": rng.uniform(-90, 90, k),
                    "rvs/snr": rng.lognormal(np.log(40), 0.6, k),
                }
                h5["source_id"][start:stop] = sid
                for name, v in block.items():
                    h5[name][start:stop] = v
                truth = {
                    "teff": rng.uniform(4000, 6500, k),
                    "logg": rng.uniform(1, 4.8, k),
                    "m_h": rng.normal(-0.2, 0.3, k),
                    "alpha_m": rng.normal(0.1, 0.1, k),
                    "fe_h": rng.normal(-0.2, 0.3, k),
                }
                # the training sample has reference labels, the observed one for its first
                # n_ref stars only
                ref = (
                    slice(0, k) if sample == "training" else slice(0, max(0, min(k, n_ref - start)))
                )
                for x, v in truth.items():
                    h5[f"labels/{x}"][start : start + ref.stop] = v[ref] + rng.normal(
                        0, 0.01, ref.stop
                    )
                    h5[f"labels/{x}_err"][start : start + ref.stop] = 0.01
                for f in files.values():
                    f["source_id"][start:stop] = sid
                    for grp in groups:
                        for x, v in truth.items():
                            f[f"{grp}/{x}"][start:stop] = v + rng.normal(0, 0.05 * abs(v).mean(), k)
        for f in files.values():
            f.close()
        arrays[sample] = path
        preds[sample] = [work / f"{sample}_{m}.h5" for m in members]
    tsne = work / "training_like.h5"
    with h5py.File(arrays["observed"], "r") as a, h5py.File(tsne, "w") as h5:
        h5.create_dataset("source_id", (n_obs,), np.int64)
        h5.create_dataset("training_like", (n_obs,), bool)
        h5.attrs["spectra"] = "rvs/flux"
        for start in range(0, n_obs, BUILD_CHUNK):
            stop = min(start + BUILD_CHUNK, n_obs)
            h5["source_id"][start:stop] = a["source_id"][start:stop]
            h5["training_like"][start:stop] = rng.random(stop - start) < 0.9
    maps = build_tsne(work, arrays["observed"], n_obs, n_tr, rng)
    return {"arrays": arrays, "predictions": preds, "tsne": tsne, "members": members, **maps}


def _tsne_config() -> dict:
    import yaml

    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())["tsne"]


def build_tsne(work: Path, observed: Path, n_obs: int, n_tr: int, rng) -> dict:
    """Scalable-mode t-SNE inputs of the configured settings (``tsne`` of config.yaml): one
    reference map per perplexity (the training stars of ``reference_training``, then the
    ``reference_observed`` stars of the seed) and the placement shards of the other observed
    stars, every perplexity in each (random positions: the stages' memory does not depend
    on them)."""
    import h5py
    import numpy as np

    from gaiacnn import shards, tsne

    cfg = _tsne_config()
    perps = [float(p) for p in cfg["perplexities"]]
    ref_rows = tsne.reference_rows(n_obs, int(cfg["reference_observed"]), int(cfg["seed"]))
    n_tr_map = tsne.reference_training_rows(
        n_tr, n_obs, int(cfg["reference_observed"]), str(cfg["reference_training"]),
        int(cfg["seed"]),
    ).size  # fmt: skip
    with h5py.File(observed, "r") as h5:
        ref_sid = h5["source_id"][:][ref_rows] if ref_rows.size else np.empty(0, np.int64)
    n_map = n_tr_map + ref_rows.size
    references = []
    for p in perps:
        references.append(work / f"reference_p{p:g}.h5")
        attrs = {"perplexity": p, "threshold": 1.0, "mode": "scalable", "seed": cfg["seed"]}
        with tsne.map_writer(references[-1], n_map, attrs) as write:
            write(0, {"source_id": np.r_[np.arange(n_tr_map) + 10**12, ref_sid],
                      "in_training": np.arange(n_map) < n_tr_map,
                      "xy": rng.normal(0, 30, (n_map, 2)),
                      "nn_training_distance": rng.exponential(1.0, n_map),
                      "training_like": rng.random(n_map) < 0.9})  # fmt: skip
    n_others = n_obs - ref_rows.size
    shard_rows = int(cfg["place_shard_rows"])
    paths = []
    with h5py.File(observed, "r") as obs:
        for k in range(shards.n_shards(n_others, shard_rows)):
            start, stop = shards.shard_range(n_others, shard_rows, k)
            rows = shards.complement_slice(n_obs, ref_rows, start, stop)
            paths.append(work / f"shard{k}.h5")
            with h5py.File(paths[-1], "w") as h5:
                h5["source_id"] = obs["source_id"][rows[0] : rows[-1] + 1][rows - rows[0]]
                for p in perps:
                    h5[f"p{p:g}/xy"] = rng.normal(0, 30, (rows.size, 2)).astype(np.float32)
                    h5[f"p{p:g}/nn_training_distance"] = rng.exponential(1.0, rows.size)
                    h5[f"p{p:g}/training_like"] = rng.random(rows.size) < 0.9
    return {
        "tsne_references": [str(x) for x in references],
        "tsne_shards": [str(x) for x in paths],
        "tsne_maps": [str(work / f"p{p:g}.h5") for p in perps],
        "perplexities": perps,
    }


def _child(stage: str, work: Path) -> dict:
    """(In a fresh process) one stage on the inputs in ``work``; its wall and peak RSS."""
    import yaml

    from gaiacnn import ensemble, flags, hats, tsne
    from gaiacnn.memory import peak_rss_mib

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    inputs = json.loads((work / "inputs.json").read_text())
    t0 = time.perf_counter()
    extra: dict = {}
    if stage == "aggregate_ensemble":
        ensemble.run_aggregate(
            inputs["predictions"]["training"],
            inputs["predictions"]["observed"],
            inputs["arrays"],
            work / "labels.fits",
            work / "uncertainty_model.json",
            labels=LABELS,
            members=inputs["members"],
            uncertainty_cfg=cfg["uncertainty"],
            training_cfg=cfg["model"]["training"],
            config_hash="benchmark",
            flags_cfg=cfg["flags"],
        )
    elif stage == "flag_catalogue":
        flags.run_flag_catalogue(
            work / "labels.fits",
            inputs["tsne"],
            work / "uncertainty_model.json",
            work / "catalogue.fits",
            work / "catalogue.csv" if os.environ.get("STAGE_MEMORY_CSV") else None,
            parquet_out=work / "catalogue.parquet",
            labels=LABELS,
            input_digit=cfg["flags"]["input_digit"],
        )
    elif stage == "hats_catalogue":
        import pyarrow.parquet as pq

        rows = int(os.environ.get("STAGE_MEMORY_HATS_ROWS", hats.PARTITION_ROWS))
        hats.run_hats_catalogue(
            work / "catalogue.parquet", work / "hats", partition_rows=rows, progress=False
        )
        parts = (work / "hats" / "dataset").rglob("Npix=*.parquet")
        extra = {"largest_partition": max(pq.ParquetFile(f).metadata.num_rows for f in parts)}
    elif stage == "tsne_gather":
        for ref, out, p in zip(
            inputs["tsne_references"], inputs["tsne_maps"], inputs["perplexities"], strict=True
        ):
            tsne.run_tsne_gather(
                ref, inputs["tsne_shards"], inputs["arrays"]["observed"], out,
                perplexity=p, tsne_cfg=cfg["tsne"],
            )  # fmt: skip
    elif stage == "tsne_classify":
        # the configured reference_maps sets of maps (each the same files: the memory is
        # that of reading reference_maps x perplexities maps side by side)
        maps = inputs["tsne_maps"] * int(cfg["tsne"]["reference_maps"])
        tsne.run_tsne_classify(maps, inputs["arrays"]["observed"], work / "classified.h5")
    return {"wall_s": time.perf_counter() - t0, "peak_rss_mib": peak_rss_mib(), **extra}


def run_stage(stage: str, work: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", stage, "--workdir", str(work)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{stage} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/gaiacnn-stage-memory"))
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000],
                   help="observed stars, smallest first")  # fmt: skip
    p.add_argument("--training", type=int, default=45_000, help="training stars")
    p.add_argument("--references", type=int, default=20_000,
                   help="observed stars with reference labels")  # fmt: skip
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", action="store_true", help="keep each N's files")
    p.add_argument("--no-record", action="store_true", help="do not append to results.csv")
    p.add_argument(
        "--stages",
        nargs="+",
        choices=STAGES,
        default=list(STAGES),
        help="the stages to run (flag_catalogue needs aggregate_ensemble's output, "
        "hats_catalogue flag_catalogue's)",
    )
    p.add_argument("--csv", action="store_true", help="flag_catalogue writes the CSV too")
    p.add_argument(
        "--hats-partition-rows",
        type=int,
        help="hats_catalogue's partition limit (default gaiacnn.hats.PARTITION_ROWS)",
    )
    p.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(_child(a.child, a.workdir)))
        return 0

    if a.csv:
        os.environ["STAGE_MEMORY_CSV"] = "1"  # the children read it
    if a.hats_partition_rows:
        os.environ["STAGE_MEMORY_HATS_ROWS"] = str(a.hats_partition_rows)
    stages = [s for s in STAGES if s in a.stages]
    load_at_start = os.getloadavg()[0]
    measured: dict[int, dict[str, dict]] = {}
    for n in sorted(a.rows):
        work = a.workdir / f"n{n}"
        t0 = time.perf_counter()
        inputs = build(work, n, a.training, a.references, a.members, a.seed)
        (work / "inputs.json").write_text(json.dumps(inputs, default=str))
        print(f"N = {n}: inputs built in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        measured[n] = {}
        for stage in stages:
            measured[n][stage] = r = run_stage(stage, work)
            more = "".join(
                f", {k} {v}" for k, v in r.items() if k not in ("wall_s", "peak_rss_mib")
            )
            print(
                f"  {stage}: {r['wall_s']:.1f} s, {r['peak_rss_mib']:.0f} MiB{more}",
                file=sys.stderr,
            )
        if not a.keep:
            shutil.rmtree(work)
    sizes = sorted(measured)
    lo, hi = sizes[0], sizes[-1]
    print(f"\nmachine: {results.cpu_model()}, {results.cores()} cores; {a.training} training "
          f"stars, {a.references} observed with reference labels, {a.members} members")  # fmt: skip
    head = " ".join(f"{f'N = {n:.0e}':>22s}" for n in sizes)
    print(f"{'stage':20s} {head} {'ratio':>7s} {'10^8 (projected)':>17s}")
    figures = []
    for stage in stages:
        rss = [measured[n][stage]["peak_rss_mib"] for n in sizes]
        cells = " ".join(
            f"{measured[n][stage]['wall_s']:8.1f} s {measured[n][stage]['peak_rss_mib']:7.0f} MiB"
            for n in sizes
        )
        ratio = rss[-1] / rss[0]
        slope = (rss[-1] - rss[0]) / (hi - lo) if hi > lo else 0.0
        projected = rss[-1] + slope * (10**8 - hi)
        print(f"{stage:20s} {cells} {ratio:7.2f} {projected:13.0f} MiB")
        for n in sizes:
            figures += [
                (f"{stage}: peak RSS at N = {n}", measured[n][stage]["peak_rss_mib"], "MiB"),
                (f"{stage}: wall at N = {n}", measured[n][stage]["wall_s"], "s"),
            ]
            if "largest_partition" in measured[n][stage]:
                figures.append((f"{stage}: largest partition at N = {n}",
                                measured[n][stage]["largest_partition"], "rows"))  # fmt: skip
        figures += [
            (f"{stage}: peak RSS ratio N = {hi} / N = {lo}", ratio, "ratio"),
            (f"{stage}: peak RSS projected to N = 1e8", projected, "MiB"),
        ]
    if not a.no_record:
        params = {"rows": sizes, "training": a.training, "references": a.references,
                  "members": a.members, "flag_files": "fits+csv+parquet" if a.csv
                  else "fits+parquet"}  # fmt: skip
        if "hats_catalogue" in stages:
            from gaiacnn import hats

            params["hats_partition_rows"] = a.hats_partition_rows or hats.PARTITION_ROWS
        # the machine's load when the benchmark began (wall times are of a shared machine
        # where it is well above 0)
        params["loadavg_1min_at_start"] = round(load_at_start, 2)
        k = results.append(BENCHMARK, params, figures)
        print(f"{k} rows appended to {results.RESULTS.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
