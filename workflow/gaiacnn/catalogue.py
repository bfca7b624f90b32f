"""The catalogue (paper Table 2): ensemble labels, ``e_*``, ``sigma_*``, as FITS with units and CSV.

One row per star of the training and observed samples.  The columns, their units and
meaning are :data:`COLUMN_DOC` (the star's inputs, ``input_distance``, ``flag_boundary``)
and, for each label, ``<label>`` (the ensemble mean), ``e_<label>`` (the model-to-model
standard deviation) and ``sigma_<label>`` (``e_`` in quadrature with the running-dispersion
fit, then, if configured, times the S/N and input-distance calibration factor), in K for
``teff`` and dex otherwise; ``ra``/``dec`` only when an arrays file carries them.  The FITS
header records the configuration hash, the members used, the flag digits and the meaning
of every column.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence

import h5py
import numpy as np
import pandas as pd
from astropy.io import fits

from gaiacnn import ensemble, flags, layout, spectra
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
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(source_id, mean, std, out-of-sample mean) over the member files of one sample
    (their prediction ``group``: :func:`gaiacnn.ensemble.iter_member_chunks`).

    ``held_out`` (n_members, n) marks the stars each member did not train on; the
    out-of-sample mean averages only those members (NaN where none held the star out).
    """
    sids, means, stds, oofs = [], [], [], []
    start = 0
    for sid, preds in ensemble.iter_member_chunks(paths, labels, chunk_rows, group):
        mean, std = ensemble.combine(preds)
        sids.append(sid)
        means.append(mean)
        stds.append(std)
        if held_out is not None:
            w = held_out[:, start : start + len(sid), None].astype(float)
            with np.errstate(invalid="ignore", divide="ignore"):
                oofs.append((preds * w).sum(axis=0) / w.sum(axis=0))
        start += len(sid)
    oof = np.concatenate(oofs) if held_out is not None else None
    return np.concatenate(sids), np.concatenate(means), np.concatenate(stds), oof


