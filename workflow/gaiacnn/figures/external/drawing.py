"""Drawing helpers of the comparisons: limits, points or densities, residual grids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gaiacnn.constants import label_unit
from gaiacnn.figures import style as st
from gaiacnn.figures.context import Context
from gaiacnn.figures.external.tables import (
    COLUMNS,
    SCATTER_MAX,
    Match,
    _bs,
    _sample_counts,
    _samples,
    _value,
    bias_sigma,
)
from gaiacnn.figures.render import Rendered


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
