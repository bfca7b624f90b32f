"""Training of one ensemble member (:func:`train_member`) and its schedule."""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from gaiacnn.ensemble import split_indices
from gaiacnn.io import atomic_output, atomic_outputs
from gaiacnn.layout import (
    PARALLAX_DATASET,
    PARALLAX_ERROR_DATASET,
    RVS_SNR_DATASET,
    XP_COEFFICIENT_DATASETS,
    XP_ERROR_DATASETS,
    LayoutError,
    validate,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

from gaiacnn.model.architecture import _merge, load_inputs, masked_mse, model_for
from gaiacnn.model.augment import AugmentedBatches, _read_labels, noise_units
from gaiacnn.model.scalers import (
    Scalers,
    _check_branches,
    _check_labels,
    _gather,
    _require,
    fit_scalers,
)
from gaiacnn.model.settings import (
    DEFAULT_ARCH,
    DEFAULT_TRAINING,
    HISTORY_FILE,
    MODEL_FILE,
    SCALERS_FILE,
    SCHEDULES,
)


class LearningRateSchedule(keras.callbacks.Callback):
    """Per-batch learning rate: linear warm-up, then constant ("plateau") or cosine decay
    ("one_cycle"), composed with the cuts :class:`keras.callbacks.ReduceLROnPlateau` makes.

    Place it after ReduceLROnPlateau in the callback list.  At each epoch start a learning
    rate lower than the one this callback last set is read as a plateau cut, and the ratio
    multiplies every later value (so ``min_lr`` and the cuts keep their meaning).
    """

    def __init__(
        self,
        peak_lr: float,
        steps_per_epoch: int,
        *,
        schedule: str = "plateau",
        warmup_epochs: float = 0,
        max_epochs: int = 1,
        final_factor: float = 0.01,
    ):
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r} (known: {', '.join(SCHEDULES)})")
        if warmup_epochs < 0:
            raise ValueError("lr_warmup_epochs must be >= 0")
        self.peak = float(peak_lr)
        self.schedule = schedule
        self.steps = max(1, int(steps_per_epoch))
        self.warmup = round(float(warmup_epochs) * self.steps)
        self.total = max(self.warmup + 1, int(max_epochs) * self.steps)
        self.final = float(final_factor)
        self.cut = 1.0
        self.step = 0
        self._last: float | None = None

    def lr_at(self, step: int) -> float:
        """Learning rate of batch ``step`` (0-based, counted over all epochs), before cuts."""
        if step < self.warmup:
            return self.peak * (step + 1) / self.warmup
        if self.schedule == "plateau":
            return self.peak
        t = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.peak * (self.final + (1.0 - self.final) * 0.5 * (1.0 + np.cos(np.pi * t)))

    def _get(self) -> float:
        return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_begin(self, epoch, logs=None):
        if self._last is not None:
            now = self._get()
            if now < self._last * (1 - 1e-6):
                self.cut *= now / self._last

    def on_train_batch_begin(self, batch, logs=None):
        lr = self.lr_at(self.step) * self.cut
        self.model.optimizer.learning_rate.assign(lr)
        self._last = lr
        self.step += 1


