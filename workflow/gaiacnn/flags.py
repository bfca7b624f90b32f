"""The boundary flag (paper Sect. 5.2): eight characters ``0`` (inside) / ``1`` (outside).

Digit order: the labels (the paper's Teff, log g, [M/H], [α/M], [Fe/H], or the configured
label list in its order), then G, parallax, and last the t-SNE class.  A label digit is
``1`` when the star's CNN label lies outside the effective range of the training sample
(Table 1, stored by the ensemble stage in ``uncertainty_model.json``); the G and
parallax digits likewise for the star's G magnitude and parallax; the t-SNE digit is ``1``
when the star is not training-like at all four perplexities (Sect. 5.1; in the scalable mode
each perplexity's sets of reference maps as one).  A value that is missing
(NaN) counts as outside.  ``00000000`` = recommended for science.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

#: The non-label digits, after the labels, in order (Sect. 5.2).
EXTRA_DIGITS: tuple[str, ...] = ("phot_g_mean_mag", "parallax")
TSNE_DIGIT = "tsne"
#: Human-readable names of the digits (header, README).
DIGIT_NAMES: dict[str, str] = {
    "teff": "Teff",
    "logg": "log g",
    "m_h": "[M/H]",
    "alpha_m": "[alpha/M]",
    "fe_h": "[Fe/H]",
    "phot_g_mean_mag": "G",
    "parallax": "parallax",
    TSNE_DIGIT: "t-SNE",
}


class FlagError(ValueError):
    """A flag that cannot be built or that is malformed."""


def digit_order(labels: Sequence[str]) -> list[str]:
    """Names of the flag's digits, in order: labels, G, parallax, t-SNE."""
    return [*labels, *EXTRA_DIGITS, TSNE_DIGIT]


def outside(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """True where ``values`` is outside [low, high] or not finite."""
    v = np.asarray(values, dtype=float)
    with np.errstate(invalid="ignore"):
        return ~((v >= low) & (v <= high))


def boundary_flags(
    values: Mapping[str, np.ndarray],
    training_range: Mapping[str, Sequence[float]],
    labels: Sequence[str],
    not_training_like: np.ndarray,
) -> np.ndarray:
    """The flag string of every star (numpy ``<U{n}``).

    ``values`` holds each label (CNN value), ``phot_g_mean_mag`` and ``parallax``;
    ``training_range`` their [low, high] (Table 1); ``not_training_like`` (bool) the t-SNE
    class.  A quantity without a training range (e.g. no parallax in the training file)
    gives ``0`` (nothing to be outside of).
    """
    order = digit_order(labels)
    n = len(np.asarray(not_training_like))
    digits = np.zeros((n, len(order)), dtype=bool)
    for j, name in enumerate(order[:-1]):
        if name not in values:
            raise FlagError(f"no values of {name!r} for the boundary flag")
        v = np.asarray(values[name])
        if v.shape != (n,):
            raise FlagError(f"{name}: {v.shape} values for {n} stars")
        if name in training_range:
            lo, hi = training_range[name]
            digits[:, j] = outside(v, lo, hi)
    digits[:, -1] = np.asarray(not_training_like, bool)
    chars = np.where(digits, "1", "0")
    return np.array(["".join(row) for row in chars], dtype=f"<U{len(order)}")


def validate_flags(flags: Sequence[str], n_digits: int = 8) -> None:
    """Refuse any flag that is not exactly ``n_digits`` characters of ``0``/``1``."""
    pattern = re.compile(rf"[01]{{{n_digits}}}")
    for i, f in enumerate(flags):
        if not isinstance(f, str) or pattern.fullmatch(f) is None:
            raise FlagError(f"flag of row {i} is {f!r}: expected {n_digits} characters of 0/1")


def describe(labels: Sequence[str]) -> list[str]:
    """One line per digit, for the catalogue header and the README."""
    lines = []
    for i, name in enumerate(digit_order(labels), start=1):
        what = (
            "not training-like in all t-SNE maps (Sect. 5.1)"
            if name == TSNE_DIGIT
            else f"{DIGIT_NAMES.get(name, name)} outside the training range (Table 1)"
        )
        lines.append(f"digit {i}: {what}")
    return lines
