"""Figures of the samples and the catalogue's labels: S/N (Fig. 1), G (3), the training Kiel
diagram (4), correlation matrices (5), observed Kiel diagrams in S/N bins (11),
[alpha/M]-[M/H] in T_eff x log g bins (14), precision against S/N (16), the stars outside
the training limits (18) and their CNN - reference labels in three Kiel-diagram boxes
(19).

Modules of this package:

* :mod:`~gaiacnn.figures.samples.common`:
  Kiel-diagram boxes and the helpers the sample figures share.
* :mod:`~gaiacnn.figures.samples.distributions`:
  S/N (Fig. 1), G (3), Kiel diagrams (4, 11), correlations (5), [alpha/M] (14), precision (16).
* :mod:`~gaiacnn.figures.samples.outside`:
  The stars outside the training limits (Fig. 18) and their residuals (19).
"""

from __future__ import annotations

from gaiacnn.figures.samples.common import BOX_MARKER_SIZE, OUTSIDE_BOXES, KielBox
from gaiacnn.figures.samples.common import _bin_text as _bin_text
from gaiacnn.figures.samples.common import _join as _join
from gaiacnn.figures.samples.common import _need as _need
from gaiacnn.figures.samples.common import _need_metallicity as _need_metallicity
from gaiacnn.figures.samples.common import _sample_histograms as _sample_histograms
from gaiacnn.figures.samples.common import _snr_bins as _snr_bins
from gaiacnn.figures.samples.distributions import (
    MIN_BIN_STARS,
    alpha_vs_metallicity_kiel_bins,
    correlation_matrices,
    g_distribution,
    observed_kiel_by_snr,
    precision_vs_snr,
    snr_distribution,
    training_kiel,
)
from gaiacnn.figures.samples.distributions import _binned_sd as _binned_sd
from gaiacnn.figures.samples.distributions import _correlation as _correlation
from gaiacnn.figures.samples.distributions import _in_bins as _in_bins
from gaiacnn.figures.samples.outside import _INSET_PLACE as _INSET_PLACE
from gaiacnn.figures.samples.outside import (
    FIG18_INSETS,
    box_stat_text,
    kiel_box_index,
    outside_limits,
    outside_residuals,
)
from gaiacnn.figures.samples.outside import _draw_inset as _draw_inset
from gaiacnn.figures.samples.outside import _inset_spectra as _inset_spectra

FIGURES = [
    snr_distribution,
    g_distribution,
    training_kiel,
    correlation_matrices,
    observed_kiel_by_snr,
    alpha_vs_metallicity_kiel_bins,
    precision_vs_snr,
    outside_limits,
    outside_residuals,
]

__all__ = [
    "BOX_MARKER_SIZE",
    "FIG18_INSETS",
    "FIGURES",
    "MIN_BIN_STARS",
    "OUTSIDE_BOXES",
    "KielBox",
    "alpha_vs_metallicity_kiel_bins",
    "box_stat_text",
    "correlation_matrices",
    "g_distribution",
    "kiel_box_index",
    "observed_kiel_by_snr",
    "outside_limits",
    "outside_residuals",
    "precision_vs_snr",
    "snr_distribution",
    "training_kiel",
]