def build(
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
) -> tuple[pd.DataFrame, list[ensemble.DispersionFit], dict, dict]:
    """Combine the members of both samples into the catalogue table.

    ``predictions[sample]`` lists the member prediction files of ``arrays[sample]``
    (``sample`` in training, observed), in the order of ``members`` (names
    ``split<N>_seed<M>``).  The running dispersion is fitted on the training sample against
    its reference labels (``labels/<name>`` of the training file), Sect. 3.4.

    With ``calibration_bins`` > 0, ``sigma_<label>`` is then multiplied by an S/N-dependent
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
    Returns (catalogue, dispersion fits, training range, S/N calibrations by label).
    """
    labels = list(labels)
    members = list(members)
    tr_path = arrays["training"]
    if len(members) != len(predictions["training"]):
        raise ensemble.EnsembleError(
            f"{len(members)} member names for {len(predictions['training'])} prediction files"
        )
    ref = np.column_stack([layout.read_column(tr_path, f"labels/{x}") for x in labels])
    n_tr = len(ref)
    held_out = (
        ensemble.validation_masks(members, n_tr, validation_fraction, base_seed)
        if calibration_bins > 0
        else None
    )
    parts = {}
    for sample in ("training", "observed"):
        sid, mean, std, oof = _combine_sample(
            predictions[sample], labels, chunk_rows, held_out if sample == "training" else None
        )
        arr_ids = layout.read_column(arrays[sample], "source_id")
        if not np.array_equal(sid, arr_ids):
            raise ensemble.EnsembleError(
                f"predictions of {sample} do not follow the stars of {arrays[sample]}"
            )
        parts[sample] = (sid, mean, std, oof)

    tr_mean = parts["training"][1]
    fits_ = [
        ensemble.running_dispersion(ref[:, j], tr_mean[:, j], x, n_bins=n_bins, degree=degree)
        for j, x in enumerate(labels)
    ]
    range_values = {x: ref[:, j] for j, x in enumerate(labels)}
    range_values["phot_g_mean_mag"] = _optional(tr_path, "phot/g", n_tr)
    range_values["parallax"] = _optional(tr_path, PARALLAX_DATASET, n_tr)
    range_values = {k: v for k, v in range_values.items() if np.isfinite(v).any()}
    training_range = ensemble.effective_range(range_values, range_quantiles)

    snr = {s: _optional(arrays[s], RVS_SNR_DATASET, len(parts[s][0])) for s in parts}
    inputs = {
        s: {
            c: _optional(arrays[s], name, len(parts[s][0]))
            for c, name in zip(flags.INPUT_SPACE_COLUMNS, INPUT_SPACE_DATASETS, strict=True)
        }
        for s in parts
    }
    distance = {s: np.full(len(parts[s][0]), np.nan) for s in parts}
    if all(np.isfinite(v).any() for v in inputs["training"].values()):
        feats = np.vstack([flags.input_space_features(inputs[s]) for s in parts])
        is_tr = np.r_[np.ones(n_tr, bool), np.zeros(len(parts["observed"][0]), bool)]
        dist = flags.input_space_distance(
            feats, is_tr, neighbours=input_neighbours, quantile=input_quantile
        )
        distance = {"training": dist[:n_tr], "observed": dist[n_tr:]}
    # the members' inputs, as their predictions record them; stars whose parallax the
    # members withheld (phot_input intrinsic_withheld) get an uncertainty of their own
    # (fitted on the training sample predicted without its parallaxes) and a catalogue
    # column
    with h5py.File(predictions["training"][0], "r") as h5:
        branches = json.loads(h5.attrs.get("branches", "[]"))
        xp_input = str(h5.attrs.get("xp_input", ""))
        withheld_snr = h5.attrs.get("parallax_withheld_snr")
        withheld_predictions = bool(h5.attrs.get("withheld_predictions", False))
    withheld = {s: np.zeros(len(parts[s][0]), bool) for s in parts}
    if withheld_snr is not None:
        withheld = {
            s: spectra.parallax_withheld(
                {
                    PARALLAX_DATASET: inputs[s]["parallax"],
                    PARALLAX_ERROR_DATASET: inputs[s]["parallax_error"],
                },
                float(withheld_snr),
            )
            for s in parts
        }
        log.info(
            "parallax withheld (S/N < %g) for %d training and %d observed stars",
            float(withheld_snr),
            int(withheld["training"].sum()),
            int(withheld["observed"].sum()),
        )

    def paper_sigma(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        # (n, n_labels) sqrt(e² + D(label)²), Sect. 3.4
        return np.column_stack(
            [ensemble.total_uncertainty(std[:, j], fit, mean[:, j]) for j, fit in enumerate(fits_)]
        )

    sigma = {s: paper_sigma(mean, std) for s, (_, mean, std, _) in parts.items()}
    calibrations: dict[str, ensemble.SnrCalibration | None] = {}
    if calibration_bins > 0 and not any(np.isfinite(v).any() for v in snr.values()):
        # a survey without RVS spectra (no rvs/snr): nothing to bin in
        log.warning(
            "no rvs/snr in the arrays: sigma_* is not S/N-calibrated (uncertainty."
            "snr_calibration_bins), it is the paper's recipe alone"
        )
        calibrations = dict.fromkeys(labels)
    elif calibration_bins > 0:
        obs_ref = _reference(arrays["observed"], labels, len(parts["observed"][0]))
        inside = np.ones(len(obs_ref), bool)
        for j, x in enumerate(labels):
            lo, hi = training_range[x]
            inside &= (obs_ref[:, j] >= lo) & (obs_ref[:, j] <= hi)
        resid = {
            "training": parts["training"][3] - ref,
            "observed": np.where(inside[:, None], parts["observed"][1] - obs_ref, np.nan),
        }
        ref_err = {
            s: _reference(arrays[s], labels, len(parts[s][0]), "_err")
            if subtract_reference_errors
            else np.zeros_like(resid[s])
            for s in parts
        }
        # calibration stars: the training stars (held out), the observed stars with a
        # reference label, and, where the members withhold parallaxes and predicted the
        # training sample with every parallax withheld too, the training stars once more
        # in that regime (those whose parallax is used: the others are in it already)
        cal_parts = ["training", "observed"]
        cal_withheld = {s: withheld[s] for s in cal_parts}
        cal_distance = {s: distance[s] for s in cal_parts}
        cal_snr, cal_sigma = dict(snr), dict(sigma)
        if withheld_snr is not None and withheld_predictions:
            _, w_mean, w_std, w_oof = _combine_sample(
                predictions["training"], labels, chunk_rows, held_out, ensemble.WITHHELD_GROUP
            )
            keep = ~withheld["training"] & np.isfinite(w_oof).all(axis=1)
            resid["withheld"] = np.where(keep[:, None], w_oof - ref, np.nan)
            cal_sigma["withheld"] = paper_sigma(w_mean, w_std)
            ref_err["withheld"] = ref_err["training"]
            cal_snr["withheld"] = snr["training"]
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
            )
            cal = calibrations[x]
            if cal is None:
                log.warning("%s: too few out-of-sample stars for the S/N calibration", x)
                continue
            for s in parts:
                sigma[s][:, j] *= cal(snr[s], distance[s], withheld[s], sigma[s][:, j])

    # Sky positions (Fig. 24) when either arrays file has them; NaN in one without.
    positions = any(_has_positions(arrays[s]) for s in parts)
    frames = []
    for sample, (sid, mean, std, _) in parts.items():
        n = len(sid)
        cols: dict[str, np.ndarray] = {
            "source_id": sid.astype(np.int64),
            "in_training": np.full(n, sample == "training"),
        }
        if positions:
            cols["ra"] = _optional(arrays[sample], "astrometry/ra", n)
            cols["dec"] = _optional(arrays[sample], "astrometry/dec", n)
        cols |= {
            **inputs[sample],  # G, BP, RP, parallax, parallax_error
            "rvs_snr": snr[sample],
            "input_distance": distance[sample].astype(np.float32),
        }
        if withheld_snr is not None:
            cols["parallax_withheld"] = withheld[sample]
        for j, x in enumerate(labels):
            cols[x] = mean[:, j].astype(np.float32)
            cols[f"e_{x}"] = std[:, j].astype(np.float32)
            cols[f"sigma_{x}"] = sigma[sample][:, j].astype(np.float32)
        frames.append(pd.DataFrame(cols))
    table = pd.concat(frames, ignore_index=True)
    table.attrs.update(
        config_hash=config_hash,
        members=members,
        labels=labels,
        snr_calibrated=[x for x, c in calibrations.items() if c is not None],
        branches=branches,
        xp_input=xp_input,
    )
    return table, fits_, training_range, calibrations


