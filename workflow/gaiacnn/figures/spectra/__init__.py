"""Figures of the spectra and of what the CNN learns from them (Sect. 3.5): example RVS
spectra of training stars (Fig. 2, Sect. 2.1), mean gradients of the labels with respect to
the RVS pixels for red-clump stars (Fig. 9),
XP coefficient-label correlations and XP gradients (Fig. 10), and mean observed RVS spectra
in sequences of T_eff, log g, [M/H] and [alpha/M] (Fig. 12, Sect. 4.1).

Spectra are read row-chunk by row-chunk (never a whole ``rvs/flux``), so memory does not grow
with the number of stars.

Each figure says which input it lacks when the survey has none: Figs. 2, 9 and 12 need RVS
spectra (and Fig. 9 ensemble members with an RVS branch), Fig. 10 XP data and members with
an XP branch; on members that read the XP sampled flux (``model.xp_input: sampled``) Fig. 10
is drawn on the sampled flux's wavelength grid.  Where the labels have no [M/H], [Fe/H]
stands in for it (example stars, red-clump groups, sequences), as the captions say.

Modules of this package:

* :mod:`~gaiacnn.figures.spectra.common`:
  Shared parts of the spectra figures: settings, reading rows, drawing helpers.
* :mod:`~gaiacnn.figures.spectra.gradients`:
  What the CNN learns: RVS gradients (Fig. 9), XP correlations and gradients (10).
* :mod:`~gaiacnn.figures.spectra.examples`:
  Example RVS spectra (Fig. 2) and mean spectra in label sequences (Fig. 12).
"""

from __future__ import annotations

from gaiacnn.figures.spectra.common import _COLOUR_NAMES as _COLOUR_NAMES
from gaiacnn.figures.spectra.common import (
    CHUNK_ROWS,
    DEFAULT_RED_CLUMP,
    EXAMPLE_M_H,
    EXAMPLE_M_H_TOLERANCE,
    EXAMPLE_NEAREST,
    GROUP_LINESTYLES,
    MIN_STARS_PER_BIN,
    RVS_FEATURES,
    SEQUENCES,
    SOLAR_LOGG,
    SOLAR_TEFF_K,
    SOLAR_TWIN_LOGG_HALF_WIDTH,
    SOLAR_TWIN_TEFF_HALF_WIDTH_K,
    SPECIES_COLOUR,
    XP_SAMPLED_DATASET,
    ExampleChoice,
    ExamplePanel,
    SpectraSequence,
    iter_selected_rows,
    member_inputs,
    read_rows,
)
from gaiacnn.figures.spectra.common import _derivative_text as _derivative_text
from gaiacnn.figures.spectra.common import _features as _features
from gaiacnn.figures.spectra.common import _group_text as _group_text
from gaiacnn.figures.spectra.examples import (
    example_panels,
    example_spectra,
    example_stars,
    mean_spectra,
    mean_spectra_sequences,
    sequence_bins,
    sequences_for,
)
from gaiacnn.figures.spectra.gradients import (
    BRANCH_TEXT,
    input_gradients,
    mean_gradients,
    member_scalers,
    red_clump_groups,
    red_clump_metallicity,
    rvs_gradients,
    xp_gradients,
    xp_label_correlation,
)
from gaiacnn.figures.spectra.gradients import _member_paths as _member_paths
from gaiacnn.figures.spectra.gradients import _metal_note as _metal_note
from gaiacnn.figures.spectra.gradients import _red_clump_config as _red_clump_config
from gaiacnn.figures.spectra.gradients import _xp_form as _xp_form
from gaiacnn.figures.spectra.gradients import _xp_sampled_figure as _xp_sampled_figure

FIGURES = [example_spectra, rvs_gradients, xp_gradients, mean_spectra_sequences]

__all__ = [
    "BRANCH_TEXT",
    "CHUNK_ROWS",
    "DEFAULT_RED_CLUMP",
    "EXAMPLE_M_H",
    "EXAMPLE_M_H_TOLERANCE",
    "EXAMPLE_NEAREST",
    "FIGURES",
    "GROUP_LINESTYLES",
    "MIN_STARS_PER_BIN",
    "RVS_FEATURES",
    "SEQUENCES",
    "SOLAR_LOGG",
    "SOLAR_TEFF_K",
    "SOLAR_TWIN_LOGG_HALF_WIDTH",
    "SOLAR_TWIN_TEFF_HALF_WIDTH_K",
    "SPECIES_COLOUR",
    "XP_SAMPLED_DATASET",
    "ExampleChoice",
    "ExamplePanel",
    "SpectraSequence",
    "example_panels",
    "example_spectra",
    "example_stars",
    "input_gradients",
    "iter_selected_rows",
    "mean_gradients",
    "mean_spectra",
    "mean_spectra_sequences",
    "member_inputs",
    "member_scalers",
    "read_rows",
    "red_clump_groups",
    "red_clump_metallicity",
    "rvs_gradients",
    "sequence_bins",
    "sequences_for",
    "xp_gradients",
    "xp_label_correlation",
]
