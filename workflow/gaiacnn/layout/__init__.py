"""The HDF5 interchange layout (SPEC stage 3): writer, validator and chunked reader.

One file per sample, rows = stars, every dataset's first axis of length N::

    source_id            int64   (N,)        required
    rvs/flux             float   (N, P)      normalised flux; attribute wavelength_nm (P,)
    rvs/flux_error       float   (N, P)      optional
    rvs/snr              float   (N,)        rvs_spec_sig_to_noise
    rvs/radial_velocity_error  float (N,)   optional Gaia DR3 radial_velocity_error [km/s]:
                                             finite >= 0, or NaN where unknown (not a model
                                             input: Fig. C.1 only)
    xp/bp_coefficients   float   (N, M)      XP continuous BP coefficients (M = 55 in DR3)
    xp/rp_coefficients   float   (N, M)
    xp/bp_coefficient_errors, xp/rp_coefficient_errors  float (N, M)  optional 1 sigma errors
                                             of the coefficients [e-/s] (Gaia DR3
                                             *_coefficient_errors; both or neither):
                                             finite >= 0, or NaN where unknown (not a
                                             model input: the XP noise augmentation)
    xp/sampled_flux      float   (N, K)      optional alternative to the coefficients (e.g.
                                             GaiaXPy's calibrate); attributes wavelength_nm
                                             (K,) and flux_kind: "absolute" (W m-2 nm-1) or
                                             "normalised"
    phot/g, phot/bp, phot/rp        float (N,)  mean magnitudes [mag]
    astrometry/parallax, astrometry/parallax_error [mas], astrometry/ruwe   float (N,)
    astrometry/ra, astrometry/dec   float (N,)  optional ICRS position [deg] (both or neither;
                                                not a model input: Galactic figures only)
    labels/<name>, labels/<name>_err            float (N,)  training file; NaN where unknown

The root attributes carry ``schema_version`` and ``provenance`` (a JSON string).
A branch whose datasets are absent is simply not available to the model.
A file that breaks the layout is refused with :class:`LayoutError`, whose
message names the file, the dataset and what is wrong.

Modules of this package:

* :mod:`~gaiacnn.layout.names`:
  Dataset names, units and kinds, :class:`LayoutError` and :class:`LayoutInfo`.
* :mod:`~gaiacnn.layout.writing`:
  Writing a layout file (:class:`ArraysWriter`) and its provenance.
* :mod:`~gaiacnn.layout.checks`:
  Validation of a file (:func:`validate`) and of its values, block by block.
* :mod:`~gaiacnn.layout.usage`:
  Reading rows and columns, and which datasets each model branch uses.
"""

from __future__ import annotations

from gaiacnn.layout.checks import (
    ERROR_DATASET_UNITS,
    check_block,
    check_error_values,
    check_label_values,
    check_unique_ids,
    model_input_datasets,
    refuse_rows,
    scan_rows,
    validate,
)
from gaiacnn.layout.checks import _check_float as _check_float
from gaiacnn.layout.checks import _check_sampled as _check_sampled
from gaiacnn.layout.checks import _check_values as _check_values
from gaiacnn.layout.checks import _open as _open
from gaiacnn.layout.checks import _refusal as _refusal
from gaiacnn.layout.names import (
    DEFAULT_CHUNK_ROWS,
    KNOWN_DATASETS,
    MODEL_INPUT_DATASETS,
    PARALLAX_DATASET,
    PARALLAX_ERROR_DATASET,
    PHOT_DATASETS,
    POSITION_DATASETS,
    RUWE_DATASET,
    RV_ERROR_DATASET,
    RVS_FLUX_DATASET,
    RVS_FLUX_ERROR_DATASET,
    RVS_SNR_DATASET,
    XP_COEFFICIENT_DATASETS,
    XP_ERROR_DATASETS,
    XP_FLUX_KINDS,
    XP_INPUTS,
    XP_SAMPLED_DATASET,
    LayoutError,
    LayoutInfo,
    label_dataset,
    resolve_branches,
    resolve_xp_input,
)
from gaiacnn.layout.usage import (
    PHOT_INPUTS,
    PHOT_INPUTS_WITH_ERROR,
    all_datasets,
    branch_datasets,
    dataset_usage,
    datasets_of_branches,
    iter_rows,
    phot_columns,
    read_column,
    wavelength_nm,
    xp_datasets,
)
from gaiacnn.layout.writing import ArraysWriter, provenance_attr

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "ERROR_DATASET_UNITS",
    "KNOWN_DATASETS",
    "MODEL_INPUT_DATASETS",
    "PARALLAX_DATASET",
    "PARALLAX_ERROR_DATASET",
    "PHOT_DATASETS",
    "PHOT_INPUTS",
    "PHOT_INPUTS_WITH_ERROR",
    "POSITION_DATASETS",
    "RUWE_DATASET",
    "RVS_FLUX_DATASET",
    "RVS_FLUX_ERROR_DATASET",
    "RVS_SNR_DATASET",
    "RV_ERROR_DATASET",
    "XP_COEFFICIENT_DATASETS",
    "XP_ERROR_DATASETS",
    "XP_FLUX_KINDS",
    "XP_INPUTS",
    "XP_SAMPLED_DATASET",
    "ArraysWriter",
    "LayoutError",
    "LayoutInfo",
    "all_datasets",
    "branch_datasets",
    "check_block",
    "check_error_values",
    "check_label_values",
    "check_unique_ids",
    "dataset_usage",
    "datasets_of_branches",
    "iter_rows",
    "label_dataset",
    "model_input_datasets",
    "phot_columns",
    "provenance_attr",
    "read_column",
    "refuse_rows",
    "resolve_branches",
    "resolve_xp_input",
    "scan_rows",
    "validate",
    "wavelength_nm",
    "xp_datasets",
]
