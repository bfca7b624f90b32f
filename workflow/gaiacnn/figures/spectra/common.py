"""Shared parts of the spectra figures: settings, reading rows, drawing helpers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gaiacnn.constants import label_unit
from gaiacnn.figures import style as st
from gaiacnn.figures.context import (  # noqa: F401 (read_rows, iter_selected_rows: here too)
    CHUNK_ROWS,
    Skip,
    iter_selected_rows,
    read_rows,
)

#: The XP sampled flux of the layout (SPEC stage 3): (N, K), attributes wavelength_nm (K,)
#: and flux_kind ("absolute" W m-2 nm-1, or "normalised").
XP_SAMPLED_DATASET = "xp/sampled_flux"

#: Fewest stars of a bin whose mean spectrum is drawn (Fig. 12).
MIN_STARS_PER_BIN = 5

#: Main RVS features the CNN learns from (Sect. 3.5.1; Boeche et al. 2011, Guiglion et al.
#: 2018, Contursi et al. 2021): (air wavelength [nm], species, feature they belong to).
RVS_FEATURES: tuple[tuple[float, str, str], ...] = (
    (849.80, "Ca II", "Ca II"),
    # the ~8520 Å blend, active in T_eff, log g and [M/H]
    (851.41, "Fe I", "Fe I+Ti I"),
    (851.51, "Fe I", "Fe I+Ti I"),
    (851.84, "Ti I", "Fe I+Ti I"),
    (852.11, "Ti I", "Fe I+Ti I"),
    # blue wing of Ca II 8542, active in every label
    (853.69, "Fe I", "Fe I+Ca I"),
    (853.92, "Ca I", "Fe I+Ca I"),
    (854.21, "Ca II", "Ca II"),
    (855.10, "Cr II", "Cr II"),  # T_eff and log g only
    (855.68, "Si I", "Si I"),
    # Fe I lines of 8570-8640 Å
    (858.23, "Fe I", "Fe I"),
    (861.18, "Fe I", "Fe I"),
    (862.16, "Fe I", "Fe I"),
    # the ~8650 Å blend, active in log g, [M/H] and [alpha/M]
    (864.85, "Si I", "Si I+V II+CN"),
    (864.94, "V II", "Si I+V II+CN"),
    (865.00, "CN", "Si I+V II+CN"),
    (866.21, "Ca II", "Ca II"),
    (868.30, "Ti I", "Ti I"),
    (868.86, "Fe I", "Fe I"),
)
#: Colour of each species' feature lines (Figs. 9 and 12).
SPECIES_COLOUR = {
    "Ca II": "tab:red",
    "Ca I": "tab:pink",
    "Fe I": "tab:blue",
    "Ti I": "tab:green",
    "Cr II": "tab:purple",
    "Si I": "tab:orange",
    "V II": "tab:brown",
    "CN": "tab:olive",
}
#: Defaults of ``figures.red_clump`` (Figs. 9-10): reference T_eff [K], log g [dex], [M/H]
#: centres and half width [dex], stars per group, ensemble members (0 = all).
DEFAULT_RED_CLUMP: dict = {
    "teff": (4500.0, 5100.0),
    "logg": (2.2, 2.8),
    "m_h": (0.0, -0.8),
    "m_h_half_width": 0.1,
    "max_stars": 300,
    "members": 4,
}
#: The Sun's nominal effective temperature [K] (IAU 2015 Resolution B3, Prša et al. 2016) and
#: surface gravity log g [dex, cgs] (log10 of the IAU nominal GM_sun / R_sun^2 = 4.438): the
#: centre of the solar-twin box of Fig. 2.
SOLAR_TEFF_K = 5772.0
SOLAR_LOGG = 4.44
#: Half widths of the solar-twin box of Fig. 2 (the paper gives none): T_eff ± 100 K [K],
#: log g ± 0.2 [dex].
SOLAR_TWIN_TEFF_HALF_WIDTH_K = 100.0
SOLAR_TWIN_LOGG_HALF_WIDTH = 0.2
#: Target reference [M/H] [dex] of the two stars of each panel of Fig. 2: the paper's red-clump
#: pair, "[M/H] = 0 (blue) and [M/H] = –0.87 dex (orange)" (Fig. 2); the paper does not give
#: its solar twins' metallicities, so the same two targets are used for them.
EXAMPLE_M_H: tuple[float, ...] = (0.0, -0.87)
#: Fig. 2 takes, of the ``EXAMPLE_NEAREST`` stars of a box nearest a target [M/H] and within
#: ``EXAMPLE_M_H_TOLERANCE`` [dex] of the nearest one's distance to it, the highest-S/N one.
EXAMPLE_NEAREST = 5
EXAMPLE_M_H_TOLERANCE = 0.1
#: Names of the colours C0-C3 the stars of a Fig. 2 panel are drawn in, for the caption.
_COLOUR_NAMES = ("blue", "orange", "green", "red")
#: Line styles (and their names) of the [M/H] groups of Fig. 9, in ``red_clump.m_h`` order.
GROUP_LINESTYLES = (("-", "solid"), ("--", "dashed"), (":", "dotted"), ("-.", "dash-dotted"))


@dataclass(frozen=True)
class ExamplePanel:
    """One panel of Fig. 2: training stars with reference ``teff`` [K] and ``logg`` [dex]
    within the (lo, hi) boxes (inclusive), one star per target metallicity ``m_h`` [dex]."""

    name: str
    teff: tuple[float, float]
    logg: tuple[float, float]
    m_h: tuple[float, ...] = EXAMPLE_M_H

    def box_text(self) -> str:
        """The box in words, e.g. ``4500 <= T_eff <= 5100 K, 2.2 <= log g <= 2.8``."""
        (t0, t1), (g0, g1) = self.teff, self.logg
        return f"{t0:g} <= T_eff <= {t1:g} K, {g0:g} <= log g <= {g1:g}"


@dataclass(frozen=True)
class ExampleChoice:
    """The stars chosen for one :class:`ExamplePanel`: ``rows`` (training-file rows, one per
    target [M/H], in target order) of the ``n_box`` stars in its box."""

    panel: ExamplePanel
    rows: tuple[int, ...]
    n_box: int


@dataclass(frozen=True)
class SpectraSequence:
    """One panel of Fig. 12: observed stars with CNN labels within ``cuts`` (lo <= x < hi),
    binned in ``label`` at ``edges`` (label units)."""

    panel: str
    label: str
    edges: tuple[float, ...]
    cuts: tuple[tuple[str, float, float], ...]
    what: str


#: The four sequences of Fig. 12 (Sect. 4.1), on the CNN labels of the observed stars.
SEQUENCES: tuple[SpectraSequence, ...] = (
    # (a) turn-off and dwarf stars at solar [M/H], T_eff in 250 K bins (paper: ~4900-6000 K)
    SpectraSequence(
        "a",
        "teff",
        (4750.0, 5000.0, 5250.0, 5500.0, 5750.0, 6000.0, 6250.0),
        (("logg", 3.8, 4.4), ("m_h", -0.1, 0.1)),
        "turn-off and dwarf stars, solar [M/H]",
    ),
    # (b) log g in 0.3 dex bins at T_eff 5000 +- 150 K, solar [M/H] (paper: 2.7-4.4 dex)
    SpectraSequence(
        "b",
        "logg",
        (2.4, 2.7, 3.0, 3.3, 3.6, 3.9, 4.2, 4.5),
        (("teff", 4850.0, 5150.0), ("m_h", -0.1, 0.1)),
        "T_eff = 5000 ± 150 K, solar [M/H]",
    ),
    # (c) [M/H] in 0.25 dex bins for cool giants (paper: -1.5 to solar)
    SpectraSequence(
        "c",
        "m_h",
        (-1.5, -1.25, -1.0, -0.75, -0.5, -0.25, 0.0, 0.25),
        (("teff", 4400.0, 4800.0), ("logg", 1.5, 2.5)),
        "cool giants",
    ),
    # (d) [alpha/M] in 0.05 dex bins for cool dwarfs at slightly sub-solar [M/H], where both
    # alpha-poor and alpha-rich stars are common (paper: solar to +0.26)
    SpectraSequence(
        "d",
        "alpha_m",
        (-0.05, 0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3),
        (("teff", 4600.0, 5200.0), ("logg", 4.2, 4.7), ("m_h", -0.5, -0.1)),
        "cool dwarfs, -0.5 <= [M/H] < -0.1",
    ),
)


# ---------------------------------------------------------------------- reading rows
def member_inputs(
    path: str | os.PathLike, scalers, rows: np.ndarray, chunk_rows: int = CHUNK_ROWS
) -> dict[str, np.ndarray]:
    """Model inputs (:meth:`gaiacnn.model.Scalers.inputs`, float32) of the sorted unique
    ``rows`` of arrays file ``path``, through a member's ``scalers``."""
    return scalers.inputs(read_rows(path, scalers.datasets(), rows, chunk_rows))


