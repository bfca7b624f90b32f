"""Building the sample files from the raw store: row order, NaN filling, refusals, CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gaiacnn import arrays, cli, layout
from gaiacnn.constants import CONTINUUM_WINDOWS_NM, rvs_wavelength_nm
from gaiacnn.layout import ArraysWriter, read_column, validate

WL = rvs_wavelength_nm()


def raw_store(path, ids, flux, bp=None):
    cols = {
        "source_id": ((), np.int64, {}),
        "rvs/flux": ((WL.size,), np.float32, {"wavelength_nm": WL}),
        "xp/bp_coefficients": ((3,), np.float32, {}),
        "xp/rp_coefficients": ((3,), np.float32, {}),
    }
    n = len(ids)
    with ArraysWriter(path, n, cols) as w:
        w.append(
            {
                "source_id": ids,
                "rvs/flux": flux,
                "xp/bp_coefficients": np.ones((n, 3), np.float32) if bp is None else bp,
                "xp/rp_coefficients": np.ones((n, 3), np.float32),
            }
        )


def gaia_for(ids):
    n = len(ids)
    return pd.DataFrame(
        {
            "source_id": ids,
            "rvs_spec_sig_to_noise": np.full(n, 40.0),
            "phot_g_mean_mag": np.arange(n, dtype=float),
            "phot_bp_mean_mag": np.full(n, 12.0),
            "phot_rp_mean_mag": np.full(n, 11.0),
            "parallax": np.full(n, 1.0),
            "parallax_error": np.full(n, 0.02),
            "ruwe": np.full(n, 1.0),
        }
    )


RAW_IDS = np.arange(10, 20)


def build(tmp_path, sample, flux, ids=RAW_IDS, bp=None):
    raw_store(tmp_path / "raw.h5", ids, flux, bp)
    return arrays.build_sample_file(
        tmp_path / "raw.h5",
        gaia_for(ids),
        sample,
        tmp_path / "out.h5",
        sample_name="training",
        labels=["teff"],
        continuum_windows_nm=CONTINUUM_WINDOWS_NM,
        nan_fill_quantile=0.75,
        chunk_rows=3,
        progress=False,
    )


def test_rows_follow_the_raw_store_and_nan_are_filled(tmp_path):
    flux = np.full((10, WL.size), 0.9, np.float32)
    flux[:, :7] = np.nan
    sample = pd.DataFrame(
        {"source_id": [17, 11, 15, 12], "teff": [1.0, 2.0, 3.0, 4.0], "teff_err": [0.1] * 4}
    )
    counts = build(tmp_path, sample, flux)
    assert counts == {"n_stars": 4, "nan_filled_pixels": 28, "nan_filled_spectra": 4}
    info = validate(tmp_path / "out.h5", require_labels=["teff"], require_finite_inputs=True)
    assert info.n_rows == 4
    assert read_column(tmp_path / "out.h5", "source_id").tolist() == [11, 12, 15, 17]
    assert read_column(tmp_path / "out.h5", "labels/teff").tolist() == [2.0, 4.0, 3.0, 1.0]
    assert read_column(tmp_path / "out.h5", "phot/g").tolist() == [1.0, 2.0, 5.0, 7.0]


def test_star_with_a_missing_xp_band_is_left_out_and_logged(tmp_path, caplog):
    """A DR3 source can have RP coefficients only; the hybrid CNN needs both bands."""
    flux = np.full((10, WL.size), 0.9, np.float32)
    bp = np.ones((10, 3), np.float32)
    bp[5] = np.nan  # source 15: no BP
    sample = pd.DataFrame(
        {"source_id": [17, 15, 12], "teff": [1.0, 2.0, 3.0], "teff_err": [0.1] * 3}
    )
    assert build(tmp_path, sample, flux, bp=bp)["n_stars"] == 2
    assert read_column(tmp_path / "out.h5", "source_id").tolist() == [12, 17]
    assert read_column(tmp_path / "out.h5", "labels/teff").tolist() == [3.0, 1.0]
    assert "1 training stars left out" in caplog.text and "[15]" in caplog.text


def test_all_nan_spectrum_is_named_and_nothing_is_written(tmp_path):
    flux = np.full((10, WL.size), 0.9, np.float32)
    flux[3] = np.nan
    sample = pd.DataFrame({"source_id": [12, 13], "teff": [1.0, 2.0], "teff_err": [0.1, 0.1]})
    with pytest.raises(ValueError, match=r"no finite pixel, source_id \[13\]"):
        build(tmp_path, sample, flux)
    assert not (tmp_path / "out.h5").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw.h5"]


def test_star_without_spectrum_is_named(tmp_path):
    flux = np.full((10, WL.size), 0.9, np.float32)
    sample = pd.DataFrame({"source_id": [12, 99], "teff": [1.0, 2.0], "teff_err": [0.1, 0.1]})
    with pytest.raises(
        ValueError, match=r"1 source ids have no spectrum in the raw store \(e.g. 99\)"
    ):
        build(tmp_path, sample, flux)


def test_cli_validate_reports_ok_and_errors(tmp_path, capsys):
    flux = np.full((10, WL.size), 0.9, np.float32)
    build(tmp_path, pd.DataFrame({"source_id": [12], "teff": [1.0], "teff_err": [0.1]}), flux)
    assert cli.main(["validate", str(tmp_path / "out.h5"), "--labels", "teff", "--finite"]) == 0
    out = capsys.readouterr().out
    assert "ok, 1 rows, branches rvs,phot,xp" in out and "labels teff" in out
    assert cli.main(["validate", str(tmp_path / "out.h5"), "--labels", "logg"]) == 1
    assert "labels/logg: label not in file" in capsys.readouterr().err


def test_import_refuses_a_bad_user_file_before_writing(tmp_path, config):
    import h5py

    from gaiacnn.arrays import run_import_arrays

    flux = np.full((10, WL.size), 0.9, np.float32)
    sample = pd.DataFrame({"source_id": np.arange(10, 20), "teff": 1.0, "teff_err": 0.1})
    build(tmp_path, sample, flux)
    with h5py.File(tmp_path / "out.h5", "a") as h5:
        h5["rvs/flux"][2, :4] = np.nan  # as a survey delivers it: filled, not refused
    kwargs = dict(
        sample_name="observed",
        labels=["teff"],
        rvs_cfg=config["rvs"],
        arrays_cfg=dict(config["arrays"], chunk_rows=4),
        provenance={"source": "files"},
    )
    run_import_arrays(tmp_path / "out.h5", tmp_path / "imported.h5", **kwargs)
    info = validate(tmp_path / "imported.h5", require_finite_inputs=True)
    # An observed file keeps its reference labels (validation only, never model inputs).
    assert info.n_rows == 10 and "teff" in info.labels
    import h5py

    with h5py.File(tmp_path / "out.h5", "a") as h5:
        h5["astrometry/parallax"][6] = -0.2
    # data.files_cuts: refuse (the default, apply, cuts the star and reports it)
    with pytest.raises(
        Exception, match=r"astrometry/parallax: parallax <= 0 at row 6 \(source_id 16\)"
    ):
        run_import_arrays(tmp_path / "out.h5", tmp_path / "bad.h5", **kwargs, cuts="refuse")
    assert not (tmp_path / "bad.h5").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bad.h5")]
    with h5py.File(tmp_path / "out.h5", "a") as h5:
        h5["astrometry/parallax"][6] = 1.0
        h5["source_id"][3] = h5["source_id"][4]
    with pytest.raises(Exception, match=r"source_id: 1 duplicated source ids \(e.g. 14\)"):
        run_import_arrays(tmp_path / "out.h5", tmp_path / "bad.h5", **kwargs)
    assert not (tmp_path / "bad.h5").exists()


def test_flux_error_may_keep_nan_where_the_flux_was_filled(tmp_path):
    from gaiacnn.layout import check_block

    block = {
        "rvs/flux": np.ones((2, 5), np.float32),
        "rvs/flux_error": np.full((2, 5), np.nan, np.float32),
    }
    check_block("f.h5", block, np.array([1, 2]), 0, finite=True)  # no error
    block["rvs/flux"][1, 2] = np.inf
    with pytest.raises(Exception, match=r"f.h5: rvs/flux: non-finite values in 1 rows"):
        check_block("f.h5", block, np.array([1, 2]), 0, finite=True)


# ------------------------------------------------------------------------------------------
# dataset groups (demo.datasets): the input shapes a survey can bring
# ------------------------------------------------------------------------------------------
ALWAYS = {"source_id", "labels/teff", "labels/teff_err", "astrometry/ra", "astrometry/dec"}


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    """A 60-star demo survey (15 % without XP) and a 30-star sample of it with labels."""
    import copy

    import yaml

    from gaiacnn.config import load_schema, validate_config
    from gaiacnn.demo import survey
    from gaiacnn.tables import read_fits_columns

    repo = __import__("pathlib").Path(__file__).resolve().parents[1]
    with open(repo / "config" / "config.yaml", encoding="utf-8") as fh:
        cfg = validate_config(yaml.safe_load(fh), load_schema(repo / "config" / "schema.yaml"))
    demo = copy.deepcopy(cfg["demo"])
    demo.update(n_stars=60, chunk_size=20)
    demo["flags"]["no_xp_continuous"] = 0.15
    folder = tmp_path_factory.mktemp("tiny_demo")
    paths = survey.default_paths(folder)
    survey.generate(
        demo, paths["gaia_source"], paths["allstar"], paths["raw"], paths["truth"], progress=False
    )
    gaia = read_fits_columns(paths["gaia_source"], ["source_id", *arrays.GAIA_SCALARS])
    ids = read_column(paths["raw"], "source_id")
    with __import__("h5py").File(paths["raw"], "r") as h5:
        no_xp = np.isnan(h5["xp/bp_coefficients"][:]).any(axis=1)
    assert no_xp.any() and not no_xp.all()
    pick = np.sort(np.random.default_rng(1).choice(ids.size, 30, replace=False))
    pick = np.union1d(pick, np.flatnonzero(no_xp)[:2])
    sample = pd.DataFrame(
        {"source_id": ids[pick], "teff": np.linspace(4000, 6000, pick.size), "teff_err": 50.0}
    )
    return {
        "raw": paths["raw"],
        "gaia_path": paths["gaia_source"],
        "gaia": gaia,
        "sample": sample,
        "no_xp_ids": set(ids[no_xp].tolist()),
        "config": cfg,
    }


def _build_groups(tiny_demo, out, datasets):
    return arrays.build_sample_file(
        tiny_demo["raw"],
        tiny_demo["gaia"],
        tiny_demo["sample"],
        out,
        sample_name="training",
        labels=["teff"],
        continuum_windows_nm=CONTINUUM_WINDOWS_NM,
        nan_fill_quantile=0.75,
        datasets=datasets,
        chunk_rows=7,
        progress=False,
    )


def _datasets(path) -> set[str]:
    import h5py

    names: set[str] = set()
    with h5py.File(path, "r") as h5:
        h5.visititems(lambda name, obj: names.add(name) if isinstance(obj, h5py.Dataset) else None)
    return names


@pytest.mark.parametrize(
    "groups",
    [
        ["xp_sampled", "phot"],
        ["xp_coefficients", "phot", "parallax"],
        ["rvs"],
        ["rvs", "xp_coefficients", "phot", "parallax"],
        ["parallax", "xp_sampled", "rvs"],
    ],
)
def test_a_subset_of_groups_writes_exactly_those_datasets(tiny_demo, tmp_path, groups, caplog):
    out = tmp_path / "out.h5"
    _build_groups(tiny_demo, out, groups)
    expected = ALWAYS | {name for g in groups for name in arrays.DATASET_GROUPS[g]}
    assert _datasets(out) == expected
    info = validate(out, require_labels=["teff"], require_finite_inputs=True)
    assert ("rvs" in info.branches) == ("rvs" in groups)
    ids = set(read_column(out, "source_id").tolist())
    sample_ids = set(tiny_demo["sample"]["source_id"].tolist())
    # stars without XP are left out (and logged) only when an XP group is written
    xp_written = {"xp_coefficients", "xp_sampled"} & set(groups)
    if xp_written:
        assert ids == sample_ids - tiny_demo["no_xp_ids"]
        assert "training stars left out" in caplog.text
    else:
        assert ids == sample_ids
        assert "left out" not in caplog.text
    if "xp_sampled" in groups:
        import h5py

        with h5py.File(out, "r") as h5, h5py.File(tiny_demo["raw"], "r") as raw:
            ds = h5["xp/sampled_flux"]
            assert ds.attrs["flux_kind"] == "absolute"
            np.testing.assert_array_equal(
                ds.attrs["wavelength_nm"], raw["xp/sampled_flux"].attrs["wavelength_nm"]
            )
            assert ds.shape == (len(ids), 343) and np.all(ds[:].mean(axis=1) > 0)
            row = int(np.flatnonzero(raw["source_id"][:] == h5["source_id"][0])[0])
            np.testing.assert_array_equal(ds[0], raw["xp/sampled_flux"][row])
        assert "XP sampled flux is missing" in caplog.text or "XP coefficients" in caplog.text


def test_no_groups_given_writes_all_the_raw_store_has(tiny_demo, tmp_path):
    _build_groups(tiny_demo, tmp_path / "out.h5", None)
    assert _datasets(tmp_path / "out.h5") == ALWAYS | {
        name for names in arrays.DATASET_GROUPS.values() for name in names
    }
    # a raw store without sampled flux (the Gaia archive's): every other group
    flux = np.full((10, WL.size), 0.9, np.float32)
    sample = pd.DataFrame({"source_id": [12, 13], "teff": [1.0, 2.0], "teff_err": [0.1, 0.1]})
    build(tmp_path, sample, flux)
    names = _datasets(tmp_path / "out.h5")
    assert "xp/sampled_flux" not in names and {"xp/bp_coefficients", "phot/g"} <= names
    assert "rvs/flux_error" not in names  # optional in the raw store, copied when present
    assert not names & set(layout.XP_ERROR_DATASETS)  # idem


def test_the_demo_default_groups_are_todays_arrays(tiny_demo, tmp_path):
    default = tiny_demo["config"]["demo"]["datasets"]
    assert default == ["rvs", "xp_coefficients", "phot", "parallax"]
    _build_groups(tiny_demo, tmp_path / "out.h5", default)
    assert "xp/sampled_flux" not in _datasets(tmp_path / "out.h5")
    # the demo's XP coefficient errors [e-/s] come with the coefficients, row for row
    h5py = __import__("h5py")
    with h5py.File(tmp_path / "out.h5") as out, h5py.File(tiny_demo["raw"]) as raw:
        rows = pd.Index(raw["source_id"][:]).get_indexer(out["source_id"][:])
        for name in layout.XP_ERROR_DATASETS:
            assert out[name].attrs["unit"] == "e-/s"
            np.testing.assert_array_equal(out[name][:], raw[name][:][rows])
            assert (out[name][:] > 0).all()


def test_bad_groups_are_refused(tiny_demo, tmp_path):
    with pytest.raises(ValueError, match=r"unknown: spectra"):
        _build_groups(tiny_demo, tmp_path / "out.h5", ["rvs", "spectra"])
    with pytest.raises(ValueError, match="non-empty"):
        _build_groups(tiny_demo, tmp_path / "out.h5", [])
    flux = np.full((10, WL.size), 0.9, np.float32)
    raw_store(tmp_path / "raw.h5", RAW_IDS, flux)
    with pytest.raises(Exception, match=r"xp/sampled_flux: dataset group 'xp_sampled' asked"):
        arrays.build_sample_file(
            tmp_path / "raw.h5",
            gaia_for(RAW_IDS),
            pd.DataFrame({"source_id": [12]}),
            tmp_path / "out.h5",
            sample_name="observed",
            continuum_windows_nm=CONTINUUM_WINDOWS_NM,
            nan_fill_quantile=0.75,
            datasets=["xp_sampled"],
            progress=False,
        )
    assert not (tmp_path / "out.h5").exists()


def test_a_group_needs_only_its_own_gaia_columns(tmp_path):
    flux = np.full((10, WL.size), 0.9, np.float32)
    raw_store(tmp_path / "raw.h5", RAW_IDS, flux)
    gaia = gaia_for(RAW_IDS).drop(columns=["parallax", "parallax_error", "ruwe"])
    kwargs = dict(
        sample_name="observed",
        continuum_windows_nm=CONTINUUM_WINDOWS_NM,
        nan_fill_quantile=0.75,
        progress=False,
    )
    sample = pd.DataFrame({"source_id": [12, 14]})
    arrays.build_sample_file(
        tmp_path / "raw.h5", gaia, sample, tmp_path / "a.h5", datasets=["rvs", "phot"], **kwargs
    )
    assert _datasets(tmp_path / "a.h5") == {"source_id", "rvs/flux", "rvs/snr", *PHOT}
    with pytest.raises(ValueError, match=r"missing column\(s\) parallax"):
        arrays.build_sample_file(
            tmp_path / "raw.h5", gaia, sample, tmp_path / "b.h5", datasets=["parallax"], **kwargs
        )


PHOT = ("phot/g", "phot/bp", "phot/rp")


def test_run_build_arrays_passes_the_configured_groups(tiny_demo, tmp_path, caplog):
    import logging

    from gaiacnn.arrays import run_build_arrays

    cfg = tiny_demo["config"]
    tiny_demo["sample"].to_csv(tmp_path / "training.tsv", sep="\t", index=False)
    caplog.set_level(logging.INFO)
    for name, datasets in (("shape.h5", ["xp_sampled", "phot"]), ("all.h5", None)):
        run_build_arrays(
            tiny_demo["raw"],
            tiny_demo["gaia_path"],
            tmp_path / "training.tsv",
            tmp_path / name,
            sample_name="training",
            labels=["teff"],
            rvs_cfg=cfg["rvs"],
            arrays_cfg={**cfg["arrays"], "datasets": datasets},
            provenance={"source": "demo"},
        )
    assert _datasets(tmp_path / "shape.h5") == ALWAYS | {"xp/sampled_flux", *PHOT}
    assert "xp/sampled_flux" in _datasets(tmp_path / "all.h5")
    assert "dataset groups xp_sampled, phot" in caplog.text


def test_schema_accepts_the_default_groups_and_refuses_unknown_ones(config, schema):
    import copy

    from gaiacnn.config import ConfigError, validate_config

    filled = validate_config({}, schema)
    assert filled["demo"]["datasets"] == ["rvs", "xp_coefficients", "phot", "parallax"]
    assert set(schema["properties"]["demo"]["properties"]["datasets"]["items"]["enum"]) == set(
        arrays.DATASET_GROUPS
    )
    for groups in (["xp_sampled", "phot"], ["rvs"], list(arrays.DATASET_GROUPS)):
        cfg = copy.deepcopy(config)
        cfg["demo"]["datasets"] = groups
        assert validate_config(cfg, schema)["demo"]["datasets"] == groups
    for bad in (["rvs", "spectra"], [], ["rvs", "rvs"], "rvs"):
        cfg = copy.deepcopy(config)
        cfg["demo"]["datasets"] = bad
        with pytest.raises(ConfigError, match=r"'demo\.datasets"):
            validate_config(cfg, schema)
