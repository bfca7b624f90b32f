"""Comparisons with external catalogues (Sect. 6): Gaia DR3 GSP-Spec (Fig. 7 right, the
dashed lines of Fig. 16 and the CNN - GSP-Spec residuals), GSP-Phot (Fig. 20, Sect. 6.1),
asteroseismic log g (Fig. 21), GALAH DR3 (Fig. 22) and open clusters (Fig. 23); and the
distance table of Fig. 24 (e.g. StarHorse, Sect. 7: :func:`read_distances`).

Each comparison reads one table the user supplies (a FITS binary table in HDU 1, or a CSV
file with a header line), named by its key in the ``figures.external`` section of the
configuration, and joins it to the catalogue on ``source_id``.  :data:`COLUMNS` lists the
columns each table must have (:func:`columns_markdown` writes them as the README table).
A comparison whose table is not configured (null) is skipped; a configured table that
cannot be used (no such file, unknown format, a required column missing) raises
:class:`ExternalTableError`: that is bad input, not a figure the data does not allow.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from astropy.io import fits

from gaiacnn.constants import label_unit
from gaiacnn.figures import style as st
from gaiacnn.figures.context import Context, Skip
from gaiacnn.figures.render import Rendered, figure
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
                f"{', '.join(spec.required)}; see README: External comparisons)"
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


# ---------------------------------------------------------------------------- drawing
def _limits(values: np.ndarray, q: tuple[float, float] = (0.5, 99.5)) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(v, q)
    pad = 0.05 * (hi - lo) if hi > lo else max(abs(lo) * 0.05, 0.1)
    return float(lo - pad), float(hi + pad)


def _residual_limits(values: np.ndarray, room: float = 0.0) -> tuple[float, float]:
    """Limits of a difference axis: the bulk of the values and zero, plus ``room`` (a
    fraction of the span) below for the panel's b and sigma."""
    lo, hi = _limits(values)
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    span = hi - lo if hi > lo else 1.0
    return lo - room * span, hi + 0.05 * span


def _stat_lines(ax, lines: Sequence[tuple[str, str]], loc: str = "lower right") -> None:
    """Lines of text, each in its colour, stacked in a lower corner of ``ax``."""
    x, ha = (0.03, "left") if "left" in loc else (0.97, "right")
    for k, (text, colour) in enumerate(reversed(lines)):
        ax.text(x, 0.03 + 0.085 * k, text, transform=ax.transAxes, ha=ha, va="bottom",
                fontsize=6, color=colour)  # fmt: skip


def _points(ax, x: np.ndarray, y: np.ndarray, colour: str, xlim, ylim, **kw) -> int:
    """The finite (x, y): a scatter up to :data:`SCATTER_MAX` stars, else a 2-D histogram."""
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n <= SCATTER_MAX:
        ax.scatter(x[ok], y[ok], s=3, color=colour, alpha=0.6, lw=0, rasterized=True, **kw)
    else:
        st.density(ax, x, y, bins=80, range_=[xlim, ylim])
    return n


@dataclass(frozen=True)
class _Pair:
    """One residual column: ``test - ref`` against ``ref`` (frame columns)."""

    key: str  # caption name
    label: str  # label whose unit applies
    test: str
    ref: str
    x_text: str
    y_text: str


def _residual_grid(
    samples: list[tuple[str, str, pd.DataFrame]], pairs: Sequence[_Pair]
) -> tuple[object, dict]:
    """Rows: samples; columns: pairs; each panel ``test - ref`` against ``ref`` with its
    bias and sigma.  Returns the figure and {(sample, key): (b, sigma, n)}."""
    fig, axes = st.new_figure(
        len(samples), len(pairs), width=st.PAGE_WIDTH, height=1.9 * len(samples) + 0.3
    )
    stats = {}
    for j, p in enumerate(pairs):
        xs = np.concatenate([f[p.ref].to_numpy(float) for _, _, f in samples])
        ds = np.concatenate([f[p.test].to_numpy(float) - f[p.ref].to_numpy(float)
                             for _, _, f in samples])  # fmt: skip
        xlim, ylim = _limits(xs), _residual_limits(ds, room=0.35)
        for i, (title, colour, f) in enumerate(samples):
            ax = axes[i, j]
            x = f[p.ref].to_numpy(float)
            d = f[p.test].to_numpy(float) - x
            _points(ax, x, d, colour, xlim, ylim)
            ax.axhline(0.0, color="k", ls="--", lw=0.8)
            stats[(title, p.key)] = bias_sigma(d)
            b, s, n = stats[(title, p.key)]
            st.corner_text(ax, f"b = {_value(b, p.label)}\nσ = {_value(s, p.label, False)}",
                           "lower left")  # fmt: skip
            ax.set_title(f"{title}, {st.stars(n)}", fontsize=6)
            ax.set_xlim(*xlim)
            ax.set_ylim(*ylim)
            ax.set_xlabel(p.x_text)
            ax.set_ylabel(p.y_text)
    return fig, stats


