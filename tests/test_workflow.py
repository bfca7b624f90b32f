"""End to end: snakemake on the tiny test configuration, through the HDF5 arrays."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from workflow_helpers import REPO, make_workdir, reuse_arrays, run_snakemake

from gaiacnn import tsne
from gaiacnn.layout import validate

pytestmark = pytest.mark.slow


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_arrays_follow_the_layout(demo_run):
    arrays = demo_run / "results" / "arrays"
    tr = validate(
        arrays / "training.h5",
        require_labels=["teff", "logg", "m_h", "alpha_m", "fe_h"],
        require_finite_inputs=True,
    )
    ob = validate(arrays / "observed.h5", require_finite_inputs=True)
    assert tr.branches == ob.branches == ("rvs", "phot", "xp")
    assert tr.n_pixels == 2401 and tr.xp_length == 55
    assert tr.n_rows > 10 and ob.n_rows > tr.n_rows
    with h5py.File(arrays / "training.h5") as h5:
        assert h5.attrs["schema_version"] == "1.0"
        assert '"source": "demo"' in h5.attrs["provenance"]
        assert h5["labels/teff"].attrs["unit"] == "K"
        snr = h5["rvs/snr"][:]
        plx, eplx, ruwe = (h5[f"astrometry/{k}"][:] for k in ("parallax", "parallax_error", "ruwe"))
    # The training cuts hold in the file itself (Sect. 2.5).
    assert snr.min() >= 30 and ruwe.max() < 1.4 and (eplx / plx).max() < 0.2


def test_cut_report_adds_up_to_the_files(demo_run):
    report = pd.read_csv(demo_run / "results" / "samples" / "cut_report.tsv", sep="\t")
    n_input = report.loc[report.cut == "rvs_stars", "remaining"].item()
    assert n_input == 400
    for stage in ("gaia_source", "apogee", "training"):
        rows = report[report.stage == stage]
        before = rows.remaining.iloc[0] + rows.removed.iloc[0]
        assert before - rows.removed.sum() == rows.remaining.iloc[-1]
    gaia_pass = report[report.stage == "gaia_source"].remaining.iloc[-1]
    sizes = report[report.stage == "samples"].set_index("cut").remaining
    assert sizes["training"] + sizes["observed"] == gaia_pass
    arrays = demo_run / "results" / "arrays"
    assert validate(arrays / "training.h5").n_rows == sizes["training"]
    assert validate(arrays / "observed.h5").n_rows == sizes["observed"]
    assert (report.removed > 0).sum() >= 8  # the demo exercises most cuts


def test_summary_prints_n_per_sample(demo_run):
    out = (demo_run / "stdout.txt").read_text() + (
        demo_run / "results" / "arrays" / "summary.txt"
    ).read_text()
    n_tr = validate(demo_run / "results" / "arrays" / "training.h5").n_rows
    assert f"training   {n_tr:>10}" in out


def test_every_rule_has_log_and_benchmark(demo_run):
    logs = {p.name for p in (demo_run / "results" / "logs").iterdir()}
    assert {"demo_survey.log", "select_samples.log", "build_arrays_training.log"} <= logs
    bench = {p.name for p in (demo_run / "results" / "benchmarks").iterdir()}
    assert "build_arrays_observed.tsv" in bench


def test_same_seed_gives_byte_identical_arrays(demo_run, tmp_path):
    work = make_workdir(tmp_path, "run2")
    proc = run_snakemake(
        work, "--cores", "1", "results/arrays/training.h5", "results/arrays/observed.h5"
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    for rel in (
        "results/demo/rvs_xp.h5",
        "results/arrays/training.h5",
        "results/arrays/observed.h5",
        "results/samples/cut_report.tsv",
    ):
        assert sha256(demo_run / rel) == sha256(work / rel), rel


def test_user_files_go_through_the_same_layout(demo_run, tmp_path):
    """A survey's own files are imported (validated, edge NaNs filled) instead of the demo,
    and everything downstream of the arrays is the same chain the demo run went through."""
    work = make_workdir(tmp_path, "files")
    src = demo_run / "results" / "arrays"
    shutil.copy(src / "training.h5", tmp_path / "mine_train.h5")
    shutil.copy(src / "observed.h5", tmp_path / "mine_obs.h5")
    with h5py.File(tmp_path / "mine_obs.h5", "a") as h5:
        h5["rvs/flux"][0, :5] = np.nan  # as delivered by a survey: edge NaNs
    cfg = work / "config" / "config.yaml"
    cfg.write_text(
        cfg.read_text() + f"data:\n  source: files\n  files:\n"
        f"    training: {tmp_path / 'mine_train.h5'}\n    observed: {tmp_path / 'mine_obs.h5'}\n"
    )
    arrays = ["results/arrays/training.h5", "results/arrays/observed.h5"]
    proc = run_snakemake(work, "--cores", "2", *arrays)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with (
        h5py.File(work / "results/arrays/observed.h5") as new,
        h5py.File(src / "observed.h5") as old,
    ):
        np.testing.assert_array_equal(new["source_id"][:], old["source_id"][:])
        assert np.isfinite(new["rvs/flux"][0]).all()
        np.testing.assert_array_equal(new["rvs/flux"][1:], old["rvs/flux"][1:])
    assert validate(work / "results/arrays/training.h5").labels == (
        "alpha_m",
        "fe_h",
        "logg",
        "m_h",
        "teff",
    )
    # the rest of the run: the demo's chain from the arrays on, and no demo survey
    proc = run_snakemake(work, "-n")
    assert proc.returncode == 0, proc.stderr[-4000:]
    jobs = re.findall(r"^(\w+)\s+\d+$", proc.stdout.split("Job stats:")[1], re.M)
    assert "demo_survey" not in jobs and "import_arrays" not in jobs  # arrays are done
    assert {"train_member", "tsne_joint", "flag_catalogue", "figures"} <= set(jobs)


def test_broken_user_file_stops_with_a_message_and_no_output(tmp_path):
    work = tmp_path / "bad"
    (work / "config").mkdir(parents=True)
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as h5:
        h5.attrs["schema_version"] = "1.0"
        h5["source_id"] = np.arange(3)
        h5["rvs/flux"] = np.ones((3, 10), "f4")  # no wavelength_nm attribute
    (work / "config" / "config.yaml").write_text(
        f"data:\n  source: files\n  files:\n    training: {bad}\n    observed: {bad}\n"
    )
    proc = run_snakemake(work, "--cores", "1", "results/arrays/observed.h5")
    assert proc.returncode != 0
    log = (work / "results/logs/import_arrays_observed.log").read_text()
    assert "rvs/flux: attribute wavelength_nm is missing" in log
    assert not (work / "results/arrays/observed.h5").exists()


def test_bad_config_stops_before_any_job(tmp_path):
    work = make_workdir(tmp_path, "badcfg")
    proc = run_snakemake(work, "--cores", "1", "--config", "demo={n_stars: 0}")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Configuration error")]
    assert errors == [
        "Configuration error: config key 'demo.n_stars': 0 is less than the minimum of 10"
    ]
    assert not (work / "results").exists()


def test_dry_run_shows_the_chain(tmp_path):
    work = make_workdir(tmp_path, "dry")
    proc = run_snakemake(work, "-n")
    assert proc.returncode == 0, proc.stderr
    for rule in ("demo_survey", "select_samples", "build_arrays", "summarize_arrays"):
        assert rule in proc.stdout


def test_observed_only_populations_stay_out_of_training(demo_run):
    from gaiacnn.demo import physics

    with h5py.File(demo_run / "results/demo/truth.h5") as truth:
        ids = truth["source_id"][:]
        pop = truth["truth/population"][:]
    train_ids = h5py.File(demo_run / "results/arrays/training.h5")["source_id"][:]
    obs_ids = h5py.File(demo_run / "results/arrays/observed.h5")["source_id"][:]
    ood = np.isin(pop, [physics.POPULATION_CODES[p] for p in physics.OOD_POPULATIONS])
    assert not np.isin(train_ids, ids[ood]).any()
    assert np.isin(obs_ids, ids[ood]).sum() >= 5


def test_ensemble_catalogue_and_evaluation(demo_run):
    from astropy.io import fits

    members = sorted(p.name for p in (demo_run / "results/ensemble/members").iterdir())
    assert members == ["split0_seed0", "split0_seed1"]
    for m in members:
        files = {p.name for p in (demo_run / "results/ensemble/members" / m).iterdir()}
        assert files == {"model.keras", "scalers.json", "history.json"}
    with fits.open(demo_run / "results/catalogue/catalogue.fits") as hdul:
        hdr, data = hdul[1].header, hdul[1].data
        assert hdr["MEMBERS"] == "split0_seed0,split0_seed1"
        n_tr = validate(demo_run / "results/arrays/training.h5").n_rows
        n_ob = validate(demo_run / "results/arrays/observed.h5").n_rows
        assert len(data) == n_tr + n_ob
        for label in ("teff", "logg", "m_h", "alpha_m", "fe_h"):
            assert np.isfinite(data[label]).all()
            assert (data[f"sigma_{label}"] >= data[f"e_{label}"]).all()
        assert hdr["FLAGDIGS"] == (
            "teff,logg,m_h,alpha_m,fe_h,phot_g_mean_mag,parallax,tsne,inputs"
        )
        assert any("digit 8: not training-like" in c for c in hdr["COMMENT"])
        assert any("digit 9: BP-RP, M_G, parallax S/N outside" in c for c in hdr["COMMENT"])
        flag = np.char.strip(np.asarray(data["flag_boundary"]).astype(str))
        assert all(re.fullmatch("[01]{9}", f) for f in flag)
        # training stars are training-like and inside their own input space by definition
        assert not any(f[7] == "1" or f[8] == "1" for f in flag[data["in_training"]])
    confusion = pd.read_csv(demo_run / "results/evaluation/tsne_confusion.tsv", sep="\t")
    assert "ALL training populations" in set(confusion["population"])
    like = h5py.File(demo_run / "results/tsne/training_like.h5")
    assert set(like) == {"source_id", "training_like", "training_like_p10", "training_like_p20"}
    assert np.array_equal(
        like["training_like"][:], like["training_like_p10"][:] & like["training_like_p20"][:]
    )
    precision = pd.read_csv(demo_run / "results/evaluation/precision.tsv", sep="\t")
    assert set(precision["label"]) == {"teff", "logg", "m_h", "alpha_m", "fe_h"}
    assert precision["n"].sum() > 0


#: One prediction shard per sample: the tiny configuration's two observed shards (which the
#: first run's gathering tests) cost another TensorFlow job in every other run.
ONE_SHARD = "prediction={shard_rows: 100000}"


@pytest.mark.parametrize(
    ("variant", "branches"), [("rvs_only.yaml", ["rvs"]), ("xp_phot.yaml", ["phot", "xp"])]
)
def test_other_input_branches_run_end_to_end(demo_run, tmp_path, variant, branches):
    work = make_workdir(tmp_path, "branches")
    reuse_arrays(demo_run, work)
    proc = run_snakemake(
        work,
        "--cores",
        "2",
        "results/ensemble/predictions/observed/split0_seed0.h5",
        "--config",
        "ensemble={n_splits: 1, n_seeds: 1}",
        ONE_SHARD,
        "--configfile",
        str(REPO / "config" / "variants" / variant),
        str(work / "config" / "config.yaml"),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    import json

    scalers = json.loads((work / "results/ensemble/members/split0_seed0/scalers.json").read_text())
    assert sorted(scalers["branches"]) == branches
    assert "rule build_arrays" not in proc.stdout + proc.stderr  # arrays reused, not rebuilt
    with h5py.File(work / "results/ensemble/predictions/observed/split0_seed0.h5") as h5:
        assert np.isfinite(h5["pred/teff"][:]).all()


def test_forcing_one_member_reruns_only_it_and_the_aggregation(demo_run):
    """One job per shard for all members (the default) re-predicts every member's shards
    with it; one job per member and shard (the clusters') only its own.  (The run was made
    with the default: under the other layout its prediction jobs differ, which Snakemake's
    input and code triggers would rerun, so that dry run looks at the times only.)"""
    downstream = {
        "aggregate_ensemble": "1",
        "evaluate_demo": "1",
        "flag_catalogue": "1",  # the flag reads the labels; the t-SNE maps are not rerun
        "evaluate_flags": "1",
        "figures": "1",  # the figures read the catalogue (and that member's gradients)
        "export_bundle": "1",  # the bundle holds the member
        "all": "1",
    }
    for per_job, predict in (("all", "predict_shard"), ("one", "predict_member")):
        proc = run_snakemake(
            demo_run,
            "-n",
            "--forcerun",
            "results/ensemble/members/split0_seed1/model.keras",
            "--config",
            f"prediction={{members_per_job: {per_job}}}",
            *(["--rerun-triggers", "mtime"] if per_job == "one" else []),
        )
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout
        jobs = dict(
            re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1].split("total")[0], re.M)
        )
        assert jobs == {
            "train_member": "1",
            # one job per shard: 54 training stars (one shard), 300 observed (two of 150)
            predict: "3",
            # all: both members' shards are new, so both are gathered again
            "gather_predictions": "4" if per_job == "all" else "2",
            **downstream,
        }


def test_scalable_tsne_places_shards_into_a_reference_map(demo_run, tmp_path, config):
    work = make_workdir(tmp_path, "scalable")
    reuse_arrays(demo_run, work)
    # 200 of the 300 observed stars in the reference maps, and with them (reference_training
    # proportional, the default) 36 of the 54 training stars: enough for the threshold's
    # support of 10 training stars (with 120, 22 of them, the classes are mostly noise);
    # two sets of reference maps, each with its own subsample
    n_ref, shard_rows = 200, 40
    tsne_cfg = {
        "mode": "scalable", "perplexities": [10, 20], "pca_components": 10, "n_iter": 200,
        "reference_observed": n_ref, "place_shard_rows": shard_rows, "place_chunk_rows": 30,
        "place_n_iter": 50, "reference_maps": 2,
    }  # fmt: skip
    proc = run_snakemake(
        work,
        "--cores",
        "2",
        "results/tsne/training_like.h5",
        "--config",
        f"tsne={json.dumps(tsne_cfg)}",
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "rule tsne_joint" not in proc.stdout + proc.stderr
    n_obs = validate(work / "results/arrays/observed.h5").n_rows
    n_tr = validate(work / "results/arrays/training.h5").n_rows
    n_shards = -(-(n_obs - n_ref) // shard_rows)
    assert n_shards >= 2
    with h5py.File(work / "results/arrays/observed.h5") as h5:
        obs_sid = h5["source_id"][:]
    references = []
    for ref in ("r0", "r1"):
        scalable = work / "results/tsne/scalable" / ref
        with h5py.File(scalable / "p10.h5") as h5:
            obs = ~h5["in_training"][:]
            assert obs.sum() == n_obs and h5.attrs["mode"] == "scalable"
            assert h5.attrs["n_reference_observed"] == n_ref
            # reference_training proportional (the default): the training stars in the map
            # are the same share of the training sample as the reference stars of the
            # observed one
            assert h5.attrs["reference_training"] == "proportional"
            assert (~obs).sum() == h5.attrs["n_reference_training"] == round(n_tr * n_ref / n_obs)
        # one placement job per shard of 40 of the stars left out of the set's reference
        # maps, into the maps of both perplexities; together they place each of them once
        placed = []
        for k in range(n_shards):
            with h5py.File(scalable / f"shard{k}.h5") as h5:
                assert len(h5["source_id"]) == min(shard_rows, n_obs - n_ref - shard_rows * k)
                assert {"p10", "p20"} <= set(h5) and len(h5["p20/xy"]) == len(h5["source_id"])
                placed.append(h5["source_id"][:])
        assert not (scalable / f"shard{n_shards}.h5").exists()
        with (
            h5py.File(scalable / "p10/reference.h5") as h5,
            h5py.File(scalable / "p10.h5") as gathered,
        ):
            reference = h5["source_id"][:][~h5["in_training"][:]]
            # the gathered map: the reference map's training stars, row for row, then every
            # observed star in the observed file's order, the reference map's among them at
            # the rows of the set's seed (what benchmarks/tsne_threshold_sweep.py reads to
            # tell reference from placed stars)
            n_tr_map = int(h5["in_training"][:].sum())
            assert np.array_equal(gathered["xy"][:n_tr_map], h5["xy"][:n_tr_map])
            assert np.array_equal(gathered["source_id"][n_tr_map:], obs_sid)
            rows = tsne.reference_rows(n_obs, n_ref, int(gathered.attrs["seed"]))
            assert np.array_equal(obs_sid[rows], reference)
            assert np.array_equal(gathered["xy"][n_tr_map:][rows], h5["xy"][n_tr_map:])
        placed = np.concatenate(placed)
        assert placed.size == np.unique(placed).size == n_obs - n_ref
        assert not np.isin(placed, reference).any()
        references.append(set(reference))
    # the second set embeds another subsample (seed + 1)
    assert references[0] != references[1]
    # the placement sets a bundle builds from the gathered maps and the arrays place the
    # stars left out of both sets' references where the placement jobs put them: the same
    # classes, star for star
    tsne_cfg = {**config["tsne"], **tsne_cfg}
    arrays = [work / "results/arrays" / f"{s}.h5" for s in ("training", "observed")]
    sets = [
        tsne.placement_set_from_maps(
            [work / f"results/tsne/scalable/{ref}/p{p}.h5" for p in (10, 20)], *arrays, tsne_cfg
        )[0]
        for ref in ("r0", "r1")
    ]
    left_out = np.flatnonzero(~np.isin(obs_sid, list(references[0] | references[1])))
    assert left_out.size > 20
    x = tsne.read_spectra(arrays[1], left_out)
    like, per_perp = tsne.placed_training_like(sets, x, tsne_cfg)
    with h5py.File(work / "results/tsne/training_like.h5") as h5:
        assert np.array_equal(like, h5["training_like"][:][left_out])
        for p, v in per_perp.items():
            assert np.array_equal(v, h5[f"training_like_p{p:g}"][:][left_out])
    # the same stars, classified in the joint maps of the first run: mostly the same class
    with (
        h5py.File(work / "results/tsne/training_like.h5") as a,
        h5py.File(demo_run / "results/tsne/training_like.h5") as b,
    ):
        assert a.attrs["maps_per_perplexity"] == 2
        assert np.array_equal(a["source_id"][:], b["source_id"][:])
        agree = np.mean(a["training_like"][:] == b["training_like"][:])
    assert agree >= 0.8


def test_unknown_member_is_refused_before_any_job(demo_run):
    proc = run_snakemake(demo_run, "-n", "results/ensemble/members/split5_seed0/model.keras")
    assert proc.returncode != 0
    assert "ensemble member split5_seed0 does not exist" in proc.stdout + proc.stderr


def test_figures_are_rendered_and_reported(demo_run):
    """The final rule drew each figure the tiny demo allows, in both formats, and the
    Snakemake report embeds them with their captions."""
    figures = demo_run / "results/figures"
    index = json.loads((figures / "figures.json").read_text())
    drawn = {f["name"]: f for f in index["figures"]}
    expected = {
        "fig01_snr",
        "fig04_training_kiel",
        "fig07_residuals",
        "fig09_rvs_gradients",
        "fig17_tsne_p10",
        "figA1_tsne_perplexities",
        "demo_truth_residuals_snr",
        "demo_sigma_coverage",
        "input_distance_residuals",
    }
    assert expected <= set(drawn)
    for name, entry in drawn.items():
        assert entry["files"] == [f"{name}.png"]  # PDFs: tests/test_figures.py
        assert all((figures / f).stat().st_size > 1000 for f in entry["files"])
        # Fig. 6 draws the network alone: no stars
        assert (entry["n_stars"] > 0) != (name == "fig06_architecture") and entry["caption"]
    skipped = {s["function"]: s["reason"] for s in index["skipped"]}
    assert "figures.external.galah is null" in skipped["galah"]
    report = demo_run / "report.html"
    proc = run_snakemake(demo_run, "--report", str(report))
    assert proc.returncode == 0, proc.stderr[-4000:]
    html = report.read_text()
    assert "Validation figures" in html and "fig09_rvs_gradients" in html


def test_shifted_demo_runs_end_to_end(tmp_path):
    """The tiny demo with an extra observed field twice as far, twice as reddened and with
    worse parallaxes (demo.shift, issue 24): every output is made, the evaluation tells the
    shifted stars from the ordinary ones, and the input-space digit is evaluated."""
    work = make_workdir(tmp_path, "shifted")
    proc = run_snakemake(
        work,
        "--cores",
        "2",
        "--config",
        "demo={n_stars: 400, chunk_size: 150, shift: {n_stars: 200, distance_factor: 2.0, "
        "a_v_factor: 2.0, parallax_error_factor: 1.5, apogee_match_fraction: 0.1}}",
        ONE_SHARD,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    with h5py.File(work / "results/demo/truth.h5") as h5:
        shifted = h5["truth/shifted"][:]
        assert shifted.sum() == 200 and len(shifted) == 600
        d = h5["truth/distance_pc"][:]
        assert np.median(d[shifted]) > 1.5 * np.median(d[~shifted])
    table = pd.read_csv(work / "results/evaluation/shift.tsv", sep="\t")
    assert {
        "training",
        "observed",
        "shifted",
        "shifted_inputs_inside",
        "shifted_inputs_outside",
        "shifted_parallax_used",
        "shifted_parallax_withheld",
    } == set(table["sample"])
    assert {"a0", "distance_kpc", "parallax_snr", "g_mag", "snr"} == set(table["axis"])
    per_axis = table[(table["sample"] == "shifted") & (table["label"] == "logg")]
    # every shifted star inside the range is counted once per axis
    counts = per_axis.groupby("axis")["n"].sum()
    assert counts.nunique() == 1 and counts.iloc[0] > 50
    # split by the input-space digit, and by the withheld parallax: each time the two
    # parts make up the shifted stars
    for split_by in ("shifted_inputs_", "shifted_parallax_"):
        split = table[table["sample"].str.startswith(split_by) & (table["label"] == "logg")]
        assert (split.groupby("axis")["n"].sum() == counts).all()
    digit = pd.read_csv(work / "results/evaluation/input_flag.tsv", sep="\t")
    assert list(digit["sample"]) == ["observed", "shifted"]
    assert (digit["n"] > 0).all() and (digit["flagged"] <= digit["n"]).all()
    # farther, redder, worse parallaxes: the digit flags more of the shifted field
    frac = dict(zip(digit["sample"], digit["flagged_fraction"], strict=True))
    assert frac["shifted"] > frac["observed"]
    from astropy.io import fits

    with fits.open(work / "results/catalogue/catalogue.fits") as hdul:
        flag = np.char.strip(np.asarray(hdul[1].data["flag_boundary"]).astype(str))
    assert all(len(f) == 9 for f in flag)
    assert (work / "results/figures/figures.json").exists()


def test_the_paper_preset_runs_end_to_end(demo_run, tmp_path):
    """config/variants/paper.yaml on the tiny demo (one member of three epochs, set here):
    the whole workflow runs with the paper's inputs, sigma_* and 8-digit flag."""
    work = make_workdir(tmp_path, "paper")
    reuse_arrays(demo_run, work)
    proc = run_snakemake(
        work,
        "--cores",
        "2",
        "--configfile",
        str(work / "config" / "config.yaml"),
        str(REPO / "config" / "variants" / "paper.yaml"),
        "--config",
        "ensemble={n_splits: 1, n_seeds: 1}",
        "model={training: {max_epochs: 3, verbose: 0}}",
        ONE_SHARD,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    scalers = json.loads((work / "results/ensemble/members/split0_seed0/scalers.json").read_text())
    assert sorted(scalers["branches"]) == ["phot", "rvs", "xp"]
    assert scalers["phot_input"] == "magnitudes"
    from astropy.io import fits

    with fits.open(work / "results/catalogue/catalogue.fits") as hdul:
        hdr = hdul[1].header
        flag = np.char.strip(np.asarray(hdul[1].data["flag_boundary"]).astype(str))
    assert hdr["FLAGDIGS"].endswith("phot_g_mean_mag,parallax,tsne")
    assert hdr["SNRCALIB"] == ""  # the paper's sigma_*, not calibrated
    assert all(re.fullmatch(r"[01]{8}", f) for f in flag)
    with h5py.File(work / "results/tsne/training_like.h5") as h5:
        assert sorted(h5.attrs["perplexities"]) == [30, 50, 75, 100]
        n_like, n_obs = int(h5["training_like"][:].sum()), h5["training_like"].size
    # the flag report quotes the run's training-like share beside the paper's (Sect. 5.1)
    log = (work / "results/logs/flag_catalogue.log").read_text()
    assert f"{n_like} of {n_obs} training-like" in log
    assert "the paper: 669 572 of 841 300, 79.6 %" in log
    # and the run's G range (Table 1) beside the paper's 7 < G < 14.2 (Sect. 2.6)
    with open(work / "results/ensemble/uncertainty_model.json") as fh:
        g_lo, g_hi = json.load(fh)["training_range"]["phot_g_mean_mag"]
    assert f"G (Table 1): {g_lo:.2f}-{g_hi:.2f} mag (the paper: 7-14.2, Sect. 2.6)" in log
    assert (work / "results/figures/figures.json").exists()


def test_the_demo_catalogue_reads_cleanly_and_its_hats_copy_finds_every_star(demo_run, tmp_path):
    """The tiny demo's catalogue: astropy reads it with warnings as errors; its Parquet twin
    has its rows and columns; the HATS copy (gaiacnn.hats, as rule hats_catalogue makes
    it) cross-matched by lsdb with a HATS catalogue made from the demo's gaia_source finds
    every star, under its own source_id."""
    import subprocess
    import sys

    import lsdb
    import pyarrow.parquet as pq
    from astropy.table import Table

    from gaiacnn import hats

    cat_path = demo_run / "results/catalogue/catalogue.fits"
    code = f"from astropy.table import Table; Table.read({str(cat_path)!r})"
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    cat = Table.read(cat_path)
    parquet = pq.read_table(demo_run / "results/catalogue/catalogue.parquet")
    assert parquet.column_names == cat.colnames and parquet.num_rows == len(cat)
    assert parquet.schema.field("teff").metadata[b"unit"] == b"K"
    assert hats.run_hats_catalogue(
        demo_run / "results/catalogue/catalogue.parquet", tmp_path / "hats"
    ) == len(cat)
    gaia = Table.read(demo_run / "results/demo/gaia_source.fits")
    gaia_df = gaia["source_id", "ra", "dec"].to_pandas()
    gaia_hats = lsdb.from_dataframe(gaia_df, ra_column="ra", dec_column="dec",
                                    catalog_name="gaia_source")  # fmt: skip
    gaia_hats.write_catalog(tmp_path / "gaia_source", catalog_name="gaia_source")
    matched = lsdb.open_catalog(tmp_path / "hats").crossmatch(
        lsdb.open_catalog(tmp_path / "gaia_source"), radius_arcsec=1.0, n_neighbors=1,
        suffixes=("", "_gaia"), suffix_method="overlapping_columns",
    ).compute()  # fmt: skip
    assert len(matched) == len(cat)
    assert (matched["source_id"] == matched["source_id_gaia"]).all()