COLUMN_DOC = {
    "source_id": ("", "Gaia DR3 source_id"),
    "in_training": ("", "T if the star is in the training sample"),
    "ra": ("deg", "right ascension, ICRS, epoch J2016.0 (Gaia)"),
    "dec": ("deg", "declination, ICRS, epoch J2016.0 (Gaia)"),
    "phot_g_mean_mag": ("mag", "Gaia G mean magnitude"),
    "phot_bp_mean_mag": ("mag", "Gaia G_BP mean magnitude"),
    "phot_rp_mean_mag": ("mag", "Gaia G_RP mean magnitude"),
    "parallax": ("mas", "Gaia parallax (no zero-point correction)"),
    "parallax_error": ("mas", "Gaia parallax standard error"),
    "rvs_snr": ("", "rvs_spec_sig_to_noise"),
    "input_distance": ("", "distance from the training inputs (BP-RP, M_G, plx S/N); >1 out"),
    "parallax_withheld": ("", "T if the network did not use the parallax (S/N too low)"),
    "flag_boundary": ("", "9 digits 0/1/-: outside the training sample (Sect. 5.2 + inputs)"),
}


def _column_doc(name: str) -> tuple[str, str]:
    if name in COLUMN_DOC:
        return COLUMN_DOC[name]
    if name.startswith("e_"):
        return label_unit(name[2:]), f"model-to-model std of {name[2:]} (Sect. 3.4)"
    if name.startswith("sigma_"):
        return label_unit(name[6:]), f"total uncertainty of {name[6:]}: e_ (+) dispersion fit"
    return label_unit(name), f"CNN {name}, mean over the ensemble members"


