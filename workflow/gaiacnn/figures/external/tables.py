"""The external tables: their columns, reading, matching by source_id, statistics."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits

from gaiacnn.constants import label_unit
from gaiacnn.figures import style as st
from gaiacnn.figures.context import Context, Skip
from gaiacnn.tables import TableError, read_fits_columns


class ExternalTableError(TableError):
    """A configured comparison table that cannot be used: no such file, an unknown format,
    a required column missing or an unreadable value (a :class:`ValueError`)."""


@dataclass(frozen=True)
class Column:
    """One column of a comparison table.  ``group``: at least one column of the group is
    required (e.g. ``m_h`` or ``fe_h``); ``required`` False and no group: optional."""

    name: str
    unit: str
    meaning: str
    required: bool = True
    group: str | None = None


@dataclass(frozen=True)
class TableSpec:
    """A comparison table: its display name, its columns and what to do before writing it."""

    title: str
    columns: tuple[Column, ...]
    note: str = ""

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required and c.group is None)

    @property
    def groups(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        for c in self.columns:
            if c.group is not None:
                out[c.group] = (*out.get(c.group, ()), c.name)
        return out

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


_SOURCE_ID = Column("source_id", "", "Gaia DR3 `source_id` (integer; the join key)")

#: The columns of each comparison table, by its key in ``figures.external``.  Column names
#: are matched case-insensitively (``TEFF`` is ``teff``); other columns (quality flags,
#: errors, ...) are ignored, so apply quality cuts before writing the table.  Rows with the
#: same ``source_id`` as an earlier row are dropped; non-numeric values read as NaN.
COLUMNS: dict[str, TableSpec] = {
    "gsp_spec": TableSpec(
        "GSP-Spec",
        (
            _SOURCE_ID,
            Column("teff", "K", "GSP-Spec T_eff"),
            Column("logg", "dex", "GSP-Spec log g, calibrated or not (the user's choice)"),
            Column("m_h", "dex", "GSP-Spec [M/H], calibrated or not (the user's choice)"),
            Column("alpha_m", "dex", "GSP-Spec [α/M], calibrated or not (the user's choice)"),
        ),
        "Gaia DR3 `astrophysical_parameters` (Recio-Blanco et al. 2023).  The paper uses "
        "T_eff and the calibrated log g, [M/H], [α/M] of stars whose first 13 "
        "`flags_gspspec` digits are 0: apply such cuts first (a flags column is ignored).  "
        "Also gives the GSP-Spec column of the asteroseismic figure.",
    ),
    "gsp_phot": TableSpec(
        "GSP-Phot",
        (
            _SOURCE_ID,
            Column("teff", "K", "GSP-Phot T_eff (Gaia DR3 `teff_gspphot`)"),
            Column("logg", "dex", "GSP-Phot log g (`logg_gspphot`)"),
            Column("m_h", "dex", "GSP-Phot [M/H] (`mh_gspphot`)"),
        ),
        "Gaia DR3 GSP-Phot (Andrae et al. 2023): rename the archive columns.",
    ),
    "galah": TableSpec(
        "GALAH",
        (
            _SOURCE_ID,
            Column("teff", "K", "GALAH DR3 T_eff"),
            Column("logg", "dex", "GALAH DR3 log g"),
            Column("fe_h", "dex", "GALAH DR3 [Fe/H] (compared with the CNN [Fe/H], or [M/H])"),
            Column("alpha_fe", "dex", "GALAH DR3 [α/Fe], compared with the CNN [α/M]"),
        ),
        "GALAH DR3 (Buder et al. 2021) names its Gaia id `dr3_source_id`: rename it.  The "
        "paper keeps flag_sp = flag_fe_h = flag_alpha_fe = 0 and snr_c3_iraf > 40.",
    ),
    "asteroseismic": TableSpec(
        "seismic",
        (
            _SOURCE_ID,
            Column("logg", "dex", "seismic log g (e.g. from ν_max and T_eff, Zinn et al. 2022)"),
        ),
        "The paper: K2 GAP ν_max (Zinn et al. 2022) and Eq. 3 of Valentini et al. (2019), "
        "ν_max,⊙ = 3090 µHz, T_eff,⊙ = 5777 K.",
    ),
    "open_clusters": TableSpec(
        "cluster",
        (
            _SOURCE_ID,
            Column("cluster", "", "cluster name (text), one row per member star"),
            Column("m_h", "dex", "the cluster's [M/H] (see below)", group="metallicity"),
            Column("fe_h", "dex", "the cluster's [Fe/H] (see below)", group="metallicity"),
            Column("teff", "K", "member T_eff: accepted, not drawn", required=False),
            Column("logg", "dex", "member log g: accepted, not drawn", required=False),
        ),
        "m_h or fe_h (at least one): the cluster's literature mean repeated on each member "
        "row, or each member's own value (e.g. GALAH, as in the paper): the reference of a "
        "cluster is the mean over its members, error bar their standard deviation.  [Fe/H] "
        "is compared with the CNN [Fe/H] when both exist, else [M/H] with [M/H].",
    ),
    "distances": TableSpec(
        "distance",
        (
            _SOURCE_ID,
            Column(
                "dist50",
                "kpc",
                "heliocentric distance: the StarHorse median (`dist50` of the StarHorse "
                "EDR3 catalogue, Anders et al. 2022; Queiroz et al. 2023)",
                group="distance",
            ),
            Column(
                "distance",
                "kpc",
                "heliocentric distance of any other estimate (read when there is no dist50)",
                group="distance",
            ),
        ),
        "Positions of Fig. 24 (Sect. 7; the paper used StarHorse, Queiroz et al. 2023), "
        "with `figures.galactic.distance` auto (the default) or table.  dist50 is read when "
        "the table has it, else distance.  A row whose distance is <= 0 or NaN is dropped "
        "(the caption counts them); a catalogue star not in the table has no distance (no "
        "1/parallax stand-in).  Distances in pc (e.g. Bailer-Jones et al. 2021 `r_med_geo`): "
        "divide by 1000 and name the column distance.",
    ),
}
#: The labels GSP-Spec gives (Fig. 7 right, Fig. 16) and those GSP-Phot gives (Fig. 20).
GSP_SPEC_LABELS = ("teff", "logg", "m_h", "alpha_m")
GSP_PHOT_LABELS = ("teff", "logg", "m_h")

#: File name endings read as FITS (binary table in HDU 1) and as CSV.
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")
CSV_SUFFIXES = (".csv", ".csv.gz")
#: Up to this many stars a panel is a scatter plot; above it a 2-D histogram.
SCATTER_MAX = 5000
#: Seismic log g ranges whose bias and sigma Fig. 21 gives, with their colours (Sect. 6.2).
SEISMIC_RANGES: tuple[tuple[float, float, str], ...] = (
    (-np.inf, 2.3, "tab:orange"),
    (2.3, 2.6, "tab:green"),
    (2.6, np.inf, "tab:red"),
)
#: A cluster is drawn with at least this many matched members ("more than three", Sect. 6.4).
MIN_CLUSTER_MEMBERS = 4
#: The samples of the comparisons: the training stars and the observed stars inside the
#: training limits (flag_boundary all zeros); observed stars outside them are left out.
SAMPLES = (("training", "in_training", "training"), ("observed, inside", "inside", "inside"))


def columns_markdown() -> str:
    """:data:`COLUMNS` as a Markdown table (the README's)."""
    lines = [
        "| `figures.external` key | column | unit | required | meaning |",
        "|---|---|---|---|---|",
    ]
    for key, spec in COLUMNS.items():
        for c in spec.columns:
            need = "yes" if c.required and c.group is None else "optional"
            if c.group is not None:
                need = "one of " + " / ".join(f"`{n}`" for n in spec.groups[c.group])
            lines.append(f"| `{key}` | `{c.name}` | {c.unit} | {need} | {c.meaning} |")
    lines.append("")
    lines += [f"- `{key}`: {spec.note}" for key, spec in COLUMNS.items() if spec.note]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- statistics
def bias_sigma(diff) -> tuple[float, float, int]:
    """Mean, standard deviation and number of the finite values of ``diff`` (NaN, NaN, 0
    when none)."""
    d = np.asarray(diff, dtype=float).ravel()
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan"), float("nan"), 0
    return float(d.mean()), float(d.std()), int(d.size)


def _value(v: float, label: str, signed: bool = True) -> str:
    unit = label_unit(label)
    sign = "+" if signed else ""
    if not np.isfinite(v):
        return "nan"
    return f"{v:{sign}.0f} K" if unit == "K" else f"{v:{sign}.3f} {unit}"


def _bs(stats: tuple[float, float, int], label: str, sigma: str = "σ") -> str:
    """``b = +12 K, σ = 60 K`` (captions, cluster panel; other panels print it on two lines)."""
    b, s, _ = stats
    return f"b = {_value(b, label)}, {sigma} = {_value(s, label, signed=False)}"


# ---------------------------------------------------------------------------- tables
def configured(ctx: Context, kind: str) -> Path | None:
    """The configured path of table ``kind`` (the figure inputs' ``external``, else the
    configuration's ``external`` section), or None when it is null or absent."""
    external = ctx.inputs.external or ctx.cfg.get("external") or {}
    path = external.get(kind)
    if path is None or str(path).strip() == "":
        return None
    return Path(path)


def _path(ctx: Context, kind: str) -> Path:
    """The configured path of table ``kind``; :class:`Skip` when there is none."""
    path = configured(ctx, kind)
    if path is None:
        raise Skip(f"no {COLUMNS[kind].title} table (figures.external.{kind} is null or absent)")
    return path


def _format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(FITS_SUFFIXES):
        return "fits"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    raise ExternalTableError(
        f"{path}: unknown table format (name ends in none of "
        f"{', '.join(FITS_SUFFIXES + CSV_SUFFIXES)})"
    )


def _column_names(path: Path, fmt: str) -> list[str]:
    if fmt == "csv":
        try:
            return [str(c) for c in pd.read_csv(path, nrows=0).columns]
        except (ValueError, OSError) as exc:
            raise ExternalTableError(f"{path}: not a readable CSV file: {exc}") from None
    try:
        with fits.open(path, memmap=True) as hdul:
            if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU):
                raise ExternalTableError(f"{path}: HDU 1 is not a binary table")
            return list(hdul[1].columns.names)
    except OSError as exc:
        raise ExternalTableError(f"{path}: not a readable FITS file: {exc}") from None


