"""Archive tables on disk: FITS read column by column, written atomically with units."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.table import Table

from gaiacnn.io import atomic_output


class TableError(ValueError):
    """A table file that cannot be read as needed (missing, not FITS, missing column)."""


def _native(values: np.ndarray) -> np.ndarray:
    """FITS data are big-endian; pandas wants native byte order; strings become str."""
    arr = np.asarray(values)
    if arr.dtype.kind == "S":
        return np.char.decode(arr, "ascii").astype(object)
    if arr.dtype.kind in "iufb" and arr.dtype.byteorder not in ("=", "|"):
        return arr.astype(arr.dtype.newbyteorder("="))
    return arr


def fits_column_names(path: str | os.PathLike, hdu: int = 1) -> list[str]:
    """The column names of a FITS binary table (HDU ``hdu``), without reading its rows."""
    if not os.path.exists(path):
        raise TableError(f"{path}: file does not exist")
    try:
        with fits.open(path, memmap=True) as hdul:
            if len(hdul) <= hdu or not isinstance(hdul[hdu], fits.BinTableHDU):
                raise TableError(f"{path}: HDU {hdu} is not a binary table")
            return list(hdul[hdu].columns.names)
    except OSError as exc:
        raise TableError(f"{path}: not a readable FITS file: {exc}") from None


def read_fits_columns(
    path: str | os.PathLike, columns: Sequence[str] | None = None, hdu: int = 1
) -> pd.DataFrame:
    """Read ``columns`` (all if None) of a FITS binary table, one column at a time.

    The file is memory-mapped, so only the requested columns are read: the 3 GB
    APOGEE allStar file is never loaded whole.
    """
    if not os.path.exists(path):
        raise TableError(f"{path}: file does not exist")
    try:
        hdul = fits.open(path, memmap=True)
    except OSError as exc:
        raise TableError(f"{path}: not a readable FITS file: {exc}") from None
    with hdul:
        if len(hdul) <= hdu or not isinstance(hdul[hdu], fits.BinTableHDU):
            raise TableError(f"{path}: HDU {hdu} is not a binary table")
        data = hdul[hdu].data
        names = list(data.columns.names)
        wanted = names if columns is None else list(columns)
        missing = [c for c in wanted if c not in names]
        if missing:
            raise TableError(f"{path}: missing column(s) {', '.join(missing)}")
        out = {}
        for col in wanted:
            values = _native(data[col])
            if values.dtype == object:
                values = np.array([v.strip() for v in values], dtype=object)
            out[col] = values
    return pd.DataFrame(out)


def write_fits_table(
    table: pd.DataFrame | Mapping[str, np.ndarray],
    path: str | os.PathLike,
    *,
    units: Mapping[str, str] | None = None,
    meta: Mapping[str, object] | None = None,
) -> None:
    """Write a FITS binary table atomically, with column ``units`` and header ``meta``."""
    columns = {}
    for key, values in dict(table).items():
        arr = np.asarray(values)
        columns[key] = arr.astype(str) if arr.dtype == object else arr
    tab = Table(columns)
    for name, unit in (units or {}).items():
        if name in tab.colnames and unit:
            tab[name].unit = unit
    for key, value in (meta or {}).items():
        tab.meta[key] = value
    with atomic_output(path) as tmp:
        tab.write(tmp, format="fits", overwrite=True)