def write(table: pd.DataFrame, fits_path, csv_path=None) -> None:
    """Write the catalogue as a FITS binary table (units, documented header) and, if
    ``csv_path`` is given, as CSV."""
    columns = []
    for name in table.columns:
        values = table[name].to_numpy()
        unit, _ = _column_doc(name)
        if values.dtype.kind in "OU":
            values = values.astype(str)
            fmt = f"{max(1, values.dtype.itemsize // 4)}A"
        else:
            fmt = {"i": "K", "b": "L", "f": "E"}[values.dtype.kind]
        columns.append(fits.Column(name=name, format=fmt, unit=unit or None, array=values))
    hdu = fits.BinTableHDU.from_columns(columns, name="CATALOGUE")
    hdr = hdu.header
    hdr["ORIGIN"] = ("gaiacnn", "Gaia-RVS hybrid-CNN workflow")
    hdr["REFERENC"] = ("Guiglion et al. 2024, A&A 682, A9", "method")
    hdr["CONFHASH"] = (table.attrs.get("config_hash", ""), "hash of the workflow config")
    members = table.attrs.get("members", [])
    hdr["NMEMBERS"] = (len(members), "ensemble members combined")
    hdr["MEMBERS"] = ",".join(members)
    hdr["LABELS"] = ",".join(table.attrs.get("labels", []))
    hdr["BRANCHES"] = (",".join(table.attrs.get("branches", [])), "model inputs (rvs, phot, xp)")
    hdr["XPINPUT"] = (table.attrs.get("xp_input", ""), "XP branch input: coefficients|sampled")
    if table.attrs.get("tsne_spectra"):
        hdr["TSNESPEC"] = (table.attrs["tsne_spectra"], "spectra of the t-SNE maps (digit 8)")
    for i, name in enumerate(table.columns, start=1):
        hdr[f"TTYPE{i}"] = (name, _column_doc(name)[1][:47])
    hdr.add_comment("sigma_<label> = sqrt(e_<label>**2 + D(label)**2), D = polynomial fit of")
    hdr.add_comment("the running dispersion of CNN - reference over the training sample.")
    calibrated = table.attrs.get("snr_calibrated", [])
    hdr["SNRCALIB"] = (",".join(calibrated), "labels whose sigma_ is S/N-calibrated")
    if calibrated:
        hdr.add_comment("For the SNRCALIB labels sigma_ is then multiplied by k(S/N), fitted so")
        hdr.add_comment("that +-1 sigma covers 68% of out-of-sample residuals (not in the paper;")
        hdr.add_comment("factors in results/ensemble/uncertainty_model.json).")
        if "parallax_withheld" in table.columns:
            hdr.add_comment("Where parallax_withheld is T: sqrt((k(S/N) sigma_)**2 + W**2), W")
            hdr.add_comment("fitted on held-out training stars predicted without their parallax.")
    digits = table.attrs.get("flag_digits")
    if digits:
        hdr["FLAGDIGS"] = ",".join(digits)  # the digits of flag_boundary, in order
        hdr.add_comment("flag_boundary: one character per digit, 0 = inside, 1 = outside,")
        hdr.add_comment("- = not available (the survey lacks that input):")
        available = flags.available(list(table["flag_boundary"]), len(digits))
        labels, input_digit = flags.split_digits(digits)
        for line in flags.describe(labels, available, table.attrs.get("tsne_spectra"), input_digit):
            hdr.add_comment(line)
        hdr.add_comment("No digit 1 (all zeros with every input) = recommended for science")
        hdr.add_comment("(Sect. 5.2).")
    targets = [fits_path] if csv_path is None else [fits_path, csv_path]
    with atomic_outputs(*targets) as tmps:  # both written, then both renamed
        hdu.writeto(tmps[0])
        if csv_path is not None:
            table.to_csv(tmps[1], index=False, float_format="%.6g")


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
        "branches": [x for x in hdr.get("BRANCHES", "").split(",") if x],
        "xp_input": hdr.get("XPINPUT", ""),
        "tsne_spectra": hdr.get("TSNESPEC", ""),
        "flag_digits": [x for x in hdr.get("FLAGDIGS", "").split(",") if x],
    }