def read_table(path: str | os.PathLike, kind: str) -> pd.DataFrame:
    """The columns of :data:`COLUMNS` ``[kind]`` that the table at ``path`` has, under their
    canonical (lower-case) names: ``source_id`` int64 (rows without one dropped, then
    duplicates), ``cluster`` str, the others float (non-numeric values NaN).

    Raises :class:`ExternalTableError` naming the file and the column when a required
    column is missing."""
    spec = COLUMNS[kind]
    path = Path(path)
    if not path.is_file():
        raise ExternalTableError(f"{path}: no such file (figures.external.{kind})")
    fmt = _format(path)
    by_lower: dict[str, str] = {}
    for name in _column_names(path, fmt):
        by_lower.setdefault(name.strip().lower(), name)
    for col in spec.required:
        if col not in by_lower:
            raise ExternalTableError(
                f"{path}: the {kind} table has no column '{col}' (required: "
                f"{', '.join(spec.required)}; see docs/figures.md)"
            )
    for group, cols in spec.groups.items():
        if not any(c in by_lower for c in cols):
            raise ExternalTableError(
                f"{path}: the {kind} table has no column "
                f"{' or '.join(repr(c) for c in cols)} (one is required: {group})"
            )
    wanted = [c for c in spec.names if c in by_lower]
    source = [by_lower[c] for c in wanted]
    try:
        if fmt == "fits":
            raw = read_fits_columns(path, source)
            if raw[by_lower["source_id"]].dtype.kind not in "iu":
                raise ExternalTableError(
                    f"{path}: column '{by_lower['source_id']}' is not an integer column "
                    "(source_id must be int64: a float loses digits of Gaia ids)"
                )
        else:
            dtype = {by_lower["source_id"]: "Int64"}
            if "cluster" in by_lower:
                dtype[by_lower["cluster"]] = str
            raw = pd.read_csv(path, usecols=source, dtype=dtype)
    except ExternalTableError:
        raise
    except (ValueError, TypeError, OSError) as exc:
        raise ExternalTableError(f"{path}: cannot read the {kind} table: {exc}") from None
    raw.columns = wanted
    sid = pd.array(raw["source_id"], dtype="Int64")
    keep = ~np.asarray(sid.isna(), dtype=bool)
    out = pd.DataFrame({"source_id": np.asarray(sid[keep], dtype=np.int64)})
    for col in wanted[1:]:
        values = raw[col][keep].reset_index(drop=True)
        if col == "cluster":
            out[col] = values.astype(str).str.strip()
        else:
            out[col] = pd.to_numeric(values, errors="coerce").to_numpy(float)
    if "cluster" in out:
        out = out[(out["cluster"] != "") & (out["cluster"].str.lower() != "nan")]
    return out.drop_duplicates("source_id", keep="first").reset_index(drop=True)


