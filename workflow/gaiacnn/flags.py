"""The boundary flag (paper Sect. 5.2): eight characters ``0`` (inside) / ``1`` (outside).

Digit order: the labels (the paper's Teff, log g, [M/H], [α/M], [Fe/H], or the configured
label list in its order), then G, parallax, and last the t-SNE class.  A label digit is
``1`` when the star's CNN label lies outside the effective range of the training sample
(Table 1, stored by the ensemble stage in ``uncertainty_model.json``); the G and
parallax digits likewise for the star's G magnitude and parallax; the t-SNE digit is ``1``
when the star is not training-like at all four perplexities (Sect. 5.1; in the scalable mode
each perplexity's sets of reference maps as one).  A value that is missing
(NaN) counts as outside.  ``00000000`` = recommended for science.

A digit whose input the survey does not have at all (the G digit of a file without
photometry, the parallax digit of a file without parallaxes) is ``-``, *not available*, for
every star: it says neither inside nor outside.  A star is recommended for science when no
digit is ``1`` (:func:`recommended`); with every input present that is ``00000000``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

#: The non-label digits, after the labels, in order (Sect. 5.2).
EXTRA_DIGITS: tuple[str, ...] = ("phot_g_mean_mag", "parallax")
TSNE_DIGIT = "tsne"
#: The digit of a quantity the data do not have (no photometry, no parallax).
NOT_AVAILABLE = "-"
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
    gives :data:`NOT_AVAILABLE` for every star.
    """
    order = digit_order(labels)
    n = len(np.asarray(not_training_like))
    digits = np.zeros((n, len(order)), dtype=bool)
    missing = np.zeros(len(order), dtype=bool)
    for j, name in enumerate(order[:-1]):
        if name not in values:
            raise FlagError(f"no values of {name!r} for the boundary flag")
        v = np.asarray(values[name])
        if v.shape != (n,):
            raise FlagError(f"{name}: {v.shape} values for {n} stars")
        if name in training_range:
            lo, hi = training_range[name]
            digits[:, j] = outside(v, lo, hi)
        else:
            missing[j] = True
    digits[:, -1] = np.asarray(not_training_like, bool)
    chars = np.where(digits, "1", "0")
    chars[:, missing] = NOT_AVAILABLE
    return np.array(["".join(row) for row in chars], dtype=f"<U{len(order)}")


def validate_flags(flags: Sequence[str], n_digits: int = 8) -> None:
    """Refuse any flag that is not exactly ``n_digits`` characters of ``0``/``1``/``-``, or
    whose ``-`` (not available) digits differ from star to star (a quantity is absent for
    the whole survey, never for one star)."""
    pattern = re.compile(rf"[01-]{{{n_digits}}}")
    first = None
    for i, f in enumerate(flags):
        if not isinstance(f, str) or pattern.fullmatch(f) is None:
            raise FlagError(f"flag of row {i} is {f!r}: expected {n_digits} characters of 0/1/-")
        dashes = tuple(c == NOT_AVAILABLE for c in f)
        if first is None:
            first = dashes
        elif dashes != first:
            raise FlagError(f"flag of row {i} is {f!r}: its '-' digits differ from row 0's")


def recommended(flags: Sequence[str]) -> np.ndarray:
    """True where no digit is ``1`` (``-``, not available, does not count against a star)."""
    return np.array(["1" not in f for f in flags], dtype=bool)


def available(flags: Sequence[str], n_digits: int) -> list[bool]:
    """Per digit, whether the catalogue has it (not ``-``): from the first flag."""
    if len(flags) == 0:
        return [True] * n_digits
    return [c != NOT_AVAILABLE for c in flags[0]]


def describe(
    labels: Sequence[str], available: Sequence[bool] | None = None, spectra: str | None = None
) -> list[str]:
    """One line per digit, for the catalogue header and the README; ``available`` (per
    digit) marks those that are ``-`` for every star; ``spectra`` the t-SNE's input."""
    lines = []
    for i, name in enumerate(digit_order(labels), start=1):
        if name == TSNE_DIGIT:
            what = "not training-like in all t-SNE maps (Sect. 5.1)"
            if spectra:
                what += f", maps of {spectra}"
        else:
            what = f"{DIGIT_NAMES.get(name, name)} outside the training range (Table 1)"
        if available is not None and not available[i - 1]:
            what = f"{DIGIT_NAMES.get(name, name)} not in the data (- for every star)"
        lines.append(f"digit {i}: {what}")
    return lines
