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
    :func:`read_fits_columns` reads them (native byte order, T/F as bool, text decoded and
    stripped).  The rows are read from the file a chunk at a time, not memory-mapped: a
    mapped file's pages, once read, count in the process's memory up to the whole table.
    Columns with a scale or offset (TSCAL, TZERO) or of array or variable length are
    refused (the catalogue has none)."""
    wanted = _wanted(path, fits_column_names(path, hdu), columns)
    with fits.open(path, memmap=True) as hdul:
        table = hdul[hdu]
        offset = int(hdul.fileinfo(hdu)["datLoc"])
        n = int(table.header["NAXIS2"])
        fields, logical = [], set()
        for col in table.columns:
            if col.bscale not in (None, 1) or col.bzero not in (None, 0):
                raise TableError(f"{path}: column {col.name} is scaled (TSCAL/TZERO)")
            dtype = table.columns.dtype[col.name]
            if dtype.shape or col.format.startswith(("P", "Q")):
                raise TableError(f"{path}: column {col.name} holds arrays")
            if col.format.endswith("L"):
                logical.add(col.name)
            fields.append((col.name, dtype.newbyteorder(">") if dtype.kind in "iuf" else dtype))
    raw_dtype = np.dtype(fields)
    if raw_dtype.itemsize != int(fits.getheader(path, hdu)["NAXIS1"]):
        raise TableError(f"{path}: rows of {raw_dtype.itemsize} bytes, the header says otherwise")
    step = max(1, int(chunk_rows))
    with open(path, "rb") as fh:
        for start in range(0, n, step):
            count = min(step, n - start)
            fh.seek(offset + start * raw_dtype.itemsize)
            raw = np.fromfile(fh, dtype=raw_dtype, count=count)
            if raw.size != count:
                raise TableError(f"{path}: {start + raw.size} of {n} rows (truncated file)")
            out = {}
            for col in wanted:
                values = raw[col]
                if col in logical:
                    values = values == ord("T")
                elif values.dtype.kind == "S":
                    text = np.char.decode(values, "ascii")
                    values = np.array([v.strip() for v in text], dtype=object)
                else:
                    values = values.astype(values.dtype.newbyteorder("="))
                out[col] = values
            yield pd.DataFrame(out)


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
