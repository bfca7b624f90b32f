"""Every input shape a survey may bring runs end to end with only the data keys set:
RVS + XP + photometry + parallax, XP sampled + photometry (no RVS, no parallax), XP
coefficients + photometry + parallax, RVS only.  The shapes are cut from one tiny demo
arrays build that writes every dataset group (``demo.datasets``), then each runs through
the whole workflow as a survey's own files (``data.source: files``)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from workflow_helpers import make_workdir, run_snakemake, snakemake_command

from gaiacnn import cli
from gaiacnn.arrays import DATASET_GROUPS

pytestmark = pytest.mark.slow

ALL_GROUPS = ["rvs", "xp_coefficients", "xp_sampled", "phot", "parallax"]
#: shape -> the demo dataset groups its files keep (config/variants/shape_*.yaml)
SHAPES = {
    "full": ["rvs", "xp_coefficients", "phot", "parallax"],
    "xp_sampled": ["xp_sampled", "phot"],
    "xp_coefficients": ["xp_coefficients", "phot", "parallax"],
    "rvs_only": ["rvs"],
}
ARRAYS = ("results/arrays/training.h5", "results/arrays/observed.h5")


def _set_config(work: Path, **sections) -> None:
    """Set top-level sections of the work directory's config/config.yaml."""
    path = work / "config" / "config.yaml"
    cfg = yaml.safe_load(path.read_text()) or {}
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def _keep(src: Path, dst: Path, groups: list[str], drop: tuple[str, ...] = ()) -> Path:
    """A copy of layout file ``src`` holding only the datasets of ``groups`` (and
    source_id, labels, positions), without the datasets ``drop``."""
    kept = {"source_id", "astrometry/ra", "astrometry/dec"}
    for group in groups:
        kept |= set(DATASET_GROUPS[group])
    with h5py.File(src) as a, h5py.File(dst, "w") as b:
        b.attrs.update(a.attrs)
        names: list[str] = []
        a.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        for name in names:
            if (name in kept or name.startswith("labels/")) and name not in drop:
                a.copy(a[name], b, name=name)
    return dst


@pytest.fixture(scope="module")
def every_dataset(demo_run, tmp_path_factory) -> Path:
    """The tiny demo's arrays with every dataset group (XP sampled flux included), built
    from the demo run's survey and samples."""
    work = make_workdir(tmp_path_factory.mktemp("every"), "every")
    for sub in ("demo", "samples"):
        shutil.copytree(demo_run / "results" / sub, work / "results" / sub)
    _set_config(work, demo={"datasets": ALL_GROUPS})
    proc = run_snakemake(work, "--cores", "2", *ARRAYS)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work / "results" / "arrays"


