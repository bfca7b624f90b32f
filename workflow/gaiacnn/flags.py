"""The boundary flag (paper Sect. 5.2): characters ``0`` (inside) / ``1`` (outside).

Digit order: the labels (the paper's Teff, log g, [M/H], [α/M], [Fe/H], or the configured
label list in its order), then G, parallax, the t-SNE class (the paper's eight digits), and
a ninth digit, not in the paper: the star's photometric and astrometric inputs outside the
training sample's input space (:func:`input_space_distance`).  A label digit is
``1`` when the star's CNN label lies outside the effective range of the training sample
(Table 1, stored by the ensemble stage in ``uncertainty_model.json``); the G and
parallax digits likewise for the star's G magnitude and parallax; the t-SNE digit is ``1``
when the star is not training-like at all four perplexities (Sect. 5.1; in the scalable mode
each perplexity's sets of reference maps as one).  A value that is missing
(NaN) counts as outside.  ``000000000`` = recommended for science.

The input-space digit is ``1`` when the star's (BP − RP, M_G = G + 5 log10(parallax /
100 mas), log10 parallax S/N) lies farther from the training stars than they lie from each
other: its distance to its k-th nearest training star, each quantity divided by the training
sample's robust spread, exceeds the given quantile of the training stars' own distances to
their k-th nearest other training star.  Farther, more reddened or worse-measured stars
than any in the training sample land there: their labels lean on photometry and parallax
outside what the network learned (issue 24).  A non-positive parallax counts as outside.

A digit whose input the survey does not have at all (the G digit of a file without
photometry, the parallax digit of a file without parallaxes) is ``-``, *not available*, for
every star: it says neither inside nor outside.  A star is recommended for science when no
digit is ``1`` (:func:`recommended`); with every input present that is ``00000000``.

The rule's entry point: :func:`run_flag_catalogue` (``flag_catalogue``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence

import numpy as np

from gaiacnn import constants
from gaiacnn.layout import RVS_FLUX_DATASET

log = logging.getLogger(__name__)

#: The non-label digits, after the labels, in order (Sect. 5.2).
EXTRA_DIGITS: tuple[str, ...] = ("phot_g_mean_mag", "parallax")
TSNE_DIGIT = "tsne"
INPUTS_DIGIT = "inputs"
#: Every digit after the labels, in order.
NON_LABEL_DIGITS: tuple[str, ...] = (*EXTRA_DIGITS, TSNE_DIGIT, INPUTS_DIGIT)
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
    INPUTS_DIGIT: "inputs",
}


class FlagError(ValueError):
    """A flag that cannot be built or that is malformed."""


def digit_order(labels: Sequence[str], input_digit: bool = True) -> list[str]:
    """Names of the flag's digits, in order: labels, G, parallax, t-SNE (the paper's,
    Sect. 5.2), then inputs unless ``input_digit`` is False (config ``flags.input_digit``)."""
    order = [*labels, *EXTRA_DIGITS, TSNE_DIGIT]
    return [*order, INPUTS_DIGIT] if input_digit else order


def split_digits(digits: Sequence[str]) -> tuple[list[str], bool]:
    """A flag's digit names (``FLAGDIGS``) -> its labels and whether it has the inputs
    digit."""
    return [d for d in digits if d not in NON_LABEL_DIGITS], INPUTS_DIGIT in digits


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
    inputs_outside: np.ndarray | None = None,
    input_digit: bool = True,
) -> np.ndarray:
    """The flag string of every star (numpy ``<U{n}``).

    ``values`` holds each label (CNN value), ``phot_g_mean_mag`` and ``parallax``;
    ``training_range`` their [low, high] (Table 1); ``not_training_like`` (bool) the t-SNE
    class; ``inputs_outside`` (bool) the input-space class (:func:`input_space_distance` > 1;
    None: the data lack photometry or parallaxes); ``input_digit`` False: the paper's flag,
    without that digit (``inputs_outside`` must then be None).  A quantity without a
    training range (e.g. no parallax in the training file) gives :data:`NOT_AVAILABLE` for
    every star.
    """
    if not input_digit and inputs_outside is not None:
        raise FlagError("inputs_outside given for a flag without the inputs digit")
    order = digit_order(labels, input_digit)
    j_tsne = order.index(TSNE_DIGIT)
    n = len(np.asarray(not_training_like))
    digits = np.zeros((n, len(order)), dtype=bool)
    missing = np.zeros(len(order), dtype=bool)
    for j, name in enumerate(order[:j_tsne]):
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
    digits[:, j_tsne] = np.asarray(not_training_like, bool)
    if input_digit and inputs_outside is None:
        missing[-1] = True
    elif input_digit:
        digits[:, -1] = np.asarray(inputs_outside, bool)
    chars = np.where(digits, "1", "0")
    chars[:, missing] = NOT_AVAILABLE
    return np.array(["".join(row) for row in chars], dtype=f"<U{len(order)}")


def validate_flags(flags: Sequence[str], n_digits: int = 9) -> None:
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
    labels: Sequence[str],
    available: Sequence[bool] | None = None,
    spectra: str | None = None,
    input_digit: bool = True,
) -> list[str]:
    """One line per digit, for the catalogue header and the README; ``available`` (per
    digit) marks those that are ``-`` for every star; ``spectra`` the t-SNE's input;
    ``input_digit`` whether the flag has the inputs digit."""
    lines = []
    for i, name in enumerate(digit_order(labels, input_digit), start=1):
        if name == TSNE_DIGIT:
            what = "not training-like in all t-SNE maps (Sect. 5.1)"
            if spectra:
                what += f", maps of {spectra}"
        elif name == INPUTS_DIGIT:
            what = "BP-RP, M_G, parallax S/N outside the training inputs"
        else:
            what = f"{DIGIT_NAMES.get(name, name)} outside the training range (Table 1)"
        if available is not None and not available[i - 1]:
            what = f"{DIGIT_NAMES.get(name, name)} not in the data (- for every star)"
        lines.append(f"digit {i}: {what}")
    return lines


def input_outside(table) -> np.ndarray:
    """The input-space digit (bool per row) from a labels table's ``in_training`` and
    ``input_distance`` columns: observed stars whose distance is not <= 1 (NaN or inf, a
    missing input: outside); training stars are inside by definition."""
    distance = np.asarray(table["input_distance"], dtype=float)
    with np.errstate(invalid="ignore"):
        return ~np.asarray(table["in_training"], dtype=bool) & ~(distance <= 1.0)


#: Quantities of the input-space digit (catalogue columns they are made of).
INPUT_SPACE_COLUMNS = (
    "phot_g_mean_mag",
    "phot_bp_mean_mag",
    "phot_rp_mean_mag",
    "parallax",
    "parallax_error",
)


def input_space_features(table) -> np.ndarray:
    """(n, 3) BP − RP [mag], M_G = G + 5 log10(parallax / 100 mas) [mag] and log10(parallax
    / parallax_error) of a catalogue table (NaN where the parallax is not positive)."""
    g, bp, rp, plx, err = (np.asarray(table[c], dtype=float) for c in INPUT_SPACE_COLUMNS)
    with np.errstate(invalid="ignore", divide="ignore"):
        good = plx > 0
        m_g = np.where(good, g + 5.0 * np.log10(np.where(good, plx, 1.0) / 100.0), np.nan)
        snr = np.where(good & (err > 0), np.log10(np.where(good, plx, 1.0) / err), np.nan)
    return np.stack([bp - rp, m_g, snr], axis=1)


def input_space_distance(
    features: np.ndarray,
    in_training: np.ndarray,
    *,
    neighbours: int = 10,
    quantile: float = 0.99,
) -> np.ndarray:
    """How far each star (row of ``features``, (n, d)) lies from the training stars'
    (``in_training``) input space, in units of the digit's threshold: > 1 = outside.

    Each column is divided by the training sample's robust spread (1.4826 MAD); a star's
    distance is that to its ``neighbours``-th nearest training star (for a training star:
    nearest *other*), over the ``quantile`` of the training stars' own such distances.  A
    star with a non-finite quantity gets ``inf``.  Returns (n,) float64.
    """
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(features, dtype=float)
    is_train = np.asarray(in_training, dtype=bool)
    ok = np.all(np.isfinite(x), axis=1)
    training = x[is_train & ok]
    k = int(neighbours)
    if len(training) <= k:
        raise FlagError(f"input-space digit: {len(training)} training stars, need > {k}")
    centre = np.median(training, axis=0)
    spread = 1.4826 * np.median(np.abs(training - centre), axis=0)
    spread = np.where(spread > 0, spread, 1.0)
    nn = NearestNeighbors(n_neighbors=k + 1).fit(training / spread)
    dist = np.full(len(x), np.inf)
    for want, n_query, col in ((is_train, k + 1, k), (~is_train, k, k - 1)):
        # training stars: the first neighbour is the star itself
        rows = np.flatnonzero(want & ok)
        for start in range(0, rows.size, INPUT_SPACE_CHUNK):  # bounded memory at 10^8
            r = rows[start : start + INPUT_SPACE_CHUNK]
            dist[r] = nn.kneighbors(x[r] / spread, n_neighbors=n_query)[0][:, col]
    threshold = float(np.quantile(dist[is_train & ok], quantile))
    return dist / threshold if threshold > 0 else np.where(dist > 0, np.inf, 0.0)


#: Stars per nearest-neighbour query of the input-space digit.
INPUT_SPACE_CHUNK = 1_000_000


def read_training_like(tsne_file) -> tuple[np.ndarray, np.ndarray, str]:
    """The ``tsne_classify`` file: (source_id, training_like, the spectra the maps embed)."""
    from gaiacnn.io import open_h5

    with open_h5(tsne_file) as h5:
        for name in ("source_id", "training_like"):
            if name not in h5:
                raise FlagError(f"{tsne_file}: no {name}: not a t-SNE classification")
        t_sid, t_like = h5["source_id"][:], h5["training_like"][:]
        spectra = str(h5.attrs.get("spectra", RVS_FLUX_DATASET))
    return t_sid, t_like, spectra


def run_flag_catalogue(
    labels_fits, tsne_file, model_json, fits_out, csv_out, *, labels, input_digit=True
) -> None:
    """Rule ``flag_catalogue``: the catalogue with ``flag_boundary`` (Sect. 5.2, and unless
    ``input_digit`` is False (config ``flags.input_digit``; the paper's 8 digits) the
    input-space digit 9: the labels table's ``input_distance`` > 1, training stars inside by
    definition; ``-`` where the table has no finite distance)."""
    import pandas as pd

    from gaiacnn import catalogue, ensemble

    _, training_range = ensemble.read_uncertainty_model(model_json)
    table, attrs = catalogue.read(labels_fits)
    t_sid, t_like, spectra = read_training_like(tsne_file)
    not_like = np.zeros(len(table), bool)  # training stars: training-like by definition
    obs = ~table["in_training"].to_numpy(bool)
    idx = pd.Index(t_sid).get_indexer(table["source_id"].to_numpy()[obs])
    if np.any(idx < 0):
        raise FlagError(f"{tsne_file}: {int((idx < 0).sum())} observed stars unclassified")
    not_like[obs] = ~t_like[idx]
    digits = digit_order(labels, input_digit)
    values = {c: table[c].to_numpy(float) for c in digits[: digits.index(TSNE_DIGIT)]}
    inputs_out = None
    distance = table["input_distance"].to_numpy(float) if "input_distance" in table else None
    if not input_digit:
        log.info("no input-space digit (flags.input_digit: false): the paper's 8 digits")
    elif distance is not None and np.isfinite(distance[~obs]).any():
        inputs_out = input_outside(table)
        log.info(
            "input-space digit: %d of %d observed stars outside the training inputs",
            int(inputs_out.sum()),
            int(obs.sum()),
        )
    else:
        log.info("input-space digit: '-' (the arrays lack BP, RP, parallax or its error)")
    table["flag_boundary"] = boundary_flags(
        values, training_range, labels, not_like, inputs_out, input_digit
    )
    validate_flags(table["flag_boundary"], n_digits=len(digits))
    table.attrs.update(attrs, flag_digits=digits, tsne_spectra=spectra)
    catalogue.write(table, fits_out, csv_out)
    n_clean = int(recommended(table["flag_boundary"]).sum())
    absent = [
        d
        for d, ok in zip(digits, available(table["flag_boundary"], len(digits)), strict=True)
        if not ok
    ]
    recommended_obs = recommended(table["flag_boundary"])[obs]
    n_obs = max(int(obs.sum()), 1)
    log.info(
        "observed sample: %d of %d training-like (%.1f %%; the paper: %s, Sect. 5.1), "
        "%d with no digit 1 (%.1f %%; the paper: %s with 00000000, Sect. 9)",
        int((~not_like[obs]).sum()),
        int(obs.sum()),
        100.0 * (~not_like[obs]).sum() / n_obs,
        constants.paper_fraction(constants.PAPER_TRAINING_LIKE),
        int(recommended_obs.sum()),
        100.0 * recommended_obs.sum() / n_obs,
        constants.paper_fraction(constants.PAPER_RECOMMENDED),
    )
    if "phot_g_mean_mag" in training_range:
        g_lo, g_hi = training_range["phot_g_mean_mag"]
        log.info(
            "training range of G (Table 1): %.2f-%.2f mag (the paper: %g-%g, Sect. 2.6)",
            g_lo,
            g_hi,
            *constants.PAPER_TRAINING_G_RANGE,
        )
    log.info(
        "flag_boundary: %d of %d stars with no digit 1 (recommended); not available: %s",
        n_clean,
        len(table),
        ", ".join(absent) or "none",
    )
