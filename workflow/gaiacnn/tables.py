"""Archive tables on disk: FITS read column by column, written atomically with units."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence

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
        wanted = _wanted(path, list(data.columns.names), columns)
        return _frame(data, wanted)


def _wanted(path, names: list[str], columns: Sequence[str] | None) -> list[str]:
    """``columns`` (all ``names`` if None), refused naming those the table lacks."""
    wanted = names if columns is None else list(columns)
    missing = [c for c in wanted if c not in names]
    if missing:
        raise TableError(f"{path}: missing column(s) {', '.join(missing)}")
    return wanted


def _frame(rows, wanted: Sequence[str]) -> pd.DataFrame:
    """FITS rows as a DataFrame: native byte order, text decoded and stripped."""
    out = {}
    for col in wanted:
        values = _native(rows[col])
        if values.dtype == object:
            values = np.array([v.strip() for v in values], dtype=object)
        out[col] = values
    return pd.DataFrame(out)


def fits_rows(path: str | os.PathLike, hdu: int = 1) -> int:
    """The number of rows of a FITS binary table (HDU ``hdu``), from its header."""
    fits_column_names(path, hdu)  # refuses what is not a binary table
    return int(fits.getheader(path, hdu)["NAXIS2"])


def iter_fits_rows(
    path: str | os.PathLike,
    chunk_rows: int = 65536,
    columns: Sequence[str] | None = None,
    hdu: int = 1,
) -> Iterator[pd.DataFrame]:
    """``columns`` (all if None) of a FITS binary table, ``chunk_rows`` rows at a time, as
    :func:`read_fits_columns` reads them (native byte order, text stripped): the file is
    memory-mapped, so memory follows the chunk, not the table."""
    wanted = _wanted(path, fits_column_names(path, hdu), columns)
    with fits.open(path, memmap=True) as hdul:
        data = hdul[hdu].data
        n = 0 if data is None else len(data)
        for start in range(0, n, max(1, int(chunk_rows))):
            yield _frame(data[start : start + chunk_rows], wanted)


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