def _stats_caption(stats: dict, samples, pairs: Sequence[_Pair]) -> str:
    """``training: teff b = -98 K, sigma = 61 K (412 stars); ...`` for the caption."""
    parts = []
    for title, _, _ in samples:
        items = [
            f"{p.key} {_bs(stats[(title, p.key)], p.label, 'sigma')} "
            f"({st.stars(stats[(title, p.key)][2])})"
            for p in pairs
        ]
        parts.append(f"{title}: " + "; ".join(items))
    return " | ".join(parts)


def _difference_figure(
    ctx: Context, m: Match, pairs: Sequence[_Pair], name: str, what: str
) -> Rendered:
    samples = _samples(m.frame)
    fig, stats = _residual_grid(samples, pairs)
    n = sum(len(f) for _, _, f in samples)
    caption = (
        f"{what}, for the stars in common between the catalogue and {m.path.name} "
        f"({st.stars(len(m.frame))} of the {m.n_table} in the table): "
        f"{_sample_counts(m.frame)}; dashed line: no difference; b, sigma: mean and "
        "standard deviation of the difference. " + _stats_caption(stats, samples, pairs)
    )
    return Rendered(name, fig, caption, n)


def _cnn_pairs(ctx: Context, kind: str, labels: Sequence[str]) -> list[_Pair]:
    title = COLUMNS[kind].title
    return [
        _Pair(
            x,
            x,
            f"cnn_{x}",
            f"ext_{x}",
            st.label_text(x, f"{title} "),
            f"CNN $-$ {title} [{label_unit(x)}]",
        )
        for x in labels
        if x in ctx.labels
    ]


# ---------------------------------------------------------------------------- figures
@figure(7.5)
def gsp_spec_reference(ctx: Context) -> Iterator[Rendered]:
    """Fig. 7 right: GSP-Spec - reference (e.g. APOGEE) against the reference labels."""
    m, have = gsp_spec_minus_reference(ctx)
    pairs = [
        _Pair(
            x,
            x,
            f"ext_{x}",
            f"ref_{x}",
            st.label_text(x, "reference "),
            f"GSP-Spec $-$ reference [{label_unit(x)}]",
        )
        for x in have
    ]
    yield _difference_figure(
        ctx,
        m,
        pairs,
        "fig07_gsp_spec_reference",
        "GSP-Spec minus reference (input, e.g. APOGEE DR17) labels against the reference "
        "labels (Fig. 7 right)",
    )


@figure(20)
def gsp_spec(ctx: Context) -> Iterator[Rendered]:
    """CNN - GSP-Spec against GSP-Spec for T_eff, log g, [M/H], [alpha/M]: not a figure of
    the paper (which compares GSP-Spec with APOGEE, Fig. 7 right and Fig. 16), the
    GSP-Spec companion of Fig. 20."""
    m = matched(ctx, "gsp_spec")
    pairs = _cnn_pairs(ctx, "gsp_spec", GSP_SPEC_LABELS)
    if not pairs:
        raise Skip("the catalogue has none of teff, logg, m_h, alpha_m")
    yield _difference_figure(
        ctx, m, pairs, "fig20_gsp_spec", "CNN minus GSP-Spec labels against GSP-Spec"
    )


#: The three columns of Fig. 20 (Sect. 6.1): (title, test, ref, x-axis name): ``test - ref``
#: against ``ref``, ``cnn``/``ref``/``ext`` standing for the CNN, the reference (e.g.
#: APOGEE) and the GSP-Phot value of a label.
GSP_PHOT_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("CNN - reference", "cnn", "ref", "reference"),
    ("GSP-Phot - reference", "ext", "ref", "reference"),
    ("CNN - GSP-Phot", "cnn", "ext", "GSP-Phot"),
)


