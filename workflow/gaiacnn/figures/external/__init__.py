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

Modules of this package:

* :mod:`~gaiacnn.figures.external.tables`:
  The external tables: their columns, reading, matching by source_id, statistics.
* :mod:`~gaiacnn.figures.external.drawing`:
  Drawing helpers of the comparisons: limits, points or densities, residual grids.
* :mod:`~gaiacnn.figures.external.gaia`:
  Comparisons with Gaia DR3 GSP-Spec and GSP-Phot (Figs. 7 right, 20, 20.5).
* :mod:`~gaiacnn.figures.external.surveys`:
  Comparisons with GALAH (Fig. 22), asteroseismic (21) and open-cluster (23) tables.
"""

from __future__ import annotations

from gaiacnn.figures.external.drawing import _cnn_pairs as _cnn_pairs
from gaiacnn.figures.external.drawing import _difference_figure as _difference_figure
from gaiacnn.figures.external.drawing import _limits as _limits
from gaiacnn.figures.external.drawing import _Pair as _Pair
from gaiacnn.figures.external.drawing import _points as _points
from gaiacnn.figures.external.drawing import _residual_grid as _residual_grid
from gaiacnn.figures.external.drawing import _residual_limits as _residual_limits
from gaiacnn.figures.external.drawing import _stat_lines as _stat_lines
from gaiacnn.figures.external.drawing import _stats_caption as _stats_caption
from gaiacnn.figures.external.gaia import (
    GSP_PHOT_COLUMNS,
    gsp_phot,
    gsp_phot_sample,
    gsp_spec,
    gsp_spec_reference,
)
from gaiacnn.figures.external.surveys import _metallicity as _metallicity
from gaiacnn.figures.external.surveys import _range_text as _range_text
from gaiacnn.figures.external.surveys import asteroseismic, cluster_summary, galah, open_clusters
from gaiacnn.figures.external.tables import _SOURCE_ID as _SOURCE_ID
from gaiacnn.figures.external.tables import (
    COLUMNS,
    CSV_SUFFIXES,
    FITS_SUFFIXES,
    GSP_PHOT_LABELS,
    GSP_SPEC_LABELS,
    MIN_CLUSTER_MEMBERS,
    SAMPLES,
    SCATTER_MAX,
    SEISMIC_RANGES,
    Column,
    Distances,
    ExternalTableError,
    Match,
    TableSpec,
    bias_sigma,
    columns_markdown,
    configured,
    gsp_spec_minus_reference,
    join,
    matched,
    read_distances,
    read_table,
)
from gaiacnn.figures.external.tables import _add_reference as _add_reference
from gaiacnn.figures.external.tables import _bs as _bs
from gaiacnn.figures.external.tables import _column_names as _column_names
from gaiacnn.figures.external.tables import _format as _format
from gaiacnn.figures.external.tables import _path as _path
from gaiacnn.figures.external.tables import _sample_counts as _sample_counts
from gaiacnn.figures.external.tables import _samples as _samples
from gaiacnn.figures.external.tables import _value as _value

FIGURES = [gsp_spec_reference, gsp_spec, gsp_phot, asteroseismic, galah, open_clusters]

__all__ = [
    "COLUMNS",
    "CSV_SUFFIXES",
    "FIGURES",
    "FITS_SUFFIXES",
    "GSP_PHOT_COLUMNS",
    "GSP_PHOT_LABELS",
    "GSP_SPEC_LABELS",
    "MIN_CLUSTER_MEMBERS",
    "SAMPLES",
    "SCATTER_MAX",
    "SEISMIC_RANGES",
    "Column",
    "Distances",
    "ExternalTableError",
    "Match",
    "TableSpec",
    "asteroseismic",
    "bias_sigma",
    "cluster_summary",
    "columns_markdown",
    "configured",
    "galah",
    "gsp_phot",
    "gsp_phot_sample",
    "gsp_spec",
    "gsp_spec_minus_reference",
    "gsp_spec_reference",
    "join",
    "matched",
    "open_clusters",
    "read_distances",
    "read_table",
]
