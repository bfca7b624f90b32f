"""The catalogue as a HATS-partitioned copy (rule ``hats_catalogue``, config
``catalogue.hats``, opt-in): the Parquet catalogue partitioned by HEALPix with lsdb, so that
``lsdb.open_catalog(...)`` cross-matches it with the Gaia DR3 HATS catalogues on a laptop or
a Dask cluster (docs/catalogue.md).

The copy is made with :func:`lsdb.from_dataframe`, which holds the catalogue in memory
(about 120 bytes a star: 12 GB at 10^8 stars).  hats-import, the streaming importer, needs
packaging >= 26.1 while Snakemake 9.27.1 needs < 26, so it cannot share the workflow's
environment yet; for a sample too large for memory, run hats-import on
``catalogue.parquet`` in an environment of its own.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

#: Rows per HATS partition (lsdb ``partition_rows``): a few MB of Parquet each.
PARTITION_ROWS = 500_000


class HatsError(ValueError):
    """A catalogue that cannot be partitioned (no positions)."""


def run_hats_catalogue(
    parquet_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    name: str = "gaiacnn_catalogue",
    partition_rows: int = PARTITION_ROWS,
) -> int:
    """Rule ``hats_catalogue``: ``out_dir`` becomes a HATS catalogue (``name``) of the
    Parquet catalogue's every row and column, partitioned on (``ra``, ``dec``) [deg];
    written atomically (whole or not at all).  A catalogue without positions is refused.
    Returns the number of rows."""
    import lsdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gaiacnn.io import atomic_directory

    try:
        pf = pq.ParquetFile(parquet_path)
    except (pa.ArrowException, OSError) as exc:
        raise HatsError(f"{parquet_path}: not a Parquet catalogue ({exc})") from None
    missing = [c for c in ("ra", "dec") if c not in pf.schema_arrow.names]
    if missing:
        raise HatsError(
            f"{parquet_path}: no {' and '.join(missing)} column: HATS partitions the sky, and "
            "the arrays files carry no astrometry/ra, dec (catalogue.hats needs them)"
        )
    frame = pf.read().to_pandas()
    log.info("HATS copy of %d stars (%s)", len(frame), parquet_path)
    catalog = lsdb.from_dataframe(
        frame, ra_column="ra", dec_column="dec", catalog_name=name, partition_rows=partition_rows
    )
    with atomic_directory(out_dir) as tmp:
        catalog.write_catalog(tmp, catalog_name=name, overwrite=True)
    return len(frame)
