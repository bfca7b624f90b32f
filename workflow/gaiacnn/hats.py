"""The catalogue as a HATS-partitioned copy (rule ``hats_catalogue``, config
``catalogue.hats``, opt-in): the Parquet catalogue partitioned by HEALPix, so that
``lsdb.open_catalog(...)`` cross-matches it with the Gaia DR3 HATS catalogues on a laptop or
a Dask cluster (docs/catalogue.md).

The copy is made in three streaming passes over the catalogue's row groups, the map / split
/ reduce of hats-import, with the ``hats`` library's own pixel maths and metadata writers:

1. *map*: count the stars per HEALPix pixel of order :data:`HIGHEST_ORDER`;
2. *split*: each row group's rows go to spool files, one per destination partition (the
   alignment of ``hats.pixel_math.partition_stats.generate_alignment``: pixels merged up
   to :data:`PARTITION_ROWS` stars);
3. *reduce*: each partition's spool files become one ``Norder=/Dir=/Npix=`` Parquet file,
   sorted on ``_healpix_29``; then ``partition_info.csv``, the dataset's ``_metadata`` and
   ``_common_metadata``, ``hats.properties`` and the sky maps.

Peak memory is one row group plus one partition (at most :data:`PARTITION_ROWS` rows),
whatever the size of the catalogue (``benchmarks/stage_memory.py --stages
hats_catalogue``).  hats-import itself cannot be installed beside the workflow's pins (its
releases need packaging >= 26.1, which Snakemake 9.27.1 refuses, or pandas < 2.4); the
copy it makes has the same layout.  No margin cache is written: use the copy as the left
catalogue of ``crossmatch`` (as docs/catalogue.md shows), or make one with hats-import.
"""

from __future__ import annotations

import logging
import os

import numpy as np

log = logging.getLogger(__name__)

#: Most rows in one HATS partition (hats ``pixel_threshold``): a few hundred MB in memory
#: while it is written, about 50 MB of Parquet.
PARTITION_ROWS = 500_000
#: Finest HEALPix order of a partition (order 7: 0.21 deg^2).  A denser sky than
#: PARTITION_ROWS stars in 0.21 deg^2 is refused.  Order 7's counts map is 196 608 pixels:
#: the alignment takes < 1 s (order 10's takes ~40 s).
HIGHEST_ORDER = 7
#: The HATS spatial index column, HEALPix order 29 (hats.pixel_math.spatial_index).
SPATIAL_INDEX = "_healpix_29"


class HatsError(ValueError):
    """A catalogue that cannot be partitioned (no or bad positions, too dense a sky)."""


def _positions(table, parquet_path, row_group: int) -> tuple[np.ndarray, np.ndarray]:
    """(ra, dec) [deg] of one row group as float64, refusing non-finite or out-of-range
    positions (HEALPix would place them anywhere)."""
    ra = table.column("ra").to_numpy(zero_copy_only=False).astype(np.float64)
    dec = table.column("dec").to_numpy(zero_copy_only=False).astype(np.float64)
    bad = ~(np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90.0))
    if bad.any():
        raise HatsError(
            f"{parquet_path}: {int(bad.sum())} row(s) of row group {row_group} have no valid "
            "ra/dec (NaN, or |dec| > 90 deg): HATS cannot place them on the sky"
        )
    return ra, dec


