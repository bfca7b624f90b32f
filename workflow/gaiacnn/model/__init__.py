"""The hybrid CNN of Guiglion et al. 2024 (A&A 682, A9, Sect. 3.1-3.2): scalers, model, training
and streamed prediction for one ensemble member (one ``seed x split`` model).

Inputs come from files in the HDF5 interchange layout (:mod:`gaiacnn.layout`, SPEC stage 3).
The model has up to three branches, named as its Keras inputs:

``"rvs"``
    normalised RVS flux, shape ``(N, P, 1)`` (P = 2401 in DR3), fed unscaled;
``"phot"``
    G, G_BP, G_RP [mag] and parallax [mas] (3 columns without parallax), min-max scaled
    (the paper); or, ``model.phot_input: intrinsic``, BP − RP, G − RP and the parallax as
    the distance-free luminosity 10^(0.2 M_G) (``intrinsic_with_error``: and its error)
    (:func:`gaiacnn.spectra.phot_features`), min-max scaled;
``"xp"``
    either the 2*M XP coefficients (M = 55 in DR3): BP / BP[0] and RP / RP[0], then min-max
    scaled (the paper); or the K samples of ``xp/sampled_flux`` (``model.xp_input``): each
    star's absolute flux divided by its own mean flux, so that brightness (six decades
    across a survey, and carried by the photometry) leaves the XP input and no bright star
    dominates the loss, then min-max scaled per wavelength.

Labels (any ``labels/<name>`` of the training file) are min-max scaled to [0, 1] on the
training part of the split; the network predicts the scaled labels and :class:`Scalers`
maps them back to physical units.  The scalers are saved with the model (``scalers.json``).

A member directory holds ``model.keras``, ``scalers.json`` and ``history.json``; all three
are written under temporary names and renamed into place only when training succeeded.
``scalers.json`` is also the member's *input contract*: its branches, labels, the RVS and
XP-sampled wavelength grids, the coefficient count and the scaler statistics.  Prediction
refuses a file that breaks it (:func:`check_contract`).

Modules of this package:

* :mod:`~gaiacnn.model.settings`:
  Settings of the CNN: branch names, member files, default architecture and training.
* :mod:`~gaiacnn.model.scalers`:
  Input and label scalers (:class:`Scalers`, ``scalers.json``) and their fit.
* :mod:`~gaiacnn.model.architecture`:
  The hybrid CNN (:func:`build_model`), its inputs and the masked loss.
* :mod:`~gaiacnn.model.augment`:
  Noise augmentation of the training batches (RVS, parallax, XP).
* :mod:`~gaiacnn.model.training`:
  Training of one ensemble member (:func:`train_member`) and its schedule.
* :mod:`~gaiacnn.model.predict`:
  Loading a member, its input contract and streamed prediction.
"""

from __future__ import annotations

# Imported from gaiacnn.model by the tests before the split.
from gaiacnn.ensemble import split_indices as split_indices
from gaiacnn.model.architecture import _merge as _merge
from gaiacnn.model.architecture import build_model, load_inputs, masked_mse, model_for
from gaiacnn.model.augment import (
    AugmentedBatches,
    add_noise,
    augment_factors,
    augment_parallax,
    augment_rvs,
    noise_units,
)
from gaiacnn.model.augment import _read_labels as _read_labels
from gaiacnn.model.predict import (
    BFLOAT16_LAYERS,
    check_contract,
    compute_copy,
    describe_grid,
    load_member,
    make_predictor,
    predict_file,
    predict_members,
    prefetch,
    same_grid,
)
from gaiacnn.model.predict import _regridder as _regridder
from gaiacnn.model.scalers import Scalers, fit_scalers, input_datasets
from gaiacnn.model.scalers import _check_branches as _check_branches
from gaiacnn.model.scalers import _check_finite as _check_finite
from gaiacnn.model.scalers import _check_labels as _check_labels
from gaiacnn.model.scalers import _gather as _gather
from gaiacnn.model.scalers import _minmax as _minmax
from gaiacnn.model.scalers import _require as _require
from gaiacnn.model.scalers import _wavelengths as _wavelengths
from gaiacnn.model.settings import (
    BRANCHES,
    DEFAULT_ARCH,
    DEFAULT_TRAINING,
    GRID_TOLERANCE_NM,
    HISTORY_FILE,
    MEMBER_FILES,
    MODEL_FILE,
    PARALLAX_DATASET,
    PRECISIONS,
    RVS_DATASET,
    SCALERS_FILE,
    SCALERS_FORMAT_VERSION,
    SCHEDULES,
    MemberError,
)
from gaiacnn.model.training import LearningRateSchedule, train_member
from gaiacnn.model.training import _save_member as _save_member

__all__ = [
    "BFLOAT16_LAYERS",
    "BRANCHES",
    "DEFAULT_ARCH",
    "DEFAULT_TRAINING",
    "GRID_TOLERANCE_NM",
    "HISTORY_FILE",
    "MEMBER_FILES",
    "MODEL_FILE",
    "PARALLAX_DATASET",
    "PRECISIONS",
    "RVS_DATASET",
    "SCALERS_FILE",
    "SCALERS_FORMAT_VERSION",
    "SCHEDULES",
    "AugmentedBatches",
    "LearningRateSchedule",
    "MemberError",
    "Scalers",
    "add_noise",
    "augment_factors",
    "augment_parallax",
    "augment_rvs",
    "build_model",
    "check_contract",
    "compute_copy",
    "describe_grid",
    "fit_scalers",
    "input_datasets",
    "load_inputs",
    "load_member",
    "make_predictor",
    "masked_mse",
    "model_for",
    "noise_units",
    "predict_file",
    "predict_members",
    "prefetch",
    "same_grid",
    "train_member",
]