# ---------------------------------------------------------------------- drawing helpers
def _features(ax, annotate: bool = False, only: Sequence[str] | None = None) -> None:
    """Vertical lines at :data:`RVS_FEATURES` (each feature named on top when ``annotate``;
    ``only``: the features to draw)."""
    runs: list[tuple[str, list[float]]] = []  # neighbouring lines of one feature, one name
    for wl, species, feature in RVS_FEATURES:
        if only is not None and feature not in only:
            continue
        ax.axvline(wl, color=SPECIES_COLOUR[species], lw=0.6, alpha=0.5, zorder=0)
        if runs and runs[-1][0] == feature and wl - runs[-1][1][-1] < 1.0:
            runs[-1][1].append(wl)
        else:
            runs.append((feature, [wl]))
    if annotate:
        trans = ax.get_xaxis_transform()
        for feature, wls in runs:
            ax.text(
                float(np.mean(wls)),
                1.02,
                feature,
                transform=trans,
                rotation=90,
                ha="center",
                va="bottom",
                fontsize=5,
            )


def _derivative_text(name: str, wrt: str) -> str:
    unit = label_unit(name)
    return rf"$\partial${st.label_name(name)}/$\partial {wrt}$" + (f" [{unit}]" if unit else "")


def _group_text(centre: float, half_width: float, metal: str | None = "m_h") -> str:
    if metal is None or not np.isfinite(centre):
        return "any metallicity"
    return f"{st.label_name(metal)} = {centre:+.1f} ± {half_width:g}"