def gsp_phot_sample(ctx: Context, m: Match, labels: Sequence[str]) -> np.ndarray:
    """Rows of ``m.frame`` (GSP-Phot joined, ``ref_<label>`` added) in Fig. 20: observed
    stars inside the training limits whose CNN, reference and GSP-Phot values are all
    finite for every label of ``labels`` (the paper's 33 120 stars, Sect. 6.1)."""
    f = m.frame
    keep = f["inside"].to_numpy(bool).copy()
    for x in labels:
        for who in ("cnn", "ref", "ext"):
            keep &= np.isfinite(f[f"{who}_{x}"].to_numpy(float))
    return keep


@figure(20.5)
def gsp_phot(ctx: Context) -> Iterator[Rendered]:
    """Fig. 20 (Sect. 6.1): CNN - reference (e.g. APOGEE, left column), GSP-Phot -
    reference (middle) and CNN - GSP-Phot (right) for T_eff, log g, [M/H] (rows), each
    against the second of the pair, for the observed stars inside the training limits
    that have all three values (:func:`gsp_phot_sample`)."""
    m = matched(ctx, "gsp_phot")
    labels = [x for x in GSP_PHOT_LABELS if x in ctx.labels]
    if not labels:
        raise Skip("the catalogue has none of teff, logg, m_h")
    have = _add_reference(ctx, m.frame, labels)
    labels = [x for x in labels if x in have]
    if not labels:
        raise Skip("no GSP-Phot star matched to the catalogue has a reference label")
    keep = gsp_phot_sample(ctx, m, labels)
    f = m.frame[keep]
    n = len(f)
    if n == 0:
        raise Skip(
            f"none of the {len(m.frame)} stars matched to {m.path.name} is an observed star "
            f"inside the training limits with a reference, CNN and GSP-Phot "
            f"{', '.join(labels)}"
        )
    fig, axes = st.new_figure(
        len(labels), len(GSP_PHOT_COLUMNS), width=st.PAGE_WIDTH, height=1.9 * len(labels) + 0.3
    )
    colour = st.SAMPLE_COLOUR["inside"]
    parts: dict[str, list[str]] = {title: [] for title, *_ in GSP_PHOT_COLUMNS}
    for i, x in enumerate(labels):
        values = {who: f[f"{who}_{x}"].to_numpy(float) for who in ("cnn", "ref", "ext")}
        xlim = _limits(np.concatenate([values["ref"], values["ext"]]))
        ylim = _residual_limits(
            np.concatenate([values[t] - values[r] for _, t, r, _ in GSP_PHOT_COLUMNS]), room=0.35
        )
        for j, (title, test, ref, x_name) in enumerate(GSP_PHOT_COLUMNS):
            ax = axes[i, j]
            d = values[test] - values[ref]
            _points(ax, values[ref], d, colour, xlim, ylim)
            ax.axhline(0.0, color="k", ls="--", lw=0.8)
            stats = bias_sigma(d)
            b, sd, _ = stats
            st.corner_text(ax, f"b = {_value(b, x)}\nσ = {_value(sd, x, False)}", "lower left")
            if i == 0:
                ax.set_title(f"{title.replace(' - ', ' $-$ ')}, {st.stars(n)}", fontsize=7)
            ax.set_xlim(*xlim)
            ax.set_ylim(*ylim)
            ax.set_xlabel(st.label_text(x, f"{x_name} "))
            ax.set_ylabel(f"{title.replace(' - ', ' $-$ ')} [{label_unit(x)}]", fontsize=7)
            parts[title].append(f"{x} {_bs(stats, x, 'sigma')}")
    n_training = int(m.frame["in_training"].sum())
    n_outside = int((~m.frame["in_training"] & ~m.frame["inside"]).sum())
    n_lacking = len(m.frame) - n - n_training - n_outside
    caption = (
        "CNN minus reference (input, e.g. APOGEE DR17) labels (left column), GSP-Phot minus "
        "reference (middle) and CNN minus GSP-Phot (right), each against the second of the "
        f"pair, for {', '.join(labels)} (rows) of {st.stars(n)} of the observed sample inside "
        "the training limits with a finite reference, CNN and GSP-Phot value of every label "
        f"(Fig. 20, Sect. 6.1); {len(m.frame)} stars of {m.path.name} ({m.n_table} in the "
        f"table) are in the catalogue: {n_training} of the training sample, {n_outside} "
        f"observed outside the training limits and {n_lacking} lacking a value left out; "
        "dashed line: no difference; b, sigma: mean and standard deviation of the "
        "difference. " + " | ".join(f"{t}: " + "; ".join(v) for t, v in parts.items())
    )
    yield Rendered("fig20_gsp_phot", fig, caption + ctx.flag_note(), n)


