"""The trained ensemble as a bundle (gaiacnn.bundle): the tiny demo run's own bundle
(rule export_bundle) applied to its observed file gives its catalogue; a tampered,
incomplete or newer bundle and a file on another grid are refused, naming the file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from gaiacnn import bundle, catalogue
from gaiacnn.layout import LayoutError


def _observed_rows(run):
    table, _ = catalogue.read(run / "results/catalogue/catalogue.fits")
    return table[~table["in_training"].to_numpy(bool)].reset_index(drop=True)


def _assert_same(expected, got):
    """Every shared column equal, floats within float32 rounding."""
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected)
    for name in expected.columns:
        a, b = expected[name].to_numpy(), got[name].to_numpy()
        if a.dtype.kind == "f":
            assert np.allclose(a, b, rtol=2e-7, atol=0, equal_nan=True), name
        else:
            assert np.array_equal(a, b), name


def test_the_runs_bundle_gives_its_catalogue(demo_run, tmp_path):
    path = demo_run / "results/bundle"
    b = bundle.load(path)
    assert b.info["format"] == bundle.FORMAT and b.info["version"] == bundle.VERSION
    card = (path / bundle.MODEL_CARD_FILE).read_text()
    assert "## Precision and coverage" in card and "## Known limits" in card
    for x in b.labels:
        assert f"| {x} |" in card
    # the placement into the run's maps, checked at export on the run's own stars
    check = b.info["tsne"]["placement"]["check"]
    assert check["stars"] > 0 and 0.0 <= check["agreement"] <= 1.0
    assert f"{100 * check['agreement']:.1f} %" in card
    observed = demo_run / "results/arrays/observed.h5"
    out = tmp_path / "catalogue.fits"
    summary = bundle.predict(path, observed, out)
    expected = _observed_rows(demo_run)
    assert summary["stars"] == len(expected)
    _assert_same(expected, catalogue.read(out)[0])


def test_workers_and_shards_give_the_same_rows(demo_run, tmp_path):
    observed = demo_run / "results/arrays/observed.h5"
    out = tmp_path / "shard.fits"
    proc = subprocess.run(
        [sys.executable, "-m", "gaiacnn.cli", "predict", str(demo_run / "results/bundle"),
         str(observed), "-o", str(out), "--workers", "2", "--shard", "1/2"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = _observed_rows(demo_run)
    half = len(expected) // 2  # shard 1 of 2: rows n // 2 .. n
    _assert_same(expected.iloc[half:].reset_index(drop=True), catalogue.read(out)[0])


def _copy(demo_run, tmp_path):
    return shutil.copytree(demo_run / "results/bundle", tmp_path / "bundle")


def _rewrite_manifest(path):
    lines = [
        f"{bundle.sha256_file(path / name)}  {name}"
        for name in sorted(bundle.read_manifest(path))
        if (path / name).exists()
    ]
    (path / bundle.MANIFEST_FILE).write_text("\n".join(lines) + "\n")


def test_a_tampered_missing_or_extra_file_is_refused_naming_it(demo_run, tmp_path):
    path = _copy(demo_run, tmp_path)
    member = bundle.load(path).members[0]
    weights = path / "members" / member / "model.keras"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(bundle.BundleError, match=rf"{member}/model\.keras: SHA-256 .* differs"):
        bundle.load(path)
    # the command line says the same in one line, and writes nothing
    out = tmp_path / "cat.fits"
    proc = subprocess.run(
        [sys.executable, "-m", "gaiacnn.cli", "predict", str(path),
         str(demo_run / "results/arrays/observed.h5"), "-o", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 1 and not out.exists()
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "model.keras: SHA-256" in errors[0]
    shutil.rmtree(path)
    path = _copy(demo_run, tmp_path)
    (path / "notes.txt").write_text("hello")
    with pytest.raises(bundle.BundleError, match=r"notes\.txt: not in MANIFEST\.sha256"):
        bundle.load(path)
    (path / "notes.txt").unlink()
    (path / bundle.INPUT_SPACE_FILE).unlink()
    with pytest.raises(bundle.BundleError, match=r"input_space\.npz: in MANIFEST\.sha256 but"):
        bundle.load(path)


def test_a_bundle_of_a_newer_major_version_is_refused(demo_run, tmp_path):
    path = _copy(demo_run, tmp_path)
    info = json.loads((path / bundle.INFO_FILE).read_text())
    info["version"] = "2.0"
    (path / bundle.INFO_FILE).write_text(json.dumps(info))
    _rewrite_manifest(path)
    with pytest.raises(bundle.BundleError, match=r"format version 2\.0, made by a newer"):
        bundle.load(path)
    info["version"] = "1.7"  # a newer minor of the same major: read
    (path / bundle.INFO_FILE).write_text(json.dumps(info))
    _rewrite_manifest(path)
    assert bundle.load(path).info["version"] == "1.7"


def test_a_file_on_another_grid_is_refused_naming_both(demo_run, tmp_path):
    observed = shutil.copy(demo_run / "results/arrays/observed.h5", tmp_path / "other.h5")
    with h5py.File(observed, "r+") as h5:
        wl = h5["rvs/flux"].attrs["wavelength_nm"]
        h5["rvs/flux"].attrs["wavelength_nm"] = wl + 0.005
    with pytest.raises(LayoutError, match=r"846\.00-870\.00 nm.*846\.0\d-870\.0\d nm|grid"):
        bundle.predict(demo_run / "results/bundle", observed, tmp_path / "cat.fits")
    assert not (tmp_path / "cat.fits").exists()


def test_known_classes_need_the_same_star_and_spectrum(demo_run, tmp_path):
    """A star the run classified keeps its class only with the same spectrum: another
    spectrum under its source_id is placed into the bundle's maps; a bundle without
    placement sets (format 1.0) gives it '-' (not classified) in the t-SNE digit."""
    from gaiacnn import flags

    observed = shutil.copy(demo_run / "results/arrays/observed.h5", tmp_path / "new.h5")
    # the flux of 3 stars scaled by 1.001 (their normalised shape kept, their hash not)
    # and 3 others' replaced by the first star's
    with h5py.File(observed, "r+") as h5:
        h5["rvs/flux"][:3] = h5["rvs/flux"][:3] * 1.001
        h5["rvs/flux"][3:6] = np.repeat(h5["rvs/flux"][6:7], 3, axis=0)
    path = demo_run / "results/bundle"
    b = bundle.load(path)
    t = b.info["flags"]["digits"].index(flags.TSNE_DIGIT)
    expected = _observed_rows(demo_run)["flag_boundary"].tolist()
    out = tmp_path / "cat.fits"
    bundle.predict(path, observed, out)
    got = catalogue.read(out)[0]["flag_boundary"].tolist()
    assert got[6:] == expected[6:]
    # placed (the median position of their nearest reference spectra, which need not be
    # where the joint map put them); the next three get the class star 6's own spectrum
    # gets placed
    placement = bundle._Placement(b)
    placed = placement.training_like(observed, np.arange(7))
    assert [c[t] for c in got[:6]] == ["0" if x else "1" for x in placed[:6]]
    assert placed[3] == placed[4] == placed[5] == placed[6]
    # a bundle of format 1.0 (no placement sets): '-'
    old = _copy(demo_run, tmp_path)
    info = json.loads((old / bundle.INFO_FILE).read_text())
    info["version"], _ = "1.0", info["tsne"].pop("placement")
    (old / bundle.INFO_FILE).write_text(json.dumps(info))
    shutil.rmtree(old / bundle.PLACEMENT_DIR)
    _rewrite_manifest(old)
    bundle.predict(old, observed, out)
    got = catalogue.read(out)[0]["flag_boundary"].tolist()
    assert all(code[t] == flags.NOT_AVAILABLE for code in got[:6])
    assert got[6:] == expected[6:]


def test_a_run_from_a_bundle_trains_nothing_and_writes_the_catalogue(demo_run, tmp_path):
    from workflow_helpers import make_workdir, run_snakemake

    from gaiacnn import flags

    work = make_workdir(tmp_path, "from_bundle")
    # a new observed sample (another demo seed), the first run's ensemble
    proc = run_snakemake(
        work, "--cores", "2", "--config",
        f"ensemble={{bundle: {demo_run / 'results/bundle'}}}",
        "demo={seed: 7, n_stars: 400, chunk_size: 150}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = proc.stdout + proc.stderr
    assert "rule bundle_catalogue" in log
    for rule in ("train_member", "predict_shard", "aggregate_ensemble", "tsne_joint"):
        assert f"rule {rule}" not in log
    table, attrs = catalogue.read(work / "results/catalogue/catalogue.fits")
    with h5py.File(work / "results/arrays/observed.h5") as h5:
        sid = h5["source_id"][:]
    assert np.array_equal(table["source_id"].to_numpy(), sid)
    assert not table["in_training"].any()
    assert attrs["members"] == bundle.load(demo_run / "results/bundle").members
    for x in attrs["labels"]:
        assert np.isfinite(table[x]).all() and (table[f"sigma_{x}"] > 0).all()
    # stars the bundle's run did not classify are placed into its maps: every star has
    # a t-SNE class
    t = attrs["flag_digits"].index(flags.TSNE_DIGIT)
    assert not np.isin(sid, _observed_rows(demo_run)["source_id"].to_numpy()).all()
    assert {c[t] for c in table["flag_boundary"]} <= {"0", "1"}
    # Parquet beside the FITS file by default; CSV only when asked for
    assert (work / "results/catalogue/catalogue.parquet").is_file()
    assert not (work / "results/catalogue/catalogue.csv").exists()
    # the observed sample's figures, with the bundle's uncertainty model; those of the
    # training sample and the t-SNE maps say why they are not drawn
    index = json.loads((work / "results/figures/figures.json").read_text())
    drawn = {f["name"] for f in index["figures"]}
    assert {"fig01_snr", "fig18_outside_limits"} <= drawn
    reasons = {s["function"]: s["reason"] for s in index["skipped"]}
    assert "a run from a bundle" in reasons["example_spectra"]
    assert "t-SNE" in reasons["tsne_classification"]
