"""Workflow runs on the demo survey for the benchmarks that compare model choices
(benchmarks/shift_precision.py, benchmarks/paper_departures.py): one Snakemake run per
choice in its own directory, with the config overlays layered after the defaults, the
commit and the wall time written beside it, and the earlier stages of another run reused
where the choice does not change them.

Not a test and not part of the package: the benchmarks import it from this folder.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import yaml
from astropy.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from results import head_commit  # noqa: E402  (the benchmarks import it from here)

from gaiacnn import ensemble, evaluation  # noqa: E402
from gaiacnn.tables import read_fits_columns  # noqa: E402

SNAKEMAKE = Path(sys.executable).parent / "snakemake"
#: the commit of the code that made a run, written into its directory
COMMIT_FILE = "commit.txt"
#: the wall time [s] of the Snakemake run that made it (reported again when reused)
WALL_FILE = "wall_s.txt"


def done(work: Path, targets: Iterable[str]) -> bool:
    """Whether ``work`` already holds every target (an earlier run, reused)."""
    return all((work / t).exists() for t in targets)


def seed_from(work: Path, source: Path, subdirs: Sequence[str], ignore: Sequence[str] = ()) -> None:
    """Copy ``results/<subdir>`` of ``source`` into ``work`` (times kept, so that Snakemake's
    mtime trigger takes them as up to date), leaving out files matching ``ignore``: those
    are made again, with everything downstream of them."""
    for sub in subdirs:
        src, dst = source / "results" / sub, work / "results" / sub
        if src.exists() and not dst.exists():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*ignore))


def run_workflow(
    work: Path,
    targets: Sequence[str],
    configfiles: Sequence[Path],
    overlay: dict,
    cores: int,
) -> float:
    """Run Snakemake in ``work`` for ``targets`` with the repository's default config, then
    ``configfiles`` and the ``overlay`` (written to ``work/config/overlay.yaml``) layered on
    it; return the wall time [s], or 0 when ``work`` already holds the targets.  Exits with
    the tail of Snakemake's log when the run fails."""
    if done(work, targets):
        return 0.0
    (work / "config").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "config" / "config.yaml", work / "config" / "config.yaml")
    overlay_path = work / "config" / "overlay.yaml"
    overlay_path.write_text(yaml.safe_dump(overlay or {"model": {}}))
    files = [work / "config" / "config.yaml", *configfiles, overlay_path]
    cmd = [str(SNAKEMAKE), *targets, "-s", str(REPO / "Snakefile"), "--directory", str(work)]
    cmd += ["--cores", str(cores), "--rerun-triggers", "mtime"]
    cmd += ["--configfile", *map(str, files)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{work}: snakemake failed:\n{proc.stderr[-4000:]}")
    (work / COMMIT_FILE).write_text(head_commit() + "\n")
    (work / WALL_FILE).write_text(f"{wall:.1f}\n")
    return wall


def made_by(work: Path) -> tuple[str, float]:
    """The commit and the wall time [s] recorded for the run in ``work``."""
    commit = (work / COMMIT_FILE).read_text().strip() if (work / COMMIT_FILE).exists() else "?"
    wall = float((work / WALL_FILE).read_text()) if (work / WALL_FILE).exists() else float("nan")
    return commit, wall


def member_spread(
    work: Path, labels: Sequence[str], snr_bin: tuple[float, float] = (15.0, 25.0)
) -> pd.DataFrame:
    """The run-to-run spread of the precision, estimated from the run's own members: each
    member's observed predictions replace the catalogue's labels and go through the
    evaluation; per label, the members' dispersions [K, dex] of the observed stars in range
    (``observed_in_range``: ordinary and shifted) at S/N ``snr_bin``, their standard
    deviation, and that over sqrt(members) (the spread expected of the ensemble mean of as
    many members: an estimate, as the members share their training data)."""
    cat_path = work / "results/ensemble/labels.fits"
    cat = read_fits_columns(cat_path)
    _, training_range = ensemble.read_uncertainty_model(
        work / "results/ensemble/uncertainty_model.json"
    )
    rows = []
    members = sorted((work / "results/ensemble/predictions/observed").glob("*.h5"))
    with tempfile.TemporaryDirectory() as tmp:
        for path in members:
            with h5py.File(path, "r") as h5:
                sid = h5["source_id"][:]
                pred = {x: h5[f"pred/{x}"][:] for x in labels}
                branches = json.loads(h5.attrs["branches"])
            idx = pd.Index(sid).get_indexer(cat["source_id"].to_numpy())
            one = cat.copy()
            for x in labels:
                one[x] = np.where(idx >= 0, pred[x][np.maximum(idx, 0)], one[x])
            fake = Path(tmp) / f"{path.stem}.fits"
            Table.from_pandas(one).write(fake, overwrite=True)
            table = evaluation.evaluate(
                fake,
                work / "results/demo/truth.h5",
                training_range,
                list(labels),
                branches,
                [snr_bin[0], snr_bin[1], float("inf")],
            )
            sel = table[(table["sample"] == "observed_in_range") & (table["snr_min"] == snr_bin[0])]
            for r in sel.itertuples():
                rows.append({"member": path.stem, "label": r.label, "dispersion": r.dispersion})
    frame = pd.DataFrame(rows)
    out = frame.groupby("label")["dispersion"].agg(["mean", "std", "count"]).reset_index()
    out["ensemble_spread"] = out["std"] / np.sqrt(out["count"])
    return out