def train_member(
    train_file: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    split: int,
    seed: int,
    labels: Sequence[str],
    branches: Sequence[str],
    arch: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    xp_input: str = "auto",
    phot_input: str = "magnitudes",
) -> dict[str, Any]:
    """Train one ensemble member (Sect. 3.2) and write ``out_dir``/{model.keras, history.json,
    scalers.json} atomically (all three renamed into place only on success).

    The 75/25 split depends only on ``split`` (and ``training["base_seed"]``); weight
    initialisation and batch shuffling only on ``seed``; with op determinism on, the same
    seed and data give the same weights on CPU.  A NaN label is left out of the loss
    (:func:`masked_mse`); stars with no finite label at all are left out of training and
    validation (the split is drawn over all rows first, so it does not depend on which
    labels are missing).  ``labels`` empty: every label of the file; ``branches`` empty:
    every branch the file can feed; ``xp_input``: the XP form (auto: the coefficients where
    the file has them, else the sampled flux); ``phot_input``: the photometry form
    (:data:`gaiacnn.layout.PHOT_INPUTS`).  Returns a summary dict.
    """
    t0 = time.time()
    tr = _merge(DEFAULT_TRAINING, training, "training")
    if tr["schedule"] not in SCHEDULES:
        raise ValueError(f"unknown schedule {tr['schedule']!r} (known: {', '.join(SCHEDULES)})")
    info = validate(train_file, check_values=False)
    labels = _check_labels(train_file, info, labels)
    branches = _check_branches(train_file, info, branches)

    augment = float(tr["augment_snr_min"]) > 0 and float(tr["augment_fraction"]) > 0
    if augment and "rvs" not in branches:
        augment = False  # nothing to add noise to
    if augment:
        with h5py.File(train_file, "r") as h5:
            if RVS_SNR_DATASET not in h5:
                warnings.warn(
                    f"{train_file}: no rvs/snr, so no noise augmentation (it needs the "
                    "spectra's S/N); training on the spectra as they are",
                    stacklevel=2,
                )
                augment = False
    y_all = _read_labels(train_file, labels)
    labelled = np.any(np.isfinite(y_all), axis=1)
    n_nan = {lab: int((~np.isfinite(y_all[:, j])).sum()) for j, lab in enumerate(labels)}
    train_rows, val_rows = split_indices(
        info.n_rows, split, tr["validation_fraction"], tr["base_seed"]
    )
    train_rows = train_rows[labelled[train_rows]]
    val_rows = val_rows[labelled[val_rows]]
    if train_rows.size == 0 or val_rows.size == 0:
        raise LayoutError(
            train_file,
            "labels",
            f"too few stars with a finite label of {labels} "
            f"({int(labelled.sum())} of {info.n_rows}) to train and validate",
        )

    scalers = fit_scalers(
        train_file,
        train_rows,
        labels,
        branches,
        xp_input,
        phot_input,
        withheld_snr=float(tr["withhold_parallax_below_snr"]),
    )
    has_plx = "phot" in branches and PARALLAX_DATASET in scalers.phot_columns
    augment_plx = (
        float(tr["augment_parallax_snr_min"]) > 0
        and float(tr["augment_parallax_fraction"]) > 0
        and has_plx
    )
    # withhold_parallax_* are the "intrinsic_withheld" form's settings, read by it only
    withhold = has_plx and scalers.phot_input == "intrinsic_withheld"
    if withhold and not float(tr["withhold_parallax_fraction"]) > 0:
        raise ValueError(
            "model.phot_input intrinsic_withheld needs model.training.withhold_parallax_"
            "fraction > 0 (the network must see withheld parallaxes in training)"
        )
    # the parallax augmentation's data: the photometry branch's datasets and the parallax
    # error, which sets the noise (an input itself only for intrinsic_with_error)
    plx_names = list(dict.fromkeys([*scalers.phot_columns, PARALLAX_ERROR_DATASET]))
    if augment_plx or withhold:
        _require(train_file, plx_names)
    augment_xp = bool(tr["augment_xp"]) and "xp" in branches
    if augment_xp and not (float(tr["augment_snr_min"]) > 0 and float(tr["augment_fraction"]) > 0):
        raise ValueError(
            "model.training.augment_xp needs the RVS noise augmentation (its S/N factors): "
            "set augment_snr_min and augment_fraction > 0, or switch augment_xp off"
        )
    if augment_xp and not augment:
        warnings.warn(
            f"{train_file}: no RVS noise augmentation (see above), so no XP augmentation",
            stacklevel=2,
        )
        augment_xp = False
    if augment_xp and scalers.xp_input != "coefficients":
        raise ValueError(
            "model.training.augment_xp needs the XP coefficients as input "
            f"(model.xp_input resolves to {scalers.xp_input!r}: set it to coefficients, or "
            "switch augment_xp off)"
        )
    with h5py.File(train_file, "r") as h5:
        has_xp_errors = all(e in h5 for e in XP_ERROR_DATASETS)
    if augment_xp and not has_xp_errors:
        raise LayoutError(
            train_file,
            XP_ERROR_DATASETS[0],
            "missing: model.training.augment_xp needs the XP coefficient errors "
            f"({', '.join(XP_ERROR_DATASETS)}); add them or switch augment_xp off",
        )
    x_tr, y_tr = load_inputs(train_file, train_rows, branches, scalers, labels)
    x_va, y_va = load_inputs(train_file, val_rows, branches, scalers, labels)

    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()
    model = model_for(scalers, arch)
    model.compile(optimizer=keras.optimizers.Adam(float(tr["learning_rate"])), loss=masked_mse)
    callbacks = [
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss",
            factor=float(tr["reduce_lr_factor"]),
            patience=int(tr["reduce_lr_patience"]),
            min_lr=float(tr["min_lr"]),
        ),
        keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=int(tr["early_stopping_patience"]),
            restore_best_weights=True,
        ),
    ]
    if tr["schedule"] != "plateau" or float(tr["lr_warmup_epochs"]) > 0:
        # After ReduceLROnPlateau (so its cuts are seen), before EarlyStopping.
        callbacks.insert(
            1,
            LearningRateSchedule(
                float(tr["learning_rate"]),
                -(-train_rows.size // int(tr["batch_size"])),
                schedule=tr["schedule"],
                warmup_epochs=float(tr["lr_warmup_epochs"]),
                max_epochs=int(tr["max_epochs"]),
                final_factor=float(tr["lr_final_factor"]),
            ),
        )
    data = training_batches(
        train_file, train_rows, x_tr, y_tr, scalers, tr, seed,
        rvs=augment, parallax=augment_plx, withhold=withhold, xp=augment_xp,
        plx_names=plx_names,
    )  # fmt: skip
    if data is not None:
        fit_args: dict[str, Any] = {
            "x": data.dataset(int(tr["max_epochs"])),
            "steps_per_epoch": len(data),
            "shuffle": False,  # shuffled by AugmentedBatches itself
        }
    else:
        fit_args = {"x": x_tr, "y": y_tr, "batch_size": int(tr["batch_size"]), "shuffle": True}
    hist = model.fit(
        **fit_args,
        validation_data=(x_va, y_va),
        epochs=int(tr["max_epochs"]),
        callbacks=callbacks,
        verbose=int(tr["verbose"]),
    )
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    val_loss = history.get("val_loss", [])
    best = int(np.nanargmin(val_loss)) if val_loss else -1
    summary: dict[str, Any] = {
        "split": int(split),
        "seed": int(seed),
        "labels": list(labels),
        "branches": list(branches),
        "n_train": int(train_rows.size),
        "n_validation": int(val_rows.size),
        "n_dropped_nan_labels": int((~labelled).sum()),
        "n_nan_labels": n_nan,
        "xp_input": scalers.xp_input,
        "epochs_run": len(val_loss),
        "best_epoch": best + 1,
        "best_val_loss": float(val_loss[best]) if val_loss else None,
        "n_parameters": int(model.count_params()),
        "noise_augmentation": augment,
        "parallax_augmentation": augment_plx,
        "parallax_withheld": withhold,
        "phot_input": scalers.phot_input if "phot" in branches else None,
        "train_seconds": round(time.time() - t0, 3),
        "arch": _merge(DEFAULT_ARCH, arch, "arch"),
        "training": tr,
        "train_file": str(train_file),
    }
    _save_member(Path(out_dir), model, scalers, {"history": history, "summary": summary})
    return summary


def training_batches(
    train_file,
    train_rows: np.ndarray,
    x_tr: Mapping[str, np.ndarray],
    y_tr: np.ndarray,
    scalers: Scalers,
    tr: Mapping[str, Any],
    seed: int,
    *,
    rvs: bool,
    parallax: bool,
    withhold: bool,
    xp: bool,
    plx_names: Sequence[str],
) -> AugmentedBatches | None:
    """The augmented training batches of :func:`train_member` (``tr``: its training
    settings; ``rvs``, ``parallax``, ``withhold``, ``xp``: which augmentations apply), or
    None when none does (the inputs then go to ``fit`` as they are)."""
    if not (rvs or parallax or withhold):
        return None
    unit, snr = noise_units(train_file, train_rows) if rvs else (None, None)
    return AugmentedBatches(
        x_tr,
        y_tr,
        unit,
        snr,
        batch_size=int(tr["batch_size"]),
        seed=int(seed),
        snr_min=float(tr["augment_snr_min"]),
        fraction=float(tr["augment_fraction"]),
        phot_raw=_gather(train_file, plx_names, train_rows) if parallax or withhold else None,
        phot_fn=lambda block: scalers.inputs(block, ["phot"])["phot"],
        parallax_snr_min=float(tr["augment_parallax_snr_min"]),
        parallax_fraction=float(tr["augment_parallax_fraction"]) if parallax else 0.0,
        withhold_fraction=float(tr["withhold_parallax_fraction"]) if withhold else 0.0,
        xp_raw=(
            _gather(train_file, [*XP_COEFFICIENT_DATASETS, *XP_ERROR_DATASETS], train_rows)
            if xp
            else None
        ),
        xp_fn=lambda block: scalers.inputs(block, ["xp"])["xp"],
    )


def _save_member(out_dir: Path, model: keras.Model, scalers: Scalers, history: dict) -> None:
    """Write the three member files under temporary names, then rename them into place:
    all three are written before the first rename (Keras saves only to a name that ends
    in .keras, hence the model's own temporary)."""
    with (
        atomic_output(out_dir / MODEL_FILE, ext=".keras") as tmp_model,
        atomic_outputs(out_dir / SCALERS_FILE, out_dir / HISTORY_FILE) as (tmp_scalers, tmp_hist),
    ):
        tmp_scalers.write_text(scalers.to_json(), encoding="utf-8")
        tmp_hist.write_text(json.dumps(history, indent=1, sort_keys=True), encoding="utf-8")
        model.save(tmp_model)
    # renamed in reverse: scalers.json and history.json, then model.keras