def _metallicity(ctx: Context, ext_columns, prefer: Sequence[str] = ("fe_h", "m_h")):
    """(table column, CNN label) of the metallicity comparison: the same quantity where the
    catalogue has it ([Fe/H] first), else the catalogue's [M/H] or [Fe/H]."""
    for x in prefer:
        if x in ext_columns and x in ctx.labels:
            return x, x
    for x in prefer:
        for y in ("fe_h", "m_h"):
            if x in ext_columns and y in ctx.labels:
                return x, y
    raise Skip("the catalogue has neither fe_h nor m_h")


@figure(22)
def galah(ctx: Context) -> Iterator[Rendered]:
    """Fig. 22: CNN - GALAH against GALAH: T_eff, log g, [Fe/H], [alpha/M] vs [alpha/Fe]."""
    m = matched(ctx, "galah")
    pairs = _cnn_pairs(ctx, "galah", ("teff", "logg"))
    try:
        ref_fe, cnn_fe = _metallicity(ctx, ("fe_h",))
    except Skip:  # no metallicity label: the other panels are still drawn
        ref_fe = cnn_fe = None
    if cnn_fe is not None:
        pairs.append(
            _Pair(
                "fe_h",
                "fe_h",
                f"cnn_{cnn_fe}",
                "ext_fe_h",
                st.label_text("fe_h", "GALAH "),
                f"CNN {st.label_name(cnn_fe)} $-$ GALAH [dex]",
            )
        )
    if "alpha_m" in ctx.labels:
        pairs.append(
            _Pair(
                "alpha",
                "alpha_m",
                "cnn_alpha_m",
                "ext_alpha_fe",
                "GALAH [$\\alpha$/Fe] [dex]",
                "CNN [$\\alpha$/M] $-$ GALAH [dex]",
            )
        )
    if not pairs:
        raise Skip("the catalogue has none of teff, logg, fe_h, m_h, alpha_m")
    shown = [x for x, present in (("T_eff", "teff"), ("log g", "logg")) if present in ctx.labels]
    if cnn_fe is not None:
        shown.append(f"CNN {cnn_fe} - GALAH {ref_fe}")
    if "alpha_m" in ctx.labels:
        alpha = "CNN [alpha/M] - GALAH [alpha/Fe] (note the different definitions)"
        shown = [", ".join(shown) + " and " + alpha] if shown else [alpha]
    what = "CNN minus GALAH DR3 labels against GALAH: " + ", ".join(shown)
    if cnn_fe is None:
        what += " (the catalogue has no fe_h or m_h label: no metallicity panel)"
    yield _difference_figure(ctx, m, pairs, "fig22_galah", what)