def run_hats_catalogue(
    parquet_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    name: str = "gaiacnn_catalogue",
    partition_rows: int = PARTITION_ROWS,
    highest_order: int = HIGHEST_ORDER,
    progress: bool = True,
) -> int:
    """Rule ``hats_catalogue``: ``out_dir`` becomes a HATS catalogue (``name``) of the
    Parquet catalogue's every row and column (units, descriptions and the FITS header kept
    in the Parquet schema), partitioned on (``ra``, ``dec``) [deg] into partitions of at
    most ``partition_rows`` rows, streaming (module docstring); written atomically (whole or
    not at all).  A catalogue without valid positions is refused.  Returns the number of
    rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from hats.catalog import PartitionInfo, TableProperties
    from hats.io import paths
    from hats.io.parquet_metadata import write_parquet_metadata
    from hats.io.skymap import write_skymap
    from hats.io.validation import is_valid_catalog
    from hats.pixel_math import HealpixPixel
    from hats.pixel_math.partition_stats import empty_histogram, generate_alignment
    from hats.pixel_math.spatial_index import compute_spatial_index, spatial_index_to_healpix
    from tqdm.auto import tqdm

    from gaiacnn.io import atomic_directory

    try:
        pf = pq.ParquetFile(parquet_path)
    except (pa.ArrowException, OSError) as exc:
        raise HatsError(f"{parquet_path}: not a Parquet catalogue ({exc})") from None
    schema = pf.schema_arrow
    missing = [c for c in ("ra", "dec") if c not in schema.names]
    if missing:
        raise HatsError(
            f"{parquet_path}: no {' and '.join(missing)} column: HATS partitions the sky, and "
            "the arrays files carry no astrometry/ra, dec (catalogue.hats needs them)"
        )
    if SPATIAL_INDEX in schema.names:
        raise HatsError(f"{parquet_path}: already has a {SPATIAL_INDEX} column")
    out_schema = schema.insert(0, pa.field(SPATIAL_INDEX, pa.int64()))
    n_groups = pf.num_row_groups

    def bar(desc: str):
        return tqdm(range(n_groups), desc=f"HATS {desc}", unit="row group",
                    disable=not progress, mininterval=2.0)  # fmt: skip

    # 1. map: stars per order-``highest_order`` pixel
    histogram = empty_histogram(highest_order)
    for g in bar("map"):
        ra, dec = _positions(pf.read_row_group(g, columns=["ra", "dec"]), parquet_path, g)
        pix = spatial_index_to_healpix(compute_spatial_index(ra, dec), highest_order)
        histogram += np.bincount(pix, minlength=len(histogram)).astype(np.int64)
    total = int(histogram.sum())
    if total == 0:
        raise HatsError(f"{parquet_path}: no rows to partition")
    if total != pf.metadata.num_rows:
        raise HatsError(f"{parquet_path}: {total} rows mapped, the file has {pf.metadata.num_rows}")
    try:
        alignment = generate_alignment(
            histogram,
            highest_order=highest_order,
            lowest_order=0,
            threshold=partition_rows,
            drop_empty_siblings=True,
        )
    except ValueError as exc:
        raise HatsError(
            f"{parquet_path}: cannot partition into {partition_rows} rows at most per "
            f"partition up to HEALPix order {highest_order}: {exc}"
        ) from None
    # destination partition per order-``highest_order`` pixel, as the key order * npix +
    # pixel (-1 where empty); the rows each partition receives
    npix = len(histogram)
    filled = np.flatnonzero(histogram)
    dest_key = np.full(npix, -1, dtype=np.int64)
    dest_key[filled] = [int(alignment[i][0]) * npix + int(alignment[i][1]) for i in filled]
    keys, inverse = np.unique(dest_key[filled], return_inverse=True)
    expected = np.bincount(inverse, weights=histogram[filled]).astype(np.int64)
    destinations = [divmod(int(k), npix) for k in keys]

    with atomic_directory(out_dir) as cat_dir:
        # the spool lives in the copy's temporary folder: a failure removes it with the rest
        spool = cat_dir / "_spool"
        spool.mkdir()
        # 2. split: one spool file per (row group, destination partition)
        for g in bar("split"):
            table = pf.read_row_group(g)
            ra, dec = _positions(table, parquet_path, g)
            index = compute_spatial_index(ra, dec)
            table = table.add_column(0, out_schema.field(0), pa.array(index, pa.int64()))
            pix = spatial_index_to_healpix(index, highest_order)
            key = dest_key[pix]
            rows = np.argsort(key, kind="stable")
            here, starts = np.unique(key[rows], return_index=True)
            table = table.take(pa.array(rows))
            for k, start, stop in zip(here, starts, [*starts[1:], len(rows)], strict=True):
                part = spool / str(k)
                part.mkdir(exist_ok=True)
                pq.write_table(table.slice(start, stop - start), part / f"{g}.parquet")
        # 3. reduce: one sorted Parquet file per partition
        reduce = tqdm(zip(keys, destinations, expected, strict=True), total=len(keys),
                      desc="HATS reduce", unit="partition", disable=not progress,
                      mininterval=2.0)  # fmt: skip
        for k, (order, pixel), n_rows in reduce:
            part = spool / str(k)
            shards = sorted(part.iterdir())
            merged = pa.concat_tables(
                [pq.read_table(f, schema=out_schema) for f in shards]
            ).sort_by(SPATIAL_INDEX)
            if merged.num_rows != n_rows:
                raise HatsError(f"partition {order}/{pixel}: {merged.num_rows} rows "
                                f"written, {n_rows} mapped")  # fmt: skip
            dest = paths.pixel_catalog_file(cat_dir, HealpixPixel(order, pixel))
            dest.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(merged.replace_schema_metadata(out_schema.metadata), dest.path,
                           compression="zstd")  # fmt: skip
            for f in shards:
                f.unlink()
            part.rmdir()
        spool.rmdir()
        # 4. finish: partition list, dataset metadata, properties, sky maps
        pixels = [HealpixPixel(o, p) for o, p in destinations]
        info = PartitionInfo.from_healpix(pixels)
        info.write_to_file(paths.get_partition_info_pointer(cat_dir))
        written = write_parquet_metadata(cat_dir)
        if written != total:
            raise HatsError(f"{written} rows in the HATS dataset, {total} in {parquet_path}")
        write_skymap(histogram, cat_dir)
        TableProperties(
            catalog_name=name,
            catalog_type="object",
            total_rows=total,
            ra_column="ra",
            dec_column="dec",
            healpix_column=SPATIAL_INDEX,
            healpix_order=29,
            hats_max_rows=partition_rows,
            moc_sky_fraction=info.calculate_fractional_coverage(),
        ).to_properties_file(cat_dir)
        if not is_valid_catalog(cat_dir, strict=True):
            raise HatsError(f"{out_dir}: hats does not take the copy for a valid catalogue")
    log.info("HATS copy of %d stars in %d partitions (%s)", total, len(pixels), out_dir)
    return total
