"""The aggregation and the flag stream the catalogue a chunk of stars at a time: they give
the catalogue the in-memory code gave (tests/golden_catalogue.py), whatever the chunk."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
from golden_catalogue import BUILD, GOLDEN, LABELS, MEMBERS, columns, make_inputs

from gaiacnn import catalogue, ensemble, flags


def _aggregate_and_flag(work, chunk_rows: int, shuffle_tsne: bool = False) -> dict:
    """The rules aggregate_ensemble and flag_catalogue, as their run functions stream."""
    inp = make_inputs(work)
    if shuffle_tsne:  # the classification in another order than the catalogue's
        with h5py.File(inp["tsne"], "r+") as h5:
            order = np.random.default_rng(1).permutation(len(h5["source_id"]))
            sid, like = h5["source_id"][:][order], h5["training_like"][:][order]
            h5["source_id"][:], h5["training_like"][:] = sid, like
    agg = catalogue.fit(
        inp["predictions"], inp["arrays"], labels=LABELS, members=MEMBERS,
        chunk_rows=chunk_rows, **BUILD,
    )  # fmt: skip
    out = {k: work / name for k, name in
           (("labels", "labels.fits"), ("model", "model.json"), ("catalogue", "cat.fits"),
            ("csv", "cat.csv"))}  # fmt: skip
    ensemble.write_uncertainty_model(
        agg.fits, agg.training_range, MEMBERS, out["model"], agg.calibrations
    )
    n = agg.n_rows["training"] + agg.n_rows["observed"]
    chunks = catalogue.iter_table(agg, inp["predictions"], inp["arrays"], chunk_rows)
    catalogue.write_chunks(chunks, n, out["labels"], attrs=agg.attrs)
    flags.run_flag_catalogue(
        out["labels"], inp["tsne"], out["model"], out["catalogue"], out["csv"],
        labels=LABELS, chunk_rows=chunk_rows,
    )  # fmt: skip
    return out


def test_streaming_gives_the_catalogue_of_the_in_memory_code(tmp_path):
    """Chunks of 97 stars (the observed ones in 25, the t-SNE classes looked up by index)
    against the golden catalogue: integers, booleans and flags equal, floats within
    float32 rounding; and the same bytes as with one chunk."""
    golden = np.load(GOLDEN)
    small = _aggregate_and_flag(tmp_path / "small", 97, shuffle_tsne=True)
    got = columns(small["catalogue"])
    assert list(got) == list(golden.files)
    assert len(got["source_id"]) == 4000
    for name in golden.files:
        want = golden[name]
        if want.dtype.kind == "f":
            np.testing.assert_allclose(got[name], want, rtol=2e-7, atol=0, err_msg=name)
        else:
            np.testing.assert_array_equal(got[name], want, err_msg=name)
    whole = _aggregate_and_flag(tmp_path / "whole", 10**6)
    for key in ("labels", "catalogue", "csv", "model"):
        assert small[key].read_bytes() == whole[key].read_bytes(), key
    # the CSV is the FITS table's, row for row
    csv = pd.read_csv(small["csv"], dtype={"flag_boundary": str})
    assert list(csv.columns) == list(golden.files)
    assert (csv["flag_boundary"].to_numpy() == got["flag_boundary"]).all()


def test_written_chunks_are_one_table_or_nothing(tmp_path):
    """A chunk with other columns, or fewer rows than announced, is refused and leaves no
    file; text wider than the first chunk's column is refused."""
    a = pd.DataFrame({"source_id": np.arange(3), "teff": np.ones(3, np.float32)})
    a.attrs.update(labels=["teff"], members=["split0_seed0"])
    b = pd.DataFrame({"source_id": np.arange(3, 5), "teff": np.ones(2, np.float32)})
    fits_path, csv_path = tmp_path / "c.fits", tmp_path / "c.csv"
    catalogue.write_chunks([a, b], 5, fits_path, csv_path)
    whole = pd.concat([a, b], ignore_index=True)
    whole.attrs.update(a.attrs)
    catalogue.write(whole, tmp_path / "w.fits", tmp_path / "w.csv")
    assert fits_path.read_bytes() == (tmp_path / "w.fits").read_bytes()
    assert csv_path.read_text() == (tmp_path / "w.csv").read_text()
    for chunks, n, match in (
        ([a, b.rename(columns={"teff": "logg"})], 5, "chunk 1 of the catalogue has columns"),
        ([a, b], 6, "5 rows written, the header says 6"),
        ([], 0, "no chunk"),
    ):
        with pytest.raises(ValueError, match=match):
            catalogue.write_chunks(chunks, n, tmp_path / "x.fits", tmp_path / "x.csv")
        assert not (tmp_path / "x.fits").exists() and not (tmp_path / "x.csv").exists()
    f1 = pd.DataFrame({"source_id": [1], "flag_boundary": ["0101"]})
    f2 = pd.DataFrame({"source_id": [2], "flag_boundary": ["01010"]})
    with pytest.raises(ValueError, match="flag_boundary: a value of 5 characters"):
        catalogue.write_chunks([f1, f2], 2, tmp_path / "x.fits")
    assert not (tmp_path / "x.fits").exists()