def join(source_id: np.ndarray, ext: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``ext`` whose ``source_id`` is among ``source_id`` (the catalogue's, all
    distinct), with the catalogue row of each in a first column ``row``."""
    rows = pd.Index(np.asarray(source_id, dtype=np.int64)).get_indexer(
        ext["source_id"].to_numpy(np.int64)
    )
    have = rows >= 0
    out = ext.iloc[np.flatnonzero(have)].reset_index(drop=True)
    out.insert(0, "row", rows[have])
    return out


@dataclass
class Match:
    """A comparison table joined to the catalogue: ``frame`` has ``row``, ``source_id``,
    ``in_training``, ``inside``, ``cnn_<label>`` for each catalogue label and
    ``ext_<column>`` for each column of the table; ``n_table`` stars in the table."""

    kind: str
    path: Path
    frame: pd.DataFrame
    n_table: int


def matched(ctx: Context, kind: str) -> Match:
    """Table ``kind`` read (:func:`read_table`) and joined to the catalogue; :class:`Skip`
    when it is not configured or none of its stars is in the catalogue."""
    path = _path(ctx, kind)
    ext = read_table(path, kind)
    m = join(ctx.table["source_id"].to_numpy(), ext)
    if m.empty:
        raise Skip(f"none of the {len(ext)} stars of {path} is in the catalogue")
    rows = m["row"].to_numpy()
    frame = pd.DataFrame(
        {
            "row": rows,
            "source_id": m["source_id"].to_numpy(np.int64),
            "in_training": ctx.in_training[rows],
            "inside": ctx.inside[rows],
        }
    )
    for name in ctx.labels:
        frame[f"cnn_{name}"] = ctx.table[name].to_numpy(float)[rows]
    for col in m.columns[2:]:
        frame[f"ext_{col}"] = m[col].to_numpy()
    return Match(kind, path, frame, len(ext))


def _add_reference(ctx: Context, frame: pd.DataFrame, labels: Sequence[str]) -> list[str]:
    """Add ``ref_<label>`` (the reference, e.g. APOGEE, label from the arrays files) to
    ``frame``; the labels that have a finite value for some matched star."""
    ref = ctx.reference
    rows = frame["row"].to_numpy()
    out = []
    for name in labels:
        if name in ref:
            frame[f"ref_{name}"] = ref[name].to_numpy(float)[rows]
            if np.isfinite(frame[f"ref_{name}"]).any():
                out.append(name)
    return out


def gsp_spec_minus_reference(ctx: Context) -> tuple[Match, list[str]]:
    """The GSP-Spec table joined to the catalogue (:func:`matched`) with the reference
    label (``ref_<label>``, e.g. APOGEE) of each matched star added, and the labels of
    :data:`GSP_SPEC_LABELS` with a finite GSP-Spec - reference for some star: the selection
    of Fig. 7 right and of the dashed lines of Fig. 16 (every matched star with both values
    finite; the quality cuts, e.g. the paper's first 13 ``flags_gspspec`` digits 0, are
    applied to the table beforehand).  :class:`Skip` when the table is not configured or
    no matched star has a reference label."""
    m = matched(ctx, "gsp_spec")
    f = m.frame
    have = [
        x
        for x in _add_reference(ctx, f, GSP_SPEC_LABELS)
        if np.isfinite(f[f"ext_{x}"].to_numpy(float) - f[f"ref_{x}"].to_numpy(float)).any()
    ]
    if not have:
        raise Skip("no matched GSP-Spec star has a reference label")
    return m, have


@dataclass
class Distances:
    """The distance table (``figures.external.distances``) joined to the catalogue.

    ``distance_kpc``: heliocentric distance [kpc] of every catalogue star (aligned with
    ``ctx.table``), NaN where the table has no row for it or its row was dropped;
    ``dropped``: catalogue stars whose table distance is <= 0 or NaN; ``column``: the
    column read (``dist50`` or ``distance``); ``n_table``: rows of the table (distinct
    ``source_id``), ``n_dropped``: those with a distance <= 0 or NaN, ``n_matched``: rows
    whose star is in the catalogue."""

    path: Path
    column: str
    distance_kpc: np.ndarray
    dropped: np.ndarray
    n_table: int
    n_dropped: int
    n_matched: int


def read_distances(ctx: Context) -> Distances:
    """The configured distance table (:data:`COLUMNS` ``["distances"]``), joined to the
    catalogue on ``source_id``: ``dist50`` [kpc] when the table has it, else ``distance``
    [kpc].  A row whose distance is <= 0 or not finite is dropped and counted.

    :class:`Skip` when ``figures.external.distances`` is null or none of the table's stars
    is in the catalogue; :class:`ExternalTableError` when the table cannot be used (no
    such file, unknown format, neither distance column)."""
    path = _path(ctx, "distances")
    table = read_table(path, "distances")
    column = "dist50" if "dist50" in table else "distance"
    d = table[column].to_numpy(float)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(d) & (d > 0)
    m = join(ctx.table["source_id"].to_numpy(), table)
    if m.empty:
        raise Skip(
            f"none of the {len(table)} stars of the distance table {path} is in the catalogue"
        )
    n = len(ctx.table)
    rows = m["row"].to_numpy()
    dm = m[column].to_numpy(float)
    with np.errstate(invalid="ignore"):
        good = np.isfinite(dm) & (dm > 0)
    out = np.full(n, np.nan)
    out[rows[good]] = dm[good]
    dropped = np.zeros(n, bool)
    dropped[rows[~good]] = True
    return Distances(path, column, out, dropped, len(table), int((~ok).sum()), len(m))


def _samples(frame: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(title, colour, rows) of each of :data:`SAMPLES` with matched stars; :class:`Skip`
    when neither has any."""
    out = [
        (title, st.SAMPLE_COLOUR[colour], frame[frame[col].to_numpy(bool)])
        for title, col, colour in SAMPLES
        if frame[col].to_numpy(bool).any()
    ]
    if not out:
        raise Skip(
            f"the {len(frame)} matched stars are all observed stars outside the training limits"
        )
    return out


def _sample_counts(frame: pd.DataFrame) -> str:
    n_out = int((~frame["in_training"] & ~frame["inside"]).sum())
    return (
        f"{st.stars(int(frame['in_training'].sum()))} of the training sample, "
        f"{st.stars(int(frame['inside'].sum()))} observed inside the training limits "
        f"({n_out} observed outside them left out)"
    )
