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
    (:class:`InputSpace` fitted on the training stars, then asked about the others.)
    """
    x = np.asarray(features, dtype=float)
    is_train = np.asarray(in_training, dtype=bool)
    space = InputSpace.fit(x[is_train], neighbours=neighbours, quantile=quantile)
    dist = np.empty(len(x))
    dist[is_train] = space.training_distance
    dist[~is_train] = space.distance(x[~is_train])
    return dist


class InputSpace:
    """The training stars' input space (:func:`input_space_distance`), fitted once, then
    asked about any number of stars, a chunk at a time (memory independent of N)."""

    def __init__(self, training: np.ndarray, neighbours: int, quantile: float) -> None:
        from sklearn.neighbors import NearestNeighbors

        x = np.asarray(training, dtype=float)
        ok = np.all(np.isfinite(x), axis=1)
        fit_on = x[ok]
        k = int(neighbours)
        if len(fit_on) <= k:
            raise FlagError(f"input-space digit: {len(fit_on)} training stars, need > {k}")
        self.k = k
        centre = np.median(fit_on, axis=0)
        spread = 1.4826 * np.median(np.abs(fit_on - centre), axis=0)
        self.spread = np.where(spread > 0, spread, 1.0)
        self.nn = NearestNeighbors(n_neighbors=k + 1).fit(fit_on / self.spread)
        # a training star's first neighbour is itself: its k-th other one
        raw = self._raw(x, k + 1, k)
        self.threshold = float(np.quantile(raw[ok], quantile))
        #: the training stars' own distances (in units of the threshold)
        self.training_distance = self._scale(raw)

    @classmethod
    def fit(cls, training: np.ndarray, *, neighbours: int = 10, quantile: float = 0.99):
        """Fitted on the (n, d) features of the training stars."""
        return cls(training, neighbours, quantile)

    def _raw(self, x: np.ndarray, n_query: int, col: int) -> np.ndarray:
        ok = np.all(np.isfinite(x), axis=1)
        dist = np.full(len(x), np.inf)
        rows = np.flatnonzero(ok)
        for start in range(0, rows.size, INPUT_SPACE_CHUNK):  # bounded memory at 10^8
            r = rows[start : start + INPUT_SPACE_CHUNK]
            dist[r] = self.nn.kneighbors(x[r] / self.spread, n_neighbors=n_query)[0][:, col]
        return dist

    def _scale(self, dist: np.ndarray) -> np.ndarray:
        if self.threshold > 0:
            return dist / self.threshold
        return np.where(dist > 0, np.inf, 0.0)

    def distance(self, features: np.ndarray) -> np.ndarray:
        """(n,) distances of stars that are not training stars (their k-th nearest training
        star over the threshold; ``inf`` where a quantity is not finite)."""
        return self._scale(self._raw(np.asarray(features, dtype=float), self.k, self.k - 1))


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


class _TrainingLike:
    """The t-SNE class of observed stars, chunk by chunk: while the classification file
    lists the catalogue's observed stars in the same order, each chunk is read off the file
    in turn (memory independent of N); any other order is looked up through an index of
    its source ids, read whole once."""

    def __init__(self, tsne_file) -> None:
        from gaiacnn.io import open_h5

        self.path = tsne_file
        with open_h5(tsne_file) as h5:
            for name in ("source_id", "training_like"):
                if name not in h5:
                    raise FlagError(f"{tsne_file}: no {name}: not a t-SNE classification")
            self.spectra = str(h5.attrs.get("spectra", RVS_FLUX_DATASET))
        self.pos = 0
        self.index = None

    def not_like(self, sid: np.ndarray) -> np.ndarray:
        """(n,) bool: observed stars ``sid`` not training-like (refused if unclassified)."""
        import pandas as pd

        from gaiacnn.io import open_h5

        n = len(sid)
        if self.index is None:
            with open_h5(self.path) as h5:
                if np.array_equal(h5["source_id"][self.pos : self.pos + n], sid):
                    self.pos += n
                    return ~h5["training_like"][self.pos - n : self.pos]
            t_sid, self.like, _ = read_training_like(self.path)
            self.index = pd.Index(t_sid)
        idx = self.index.get_indexer(sid)
        if np.any(idx < 0):
            raise FlagError(f"{self.path}: {int((idx < 0).sum())} observed stars unclassified")
        return ~self.like[idx]


def run_flag_catalogue(
    labels_fits,
    tsne_file,
    model_json,
    fits_out,
    csv_out=None,
    *,
    parquet_out=None,
    labels,
    input_digit=True,
    chunk_rows: int = 65536,
) -> None:
    """Rule ``flag_catalogue``: the catalogue with ``flag_boundary`` (Sect. 5.2, and unless
    ``input_digit`` is False (config ``flags.input_digit``; the paper's 8 digits) the
    input-space digit 9: the labels table's ``input_distance`` > 1, training stars inside by
    definition; ``-`` where the table has no finite distance).  Streams the labels table
    ``chunk_rows`` stars at a time (memory independent of N)."""
    from gaiacnn import catalogue, ensemble
    from gaiacnn.tables import fits_column_names, fits_rows, iter_fits_rows

    _, training_range = ensemble.read_uncertainty_model(model_json)
    attrs = catalogue.read_attrs(labels_fits)
    n_rows = fits_rows(labels_fits)
    classes = _TrainingLike(tsne_file)
    digits = digit_order(labels, input_digit)
    value_columns = digits[: digits.index(TSNE_DIGIT)]
    # does any observed star have an input-space distance (one pass over two columns)?
    has_distance = "input_distance" in fits_column_names(labels_fits)
    use_inputs = False
    if has_distance and input_digit:
        for part in iter_fits_rows(labels_fits, chunk_rows, ["in_training", "input_distance"]):
            obs = ~part["in_training"].to_numpy(bool)
            if np.isfinite(part["input_distance"].to_numpy(float)[obs]).any():
                use_inputs = True
                break
    if not input_digit:
        log.info("no input-space digit (flags.input_digit: false): the paper's 8 digits")
    elif not use_inputs:
        log.info("input-space digit: '-' (the arrays lack BP, RP, parallax or its error)")
    counts = dict.fromkeys(("observed", "like", "recommended_obs", "clean", "inputs_out"), 0)
    first_dashes: list[tuple] = []

    def chunks():
        for table in iter_fits_rows(labels_fits, chunk_rows):
            obs = ~table["in_training"].to_numpy(bool)
            not_like = np.zeros(len(table), bool)  # training stars: training-like
            not_like[obs] = classes.not_like(table["source_id"].to_numpy()[obs])
            values = {c: table[c].to_numpy(float) for c in value_columns}
            inputs_out = input_outside(table) if use_inputs else None
            table["flag_boundary"] = boundary_flags(
                values, training_range, labels, not_like, inputs_out, input_digit
            )
            validate_flags(table["flag_boundary"], n_digits=len(digits))
            if len(table):
                dashes = tuple(c == NOT_AVAILABLE for c in table["flag_boundary"].iloc[0])
                if first_dashes and dashes != first_dashes[0]:
                    raise FlagError(
                        "flags differ in their '-' (not available) digits from chunk to chunk"
                    )
                first_dashes[:1] = [dashes]
            rec = recommended(table["flag_boundary"])
            table["recommended"] = rec
            counts["observed"] += int(obs.sum())
            counts["like"] += int((~not_like[obs]).sum())
            counts["recommended_obs"] += int(rec[obs].sum())
            counts["clean"] += int(rec.sum())
            if inputs_out is not None:
                counts["inputs_out"] += int(inputs_out.sum())
            yield table

    out_attrs = {**attrs, "flag_digits": digits, "tsne_spectra": classes.spectra}
    catalogue.write_chunks(
        chunks(), n_rows, fits_out, csv_out, attrs=out_attrs, parquet_path=parquet_out
    )
    if use_inputs:
        log.info(
            "input-space digit: %d of %d observed stars outside the training inputs",
            counts["inputs_out"],
            counts["observed"],
        )
    absent = [
        d for d, dash in zip(digits, first_dashes[0] if first_dashes else (), strict=False) if dash
    ]
    n_obs = max(counts["observed"], 1)
    log.info(
        "observed sample: %d of %d training-like (%.1f %%; the paper: %s, Sect. 5.1), "
        "%d with no digit 1 (%.1f %%; the paper: %s with 00000000, Sect. 9)",
        counts["like"],
        counts["observed"],
        100.0 * counts["like"] / n_obs,
        constants.paper_fraction(constants.PAPER_TRAINING_LIKE),
        counts["recommended_obs"],
        100.0 * counts["recommended_obs"] / n_obs,
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
        counts["clean"],
        n_rows,
        ", ".join(absent) or "none",
    )