@figure(21)
def asteroseismic(ctx: Context) -> Iterator[Rendered]:
    """Fig. 21: reference (e.g. APOGEE), CNN and (if configured) GSP-Spec log g against the
    seismic log g, one-to-one and residual panels, bias and sigma in seismic log g ranges."""
    m = matched(ctx, "asteroseismic")
    frame = m.frame
    sources: list[tuple[str, str]] = []
    if _add_reference(ctx, frame, ("logg",)):
        sources.append(("reference", "ref_logg"))
    if "logg" in ctx.labels:
        sources.append(("CNN", "cnn_logg"))
    try:
        g = matched(ctx, "gsp_spec").frame
    except Skip:
        g = None
    if g is not None:
        lookup = pd.Series(g["ext_logg"].to_numpy(float), index=g["source_id"].to_numpy())
        frame["gsp_logg"] = lookup.reindex(frame["source_id"].to_numpy()).to_numpy(float)
        if np.isfinite(frame["gsp_logg"]).any():
            sources.append(("GSP-Spec", "gsp_logg"))
    if not sources:
        raise Skip("the catalogue has no logg and no reference log g")
    samples = _samples(frame)
    nrows, ncols = 2 * len(samples), len(sources)
    fig, axes = st.new_figure(
        nrows,
        ncols,
        width=st.PAGE_WIDTH if ncols > 1 else st.COLUMN_WIDTH,
        height=3.0 * len(samples) + 0.3,
        gridspec_kw={"height_ratios": [2.2, 1.0] * len(samples)},
    )
    seismic_all = frame["ext_logg"].to_numpy(float)
    lim = _limits(np.concatenate([seismic_all, *(frame[c].to_numpy(float) for _, c in sources)]))
    dlim = _residual_limits(
        np.concatenate([frame[c].to_numpy(float) - seismic_all for _, c in sources])
    )
    parts = []
    for i, (title, colour, f) in enumerate(samples):
        x = f["ext_logg"].to_numpy(float)
        for j, (who, col) in enumerate(sources):
            top, bottom = axes[2 * i, j], axes[2 * i + 1, j]
            y = f[col].to_numpy(float)
            d = y - x
            stats = bias_sigma(d)
            lines = []
            if stats[2] > SCATTER_MAX:
                _points(top, x, y, colour, lim, lim)
                _points(bottom, x, d, colour, lim, dlim)
            for lo, hi, c in SEISMIC_RANGES:
                r = (x >= lo) & (x < hi)
                if stats[2] <= SCATTER_MAX:
                    _points(top, x[r], y[r], c, lim, lim)
                    _points(bottom, x[r], d[r], c, lim, dlim)
                b, s, k = bias_sigma(d[r])
                if k:
                    lines.append((f"{_range_text(lo, hi)}: b = {b:+.2f}, σ = {s:.2f}", c))
            lines.append((f"all: b = {stats[0]:+.2f}, σ = {stats[1]:.2f}", "k"))
            top.plot(lim, lim, color="k", ls="--", lw=0.8)
            bottom.axhline(0.0, color="k", ls="--", lw=0.8)
            top.set_title(f"{title}: {who}, {st.stars(stats[2])}", fontsize=7)
            _stat_lines(top, lines, "lower right")
            for ax, ylim in ((top, lim), (bottom, dlim)):
                ax.set_xlim(*lim)
                ax.set_ylim(*ylim)
            top.set_ylabel(st.label_text("logg", f"{who} "))
            bottom.set_ylabel(f"{who} $-$ seismic", fontsize=7)
            bottom.set_xlabel(st.label_text("logg", "seismic "))
            parts.append(f"{title}, {who} - seismic: {_bs(stats, 'logg', 'sigma')} "
                         f"({st.stars(stats[2])})")  # fmt: skip
    n = sum(len(f) for _, _, f in samples)
    names = ", ".join(who for who, _ in sources)
    yield Rendered(
        "fig21_asteroseismic",
        fig,
        f"log g of {names} against the seismic log g of {m.path.name} for the {st.stars(n)} "
        f"in common: {_sample_counts(frame)}; top: one-to-one (dashed), bottom: "
        "difference; colours: seismic log g < 2.3, 2.3-2.6, >= 2.6, with their bias b and "
        "dispersion sigma. " + "; ".join(parts),
        n,
    )


def _range_text(lo: float, hi: float) -> str:
    if not np.isfinite(lo):
        return f"< {hi:g}"
    if not np.isfinite(hi):
        return f"$\\geq$ {lo:g}"
    return f"{lo:g}-{hi:g}"


def cluster_summary(
    frame: pd.DataFrame, ref: str, cnn: str, min_members: int = MIN_CLUSTER_MEMBERS
) -> pd.DataFrame:
    """Per cluster (column ``ext_cluster``) with at least ``min_members`` members having a
    finite ``ref`` and ``cnn``: n, the reference mean and standard deviation, the median
    and 16th/84th percentiles of the CNN value and delta = median - reference; sorted by
    the reference value."""
    ok = np.isfinite(frame[ref].to_numpy(float)) & np.isfinite(frame[cnn].to_numpy(float))
    rows = []
    for name, g in frame[ok].groupby("ext_cluster", sort=True):
        if len(g) < min_members:
            continue
        v = g[cnn].to_numpy(float)
        r = g[ref].to_numpy(float)
        p16, med, p84 = np.percentile(v, [16, 50, 84])
        rows.append(
            {
                "cluster": str(name),
                "n": len(g),
                "ref": float(r.mean()),
                "ref_sd": float(r.std()),
                "median": float(med),
                "p16": float(p16),
                "p84": float(p84),
                "delta": float(med - r.mean()),
            }
        )
    columns = ["cluster", "n", "ref", "ref_sd", "median", "p16", "p84", "delta"]
    out = pd.DataFrame(rows, columns=columns)
    return out.sort_values("ref", kind="stable").reset_index(drop=True)


