"""The hybrid CNN (:func:`build_model`), its inputs and the masked loss."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gaiacnn.layout import (
    LayoutError,
    label_dataset,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

from gaiacnn.model.scalers import Scalers, _check_finite, _gather
from gaiacnn.model.settings import DEFAULT_ARCH

# --------------------------------------------------------------------------- model


def _merge(defaults: Mapping[str, Any], given: Mapping[str, Any] | None, what: str) -> dict:
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"unknown {what} key(s) {unknown} (known: {sorted(defaults)})")
    return {**defaults, **given}


def build_model(
    n_pixels: int | None,
    n_phot: int | None,
    xp_length: int | None,
    n_labels: int,
    arch: Mapping[str, Any] | None = None,
    *,
    xp_width: int | None = None,
) -> keras.Model:
    """The hybrid CNN (Sect. 3.1, Fig. 6); a branch is built when its size is not None.

    ``n_pixels``: RVS pixels P (input "rvs", (batch, P, 1)); ``n_phot``: photometry inputs
    (input "phot", (batch, 3 or 4)); ``xp_length``: coefficients per band M (input "xp",
    (batch, 2M)), or ``xp_width``: the XP input's width itself (K samples of the sampled
    flux).  Output: (batch, n_labels) scaled labels, linear.  ``arch`` overrides keys of
    :data:`DEFAULT_ARCH`.
    """
    a = _merge(DEFAULT_ARCH, arch, "arch")
    if xp_width is None and xp_length is not None:
        xp_width = 2 * int(xp_length)
    if n_pixels is None and n_phot is None and xp_width is None:
        raise ValueError("build_model needs at least one branch (rvs, phot or xp)")
    if n_labels < 1:
        raise ValueError("n_labels must be >= 1")
    slope = float(a["negative_slope"])

    def dense(x, units: int, name: str):
        x = keras.layers.Dense(int(units), name=name)(x)
        x = keras.layers.LeakyReLU(negative_slope=slope, name=f"{name}_act")(x)
        if a["dropout"]:
            x = keras.layers.Dropout(float(a["dropout"]), name=f"{name}_dropout")(x)
        return x

    inputs, feats = [], []
    if n_pixels is not None:
        filters = list(a["conv_filters"])
        if len(filters) != 3:
            raise ValueError("arch conv_filters must list 3 filter counts (Sect. 3.1)")
        x_in = keras.Input(shape=(int(n_pixels), 1), name="rvs", dtype="float32")
        x = x_in
        for i, nf in enumerate(filters, start=1):
            x = keras.layers.Conv1D(
                int(nf),
                int(a["kernel_size"]),
                activation=a["conv_activation"],
                padding=a["padding"],
                name=f"rvs_conv{i}",
            )(x)
            if i >= 2:  # max-pooling after convolution blocks two and three (Sect. 3.1)
                x = keras.layers.MaxPooling1D(int(a["pool_size"]), name=f"rvs_pool{i - 1}")(x)
        x = keras.layers.Flatten(name="rvs_flatten")(x)
        feats.append(dense(x, a["rvs_dense"], "rvs_dense"))
        inputs.append(x_in)
    if n_phot is not None:
        p_in = keras.Input(shape=(int(n_phot),), name="phot", dtype="float32")
        feats.append(dense(p_in, a["phot_dense"], "phot_dense"))
        inputs.append(p_in)
    if xp_width is not None:
        q_in = keras.Input(shape=(int(xp_width),), name="xp", dtype="float32")
        feats.append(dense(q_in, a["xp_dense"], "xp_dense"))
        inputs.append(q_in)
    h = keras.layers.Concatenate(name="concat")(feats) if len(feats) > 1 else feats[0]
    for i, units in enumerate(a["head_dense"], start=1):
        h = dense(h, units, f"head_dense{i}")
    out = keras.layers.Dense(int(n_labels), activation="linear", name="labels")(h)
    names = "_".join(i.name for i in inputs)
    return keras.Model(inputs=inputs, outputs=out, name=f"hybrid_cnn_{names}")


def model_for(scalers: Scalers, arch: Mapping[str, Any] | None = None) -> keras.Model:
    """Build the model that fits ``scalers`` (its branches and input sizes)."""
    b = scalers.branches
    return build_model(
        scalers.n_pixels if "rvs" in b else None,
        scalers.phot_width if "phot" in b else None,
        None,
        len(scalers.labels),
        arch,
        xp_width=scalers.xp_width,
    )


# --------------------------------------------------------------------------- data


def load_inputs(
    train_file: str | os.PathLike,
    rows: np.ndarray,
    branches: Sequence[str],
    scalers: Scalers,
    labels: Sequence[str],
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Model inputs and scaled labels of ``rows`` (in that order), held in memory.

    Returns ``({"rvs": (n, P, 1), "phot": (n, k), "xp": (n, 2M or K)}, y01 (n, n_labels))``,
    all float32.  Non-finite inputs raise :class:`LayoutError`; so do labels that are +-inf
    and rows with no finite label (callers drop such stars first, as :func:`train_member`
    does).  A NaN label stays NaN: :func:`masked_mse` leaves it out of the loss.
    """
    names = scalers.datasets(branches)
    lab_names = [label_dataset(n) for n in labels]
    data = _gather(train_file, [*names, *lab_names], rows)
    _check_finite(train_file, data, names, data["source_id"], scalers.xp_flux_kind)
    y = np.stack([data[n].astype(np.float64) for n in lab_names], axis=1)
    bad = np.isinf(y) | ~np.isfinite(y).any(axis=1, keepdims=True)
    if bad.any():
        i, j = (int(v[0]) for v in np.nonzero(bad))
        raise LayoutError(
            train_file,
            lab_names[j],
            f"+-inf labels, or no finite label, in {int(bad.any(axis=1).sum())} of the rows "
            f"(first: source_id {int(data['source_id'][i])}); drop such stars first",
        )
    return scalers.inputs(data, branches), scalers.scale_labels(y)


def masked_mse(y_true, y_pred):
    """Mean squared error over the labels that are known (NaN = unknown is left out), per
    star: sum of the squared errors of its finite labels / n_labels (the plain MSE when
    every label is known)."""
    known = tf.math.is_finite(y_true)
    diff = tf.where(known, y_true - y_pred, tf.zeros_like(y_pred))
    return tf.reduce_sum(tf.square(diff), axis=-1) / tf.cast(tf.shape(y_true)[-1], y_pred.dtype)