@pytest.fixture(scope="module")
def shape_runs(every_dataset, tmp_path_factory):
    """Each shape's files, run end to end (the four runs side by side) with only the data
    keys set (and, for the test's time, one member).  Two of them also carry what a survey
    brings: the full shape has labels teff, logg, fe_h, alpha_m and no m_h; the
    coefficients shape's observed file has three stars with parallax <= 0."""
    root = tmp_path_factory.mktemp("shapes")
    works, procs = {}, {}
    for shape, groups in SHAPES.items():
        drop = ("labels/m_h", "labels/m_h_err") if shape == "full" else ()
        files = {}
        for sample in ("training", "observed"):
            files[sample] = _keep(
                every_dataset / f"{sample}.h5", root / f"{shape}_{sample}.h5", groups, drop
            )
        if shape == "xp_coefficients":
            with h5py.File(files["observed"], "a") as h5:
                h5["astrometry/parallax"][[4, 9, 17]] = [-0.3, 0.0, -1.2]
        work = make_workdir(root, shape)
        _set_config(
            work,
            data={
                "source": "files",
                "files": {k: str(v) for k, v in files.items()},
            },
            # size only (the tiny run's): one member, one prediction shard per sample
            ensemble={"n_seeds": 1},
            prediction={"shard_rows": 100000},
        )
        works[shape] = (work, files)
        procs[shape] = subprocess.Popen(
            snakemake_command(work, "--cores", "2"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    results = {}
    for shape, proc in procs.items():
        out, err = proc.communicate(timeout=1800)
        results[shape] = (proc.returncode, out, err, *works[shape])
    return results


def _done(shape_runs, shape):
    code, _out, err, work, files = shape_runs[shape]
    assert code == 0, err[-4000:]
    return work, files


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_shape_gives_a_catalogue_and_figures(shape_runs, shape):
    from astropy.io import fits

    work, _ = _done(shape_runs, shape)
    with fits.open(work / "results/catalogue/catalogue.fits") as hdul:
        hdr, data = hdul[1].header, hdul[1].data
        labels = hdr["LABELS"].split(",")
        assert labels and len(data) > 300
        for label in labels:
            for col in (label, f"e_{label}", f"sigma_{label}"):
                assert np.isfinite(data[col]).all(), col
        flag = np.char.strip(np.asarray(data["flag_boundary"]).astype(str))
        assert all(re.fullmatch(f"[01-]{{{len(labels) + 4}}}", f) for f in flag)
        branches, spectra = hdr["BRANCHES"].split(","), hdr["TSNESPEC"]
    figures = json.loads((work / "results/figures/figures.json").read_text())
    assert figures["figures"], figures["skipped"]
    assert all((work / "results/figures" / f).stat().st_size > 1000
               for fig in figures["figures"] for f in fig["files"])  # fmt: skip
    expect = {
        "full": (["rvs", "phot", "xp"], "rvs/flux"),
        "xp_sampled": (["phot", "xp"], "xp/sampled_flux"),
        "xp_coefficients": (["phot", "xp"], "xp/coefficients"),
        "rvs_only": (["rvs"], "rvs/flux"),
    }[shape]
    assert (branches, spectra) == expect
    # the digits of inputs the survey lacks are '-' for every star (and say so in the
    # header), the others 0/1
    g_digit, plx_digit = flag[0][len(labels)], flag[0][len(labels) + 1]
    assert (g_digit == "-") == (shape == "rvs_only")
    assert (plx_digit == "-") == (shape in ("xp_sampled", "rvs_only"))
    comments = "\n".join(str(c) for c in hdr["COMMENT"])
    assert ("not in the data (- for every star)" in comments) == (
        shape in ("xp_sampled", "rvs_only")
    )


def test_sampled_xp_feeds_the_xp_branch_k_wide(shape_runs):
    """XP sampled + photometry: the members' XP input is K wide, and the summary says that
    xp/sampled_flux feeds the XP branch."""
    import keras

    work, files = _done(shape_runs, "xp_sampled")
    with h5py.File(files["training"]) as h5:
        k = h5["xp/sampled_flux"].shape[1]
        assert "xp/bp_coefficients" not in h5 and "rvs/flux" not in h5
    member = work / "results/ensemble/members/split0_seed0"
    model = keras.models.load_model(member / "model.keras", compile=False, safe_mode=True)
    assert {t.name: tuple(t.shape) for t in model.inputs}["xp"] == (None, k)
    scalers = json.loads((member / "scalers.json").read_text())
    assert scalers["xp_input"] == "sampled" and len(scalers["xp_wavelength_nm"]) == k
    summary = (work / "results/arrays/summary.txt").read_text()
    assert re.search(r"^  xp/sampled_flux\s+used: xp branch; t-SNE classification$", summary, re.M)
    assert "t-SNE maps of: xp/sampled_flux" in summary


def test_labels_come_from_the_training_file(shape_runs):
    """labels teff, logg, fe_h, alpha_m and no m_h, model.labels: [] (the default)."""
    from astropy.io import fits

    work, _ = _done(shape_runs, "full")
    hdr = fits.getheader(work / "results/catalogue/catalogue.fits", 1)
    assert sorted(hdr["LABELS"].split(",")) == ["alpha_m", "fe_h", "logg", "teff"]
    assert hdr["FLAGDIGS"].endswith("phot_g_mean_mag,parallax,tsne,inputs")
    scalers = json.loads((work / "results/ensemble/members/split0_seed0/scalers.json").read_text())
    assert "m_h" not in scalers["labels"]


def test_parallax_cut_star_by_star_and_validate_agrees(shape_runs, capsys):
    work, files = _done(shape_runs, "xp_coefficients")
    report = pd.read_csv(work / "results/samples/cut_report.tsv", sep="\t")
    row = report[(report.stage == "observed") & (report.cut == "parallax_positive")]
    assert row.removed.item() == 3
    n_in = report[report.cut == "observed_rows"].remaining.item()
    n_out = report[(report.stage == "samples") & (report.cut == "observed")].remaining.item()
    with h5py.File(work / "results/arrays/observed.h5") as h5:
        assert (
            len(h5["source_id"]) == n_out == n_in - report[report.stage == "observed"].removed.sum()
        )
        assert (h5["astrometry/parallax"][:] > 0).all()
    assert cli.main(["validate", str(files["observed"])]) == 0
    out = capsys.readouterr().out
    assert re.search(r"cut parallax_positive\s+removes\s+3\b", out)
    assert f"the import keeps {n_out} " in out
    assert cli.main(["validate", str(files["observed"]), "--cuts", "refuse"]) == 1
    assert "parallax <= 0 at row 4" in capsys.readouterr().err