@figure(23)
def open_clusters(ctx: Context) -> Iterator[Rendered]:
    """Fig. 23: per cluster, the CNN metallicity of its members (median, 16-84 %) against
    the cluster's reference value, and their difference."""
    m = matched(ctx, "open_clusters")
    ext_cols = [c.removeprefix("ext_") for c in m.frame.columns if c.startswith("ext_")]
    ref_lbl, cnn_lbl = _metallicity(ctx, ext_cols)
    frame = m.frame[~(~m.frame["in_training"] & ~m.frame["inside"])]
    summary = cluster_summary(frame, f"ext_{ref_lbl}", f"cnn_{cnn_lbl}")
    if summary.empty:
        raise Skip(
            f"no cluster of {m.path.name} has {MIN_CLUSTER_MEMBERS} matched members in the "
            "training sample or inside the training limits"
        )
    k = len(summary)
    fig, axes = st.new_figure(
        2,
        1,
        width=st.COLUMN_WIDTH * 1.4,
        height=4.6,
        sharex=True,
        gridspec_kw={"height_ratios": [3.0, 1.2]},
    )
    top, bottom = axes[0, 0], axes[1, 0]
    colours = matplotlib.colormaps[st.CMAP["sequential"]](np.linspace(0.0, 0.9, k))
    for c, row in zip(colours, summary.itertuples(index=False), strict=True):
        yerr = [[row.median - row.p16], [row.p84 - row.median]]
        label = f"{row.cluster} ({row.n}): {row.delta:+.2f}"
        top.errorbar(row.ref, row.median, xerr=row.ref_sd, yerr=yerr, fmt="o", ms=3,
                     color=c, elinewidth=0.8, capsize=1.5, label=label)  # fmt: skip
        bottom.errorbar(row.ref, row.delta, yerr=yerr, fmt="o", ms=3, color=c,
                        elinewidth=0.8, capsize=1.5)  # fmt: skip
    lo = min(summary["ref"].min(), summary["p16"].min()) - 0.1
    hi = max(summary["ref"].max(), summary["p84"].max()) + 0.1
    top.plot([lo, hi], [lo, hi], color="k", ls="--", lw=0.8)
    top.set_xlim(lo, hi)
    top.set_ylim(lo, hi)
    bottom.axhline(0.0, color="k", ls="--", lw=0.8)
    if k <= 15:
        top.legend(fontsize=5, loc="upper left", title="cluster (members): $\\Delta$",
                   title_fontsize=5)  # fmt: skip
    n = int(summary["n"].sum())
    stats = bias_sigma(summary["delta"].to_numpy())
    st.corner_text(top, f"{k} clusters\n{st.stars(n)}", "lower right")
    st.corner_text(bottom, f"{_bs(stats, cnn_lbl)} ({k} clusters)", "lower left")
    top.set_ylabel(st.label_text(cnn_lbl, "CNN ") + " (median)")
    bottom.set_ylabel("$\\Delta$ (CNN $-$ cluster)", fontsize=7)
    bottom.set_xlabel(st.label_text(ref_lbl, "cluster "))
    yield Rendered(
        "fig23_open_clusters",
        fig,
        f"CNN {cnn_lbl} (median and 16-84 % of the members) against the cluster {ref_lbl} of "
        f"{m.path.name} (mean and standard deviation over the members) for {k} clusters with "
        f">= {MIN_CLUSTER_MEMBERS} matched members in the training sample or inside the "
        f"training limits ({st.stars(n)}); dashed: one-to-one; bottom: Delta = CNN median - "
        f"cluster value; over the clusters {_bs(stats, cnn_lbl, 'sigma')}.",
        n,
    )


FIGURES = [gsp_spec_reference, gsp_spec, gsp_phot, asteroseismic, galah, open_clusters]
