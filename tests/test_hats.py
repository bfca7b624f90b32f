"""The streaming HATS copy of the catalogue (gaiacnn.hats): partitions, rows, metadata,
refusals.  The cross-match with lsdb is in test_catalogue_streaming.py and test_workflow.py."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gaiacnn import hats


def _catalogue(path, n: int, row_group: int, seed: int = 0, ra=None, dec=None):
    """A Parquet catalogue of n stars in row groups of ``row_group`` rows, with a dense
    clump (a quarter of the stars within 2 deg), field units and schema metadata."""
    rng = np.random.default_rng(seed)
    if ra is None:
        ra = rng.uniform(0, 360, n)
        dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
        clump = rng.random(n) < 0.25
        ra[clump] = 120 + rng.normal(0, 1, clump.sum())
        dec[clump] = -30 + rng.normal(0, 1, clump.sum())
    schema = pa.schema(
        [
            pa.field("source_id", pa.int64()),
            pa.field("ra", pa.float64(), metadata={"unit": "deg"}),
            pa.field("dec", pa.float64(), metadata={"unit": "deg"}),
            pa.field("teff", pa.float32(), metadata={"unit": "K", "description": "CNN Teff"}),
            pa.field("flag_boundary", pa.string()),
        ],
        metadata={"gaiacnn.fits_header": "SIMPLE = T"},
    )
    table = pa.table(
        {
            "source_id": np.arange(n, dtype=np.int64) * 7 + 1,
            "ra": ra,
            "dec": dec,
            "teff": rng.uniform(4000, 6000, n).astype(np.float32),
            "flag_boundary": ["00000000" if i % 3 else "00100000" for i in range(n)],
        },
        schema=schema,
    )
    pq.write_table(table, path, row_group_size=row_group)
    return table


def test_streaming_partitions_hold_every_row_once_within_the_limit(tmp_path):
    """Several row groups, a clump denser than a partition may hold: each partition has at
    most partition_rows rows, sorted on _healpix_29, in the pixel its rows lie in; every
    row is there once, unchanged; units, descriptions and the header metadata are kept."""
    import lsdb
    from hats.pixel_math.spatial_index import compute_spatial_index, spatial_index_to_healpix

    n = 6000
    src = _catalogue(tmp_path / "cat.parquet", n, row_group=700)
    assert pq.ParquetFile(tmp_path / "cat.parquet").num_row_groups == 9
    out = tmp_path / "hats"
    assert hats.run_hats_catalogue(tmp_path / "cat.parquet", out, partition_rows=400) == n
    # no spool or temporary folder left beside the copy
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.parquet", "hats"]
    files = sorted((out / "dataset").rglob("Npix=*.parquet"))
    assert len(files) >= n // 400
    seen = []
    for f in files:
        order = int(f.parent.parent.name.split("=")[1])
        pixel = int(f.stem.split("=")[1])
        t = pq.read_table(f)
        assert 0 < t.num_rows <= 400, f
        index = t.column("_healpix_29").to_numpy()
        assert (np.diff(index) >= 0).all(), f"{f} not sorted on _healpix_29"
        expect = compute_spatial_index(t.column("ra").to_numpy(), t.column("dec").to_numpy())
        assert (index == expect).all()
        assert (spatial_index_to_healpix(index, order) == pixel).all(), f
        seen.append(t.drop_columns(["_healpix_29"]))
    got = pa.concat_tables(seen).sort_by("source_id")
    assert got.num_rows == n
    assert got.equals(src.sort_by("source_id").replace_schema_metadata(got.schema.metadata))
    common = pq.read_schema(out / "dataset" / "_common_metadata")
    assert common.field("teff").metadata == {b"unit": b"K", b"description": b"CNN Teff"}
    assert common.metadata[b"gaiacnn.fits_header"] == b"SIMPLE = T"
    cat = lsdb.open_catalog(out)
    assert cat.hc_structure.catalog_info.total_rows == n
    assert len(cat.get_healpix_pixels()) == len(files)
    df = cat.compute()
    assert len(df) == n and set(df["source_id"]) == set(src.column("source_id").to_pylist())


def test_bad_positions_and_bad_files_are_refused_and_leave_nothing(tmp_path):
    """NaN or impossible positions, a file that is not Parquet, an empty catalogue, and a
    sky too dense for the partition limit at the finest order: a HatsError naming the
    problem, and no copy (nor spool) left behind."""
    n = 500
    rng = np.random.default_rng(1)
    ra, dec = rng.uniform(0, 360, n), rng.uniform(-60, 60, n)
    dec[17] = np.nan
    _catalogue(tmp_path / "nan.parquet", n, 100, ra=ra, dec=dec)
    with pytest.raises(hats.HatsError, match=r"1 row.* of row group 0 have no valid ra/dec"):
        hats.run_hats_catalogue(tmp_path / "nan.parquet", tmp_path / "h1")
    dec[17] = 91.0
    _catalogue(tmp_path / "pole.parquet", n, 100, ra=ra, dec=dec)
    with pytest.raises(hats.HatsError, match="no valid ra/dec"):
        hats.run_hats_catalogue(tmp_path / "pole.parquet", tmp_path / "h2")
    (tmp_path / "junk.parquet").write_bytes(b"SIMPLE  =                    T")
    with pytest.raises(hats.HatsError, match="not a Parquet catalogue"):
        hats.run_hats_catalogue(tmp_path / "junk.parquet", tmp_path / "h3")
    _catalogue(tmp_path / "empty.parquet", 0, 100, ra=np.array([]), dec=np.array([]))
    with pytest.raises(hats.HatsError, match="no rows"):
        hats.run_hats_catalogue(tmp_path / "empty.parquet", tmp_path / "h4")
    # every star in one spot: no order-7 pixel can be split below 50 rows
    _catalogue(tmp_path / "dense.parquet", n, 100, ra=np.full(n, 10.0), dec=np.full(n, 5.0))
    with pytest.raises(hats.HatsError, match="cannot partition into 50 rows"):
        hats.run_hats_catalogue(tmp_path / "dense.parquet", tmp_path / "h5", partition_rows=50)
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".parquet"))
    assert left == []
