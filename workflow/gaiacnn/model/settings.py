"""Settings of the CNN: branch names, member files, default architecture and training."""

from __future__ import annotations

from typing import Any

from gaiacnn.layout import RVS_FLUX_DATASET

#: Model branches, in the order of the paper's Fig. 6 description (Sect. 3.1).
BRANCHES: tuple[str, ...] = ("rvs", "phot", "xp")
PARALLAX_DATASET = "astrometry/parallax"
RVS_DATASET = RVS_FLUX_DATASET

#: Files of a trained member directory.
MODEL_FILE = "model.keras"
SCALERS_FILE = "scalers.json"
HISTORY_FILE = "history.json"
MEMBER_FILES = (MODEL_FILE, SCALERS_FILE, HISTORY_FILE)

#: 2: the input contract (wavelength grids, XP input form) is part of the file.
SCALERS_FORMAT_VERSION = 2
#: Two wavelength grids are the same when no sample differs by more than this [nm].
GRID_TOLERANCE_NM = 1e-4

#: Architecture (Guiglion et al. 2024, Sect. 3.1 and Fig. 6).
DEFAULT_ARCH: dict[str, Any] = {
    # "three 1D convolution layers (with 32, 16, and 8 filters ...)" (Sect. 3.1)
    "conv_filters": [32, 16, 8],
    # "we adopted a kernel size of 8 pixels for each convolution block" (Sect. 3.1)
    "kernel_size": 8,
    # "1D Max-Pooling layers (after 1D convolution blocks two and three)" (Sect. 3.1);
    # the pool size is not given in the paper: 2 (Keras default) is assumed.
    "pool_size": 2,
    # Convolution activation: not stated in the paper (LeakyReLU is named only "for the
    # fully connected layers", Sect. 3.1); ReLU assumed.
    "conv_activation": "relu",
    # Padding is not stated; Keras default "valid" assumed.
    "padding": "valid",
    # "passed through a block of fully connected layers with 128 neurons" (Sect. 3.1)
    "rvs_dense": 128,
    # "four input neurons fully connected to a layer of 32 neurons" (Sect. 3.1)
    "phot_dense": 32,
    # "110 input neurons ... to a fully connected layer with 64 neurons" (Sect. 3.1)
    "xp_dense": 64,
    # concatenated (224) "and passed into three fully connected layers with 128, 32, and 5
    # neurons each" (Sect. 3.1); the last one (n_labels, linear) is the output.
    "head_dense": [128, 32],
    # "LeakyRelu activation functions for the fully connected layers" (Sect. 3.1, Xu et al.
    # 2015); the slope is not given: Keras' LeakyReLU layer default 0.3 assumed.
    "negative_slope": 0.3,
    # No dropout is mentioned in the paper.
    "dropout": 0.0,
}

#: Training settings (Guiglion et al. 2024, Sect. 3.1-3.2).
DEFAULT_TRAINING: dict[str, Any] = {
    # Optimiser and learning rate are not stated in the paper: Adam, Keras default 1e-3.
    "learning_rate": 1e-3,
    # Batch size is not stated in the paper: 128 assumed.
    "batch_size": 128,
    # "reached their minimum validation loss function typically after 80 epochs" (Sect. 3.2);
    # early stopping ends training before this cap.
    "max_epochs": 150,
    # "early-stop callbacks with a patience of 20" on the validation loss (Sect. 3.1)
    "early_stopping_patience": 20,
    # "ReduceLROnPlateau callbacks from Keras" (Sect. 3.1); no parameters are given, Keras
    # defaults (factor 0.1, patience 10) assumed.
    "reduce_lr_factor": 0.1,
    "reduce_lr_patience": 10,
    "min_lr": 0.0,
    # "keeping a constant training-validation ratio of 75%" (Sect. 3.2)
    "validation_fraction": 0.25,
    # Added to the split number to seed the 75/25 split (not in the paper).
    "base_seed": 0,
    # Keras verbosity of model.fit (0 silent, 2 one line per epoch).
    "verbose": 0,
    # Learning-rate schedule (not in the paper).  "plateau": constant learning_rate, cut by
    # ReduceLROnPlateau only (the paper's setting).  "one_cycle": linear warm-up over
    # lr_warmup_epochs, then cosine decay to learning_rate * lr_final_factor at max_epochs;
    # ReduceLROnPlateau cuts still apply on top of it, and EarlyStopping is unchanged.
    "schedule": "plateau",
    # Linear warm-up of the learning rate, per batch, from learning_rate / steps to
    # learning_rate over this many epochs (0: none); used by both schedules.
    "lr_warmup_epochs": 0,
    # "one_cycle" only: final learning rate as a fraction of learning_rate.
    "lr_final_factor": 0.01,
    # Noise augmentation of the RVS spectra (not in the paper): in every epoch a fraction
    # augment_fraction of the training spectra (never the validation ones) get extra
    # Gaussian noise that lowers their S/N to a value drawn log-uniformly between
    # augment_snr_min and their own S/N, so that the model sees the low S/N of the
    # observed sample (whose S/N starts below the training cut).  0 switches it off (the
    # paper has no augmentation).
    "augment_snr_min": 15.0,
    "augment_fraction": 0.5,
    # Parallax augmentation (not in the paper): in every epoch a fraction
    # augment_parallax_fraction of the training stars get extra parallax noise that lowers
    # their parallax S/N to a value drawn log-uniformly between augment_parallax_snr_min and
    # their own (error grown to match), so that the model sees the worse parallaxes of an
    # observed sample without the training sample's 20 % cut (Sect. 2.5).  Needs the
    # parallax error as an input (phot_input "intrinsic"); 0 switches it off.
    "augment_parallax_snr_min": 1.0,
    "augment_parallax_fraction": 0.5,
    # XP noise augmentation (not in the paper): a spectrum whose S/N the RVS augmentation
    # lowers by a factor k gets XP coefficients as noisy as a star k times fainter, noise
    # of sigma = error * sqrt(k^2 - 1) per coefficient, from the file's
    # xp/*_coefficient_errors; so the XP branch, too, sees the noise of the fainter
    # observed stars.  Needs the RVS augmentation, the XP coefficients as input and their
    # errors in the training file; false switches it off.
    "augment_xp": False,
}

#: Learning-rate schedules of :func:`train_member` (``training["schedule"]``).
SCHEDULES: tuple[str, ...] = ("plateau", "one_cycle")

#: Compute precisions of :func:`make_predictor` / :func:`predict_file`.
PRECISIONS: tuple[str, ...] = ("float32", "mixed_bfloat16")


class MemberError(RuntimeError):
    """A member directory that is missing files or does not fit the data."""