def test_flags_refuse_an_unclassified_observed_star(tmp_path):
    inp = make_inputs(tmp_path)
    out = _aggregate_and_flag(tmp_path / "ok", 500)
    with h5py.File(inp["tsne"], "r+") as h5:
        sid = h5["source_id"][:]
        sid[-1] = 7  # the last observed star is not in the classification
        h5["source_id"][:] = sid
    with pytest.raises(flags.FlagError, match="1 observed stars unclassified"):
        flags.run_flag_catalogue(
            out["labels"], inp["tsne"], out["model"], tmp_path / "c.fits", tmp_path / "c.csv",
            labels=LABELS, chunk_rows=500,
        )  # fmt: skip
    assert not (tmp_path / "c.fits").exists() and not (tmp_path / "c.csv").exists()


def test_sigma_is_never_below_e_and_follows_the_header_formula(tmp_path):
    """sigma_* >= e_* for every label and star; and the formula the header states,
    written out here from its words with the stored calibration (uncertainty_model.json),
    gives sigma_* back: sqrt(e² + (k D)²), k = k(S/N) k_in(input_distance), and
    sqrt(e² + (k(S/N) D)² + W²) where the parallax was withheld, e² standing for
    e_*² + e_input_*² (the members' spread under the input noise, INNOISE)."""
    import json

    from astropy.io import fits

    out = _aggregate_and_flag(tmp_path, 10**6)
    with fits.open(out["catalogue"]) as hdul:
        hdr, data = hdul[1].header, hdul[1].data
        comments = "\n".join(str(c) for c in hdr["COMMENT"])
        assert hdr["SIGFORM"] == "dispersion" and hdr["SNRCALIB"] == ",".join(LABELS)
        assert "sigma_<label> = sqrt(e_<label>**2 + (k * D)**2)" in comments
        assert "sqrt(e_**2 + (k(S/N) * D)**2 + W**2)" in comments
        assert "e_<label>**2 there stands for e_<label>**2 + e_input_<label>**2" in comments
        assert hdr["INNOISE"] == "parallax,xp"
        model = json.loads(out["model"].read_text())
        snr = data["rvs_snr"].astype(float)
        dist = data["input_distance"].astype(float)
        withheld = data["parallax_withheld"].astype(bool)
        assert withheld.any() and (~withheld).any()
        for x in LABELS:
            e, sigma = data[f"e_{x}"].astype(float), data[f"sigma_{x}"].astype(float)
            assert (data[f"sigma_{x}"] >= data[f"e_{x}"]).all(), x
            e_in = data[f"e_input_{x}"].astype(float)
            assert (e_in > 0).any() and (sigma >= np.hypot(e, e_in) * (1 - 1e-6)).all(), x
            e = np.hypot(e, e_in)  # what the header's e_<label>**2 stands for
            d = ensemble.DispersionFit(**model["running_dispersion"][x])(data[x].astype(float))
            cal = model["snr_calibration"][x]
            assert cal["form"] == "dispersion"
            # k(S/N): linear in log S/N between the centres, constant beyond, the largest
            # factor where the S/N is not finite
            good = np.isfinite(snr) & (snr > 0)
            k_snr = np.full(len(snr), max(cal["factor"]))
            k_snr[good] = np.interp(np.log(snr[good]), np.log(cal["snr"]), cal["factor"])
            # k_in: the first bin whose input_upper >= the distance, else the last
            j = np.searchsorted(cal["input_upper"], np.where(np.isfinite(dist), dist, np.inf))
            k_in = np.asarray(cal["input_factor"])[np.minimum(j, len(cal["input_factor"]) - 1)]
            expect = np.sqrt(e**2 + (k_snr * k_in * d) ** 2)
            floor = cal["withheld_floor"]
            expect[withheld] = np.sqrt(e**2 + (k_snr * d) ** 2 + floor**2)[withheld]
            np.testing.assert_allclose(sigma, expect, rtol=2e-6, err_msg=x)
            # the calibration does shrink the paper's uncertainty somewhere (k < 1) and
            # still never goes below e there
            assert min(cal["factor"]) < 1.0 or min(cal["input_factor"]) < 1.0, x


