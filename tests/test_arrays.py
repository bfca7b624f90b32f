"""Building the sample files from the raw store: row order, NaN filling, refusals, CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gaiacnn import arrays, cli
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
    assert "ok, 1 rows, branches rvs,phot,xp, labels teff" in capsys.readouterr().out
    assert cli.main(["validate", str(tmp_path / "out.h5"), "--labels", "logg"]) == 1
    assert "labels/logg: label not in file" in capsys.readouterr().err


def test_import_refuses_a_bad_user_file_before_writing(tmp_path, config):
    import h5py

    from gaiacnn.pipeline import run_import_arrays

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
    with pytest.raises(
        Exception, match=r"astrometry/parallax: parallax <= 0 at row 6 \(source_id 16\)"
    ):
        run_import_arrays(tmp_path / "out.h5", tmp_path / "bad.h5", **kwargs)
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
