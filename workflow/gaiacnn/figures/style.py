"""The one style of every figure: fonts, colour maps, label names with units, density
panels that stay cheap for millions of stars, the star-count wording and the saving.

Figures are :class:`matplotlib.figure.Figure` objects drawn on the Agg canvas (no pyplot
state), so each is freed as soon as it is saved.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.colors import LinearSegmentedColormap, LogNorm, Normalize
from matplotlib.figure import Figure

from gaiacnn.constants import PAPER_LABELS, label_unit

#: rcParams of every figure (A&A column-like fonts, constrained layout).
RC: dict = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "xtick.direction": "in",
    "ytick.direction": "in",
    "xtick.top": True,
    "ytick.right": True,
    "figure.constrained_layout.use": True,
    "savefig.dpi": 150,
    "pdf.fonttype": 42,
}
#: Colour maps by role.
CMAP = {
    "sequential": "viridis",  # a label as colour (e.g. [M/H] on a Kiel diagram)
    "density": "cividis",  # star counts
    "diverging": "RdBu_r",  # signed quantities: correlations, gradients
    # star counts of a sample shown behind another (light to mid grey)
    "background": LinearSegmentedColormap.from_list("background", ["0.85", "0.35"]),
}
#: Colours by sample.
SAMPLE_COLOUR = {
    "training": "tab:orange",
    "observed": "tab:blue",
    "inside": "tab:green",
    "outside": "tab:red",
}
#: Plot names of the paper's labels (units from gaiacnn.constants).
LABEL_TEX = {
    "teff": r"$T_\mathrm{eff}$",
    "logg": r"$\log g$",
    "m_h": "[M/H]",
    "alpha_m": r"[$\alpha$/M]",
    "fe_h": "[Fe/H]",
}
#: Width of a figure spanning a page (inches), and of one column.
PAGE_WIDTH, COLUMN_WIDTH = 7.2, 3.5


def label_name(name: str) -> str:
    """Plot name of a label: the paper's five by name, an abundance ``x_fe`` as [X/Fe]."""
    if name in LABEL_TEX:
        return LABEL_TEX[name]
    if "_" in name:
        a, b = name.split("_", 1)
        return f"[{a.capitalize()}/{b.capitalize()}]"
    return name


def label_text(name: str, prefix: str = "") -> str:
    """Axis text of a label with its unit, e.g. ``[M/H] [dex]`` (``prefix`` before it)."""
    unit = label_unit(name)
    return f"{prefix}{label_name(name)} [{unit}]" if unit else f"{prefix}{label_name(name)}"


def number(n: int) -> str:
    """``12 345`` (thin-space thousands, as A&A writes them)."""
    return f"{int(n):,}".replace(",", "\u2009")


def stars(n: int) -> str:
    """``12 345 stars``."""
    return f"{number(n)} star{'s' if n != 1 else ''}"


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The figures' rcParams, for the duration of a block."""
    with matplotlib.rc_context(RC):
        yield


def new_figure(
    nrows: int = 1,
    ncols: int = 1,
    *,
    width: float = COLUMN_WIDTH,
    height: float | None = None,
    **subplot_kw,
) -> tuple[Figure, np.ndarray]:
    """A figure (Agg canvas, no pyplot state) and its axes as a 2-D array."""
    fig = Figure(figsize=(width, height if height is not None else 0.8 * width / ncols * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def density(
    ax,
    x: np.ndarray,
    y: np.ndarray,
    *,
    bins: int | Sequence = 100,
    range_: Sequence[Sequence[float]] | None = None,
    cmap: str = CMAP["density"],
    weights: np.ndarray | None = None,
    log: bool = True,
):
    """A 2-D histogram of counts of the finite (x, y) pairs, on a log colour scale (or a
    linear one, ``log=False``, which shows ridges and gaps such as two sequences of one
    population): memory and file size independent of the number of stars.  Returns the
    mesh (for a colour bar)."""
    ok = np.isfinite(x) & np.isfinite(y)
    h, xe, ye = np.histogram2d(
        x[ok], y[ok], bins=bins, range=range_, weights=None if weights is None else weights[ok]
    )
    h = np.where(h > 0, h, np.nan)
    vmax = np.nanmax(h) if np.isfinite(h).any() else 1.0
    norm = (LogNorm if log else Normalize)(vmin=1 if log else 0, vmax=max(vmax, 1.0))
    return ax.pcolormesh(xe, ye, h.T, cmap=cmap, norm=norm, rasterized=True)


def binned_mean(
    x: np.ndarray,
    y: np.ndarray,
    c: np.ndarray,
    *,
    bins: int | Sequence = 100,
    range_: Sequence[Sequence[float]] | None = None,
    min_count: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean of ``c`` in 2-D bins of (x, y) (NaN where fewer than ``min_count`` stars):
    (mean (nx, ny), x edges, y edges)."""
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(c)
    n, xe, ye = np.histogram2d(x[ok], y[ok], bins=bins, range=range_)
    s, _, _ = np.histogram2d(x[ok], y[ok], bins=[xe, ye], weights=c[ok])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n >= min_count, s / n, np.nan)
    return mean, xe, ye


def kiel_axes(ax, teff_range=(7000.0, 3500.0), logg_range=(5.2, 0.0)) -> None:
    """Kiel diagram axes: T_eff and log g both increasing to the left / downward."""
    ax.set_xlim(*teff_range)
    ax.set_ylim(*logg_range)
    ax.set_xlabel(label_text("teff"))
    ax.set_ylabel(label_text("logg"))


def corner_text(ax, text: str, loc: str = "upper left", *, box: bool = False):
    """Small annotation in a corner of ``ax`` (counts, bias and sigma); ``box``: on a
    half-transparent white box, readable over a dense panel.  Returns the text."""
    x, ha = (0.03, "left") if "left" in loc else (0.97, "right")
    y, va = (0.97, "top") if "upper" in loc else (0.03, "bottom")
    bbox = {"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1} if box else None
    return ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, fontsize=7, bbox=bbox)


def save(fig: Figure, out_dir: str | os.PathLike, name: str, formats: Sequence[str]) -> list[Path]:
    """``fig`` as ``out_dir/name.<fmt>`` for each format; the paths written."""
    out = []
    for fmt in formats:
        path = Path(out_dir) / f"{name}.{fmt}"
        fig.savefig(path, format=fmt)
        out.append(path)
    return out


__all__ = [
    "CMAP",
    "COLUMN_WIDTH",
    "LABEL_TEX",
    "PAGE_WIDTH",
    "PAPER_LABELS",
    "RC",
    "SAMPLE_COLOUR",
    "binned_mean",
    "corner_text",
    "density",
    "kiel_axes",
    "label_name",
    "label_text",
    "new_figure",
    "number",
    "save",
    "stars",
    "style",
]
