"""Kiel-diagram boxes and the helpers the sample figures share."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from gaiacnn.figures import style as st
from gaiacnn.figures.context import Context, Skip, snr_edges


@dataclass(frozen=True)
class KielBox:
    """A box of the Kiel diagram, bounds inclusive: T_eff [K] and log g [dex] (an open side
    is +-inf), with the marker and colour of its stars."""

    name: str
    teff: tuple[float, float]  # K
    logg: tuple[float, float]  # dex
    marker: str
    colour: str
    marker_words: str  # the marker in words, for the caption

    def text(self) -> str:
        """``5700 <= Teff <= 7000 K, 2 <= log g <= 4.5``."""
        (t0, t1), (g0, g1) = self.teff, self.logg

        def side(lo: float, hi: float, what: str, unit: str) -> str:
            if not np.isfinite(lo) and not np.isfinite(hi):
                return ""  # open on both sides: any value
            if not np.isfinite(hi):
                return f"{what} >= {lo:g}{unit}"
            if not np.isfinite(lo):
                return f"{what} <= {hi:g}{unit}"
            return f"{lo:g} <= {what} <= {hi:g}{unit}"

        sides = [side(t0, t1, "Teff", " K"), side(g0, g1, "log g", "")]
        return ", ".join(x for x in sides if x)


#: The three regions of the Kiel diagram of Fig. 19 (Sect. 5.3), with the paper's markers:
#: hot dwarfs (5700 <= Teff <= 7000 K, 2 <= log g <= 4.5; blue dots), cool dwarfs
#: (4000 <= Teff <= 5000 K, log g >= 4.5; green crosses) and cool giants
#: (2000 <= Teff <= 4800 K, -2 <= log g <= 2; orange stars).  Disjoint.
OUTSIDE_BOXES: tuple[KielBox, ...] = (
    KielBox("hot dwarfs", (5700.0, 7000.0), (2.0, 4.5), "o", "tab:blue", "blue dots"),
    KielBox("cool dwarfs", (4000.0, 5000.0), (4.5, np.inf), "x", "tab:green", "green crosses"),
    KielBox("cool giants", (2000.0, 4800.0), (-2.0, 2.0), "*", "tab:orange", "orange stars"),
)
#: Scatter marker area [pt^2] of each marker of :data:`OUTSIDE_BOXES` (a star needs more).
BOX_MARKER_SIZE = {"o": 8.0, "x": 10.0, "*": 16.0}


def _snr_bins(ctx: Context) -> list[tuple[float, float]]:
    """The configured S/N bins (Figs. 11 and 16) as (low, high) pairs, the last open."""
    return list(itertools.pairwise(snr_edges(ctx.cfg).tolist()))


def _bin_text(lo: float, hi: float, what: str = "S/N") -> str:
    return f"{what} $\\geq$ {lo:g}" if not np.isfinite(hi) else f"{lo:g} $\\leq$ {what} < {hi:g}"


def _need(ctx: Context, *labels: str) -> None:
    missing = [x for x in labels if x not in ctx.labels]
    if missing:
        raise Skip(f"the catalogue has no label {', '.join(missing)}")


def _need_metallicity(ctx: Context) -> str:
    """``m_h``, else ``fe_h`` (:meth:`Context.metallicity`); :class:`Skip` without either."""
    metal = ctx.metallicity()
    if metal is None:
        raise Skip("the catalogue has no label m_h (nor fe_h to stand in for it)")
    return metal


def _join(items: list[str], last: str = "and") -> str:
    """``a, b and c`` (``last``: the word before the last item)."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {last} {items[-1]}"


def _sample_histograms(ax, ctx: Context, values: np.ndarray, ok: np.ndarray, bins) -> dict:
    """Step histograms of ``values`` (where ``ok``) for the training and the observed
    sample, labelled with their star counts; returns ``{sample: count}``."""
    counts = {}
    for name, mask in (("training", ctx.in_training), ("observed", ~ctx.in_training)):
        counts[name] = int((ok & mask).sum())
        ax.hist(
            values[ok & mask],
            bins=bins,
            histtype="step",
            color=st.SAMPLE_COLOUR[name],
            label=f"{name} ({st.stars(counts[name])})",
        )
    return counts