def test_the_catalogue_reads_cleanly_with_a_description_per_column(tmp_path):
    """astropy reads the catalogue with every warning an error; each column has a unit FITS
    accepts (or none: dex, whose description says so) and a description (TCOMMn); the
    header names the code, its date and the SHA-256 of the input files."""
    import subprocess
    import sys
    import warnings

    import astropy.units as u
    from astropy.io import fits
    from astropy.table import Table

    from gaiacnn import provenance

    out = _aggregate_and_flag(tmp_path, 10**6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = Table.read(out["catalogue"])
    # as a user types it, in a fresh interpreter
    code = f"from astropy.table import Table; Table.read({str(out['catalogue'])!r})"
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    hdr = fits.getheader(out["catalogue"], 1)
    for i, name in enumerate(table.colnames, start=1):
        description = hdr[f"TCOMM{i}"]
        assert len(description) > 10, name
        unit = hdr.get(f"TUNIT{i}")
        if unit is not None:
            u.Unit(unit, format="fits")
        if name in LABELS or name.startswith(("e_", "sigma_")):
            x = name.removeprefix("e_input_").removeprefix("e_").removeprefix("sigma_")
            assert description.endswith("[K]" if x == "teff" else "[dex]"), name
            assert (unit == "K") == (x == "teff"), name
    assert table["recommended"].dtype == bool
    flag = np.char.strip(np.asarray(table["flag_boundary"]).astype(str))
    np.testing.assert_array_equal(table["recommended"], ["1" not in f for f in flag])
    assert 0 < table["recommended"].sum() < len(table)
    arrays = make_inputs(tmp_path / "again")["arrays"]
    assert hdr["SHATRAIN"] == provenance.sha256_file(arrays["training"])
    assert hdr["SHAOBSRV"] == provenance.sha256_file(arrays["observed"])
    assert hdr["GCNNVER"] and hdr["COMMIT"] and len(hdr["DATE"]) == 10


def test_parquet_has_the_fits_rows_and_columns_with_units(tmp_path):
    """catalogue.parquet, written beside the FITS file a row group per chunk: the same
    rows and columns (floats to float32), each field's unit and description in its
    metadata, the FITS header in the schema's."""
    import pyarrow.parquet as pq
    from astropy.io import fits

    inp = make_inputs(tmp_path)
    agg = catalogue.fit(inp["predictions"], inp["arrays"], labels=LABELS, members=MEMBERS,
                        chunk_rows=97, **BUILD)  # fmt: skip
    n = agg.n_rows["training"] + agg.n_rows["observed"]
    out = {k: tmp_path / f"cat.{k}" for k in ("fits", "parquet")}
    chunks = catalogue.iter_table(agg, inp["predictions"], inp["arrays"], 97)
    catalogue.write_chunks(chunks, n, out["fits"], attrs=agg.attrs, parquet_path=out["parquet"])
    pf = pq.ParquetFile(out["parquet"])
    assert pf.metadata.num_row_groups == -(-n // 97) and pf.metadata.num_rows == n
    table = pf.read()
    fits_table, _ = catalogue.read(out["fits"])
    assert table.column_names == list(fits_table.columns)
    df = table.to_pandas()
    for name in fits_table.columns:
        np.testing.assert_array_equal(df[name].to_numpy(), fits_table[name].to_numpy(), name)
    hdr = fits.getheader(out["fits"], 1)
    for i, name in enumerate(fits_table.columns, start=1):
        meta = table.schema.field(name).metadata
        assert meta[b"unit"].decode() == hdr.get(f"TUNIT{i}", ""), name
        assert meta[b"description"].decode() == hdr[f"TCOMM{i}"], name
    header = table.schema.metadata[b"gaiacnn.fits_header"].decode()
    assert f"CONFHASH= '{hdr['CONFHASH']}" in header and "SHATRAIN" in header


def test_the_hats_copy_crossmatches_every_star_with_a_gaia_hats_catalogue(tmp_path):
    """catalogue.hats: the Parquet catalogue as a HATS collection; lsdb cross-matches it
    with a HATS catalogue of the stars' Gaia positions (a small gaia_source) and finds
    every star, its own source_id; a catalogue without positions is refused."""
    import lsdb
    import pandas as pd
    import pyarrow.parquet as pq

    from gaiacnn import hats

    inp = make_inputs(tmp_path)
    agg = catalogue.fit(inp["predictions"], inp["arrays"], labels=LABELS, members=MEMBERS,
                        **BUILD)  # fmt: skip
    n = agg.n_rows["training"] + agg.n_rows["observed"]
    parquet = tmp_path / "cat.parquet"
    chunks = catalogue.iter_table(agg, inp["predictions"], inp["arrays"])
    catalogue.write_chunks(chunks, n, tmp_path / "cat.fits", attrs=agg.attrs,
                           parquet_path=parquet)  # fmt: skip
    assert hats.run_hats_catalogue(parquet, tmp_path / "hats") == n
    ours = lsdb.open_catalog(tmp_path / "hats")
    cat = pq.read_table(parquet).to_pandas()
    gaia = lsdb.from_dataframe(
        pd.DataFrame({"source_id": cat["source_id"], "ra": cat["ra"].astype(float),
                      "dec": cat["dec"].astype(float)}),
        ra_column="ra", dec_column="dec", catalog_name="gaia_source",
    )  # fmt: skip
    matched = ours.crossmatch(
        gaia, radius_arcsec=1.0, n_neighbors=1, suffixes=("", "_gaia"),
        suffix_method="overlapping_columns",
    )  # fmt: skip
    matched = matched.compute()
    assert len(matched) == n
    assert (matched["source_id"] == matched["source_id_gaia"]).all()
    assert set(matched["source_id"]) == set(cat["source_id"])
    # every column of the catalogue is in the copy
    assert set(cat.columns) <= set(ours.columns)
    no_positions = tmp_path / "nopos.parquet"
    pq.write_table(pq.read_table(parquet).drop_columns(["ra", "dec"]), no_positions)
    with pytest.raises(hats.HatsError, match="no ra and dec column"):
        hats.run_hats_catalogue(no_positions, tmp_path / "hats2")
    assert not (tmp_path / "hats2").exists()
