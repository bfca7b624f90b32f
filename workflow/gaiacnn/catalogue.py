"""The catalogue (paper Table 2): ensemble labels, ``e_*``, ``sigma_*``, as FITS with units and CSV.

One row per star of the training and observed samples.  The columns, their units and
meaning are :data:`COLUMN_DOC` (the star's inputs, ``input_distance``, ``flag_boundary``)
and, for each label, ``<label>`` (the ensemble mean), ``e_<label>`` (the model-to-model
standard deviation) and ``sigma_<label>`` (``e_`` in quadrature with the running-dispersion
fit, that fit scaled, if configured, by the S/N and input-distance calibration factor:
:func:`sigma_formula`), in K for
``teff`` and dex otherwise; ``ra``/``dec`` only when an arrays file carries them.  The FITS
header records the configuration hash, the members used, the flag digits and the meaning
of every column.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import h5py
import numpy as np
import pandas as pd
from astropy.io import fits

from gaiacnn import ensemble, flags, layout, provenance, spectra
from gaiacnn.constants import label_unit
from gaiacnn.io import atomic_outputs
from gaiacnn.layout import PARALLAX_DATASET, PARALLAX_ERROR_DATASET, RVS_SNR_DATASET
from gaiacnn.tables import read_fits_columns

log = logging.getLogger(__name__)

#: Range of the training sample (Table 1) from these quantiles of the training stars.
DEFAULT_RANGE_QUANTILES = (0.0, 1.0)


def _optional(path, name: str, n: int) -> np.ndarray:
    try:
        return layout.read_column(path, name).astype(np.float32)
    except layout.LayoutError:
        return np.full(n, np.nan, np.float32)


#: The arrays datasets of :data:`gaiacnn.flags.INPUT_SPACE_COLUMNS`, in that order.
INPUT_SPACE_DATASETS = (
    "phot/g",
    "phot/bp",
    "phot/rp",
    PARALLAX_DATASET,
    PARALLAX_ERROR_DATASET,
)


def _has_positions(path) -> bool:
    """Whether an arrays file carries the sky position (``astrometry/ra``, ``/dec``)."""
    with h5py.File(path, "r") as h5:
        return all(name in h5 for name in layout.POSITION_DATASETS)


def _reference(path, labels: Sequence[str], n: int, suffix: str = "") -> np.ndarray:
    """(n, n_labels) ``labels/<name><suffix>`` of an arrays file of n stars; NaN columns
    where absent."""
    return np.column_stack([_optional(path, f"labels/{x}{suffix}", n) for x in labels]).astype(
        np.float64
    )


def _combine_sample(
    paths: Sequence[str | os.PathLike],
    labels: Sequence[str],
    chunk_rows: int,
    held_out: np.ndarray | None = None,
    group: str = "pred",
    noise: bool = True,
) -> Iterator[tuple]:
    """Chunks (source_id, mean, std, out-of-sample mean, input noise) over the member files
    of one sample (their prediction ``group``: :func:`gaiacnn.ensemble.iter_member_chunks`).

    ``held_out`` (n_members, n) marks the stars each member did not train on; the
    out-of-sample mean averages only those members (NaN where none held the star out).
    The input noise is the spread of the labels under each star's own input noise, root
    mean square over the members (:func:`gaiacnn.ensemble.member_noise`); None where the
    members did not draw it, or with ``noise`` False.
    """
    start = 0
    noisy = noise and ensemble.has_noise(paths, group)
    chunks = ensemble.iter_member_chunks(paths, labels, chunk_rows, group)
    noise_chunks = (
        ensemble.iter_member_chunks(paths, labels, chunk_rows, ensemble.noise_group(group))
        if noisy
        else itertools.repeat(None)
    )
    for (sid, preds), noise in zip(chunks, noise_chunks, strict=False):  # repeat: endless
        mean, std = ensemble.combine(preds)
        oof = None
        if held_out is not None:
            w = held_out[:, start : start + len(sid), None].astype(float)
            with np.errstate(invalid="ignore", divide="ignore"):
                oof = (preds * w).sum(axis=0) / w.sum(axis=0)
        start += len(sid)
        yield sid, mean, std, oof, None if noise is None else ensemble.member_noise(noise[1])


def spread_with_noise(std: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
    """The members' spread e with the input noise's spread in quadrature, sqrt(e² + e_in²):
    what the uncertainty adds to the running dispersion (``std`` where no noise)."""
    return std if noise is None else np.sqrt(std**2 + noise**2)


def _concat(chunks: Iterable[tuple]) -> tuple:
    """The chunks of :func:`_combine_sample` (or :func:`_stars`) joined into whole arrays
    (dicts of arrays key by key; None stays None)."""

    def join(values: tuple):
        if any(v is None for v in values):
            return None
        if isinstance(values[0], dict):
            return {k: np.concatenate([v[k] for v in values]) for k in values[0]}
        return np.concatenate(values)

    return tuple(join(p) for p in zip(*chunks, strict=True))


def _n_stars(path) -> int:
    """The stars of an arrays file (its source_id's length)."""
    with h5py.File(path, "r") as h5:
        if "source_id" not in h5:
            raise layout.LayoutError(path, "source_id", "required dataset is missing")
        return int(h5["source_id"].shape[0])


def _read_rows(path, names: Sequence[str], start: int, stop: int) -> dict[str, np.ndarray]:
    """Rows ``[start, stop)`` of the 1-D datasets ``names`` of an arrays file as float32
    (``source_id`` as it is); NaN for a dataset the file lacks."""
    with h5py.File(path, "r") as h5:
        return {
            n: (h5[n][start:stop] if n == "source_id" else h5[n][start:stop].astype(np.float32))
            if n in h5
            else np.full(stop - start, np.nan, np.float32)
            for n in names
        }


@dataclass
class Aggregation:
    """What the catalogue's columns are made with, fitted on the training sample (and the
    observed stars with reference labels): :func:`fit`; :func:`iter_table` then makes the
    catalogue a chunk of stars at a time."""

    labels: list[str]
    members: list[str]
    fits: list[ensemble.DispersionFit]
    training_range: dict
    calibrations: dict[str, ensemble.SnrCalibration | None]
    input_space: flags.InputSpace | None  # None: the arrays lack an input
    withheld_snr: float | None  # the members' parallax S/N threshold (intrinsic_withheld)
    positions: bool  # ra, dec columns
    n_rows: dict[str, int]
    attrs: dict  # the table's attrs (config hash, members, ...)
    # the label pairs' error correlations against S/N (columns rho_<a>__<b>)
    correlations: list[ensemble.LabelCorrelation] = field(default_factory=list)
    # the members' spread under the input noise enters sigma (columns e_input_*)
    noise: bool = False

    def paper_sigma(self, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        """(n, n_labels) sqrt(e² + D(label)²), Sect. 3.4."""
        return np.column_stack(
            [ensemble.total_uncertainty(std[:, j], f, mean[:, j]) for j, f in enumerate(self.fits)]
        )


#: The arrays datasets a catalogue chunk reads besides the labels.
_STAR_DATASETS = (*INPUT_SPACE_DATASETS, RVS_SNR_DATASET)


def _stars(
    agg: Aggregation,
    sample: str,
    predictions: Sequence,
    arrays_path,
    chunk_rows: int,
    held_out: np.ndarray | None = None,
    group: str = "pred",
    offset: int = 0,
) -> Iterator[tuple]:
    """Chunks of one sample: (source_id, mean, std, out-of-sample mean, S/N, inputs
    {column: values}, input distance, parallax withheld, input noise or None), the
    predictions checked against
    the stars of the arrays file (the same stars, in order, every one of them; from row
    ``offset`` on, ``agg.n_rows[sample]`` of them)."""
    start = 0
    for sid, mean, std, oof, noise in _combine_sample(
        predictions, agg.labels, chunk_rows, held_out, group, agg.noise
    ):
        stop = start + len(sid)
        rows = _read_rows(
            arrays_path, ("source_id", *_STAR_DATASETS), offset + start, offset + stop
        )
        if not np.array_equal(sid, rows.pop("source_id")):
            raise ensemble.EnsembleError(
                f"predictions of {sample} do not follow the stars of {arrays_path}"
            )
        inputs = {
            c: rows[name]
            for c, name in zip(flags.INPUT_SPACE_COLUMNS, INPUT_SPACE_DATASETS, strict=True)
        }
        if agg.input_space is None:
            distance = np.full(len(sid), np.nan)
        elif sample == "training":
            distance = agg.input_space.training_distance[start:stop]
        else:
            distance = agg.input_space.distance(flags.input_space_features(inputs))
        withheld = np.zeros(len(sid), bool)
        if agg.withheld_snr is not None:
            withheld = spectra.parallax_withheld(
                {
                    PARALLAX_DATASET: inputs["parallax"],
                    PARALLAX_ERROR_DATASET: inputs["parallax_error"],
                },
                agg.withheld_snr,
            )
        yield sid, mean, std, oof, rows[RVS_SNR_DATASET], inputs, distance, withheld, noise
        start = stop
    if start != agg.n_rows[sample]:
        raise ensemble.EnsembleError(
            f"predictions of {sample} do not follow the stars of {arrays_path}"
        )


def fit(
    predictions: Mapping[str, Sequence[str | os.PathLike]],
    arrays: Mapping[str, str | os.PathLike],
    *,
    labels: Sequence[str],
    members: Sequence[str],
    n_bins: int,
    degree: int,
    range_quantiles: Sequence[float] = DEFAULT_RANGE_QUANTILES,
    calibration_bins: int = 0,
    calibration_min_per_bin: int = ensemble.DEFAULT_MIN_PER_BIN,
    calibration_confidence: float = 0.5,
    subtract_reference_errors: bool = True,
    input_calibration_bins: int = 0,
    input_neighbours: int = 10,
    input_quantile: float = 0.99,
    validation_fraction: float = 0.25,
    base_seed: int = 0,
    config_hash: str = "",
    chunk_rows: int = 65536,
    input_noise: bool | None = None,
) -> Aggregation:
    """The catalogue's ingredients (:func:`build` says which), streaming the observed
    sample ``chunk_rows`` stars at a time: only the training sample and the observed stars
    with reference labels are held in memory.

    ``input_noise``: whether the members' spread under the input noise (``pred_noise``,
    :func:`gaiacnn.model.predict_members`) enters sigma (config ``uncertainty.input_noise``):
    True refuses predictions without it, False leaves it out (and says so), None takes it
    where the predictions have it."""
    labels = list(labels)
    members = list(members)
    tr_path = arrays["training"]
    if len(members) != len(predictions["training"]):
        raise ensemble.EnsembleError(
            f"{len(members)} member names for {len(predictions['training'])} prediction files"
        )
    ref = np.column_stack([layout.read_column(tr_path, f"labels/{x}") for x in labels])
    n_tr = len(ref)
    n_rows = {s: _n_stars(arrays[s]) for s in ("training", "observed")}
    held_out = (
        ensemble.validation_masks(members, n_tr, validation_fraction, base_seed)
        if calibration_bins > 0
        else None
    )
    range_values = {x: ref[:, j] for j, x in enumerate(labels)}
    range_values["phot_g_mean_mag"] = _optional(tr_path, "phot/g", n_tr)
    range_values["parallax"] = _optional(tr_path, PARALLAX_DATASET, n_tr)
    range_values = {k: v for k, v in range_values.items() if np.isfinite(v).any()}
    training_range = ensemble.effective_range(range_values, range_quantiles)

    tr_inputs = {
        c: _optional(tr_path, name, n_tr)
        for c, name in zip(flags.INPUT_SPACE_COLUMNS, INPUT_SPACE_DATASETS, strict=True)
    }
    space = None
    if all(np.isfinite(v).any() for v in tr_inputs.values()):
        space = flags.InputSpace.fit(
            flags.input_space_features(tr_inputs),
            neighbours=input_neighbours,
            quantile=input_quantile,
        )
    # the members' inputs, as their predictions record them; stars whose parallax the
    # members withheld (phot_input intrinsic_withheld) get an uncertainty of their own
    # (fitted on the training sample predicted without its parallaxes) and a catalogue
    # column
    with h5py.File(predictions["training"][0], "r") as h5:
        branches = json.loads(h5.attrs.get("branches", "[]"))
        xp_input = str(h5.attrs.get("xp_input", ""))
        withheld_snr = h5.attrs.get("parallax_withheld_snr")
        withheld_predictions = bool(h5.attrs.get("withheld_predictions", False))
        noise_sources = json.loads(h5.attrs.get("input_noise", "[]"))
    drawn = all(ensemble.has_noise(predictions[s]) for s in ("training", "observed"))
    if input_noise and not drawn:
        # members without those inputs (an RVS-only or XP-sampled model) draw nothing
        log.warning(
            "uncertainty.input_noise is set but the member predictions hold no spread under "
            "the input noise (pred_noise: the members lack those inputs, or the predictions "
            "predate it): sigma_* has none"
        )
    if drawn and input_noise is False:
        log.info("the predictions' spread under the input noise is not used "
                 "(uncertainty.input_noise: [])")  # fmt: skip
    use_noise = drawn and input_noise is not False
    agg = Aggregation(
        labels=labels,
        members=members,
        fits=[],  # below, from the training sample's predictions
        training_range=training_range,
        calibrations={},
        input_space=space,
        withheld_snr=None if withheld_snr is None else float(withheld_snr),
        positions=any(_has_positions(arrays[s]) for s in ("training", "observed")),
        n_rows=n_rows,
        attrs={},
        noise=use_noise,
    )
    # the training sample, whole: the running dispersion is fitted on it (Sect. 3.4)
    _, tr_mean, tr_std, tr_oof, tr_snr, _, tr_distance, tr_withheld, tr_noise = _concat(
        _stars(agg, "training", predictions["training"], tr_path, chunk_rows, held_out)
    )
    tr_std = spread_with_noise(tr_std, tr_noise)  # what sigma adds D to
    agg.fits = [
        ensemble.running_dispersion(ref[:, j], tr_mean[:, j], x, n_bins=n_bins, degree=degree)
        for j, x in enumerate(labels)
    ]
    tr_sigma = agg.paper_sigma(tr_mean, tr_std)

    # the observed stars, a chunk at a time: how many are withheld, and (for the
    # calibration) those with a reference label inside the training range
    calibrate = calibration_bins > 0
    obs_cal: list[tuple] = []
    n_obs_withheld = 0
    any_snr = np.isfinite(tr_snr).any()
    start = 0
    for chunk in _stars(agg, "observed", predictions["observed"], arrays["observed"], chunk_rows):
        sid, mean, std, _, snr, _, distance, withheld, noise = chunk
        std = spread_with_noise(std, noise)
        sigma = agg.paper_sigma(mean, std)
        stop = start + len(sid)
        n_obs_withheld += int(withheld.sum())
        any_snr = any_snr or np.isfinite(snr).any()
        if calibrate:
            obs_ref = _reference_rows(arrays["observed"], labels, start, stop)
            inside = np.ones(len(sid), bool)
            for j, x in enumerate(labels):
                lo, hi = training_range[x]
                inside &= (obs_ref[:, j] >= lo) & (obs_ref[:, j] <= hi)
            keep = np.flatnonzero(inside)  # the others' residuals are NaN: never fitted
            if keep.size:
                err = (
                    _reference_rows(arrays["observed"], labels, start, stop, "_err")[keep]
                    if subtract_reference_errors
                    else np.zeros((keep.size, len(labels)))
                )
                obs_cal.append(
                    (
                        mean[keep] - obs_ref[keep],
                        sigma[keep],
                        snr[keep],
                        distance[keep],
                        withheld[keep],
                        err,
                        std[keep],
                    )
                )
        start = stop
    if agg.withheld_snr is not None:
        log.info(
            "parallax withheld (S/N < %g) for %d training and %d observed stars",
            agg.withheld_snr,
            int(tr_withheld.sum()),
            n_obs_withheld,
        )

    calibrations: dict[str, ensemble.SnrCalibration | None] = {}
    if calibrate and not any_snr:
        # a survey without RVS spectra (no rvs/snr): nothing to bin in
        log.warning(
            "no rvs/snr in the arrays: sigma_* is not S/N-calibrated (uncertainty."
            "snr_calibration_bins), it is the paper's recipe alone"
        )
        calibrations = dict.fromkeys(labels)
    elif calibrate:
        empty = (
            np.empty((0, len(labels))),
            np.empty((0, len(labels))),
            np.empty(0, np.float32),
            np.empty(0),
            np.empty(0, bool),
            np.empty((0, len(labels))),
            np.empty((0, len(labels))),
        )
        o_resid, o_sigma, o_snr, o_distance, o_withheld, o_err, o_spread = (
            _concat(obs_cal) if obs_cal else empty
        )
        tr_err = (
            _reference(tr_path, labels, n_tr, "_err")
            if subtract_reference_errors
            else np.zeros((n_tr, len(labels)))
        )
        # calibration stars: the training stars (held out), the observed stars with a
        # reference label, and, where the members withhold parallaxes and predicted the
        # training sample with every parallax withheld too, the training stars once more
        # in that regime (those whose parallax is used: the others are in it already)
        resid = {"training": tr_oof - ref, "observed": o_resid}
        cal_sigma = {"training": tr_sigma, "observed": o_sigma}
        cal_spread = {"training": tr_std, "observed": o_spread}
        cal_snr = {"training": tr_snr, "observed": o_snr}
        cal_withheld = {"training": tr_withheld, "observed": o_withheld}
        cal_distance = {"training": tr_distance, "observed": o_distance}
        ref_err = {"training": tr_err, "observed": o_err}
        cal_parts = ["training", "observed"]
        if agg.withheld_snr is not None and withheld_predictions:
            _, w_mean, w_std, w_oof, w_noise = _concat(
                _combine_sample(
                    predictions["training"],
                    labels,
                    chunk_rows,
                    held_out,
                    ensemble.WITHHELD_GROUP,
                    agg.noise,
                )
            )
            w_std = spread_with_noise(w_std, w_noise)
            keep = ~tr_withheld & np.isfinite(w_oof).all(axis=1)
            resid["withheld"] = np.where(keep[:, None], w_oof - ref, np.nan)
            cal_sigma["withheld"] = agg.paper_sigma(w_mean, w_std)
            cal_spread["withheld"] = w_std
            ref_err["withheld"] = tr_err
            cal_snr["withheld"] = tr_snr
            cal_withheld["withheld"] = np.ones(n_tr, bool)
            cal_distance["withheld"] = np.full(n_tr, np.nan)
            cal_parts.append("withheld")
            log.info(
                "%d held-out training stars calibrate the withheld regime once more, predicted "
                "with the parallax withheld",
                int(keep.sum()),
            )

        def stack(values: Mapping[str, np.ndarray], j: int | None = None) -> np.ndarray:
            return np.concatenate([values[s] if j is None else values[s][:, j] for s in cal_parts])

        from_observed = np.concatenate(
            [np.full(len(cal_withheld[s]), s == "observed") for s in cal_parts]
        )
        for j, x in enumerate(labels):
            calibrations[x] = ensemble.fit_snr_calibration(
                stack(resid, j),
                stack(cal_sigma, j),
                stack(cal_snr),
                x,
                reference_error=stack(ref_err, j),
                from_observed=from_observed,
                n_bins=calibration_bins,
                min_per_bin=calibration_min_per_bin,
                confidence=calibration_confidence,
                input_distance=stack(cal_distance),
                input_bins=input_calibration_bins,
                withheld=stack(cal_withheld),
                spread=stack(cal_spread, j),
            )
            if calibrations[x] is None:
                log.warning("%s: too few out-of-sample stars for the S/N calibration", x)
        # the label errors' correlations, from the same stars (not the withheld regime's
        # second prediction of the training stars)
        parts = ["training", "observed"]
        for pair in ensemble.correlation_pairs(labels):
            corr = ensemble.fit_label_correlation(
                {x: np.concatenate([resid[s][:, labels.index(x)] for s in parts]) for x in pair},
                {x: np.concatenate([ref_err[s][:, labels.index(x)] for s in parts]) for x in pair},
                np.concatenate([cal_snr[s] for s in parts]),
                pair,
                n_bins=calibration_bins,
                min_per_bin=calibration_min_per_bin,
            )
            if corr is not None:
                agg.correlations.append(corr)
                bins = zip(corr.snr, corr.rho, strict=True)
                log.info(
                    "error correlation %s-%s against S/N: %s",
                    *pair,
                    ", ".join(f"{s:.3g}: {r:+.2f}" for s, r in bins),
                )
    agg.calibrations = calibrations
    agg.attrs = dict(
        config_hash=config_hash,
        members=members,
        labels=labels,
        snr_calibrated=[x for x, c in calibrations.items() if c is not None],
        calibration_form=_calibration_form(calibrations),
        branches=branches,
        xp_input=xp_input,
        input_noise=noise_sources if use_noise else [],
        **provenance.stamp({k: arrays[k] for k in ("training", "observed")}),
    )
    return agg


def iter_table(
    agg: Aggregation,
    predictions: Mapping[str, Sequence[str | os.PathLike]],
    arrays: Mapping[str, str | os.PathLike],
    chunk_rows: int = 65536,
    samples: Sequence[str] = ("training", "observed"),
    offset: int = 0,
) -> Iterator[pd.DataFrame]:
    """The catalogue (:func:`build`), ``chunk_rows`` stars at a time: the training sample,
    then the observed one, in the order of their arrays files (``samples``: only those;
    ``offset``: the predictions start at that row of the arrays files, as a shard's do)."""
    for sample in samples:
        start = 0
        for chunk in _stars(
            agg, sample, predictions[sample], arrays[sample], chunk_rows, offset=offset
        ):
            sid, mean, std, _, snr, inputs, distance, withheld, noise = chunk
            spread = spread_with_noise(std, noise)
            sigma = agg.paper_sigma(mean, spread)
            n = len(sid)
            for j, x in enumerate(agg.labels):
                cal = agg.calibrations.get(x)
                if cal is not None:
                    sigma[:, j] = cal.apply(sigma[:, j], spread[:, j], snr, distance, withheld)
            cols: dict[str, np.ndarray] = {
                "source_id": sid.astype(np.int64),
                "in_training": np.full(n, sample == "training"),
            }
            if agg.positions:
                pos = _read_rows(
                    arrays[sample], layout.POSITION_DATASETS, offset + start, offset + start + n
                )
                cols["ra"], cols["dec"] = (pos[name] for name in layout.POSITION_DATASETS)
            cols |= {
                **inputs,  # G, BP, RP, parallax, parallax_error
                "rvs_snr": snr,
                "input_distance": distance.astype(np.float32),
            }
            if agg.withheld_snr is not None:
                cols["parallax_withheld"] = withheld
            for j, x in enumerate(agg.labels):
                cols[x] = mean[:, j].astype(np.float32)
                cols[f"e_{x}"] = std[:, j].astype(np.float32)
                if noise is not None:
                    cols[f"e_input_{x}"] = noise[:, j].astype(np.float32)
                cols[f"sigma_{x}"] = sigma[:, j].astype(np.float32)
            for corr in agg.correlations:
                cols[ensemble.correlation_column(corr.labels)] = corr(snr).astype(np.float32)
            table = pd.DataFrame(cols)
            table.attrs.update(agg.attrs)
            yield table
            start += n


def build(
    predictions: Mapping[str, Sequence[str | os.PathLike]],
    arrays: Mapping[str, str | os.PathLike],
    *,
    chunk_rows: int = 65536,
    **settings,
) -> tuple[pd.DataFrame, list[ensemble.DispersionFit], dict, dict]:
    """Combine the members of both samples into the catalogue table, in memory (the
    workflow streams it: :func:`fit`, :func:`iter_table`, :func:`write_chunks`).

    ``predictions[sample]`` lists the member prediction files of ``arrays[sample]``
    (``sample`` in training, observed), in the order of ``members`` (names
    ``split<N>_seed<M>``).  The running dispersion is fitted on the training sample against
    its reference labels (``labels/<name>`` of the training file), Sect. 3.4.

    With ``calibration_bins`` > 0, the running dispersion in ``sigma_<label>`` is then
    scaled by an S/N-dependent
    factor (:func:`gaiacnn.ensemble.fit_snr_calibration`) fitted on out-of-sample
    residuals: observed stars with reference labels inside the training range, and
    training stars predicted by the members whose validation set held them
    (``validation_fraction`` and ``base_seed`` must be the training ones).  The reference
    labels' errors (``labels/<name>_err``) are removed in quadrature if
    ``subtract_reference_errors``.  Stars whose parallax the members withheld get an
    uncertainty added in quadrature instead, fitted on the withheld observed stars with
    reference labels and on the training stars predicted with every parallax withheld
    (``pred_withheld`` in the training predictions, where the members wrote it).

    Where the arrays have G, BP, RP, parallax and its error, every star's distance from the
    training stars' input space (column ``input_distance``: > 1 = outside;
    :func:`gaiacnn.flags.input_space_distance` with ``input_neighbours`` and
    ``input_quantile``) is computed; with ``input_calibration_bins`` > 0 the calibration
    gets a second factor against it (:func:`gaiacnn.ensemble.fit_snr_calibration`).
    ``settings``: the keywords of :func:`fit`.
    Returns (catalogue, dispersion fits, training range, S/N calibrations by label).
    """
    agg = fit(predictions, arrays, chunk_rows=chunk_rows, **settings)
    table = pd.concat(list(iter_table(agg, predictions, arrays, chunk_rows)), ignore_index=True)
    table.attrs.update(agg.attrs)
    return table, agg.fits, agg.training_range, agg.calibrations


def _reference_rows(
    path, labels: Sequence[str], start: int, stop: int, suffix: str = ""
) -> np.ndarray:
    """(stop - start, n_labels) ``labels/<name><suffix>`` of rows [start, stop) as float64;
    NaN columns where absent."""
    rows = _read_rows(path, [f"labels/{x}{suffix}" for x in labels], start, stop)
    return np.column_stack([rows[f"labels/{x}{suffix}"] for x in labels]).astype(np.float64)


#: The catalogue's columns that are not labels: (FITS unit, or "" for none; meaning;
#: value where the datum is missing).  docs/catalogue.md is generated from it
#: (``gaiacnn datamodel``).
COLUMN_DOC = {
    "source_id": ("", "Gaia DR3 source_id", "never missing"),
    "in_training": ("", "T if the star is in the training sample", "never missing"),
    "ra": ("deg", "right ascension, ICRS, epoch J2016.0 (Gaia)", "NaN"),
    "dec": ("deg", "declination, ICRS, epoch J2016.0 (Gaia)", "NaN"),
    "phot_g_mean_mag": ("mag", "Gaia G mean magnitude", "NaN"),
    "phot_bp_mean_mag": ("mag", "Gaia G_BP mean magnitude", "NaN"),
    "phot_rp_mean_mag": ("mag", "Gaia G_RP mean magnitude", "NaN"),
    "parallax": ("mas", "Gaia parallax (no zero-point correction)", "NaN"),
    "parallax_error": ("mas", "Gaia parallax standard error", "NaN"),
    "rvs_snr": ("", "RVS spectrum S/N (Gaia rvs_spec_sig_to_noise), dimensionless", "NaN"),
    "input_distance": (
        "",
        "distance from the training stars' inputs (BP-RP, M_G, parallax S/N), "
        "dimensionless; > 1 = outside (flag digit 9)",
        "NaN where an input is missing",
    ),
    "parallax_withheld": (
        "",
        "T if the network did not use the parallax (its S/N below the members' threshold)",
        "never missing",
    ),
    "flag_boundary": (
        "",
        "one character per flag digit (FLAGDIGS): 0 inside, 1 outside the training "
        "sample, - not available (Sect. 5.2)",
        "- for a digit whose input the data lack",
    ),
    "recommended": (
        "",
        "T if no flag digit is 1: inside the training sample in every quantity the data "
        "have (the recommended cut)",
        "never missing",
    ),
}


def label_fits_unit(name: str) -> str:
    """The FITS unit of label ``name``: K for Teff; none for dex, which neither FITS nor
    VOUnit knows (the description says [dex])."""
    unit = label_unit(name)
    return "" if unit == "dex" else unit


def column_doc(name: str) -> tuple[str, str, str]:
    """(FITS unit or "", description with the unit in brackets, missing-value convention)
    of catalogue column ``name``: :data:`COLUMN_DOC`, else a label column."""
    if name in COLUMN_DOC:
        return COLUMN_DOC[name]
    if name.startswith("rho_") and "__" in name:
        a, b = name[4:].split("__", 1)
        return (
            "",
            f"correlation of the {a} and {b} errors at the star's S/N, dimensionless (held-out "
            "residuals; not in the paper)",
            "never missing (the median over S/N where S/N is missing)",
        )
    for prefix, what in (
        ("e_input_", "standard deviation of {x} under the star's own input noise (INNOISE: "
         "parallax, XP) drawn through each member, rms over the members (not in the paper)"),
        ("e_", "model-to-model standard deviation of {x} over the members (Sect. 3.4)"),
        ("sigma_", "total uncertainty of {x}: e_{x} (and e_input_{x}) in quadrature with "
         "the calibrated running dispersion (header comments)"),
        ("", "CNN {x}, mean over the ensemble members"),
    ):  # fmt: skip
        if name.startswith(prefix):
            x = name[len(prefix) :]
            return label_fits_unit(x), f"{what.format(x=x)} [{label_unit(x)}]", "never missing"
    raise AssertionError(name)


def _fits_columns(table: pd.DataFrame, widths: Mapping[str, int] | None = None) -> list:
    """The FITS columns of ``table`` (units from :data:`COLUMN_DOC`): int64 K, bool L,
    float E, text A of the longest value's width (or of ``widths[name]``, which a longer
    value is refused against)."""
    columns = []
    for name in table.columns:
        values = table[name].to_numpy()
        unit, _, _ = column_doc(name)
        if values.dtype.kind in "OU":
            values = values.astype(str)
            width = max(1, values.dtype.itemsize // 4)
            if widths is not None:
                if width > widths[name]:
                    raise ValueError(
                        f"column {name}: a value of {width} characters, the catalogue's "
                        f"column holds {widths[name]}"
                    )
                width = widths[name]
            fmt = f"{width}A"
        else:
            fmt = {"i": "K", "b": "L", "f": "E"}[values.dtype.kind]
        columns.append(fits.Column(name=name, format=fmt, unit=unit or None, array=values))
    return columns


def _calibration_form(calibrations: Mapping) -> str:
    """The form of the S/N calibrations (one for all labels; "dispersion" when none)."""
    forms = {c.form for c in calibrations.values() if c is not None}
    if len(forms) > 1:
        raise ValueError(f"S/N calibrations of several forms: {sorted(forms)}")
    return forms.pop() if forms else "dispersion"


def sigma_formula(
    calibrated: bool, form: str = "dispersion", withheld: bool = False, noise: bool = False
) -> list[str]:
    """The formula of ``sigma_<label>`` as applied (:meth:`gaiacnn.ensemble.SnrCalibration.
    apply`), in lines of at most 72 characters (FITS COMMENT cards, the data model);
    ``noise``: the catalogue has the e_input_<label> columns."""
    lines = _sigma_formula(calibrated, form, withheld)
    if noise:
        lines += [
            "e_<label>**2 there stands for e_<label>**2 + e_input_<label>**2: the",
            "members' spread and the spread under the star's own input noise",
            "(INNOISE: parallax, XP coefficients drawn from their errors).",
        ]
    return lines


def _sigma_formula(calibrated: bool, form: str, withheld: bool) -> list[str]:
    """:func:`sigma_formula` without the input noise."""
    lines = [
        "sigma_<label> = sqrt(e_<label>**2 + (k * D)**2): D = D(<label>), the",
        "polynomial fit of the running dispersion of CNN - reference over the",
        "training sample (Sect. 3.4), at the CNN label; k = 1 (the paper),",
    ]
    if not calibrated:
        return [
            "sigma_<label> = sqrt(e_<label>**2 + D**2): D = D(<label>), the",
            "polynomial fit of the running dispersion of CNN - reference over the",
            "training sample (Sect. 3.4), at the CNN label (the paper).",
        ]
    if form == "total":  # uncertainty models before 2026-12
        return [
            "sigma_<label> = k * sqrt(e_<label>**2 + D**2) for the SNRCALIB labels: D",
            "the running-dispersion fit (Sect. 3.4) at the CNN label, k = k(S/N) *",
            "k_in(input_distance) (uncertainty_model.json, snr_calibration).",
        ]
    lines += [
        "except for the SNRCALIB labels: k = k(S/N) * k_in(input_distance),",
        "k(S/N) interpolated linearly in log S/N between the bin centres (snr,",
        "factor), constant beyond them and the largest factor where S/N is not",
        "finite; k_in the factor of the first bin whose input_upper >= the",
        "distance (the last where beyond, or not finite): snr_calibration in",
        "uncertainty_model.json (not in the paper). k scales D only, so",
        "sigma_ >= e_ for every star.",
    ]
    if withheld:
        lines += [
            "Where parallax_withheld is T: sqrt(e_**2 + (k(S/N) * D)**2 + W**2),",
            "W = withheld_floor, fitted on training stars predicted without parallax.",
        ]
    return lines


#: Header keywords of the input files' SHA-256: keyword -> (input name, what it is).
PROVENANCE_INPUTS = {
    "SHATRAIN": ("training", "training arrays file"),
    "SHAOBSRV": ("observed", "observed arrays file"),
}


def _fill_header(hdr: fits.Header, names: Sequence[str], attrs: Mapping, first_flags) -> None:
    """The catalogue's header cards (provenance, members, the meaning of every column and
    flag digit) on ``hdr``; ``first_flags``: flags of the first rows (every row has the
    same ``-`` digits: :func:`gaiacnn.flags.validate_flags`)."""
    hdr["ORIGIN"] = ("gaiacnn", "Gaia-RVS hybrid-CNN workflow")
    hdr["REFERENC"] = ("Guiglion et al. 2024, A&A 682, A9", "method")
    hdr["CONFHASH"] = (attrs.get("config_hash", ""), "hash of the workflow config")
    hdr["GCNNVER"] = (attrs.get("gaiacnn_version", ""), "gaiacnn version that made it")
    hdr["COMMIT"] = (attrs.get("commit", ""), "its git commit")
    hdr["DATE"] = (attrs.get("date", ""), "UTC date of the aggregation")
    for key, (name, _) in PROVENANCE_INPUTS.items():
        hdr[key] = attrs.get("inputs_sha256", {}).get(name, "")  # 64 characters: no comment
    hdr.add_comment(
        "Provenance: "
        + ", ".join(f"{k} = SHA-256 of the {w}" for k, (_, w) in PROVENANCE_INPUTS.items())
        + " (empty where the run had none)."
    )
    members = attrs.get("members", [])
    hdr["NMEMBERS"] = (len(members), "ensemble members combined")
    hdr["MEMBERS"] = ",".join(members)
    hdr["LABELS"] = ",".join(attrs.get("labels", []))
    hdr["BRANCHES"] = (",".join(attrs.get("branches", [])), "model inputs (rvs, phot, xp)")
    hdr["XPINPUT"] = (attrs.get("xp_input", ""), "XP branch input: coefficients|sampled")
    if attrs.get("tsne_spectra"):
        hdr["TSNESPEC"] = (attrs["tsne_spectra"], "spectra of the t-SNE maps (digit 8)")
    for i, name in enumerate(names, start=1):
        description = column_doc(name)[1]
        hdr[f"TTYPE{i}"] = (name, description[:47])
        hdr[f"TCOMM{i}"] = description
    calibrated = attrs.get("snr_calibrated", [])
    form = attrs.get("calibration_form", "dispersion")
    hdr["SNRCALIB"] = (",".join(calibrated), "labels whose sigma_ is S/N-calibrated")
    hdr["SIGFORM"] = (form if calibrated else "paper", "how sigma_ is calibrated (below)")
    noise = any(name.startswith("e_input_") for name in names)
    if noise:
        hdr["INNOISE"] = (",".join(attrs.get("input_noise", [])), "input noise in e_input_")
    for line in sigma_formula(bool(calibrated), form, "parallax_withheld" in names, noise):
        hdr.add_comment(line)
    digits = attrs.get("flag_digits")
    if digits:
        hdr["FLAGDIGS"] = ",".join(digits)  # the digits of flag_boundary, in order
        hdr.add_comment("flag_boundary: one character per digit, 0 = inside, 1 = outside,")
        hdr.add_comment("- = not available (the survey lacks that input):")
        available = flags.available(first_flags, len(digits))
        labels, input_digit = flags.split_digits(digits)
        for line in flags.describe(labels, available, attrs.get("tsne_spectra"), input_digit):
            hdr.add_comment(line)
        hdr.add_comment("No digit 1 (all zeros with every input) = recommended for science")
        hdr.add_comment("(Sect. 5.2).")


def _data_bytes(columns: list) -> tuple[bytes, bytes]:
    """(primary HDU, binary table data without padding) as astropy writes them for the
    FITS ``columns``."""
    import io

    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(columns)]).writeto(buf)
    raw = buf.getvalue()
    buf.seek(0)
    with fits.open(buf) as hdul:
        info = hdul.fileinfo(1)
        size = hdul[1].header["NAXIS1"] * hdul[1].header["NAXIS2"]
    return raw[: info["hdrLoc"]], raw[info["datLoc"] : info["datLoc"] + size]


def write(table: pd.DataFrame, fits_path, csv_path=None) -> None:
    """Write the catalogue as a FITS binary table (units, documented header) and, if
    ``csv_path`` is given, as CSV (:func:`write_chunks` with one chunk)."""
    write_chunks([table], len(table), fits_path, csv_path, attrs=table.attrs)


def parquet_schema(table: pd.DataFrame, header: fits.Header):
    """The Arrow schema of the catalogue's columns (those of ``table``), each field's
    metadata its ``unit`` (FITS; "" for none) and ``description`` (with [dex] where FITS
    has no unit); the schema's metadata the FITS ``header`` of the table HDU, as text
    (``gaiacnn.fits_header``: provenance, flag digits, the sigma_* formula)."""
    import pyarrow as pa

    fields = []
    for name in table.columns:
        unit, description, _ = column_doc(name)
        kind = table[name].to_numpy().dtype.kind
        arrow = {"i": pa.int64(), "b": pa.bool_(), "f": pa.float32()}.get(kind, pa.string())
        fields.append(pa.field(name, arrow, metadata={"unit": unit, "description": description}))
    meta = {
        "gaiacnn.fits_header": header.tostring(sep="\n"),
        "gaiacnn.data_model": "docs/catalogue.md",
    }
    return pa.schema(fields, metadata=meta)


def write_chunks(
    chunks: Iterable[pd.DataFrame],
    n_rows: int,
    fits_path,
    csv_path=None,
    *,
    attrs: Mapping | None = None,
    parquet_path=None,
) -> None:
    """Write the catalogue given as ``chunks`` of rows (``n_rows`` in all, the first chunk
    naming every column) as a FITS binary table and, if ``csv_path`` or ``parquet_path``
    is given, as CSV and as Parquet (one row group per chunk, units and descriptions in
    the schema's metadata: :func:`parquet_schema`), one chunk at a time (memory
    independent of ``n_rows``).  ``attrs`` (the header's provenance; default: the first
    chunk's ``attrs``).  Byte for byte what astropy writes for the whole table; the files
    appear together, atomically, or not at all (a chunk that breaks the first one's
    columns, or a count that is not ``n_rows``, is refused)."""
    it = iter(chunks)
    try:
        first = next(it)
    except StopIteration:
        raise ValueError("no chunk of the catalogue to write") from None
    attrs = dict(first.attrs if attrs is None else attrs)
    names = list(first.columns)
    columns = _fits_columns(first)
    widths = {c.name: int(c.format[:-1]) for c in columns if c.format.endswith("A")}
    hdu = fits.BinTableHDU.from_columns(columns, name="CATALOGUE")
    first_flags = list(first["flag_boundary"][:1]) if "flag_boundary" in first else []
    _fill_header(hdu.header, names, attrs, first_flags)
    header = hdu.header.copy()
    header["NAXIS2"] = int(n_rows)
    extra = {k: v for k, v in (("csv", csv_path), ("parquet", parquet_path)) if v is not None}
    with atomic_outputs(fits_path, *extra.values()) as tmps:  # all written, then renamed
        tmp = dict(zip(extra, tmps[1:], strict=True))
        tmp_csv = open(tmp["csv"], "w", newline="", encoding="utf-8") if csv_path else None
        parquet = None
        if parquet_path is not None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema = parquet_schema(first, header)
            parquet = pq.ParquetWriter(tmp["parquet"], schema, compression="zstd")
        try:
            with open(tmps[0], "wb") as out:
                written = size = 0
                for k, chunk in enumerate(itertools.chain([first], it)):
                    if list(chunk.columns) != names:
                        raise ValueError(
                            f"chunk {k} of the catalogue has columns {list(chunk.columns)}, "
                            f"the first {names}"
                        )
                    primary, data = _data_bytes(_fits_columns(chunk, widths))
                    if k == 0:
                        out.write(primary)
                        out.write(header.tostring().encode("ascii"))
                    out.write(data)
                    size += len(data)
                    written += len(chunk)
                    if tmp_csv is not None:
                        chunk.to_csv(tmp_csv, index=False, header=k == 0, float_format="%.6g")
                    if parquet is not None:  # one row group per chunk
                        parquet.write_table(
                            pa.Table.from_pandas(chunk, schema=schema, preserve_index=False)
                        )
                if written != n_rows:
                    raise ValueError(f"{written} rows written, the header says {n_rows}")
                out.write(b"\0" * (-size % 2880))
        finally:
            if tmp_csv is not None:
                tmp_csv.close()
            if parquet is not None:
                parquet.close()


def read(fits_path) -> tuple[pd.DataFrame, dict]:
    """A catalogue written by :func:`write`: (table, attrs from its header)."""
    return read_fits_columns(fits_path), read_attrs(fits_path)


def read_attrs(fits_path) -> dict:
    """The attributes of a catalogue written by :func:`write`, from its header alone."""
    hdr = fits.getheader(fits_path, 1)
    return {
        "config_hash": hdr.get("CONFHASH", ""),
        "members": [m for m in hdr.get("MEMBERS", "").split(",") if m],
        "labels": [x for x in hdr.get("LABELS", "").split(",") if x],
        "snr_calibrated": [x for x in hdr.get("SNRCALIB", "").split(",") if x],
        # "paper" (no calibration) reads as the default form
        "calibration_form": {"paper": "dispersion"}.get(hdr.get("SIGFORM"), hdr.get("SIGFORM"))
        or "total",
        "branches": [x for x in hdr.get("BRANCHES", "").split(",") if x],
        "xp_input": hdr.get("XPINPUT", ""),
        "tsne_spectra": hdr.get("TSNESPEC", ""),
        "input_noise": [x for x in hdr.get("INNOISE", "").split(",") if x],
        "flag_digits": [x for x in hdr.get("FLAGDIGS", "").split(",") if x],
        "gaiacnn_version": hdr.get("GCNNVER", ""),
        "commit": hdr.get("COMMIT", ""),
        "date": hdr.get("DATE", ""),
        "inputs_sha256": {
            name: hdr[key] for key, (name, _) in PROVENANCE_INPUTS.items() if hdr.get(key)
        },
    }
