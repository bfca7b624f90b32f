"""One entry point per workflow rule: paths and config in, files out.

The Snakemake scripts in ``workflow/scripts/`` only unpack ``snakemake.input``,
``output`` and ``params`` and call these; the tests call them directly.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from gaiacnn import __version__, arrays, constants, layout, selection
from gaiacnn.constants import label_unit
from gaiacnn.io import write_text_atomic
from gaiacnn.selection import APOGEE_BASE_COLUMNS, REQUIRED_GAIA_COLUMNS
from gaiacnn.spectra import fill_nan_pixels
from gaiacnn.tables import fits_column_names, read_fits_columns

log = logging.getLogger("gaiacnn")


#: The project's own errors, ``(module, class)``: their messages name the file and the
#: problem, so a rule that stops on one logs that one line and no traceback.  Looked up in
#: ``sys.modules`` when raised (an error's module is imported by then), so that setting up
#: the log imports nothing.
_USER_ERRORS: tuple[tuple[str, str], ...] = (
    ("gaiacnn.layout", "LayoutError"),
    ("gaiacnn.shards", "ShardError"),
    ("gaiacnn.tsne", "TsneError"),
    ("gaiacnn.ensemble", "EnsembleError"),
    ("gaiacnn.config", "ConfigError"),
    ("gaiacnn.archive", "ArchiveError"),
    ("gaiacnn.io", "OutputWriteError"),  # atomic_output: disk full, quota, file size limit
    ("gaiacnn.model", "MemberError"),
    ("gaiacnn.flags", "FlagError"),
    ("gaiacnn.selection", "SelectionError"),
    ("gaiacnn.tables", "TableError"),
)


def _h5py_retry(exc: BaseException | None, tb) -> bool:
    """An h5py object that, being freed, tries again to close a file that the disk had no
    room for: h5py prints each such error (through both hooks), though it was reported
    once already (:class:`gaiacnn.io.OutputWriteError`)."""
    from gaiacnn.io import out_of_room

    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return (
        tb is not None
        and tb.tb_frame.f_code.co_name.endswith("__dealloc__")  # a Cython frame
        and out_of_room(exc) is not None
    )


def _log_user_error(exc_type, exc, tb) -> None:
    """``sys.excepthook``: for :data:`_USER_ERRORS` one ``ERROR <message>`` line and exit
    status 1, at once: the interpreter's clean-up is skipped, since h5py would retry there
    the writes of a file that the disk had no room for (a traceback per object, then a
    crash).  Anything else: the usual traceback."""
    import sys

    if _h5py_retry(exc, tb):
        return
    known = tuple(
        getattr(sys.modules[module], name)
        for module, name in _USER_ERRORS
        if module in sys.modules and hasattr(sys.modules[module], name)
    )
    if not isinstance(exc, known):
        sys.__excepthook__(exc_type, exc, tb)
        return
    log.error("%s", " ".join(str(exc).split()))
    logging.shutdown()  # flushes the handlers
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(1)


def _drop_h5py_retry(unraisable) -> None:
    """``sys.unraisablehook``: as the default one, but without :func:`_h5py_retry`."""
    import sys

    if not _h5py_retry(unraisable.exc_value, unraisable.exc_traceback):
        sys.__unraisablehook__(unraisable)


def setup_logging() -> None:
    """Log INFO lines to stderr (redirected to the rule's log file by the scripts); an
    uncaught error of the project's own (:data:`_USER_ERRORS`) ends the log with one
    ``ERROR <message>`` line instead of a traceback (and h5py's repeats of a failed write
    are not printed)."""
    import sys

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True
    )
    sys.excepthook = _log_user_error
    sys.unraisablehook = _drop_h5py_retry


def run_demo_survey(demo_cfg: Mapping, gaia_out, apogee_out, raw_out, truth_out) -> None:
    """Rule ``demo_survey``."""
    from gaiacnn.demo import survey

    counts = survey.generate(demo_cfg, gaia_out, apogee_out, raw_out, truth_out)
    log.info("demo survey: %(n_stars)d RVS stars, %(n_apogee_rows)d allStar rows", counts)


def run_gaia_query(gaia_cfg: Mapping, out_path) -> None:
    """Rule ``gaia_query`` (data.source: gaia_dr3): the selection table of every RVS star
    from the Gaia archive (an asynchronous ADQL job), as FITS."""
    from gaiacnn import archive
    from gaiacnn.selection import GAIA_COLUMNS

    adql = archive.selection_query(gaia_cfg, GAIA_COLUMNS)
    log.info("ADQL on %s:\n%s", gaia_cfg["tap_server"], adql)
    archive.run_selection_query(archive.gaia_client(gaia_cfg), adql, out_path, cfg=gaia_cfg)


def run_apogee_download(apogee_cfg: Mapping, out_path) -> None:
    """Rule ``apogee_download`` (data.source: gaia_dr3): the APOGEE DR17 allStar file,
    resumed where an earlier attempt stopped and checked against its SHA-1."""
    from gaiacnn import archive

    size = archive.download_file(
        apogee_cfg["url"],
        out_path,
        sha1=apogee_cfg["sha1"],
        retries=int(apogee_cfg["retries"]),
        backoff_s=float(apogee_cfg["backoff_s"]),
        timeout_s=float(apogee_cfg["timeout_s"]),
    )
    log.info("%s: %.1f MB%s", out_path, size / 1e6, ", SHA-1 verified" * bool(apogee_cfg["sha1"]))


def run_gaia_spectra(sample_paths: Sequence, gaia_cfg: Mapping, out_path, provenance) -> None:
    """Rule ``gaia_spectra`` (data.source: gaia_dr3): the RVS spectra and XP coefficients of
    every star of the samples through DataLink, batch by batch into the cache (resumable),
    then streamed into the raw store that ``build_arrays`` reads."""
    from gaiacnn import archive

    ids = np.unique(
        np.concatenate(
            [pd.read_csv(p, sep="\t", usecols=["source_id"])["source_id"] for p in sample_paths]
        ).astype(np.int64)
    )
    log.info("DataLink: %d stars in batches of %d", ids.size, int(gaia_cfg["batch_size"]))
    # logs the batches fetched now and those found in the cache
    archive.download_products(archive.gaia_client(gaia_cfg), ids, gaia_cfg["cache_dir"], gaia_cfg)
    counts = archive.write_raw_store(
        ids,
        gaia_cfg["cache_dir"],
        out_path,
        batch_size=int(gaia_cfg["batch_size"]),
        provenance=provenance,
    )
    log.info(
        "raw store: %(rvs)d of %(requested)d stars with an RVS spectrum (%(no_rvs)d without, "
        "left out), %(no_xp)d without XP coefficients",
        counts,
    )


def _log_cut_report(report: pd.DataFrame) -> None:
    """One log line per cut: what it removed and what remains."""
    for row in report.itertuples():
        log.info(
            "%-12s %-22s removed %8d  remaining %8d  (%s)",
            row.stage,
            row.cut,
            row.removed,
            row.remaining,
            row.rule,
        )


def run_selection(
    gaia_path,
    apogee_path,
    training_out,
    observed_out,
    report_out,
    selection_cfg: Mapping,
    label_columns: Mapping[str, str],
) -> selection.Samples:
    """Rule ``select_samples``: crossmatch, cuts, cut report (TSV and log)."""
    gaia = read_fits_columns(gaia_path, REQUIRED_GAIA_COLUMNS)
    ap_cols = list(APOGEE_BASE_COLUMNS)
    for col in label_columns.values():
        ap_cols += [col, f"{col}_ERR"]
    apogee = read_fits_columns(apogee_path, ap_cols)
    samples = selection.select_samples(gaia, apogee, selection_cfg, label_columns)
    report = selection.cut_report(samples, len(gaia))
    _log_cut_report(report)
    selection.write_table_atomic(samples.training, training_out)
    selection.write_table_atomic(samples.observed, observed_out)
    selection.write_table_atomic(report, report_out)
    return samples


def run_build_arrays(
    raw_path,
    gaia_path,
    sample_path,
    out_path,
    *,
    sample_name: str,
    labels: Sequence[str],
    rvs_cfg: Mapping,
    arrays_cfg: Mapping,
    provenance: Mapping,
) -> None:
    """Rule ``build_arrays``: one sample's HDF5 file in the layout.

    Both samples carry ``labels/*``: the training file its reference labels, the observed
    file the APOGEE labels of the stars that have good ones (NaN elsewhere), used only to
    validate and calibrate the uncertainties (Sect. 4.5), never as model inputs.
    ``arrays_cfg`` is ``config["arrays"]`` plus ``datasets``: the dataset groups to write
    (:data:`gaiacnn.arrays.DATASET_GROUPS`; the rule sets ``demo.datasets`` for the demo
    source), absent or None for every group the raw store has (``data.source: gaia_dr3``).
    """
    datasets = arrays_cfg.get("datasets")
    # an optional column (e.g. radial_velocity_error) the table lacks: its dataset is not
    # written (and the figures it feeds say so)
    present = set(fits_column_names(gaia_path))
    gaia_cols = ["source_id"] + [
        c for c in arrays.GAIA_SCALARS if c not in arrays.OPTIONAL_GAIA_SCALARS or c in present
    ]
    gaia = read_fits_columns(gaia_path, gaia_cols)
    sample = pd.read_csv(sample_path, sep="\t")
    with_labels = [x for x in labels if x in sample.columns]
    counts = arrays.build_sample_file(
        raw_path,
        gaia,
        sample,
        out_path,
        sample_name=sample_name,
        labels=with_labels,
        continuum_windows_nm=rvs_cfg["continuum_windows_nm"],
        nan_fill_quantile=rvs_cfg["nan_fill_quantile"],
        datasets=datasets,
        chunk_rows=arrays_cfg["chunk_rows"],
        compression=arrays_cfg["compression"],
        provenance={**provenance, "sample": sample_name, "package_version": __version__},
    )
    log.info(
        "%s: %d stars, dataset groups %s",
        out_path,
        counts["n_stars"],
        ", ".join(datasets) if datasets is not None else "all in the raw store",
    )
    if datasets is None or "rvs" in datasets:
        log.info(
            "%s: %d NaN pixels in %d spectra replaced by the continuum Q3",
            out_path,
            counts["nan_filled_pixels"],
            counts["nan_filled_spectra"],
        )


def run_import_arrays(
    user_path,
    out_path,
    report_out=None,
    *,
    sample_name: str,
    labels: Sequence[str],
    rvs_cfg: Mapping,
    arrays_cfg: Mapping,
    provenance: Mapping,
    training_cuts: Mapping | None = None,
    cuts: str = "apply",
) -> pd.DataFrame:
    """Rule ``import_arrays`` (``data.source: files``): validate a user file, apply the
    paper's per-star cuts that its datasets allow (``cuts="apply"``: counted in the cut
    report ``report_out``; "refuse": a failing row refuses the file), fill NaN pixels
    (Sect. 2.1), copy.  ``labels`` empty: every label of the file.  Returns the cut report."""
    info = layout.validate(
        user_path,
        require_labels=(list(labels) or True) if sample_name == "training" else False,
        check_values=False,
    )
    if not info.branches:
        raise layout.LayoutError(
            user_path,
            None,
            "no model input: needs rvs/flux, phot/*, xp/*_coefficients or xp/sampled_flux",
        )
    layout.check_unique_ids(user_path, layout.read_column(user_path, "source_id"))
    # one pass for the cuts (the same function gaiacnn validate counts with), one to copy
    with h5py.File(user_path, "r") as h5:
        keep, counts = layout.scan_rows(
            user_path,
            h5,
            info,
            sample_name,
            training_cuts if sample_name == "training" else None,
            cuts,
            int(arrays_cfg["chunk_rows"]),
        )
    report = selection.file_cut_report(sample_name, info.n_rows, counts)
    n_keep = int(keep.sum())
    _log_cut_report(report)
    if n_keep == 0:
        raise layout.LayoutError(user_path, None, "no row passes the per-star cuts (log above)")
    wanted = list(labels) or list(info.labels)
    log.info(
        "%s: %d rows, %d kept; branches %s (XP: %s), labels %s",
        user_path,
        info.n_rows,
        n_keep,
        ", ".join(info.branches) or "none",
        ", ".join(info.xp_inputs) or "none",
        ", ".join(wanted) or "none",
    )
    columns = {}
    with h5py.File(user_path, "r") as h5:
        names = [n for n in layout.KNOWN_DATASETS if n in h5]
        # Reference labels are kept in both samples (the observed ones validate only).
        names += [f"labels/{x}{e}" for x in wanted for e in ("", "_err") if f"labels/{x}{e}" in h5]
        for name in names:
            ds = h5[name]
            if name.startswith("labels/"):
                attrs = {"unit": label_unit(name.removeprefix("labels/"))}
            else:  # the grids (and flux kind) of the spectra, as the arrays stage copies them
                attrs = {k: ds.attrs[k] for k in arrays.RAW_ATTRS.get(name, ())}
            dtype = np.int64 if name == "source_id" else np.float32
            columns[name] = (ds.shape[1:], dtype, attrs)
    attrs = {
        "sample": sample_name,
        "n_stars": n_keep,
        "provenance": layout.provenance_attr(
            **provenance, imported_from=str(user_path), original=info.attrs.get("provenance", "")
        ),
    }
    wl = layout.wavelength_nm(user_path) if info.n_pixels else None
    with layout.ArraysWriter(
        out_path, n_keep, columns, attrs=attrs, compression=arrays_cfg["compression"]
    ) as writer:
        for start, block in layout.iter_rows(user_path, names, arrays_cfg["chunk_rows"]):
            rows = keep[start : start + len(block["source_id"])]
            block = {k: v[rows] for k, v in block.items()}
            if not rows.any():
                continue
            if "rvs/flux" in block:
                block["rvs/flux"], _ = fill_nan_pixels(
                    block["rvs/flux"],
                    wl,
                    rvs_cfg["continuum_windows_nm"],
                    rvs_cfg["nan_fill_quantile"],
                )
            # After the cuts and the NaN filling every model input must be finite: checked
            # before the rows are written, so a bad file leaves no output.
            layout.check_block(user_path, block, block["source_id"], start, finite=True)
            writer.append(block)
    if report_out is not None:
        selection.write_table_atomic(report, report_out)
    return report


def run_file_cut_report(reports: Sequence, out_path) -> None:
    """Rule ``file_cut_report`` (``data.source: files``): the imports' cut reports as one."""
    table = pd.concat([pd.read_csv(p, sep="\t") for p in reports], ignore_index=True)
    selection.write_table_atomic(table, out_path)


def summarize(
    paths: Mapping[str, str | os.PathLike],
    out_path=None,
    *,
    branches: Sequence[str] = (),
    xp_input: str = "auto",
    labels: Sequence[str] = (),
    tsne_choice: str = "auto",
    phot_input: str = "magnitudes",
) -> str:
    """Plain-text summary: N, branches and labels per sample, then every dataset of each
    file: used (by which branch or stage) or ignored and why (:func:`layout.dataset_usage`).
    ``branches``, ``xp_input``, ``labels`` and ``tsne_choice`` as configured (``model.*``,
    ``tsne.spectra``)."""
    from gaiacnn import tsne

    infos = {name: layout.validate(path, check_values=False) for name, path in paths.items()}
    lines = [f"{'sample':<10} {'N':>10}  branches         labels"]
    for name, info in infos.items():
        lines.append(
            f"{name:<10} {info.n_rows:>10}  {','.join(info.branches):<16} "
            f"{','.join(info.labels) or '-'}"
        )
    try:
        spectra = tsne.choose_spectra(list(infos.values()), tsne_choice)
    except tsne.TsneError as err:
        spectra = None
        lines.append(f"t-SNE: {err}")
    else:
        lines.append(f"t-SNE maps of: {spectra}")
    for name, path in paths.items():
        info = infos[name]
        lines.append("")
        lines.append(f"{name} ({path}): datasets")
        for dataset, use in layout.dataset_usage(
            path,
            sample=name,
            branches=branches,
            xp_input=xp_input,
            labels=labels,
            tsne_spectra=spectra,
            phot_input=phot_input,
        ):
            lines.append(f"  {dataset:<28} {use}")
        n_nan = {
            x: int(np.isnan(layout.read_column(path, f"labels/{x}")).sum()) for x in info.labels
        }
        if n_nan:
            what = (
                "stars with a NaN label (left out of that label's loss)"
                if name == "training"
                else "stars without a reference label (NaN; validation only)"
            )
            lines.append(f"  {what}: " + ", ".join(f"{k} {v}" for k, v in n_nan.items()))
    text = "\n".join(lines) + "\n"
    if out_path is not None:
        write_text_atomic(out_path, text)
    return text


__all__ = [
    "run_build_arrays",
    "run_demo_survey",
    "run_import_arrays",
    "run_selection",
    "setup_logging",
    "summarize",
]


def configure_tensorflow(threads: int) -> None:
    """Limit TensorFlow to the job's ``threads`` (Snakemake's allocation) before any op runs.

    A job runs in a fresh process; where TensorFlow already ran in this process (a test, a
    benchmark) its thread pools are kept as they are."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep C++ info lines out of the logs
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(max(1, int(threads)))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        log.debug("TensorFlow already initialised in this process: thread pools kept")


def run_train_member(
    train_file,
    model_out,
    *,
    split: int,
    seed: int,
    labels,
    branches,
    arch,
    training,
    xp_input: str = "auto",
    phot_input: str = "magnitudes",
    threads=1,
) -> None:
    """Rule ``train_member``: one ensemble member (model.keras, scalers.json, history.json)."""
    configure_tensorflow(threads)
    from gaiacnn import model

    summary = model.train_member(
        train_file,
        os.path.dirname(model_out),
        split=int(split),
        seed=int(seed),
        labels=labels,
        branches=branches,
        arch=arch,
        training=training,
        xp_input=xp_input,
        phot_input=phot_input,
    )
    log.info(
        "member split%s_seed%s: phot input %s, parallax augmentation %s",
        split,
        seed,
        summary["phot_input"] or "none",
        "on" if summary["parallax_augmentation"] else "off",
    )
    log.info(
        "member split%s_seed%s: branches %s (XP input: %s), labels %s; stars with a NaN label "
        "(left out of that label's loss): %s",
        split,
        seed,
        ", ".join(summary["branches"]),
        summary["xp_input"] or "none",
        ", ".join(summary["labels"]),
        ", ".join(f"{k} {v}" for k, v in summary["n_nan_labels"].items()),
    )
    log.info(
        "member split%s_seed%s: %d train / %d validation stars, best epoch %d of %d, "
        "val loss %.5f, %.0f s",
        split,
        seed,
        summary["n_train"],
        summary["n_validation"],
        summary["best_epoch"],
        summary["epochs_run"],
        summary["best_val_loss"],
        summary["train_seconds"],
    )


def run_count_rows(arrays_file, out_path) -> None:
    """Checkpoint ``count_rows``: the number of stars of an arrays file, from which the
    workflow derives the shards of the prediction and the t-SNE placement."""
    from gaiacnn import shards

    log.info("%s: %d stars", arrays_file, shards.write_row_count(arrays_file, out_path))


def run_predict_member(
    model_file, arrays_file, rows_json, out_path, *, shard, prediction_cfg, threads=1
) -> None:
    """Rule ``predict_member``: one member's labels for one shard (rows
    ``[shard x shard_rows, (shard + 1) x shard_rows)``) of one sample."""
    from gaiacnn import shards

    n_rows = shards.read_row_count(rows_json)
    n_file = layout.validate(arrays_file, check_values=False).n_rows
    if n_file != n_rows:
        raise shards.ShardError(
            f"{arrays_file} holds {n_file} stars but {rows_json} counts {n_rows}: "
            "the arrays changed after the shards were counted; rerun the workflow"
        )
    start, stop = shards.shard_range(n_rows, int(prediction_cfg["shard_rows"]), int(shard))
    log.info("shard %d: stars %d..%d of %d", int(shard), start, stop - 1, n_rows)
    configure_tensorflow(threads)
    from gaiacnn import model

    model.predict_file(
        os.path.dirname(model_file),
        arrays_file,
        out_path,
        chunk_rows=prediction_cfg["chunk_rows"],
        batch_size=prediction_cfg["batch_size"],
        precision=prediction_cfg["precision"],
        rows=(start, stop),
        resample=bool(prediction_cfg.get("resample", False)),
    )


def run_gather_predictions(shard_files: Sequence, out_path) -> None:
    """Rule ``gather_predictions``: one member's shards of one sample as one prediction
    file (the layout of :func:`gaiacnn.model.predict_file` for the whole sample), checking
    that the shards tile the sample in order.  Streams one shard at a time."""
    from gaiacnn import shards
    from gaiacnn.io import atomic_output

    if not shard_files:
        raise shards.ShardError("no prediction shards to gather")
    spans, labels = [], None
    for path in shard_files:
        with h5py.File(path, "r") as h5:
            spans.append(
                (
                    int(h5.attrs["shard_start"]),
                    int(h5.attrs["shard_stop"]),
                    int(h5.attrs["n_rows_total"]),
                )
            )
            names = sorted(h5["pred"])
            if labels is None:
                labels, attrs = names, dict(h5.attrs)
            elif names != labels:
                raise shards.ShardError(f"{path}: labels {names}, {shard_files[0]} has {labels}")
    n = spans[0][2]
    expected = 0
    for path, (start, stop, total) in zip(shard_files, spans, strict=True):
        if start != expected or total != n:
            raise shards.ShardError(
                f"{path}: rows {start}..{stop} of {total}, expected the shard from row "
                f"{expected} of {n}: the shards do not tile the sample"
            )
        expected = stop
    if expected != n:
        raise shards.ShardError(f"the shards end at row {expected}, the sample has {n} rows")
    for key in ("shard_start", "shard_stop", "n_rows_total"):
        attrs.pop(key)
    with atomic_output(out_path) as tmp, h5py.File(tmp, "w") as out:
        out.attrs.update(attrs)
        out.attrs["n_shards"] = len(shard_files)
        sid = out.create_dataset("source_id", shape=(n,), dtype=np.int64)
        preds = {
            lab: out.create_dataset(f"pred/{lab}", shape=(n,), dtype=np.float32) for lab in labels
        }
        for path, (start, stop, _) in zip(shard_files, spans, strict=True):
            with h5py.File(path, "r") as h5:
                sid[start:stop] = h5["source_id"][:]
                for lab, ds in preds.items():
                    ds[start:stop] = h5[f"pred/{lab}"][:]
    log.info("%d stars from %d shards", n, len(shard_files))


def run_aggregate(
    training_preds,
    observed_preds,
    arrays,
    fits_out,
    csv_out,
    model_out,
    *,
    labels,
    members,
    uncertainty_cfg,
    training_cfg,
    config_hash,
    flags_cfg=None,
) -> None:
    """Rule ``aggregate_ensemble``: the labels table (the catalogue before the flag) and the
    uncertainty model; ``csv_out`` may be None; ``flags_cfg`` (config ``flags``) sets the
    input-space distance."""
    flags_cfg = flags_cfg or {"input_neighbours": 10, "input_quantile": 0.99}
    from gaiacnn import catalogue, ensemble

    table, fits_, training_range, calibrations = catalogue.build(
        {"training": list(training_preds), "observed": list(observed_preds)},
        arrays,
        labels=labels,
        members=members,
        n_bins=uncertainty_cfg["dispersion_bins"],
        degree=uncertainty_cfg["polynomial_degree"],
        range_quantiles=uncertainty_cfg["range_quantiles"],
        calibration_bins=uncertainty_cfg["snr_calibration_bins"],
        calibration_min_per_bin=uncertainty_cfg["snr_calibration_min_per_bin"],
        subtract_reference_errors=uncertainty_cfg["subtract_reference_errors"],
        input_calibration_bins=uncertainty_cfg["input_distance_calibration_bins"],
        input_neighbours=flags_cfg["input_neighbours"],
        input_quantile=flags_cfg["input_quantile"],
        validation_fraction=training_cfg["validation_fraction"],
        base_seed=training_cfg["base_seed"],
        config_hash=config_hash,
    )
    for fit in fits_:
        log.info(
            "running dispersion of %s: %s",
            fit.label,
            ", ".join(f"{c:.3g}:{d:.3g}" for c, d in zip(fit.centres, fit.dispersion, strict=True)),
        )
    for label, cal in calibrations.items():
        if cal is not None:
            log.info(
                "S/N calibration of sigma_%s (%d observed + %d held-out training stars): %s",
                label,
                cal.n_observed,
                cal.n_validation,
                ", ".join(
                    f"S/N {s:.3g}: x{f:.3g}" for s, f in zip(cal.snr, cal.factor, strict=True)
                ),
            )
            if cal.input_factor is not None:
                log.info(
                    "  then against the input-space distance: %s",
                    ", ".join(
                        f"{d:.3g}: x{f:.3g}"
                        for d, f in zip(cal.input_distance, cal.input_factor, strict=True)
                    ),
                )
    ensemble.write_uncertainty_model(fits_, training_range, members, model_out, calibrations)
    catalogue.write(table, fits_out, csv_out)
    log.info(
        "catalogue: %d stars (%d training), %d members",
        len(table),
        int(table["in_training"].sum()),
        len(members),
    )


def run_evaluation(
    catalogue_fits,
    truth_path,
    model_json,
    out_path,
    *,
    labels,
    branches,
    snr_edges,
    gaia_source=None,
    shift_out=None,
) -> None:
    """Rule ``evaluate_demo``: precision, CRLB ratio and 1σ coverage against the truth;
    with ``gaia_source`` and ``shift_out`` also the shift table (bias and coverage against
    extinction, distance, parallax S/N and S/N, ordinary against shifted observed stars)."""
    from gaiacnn import catalogue, ensemble, evaluation

    _, training_range = ensemble.read_uncertainty_model(model_json)
    # model.branches: [] = what the training file offered; the members recorded it
    branches = list(branches) or catalogue.read_attrs(catalogue_fits)["branches"]
    table = evaluation.evaluate(
        catalogue_fits, truth_path, training_range, labels, branches, [*snr_edges, float("inf")]
    )
    for row in table.itertuples():
        log.info(
            "%-18s %-8s S/N %5.0f-%-5.0f n=%6d bias=%+.4g disp=%.4g crlb=%.4g ratio=%.2f cov=%.2f",
            row.sample,
            row.label,
            row.snr_min,
            row.snr_max,
            row.n,
            row.bias,
            row.dispersion,
            row.median_crlb,
            row.ratio_to_crlb,
            row.coverage_1sigma,
        )
    selection.write_table_atomic(table, out_path)
    if shift_out is not None:
        shift = evaluation.shift_table(
            catalogue_fits,
            truth_path,
            gaia_source,
            training_range,
            labels,
            branches,
            [*snr_edges, float("inf")],
        )
        for row in shift[shift["axis"] == "a0"].itertuples():
            log.info(
                "shift %-9s %-8s A0 %4.1f-%-4.1f n=%6d bias=%+.4g disp=%.4g cov=%.2f",
                row.sample,
                row.label,
                row.lo,
                row.hi,
                row.n,
                row.bias,
                row.dispersion,
                row.coverage_1sigma,
            )
        selection.write_table_atomic(shift, shift_out)


# --------------------------------------------------------------------------- t-SNE and flag


#: Datasets of a t-SNE map file, one row per star.
MAP_DATASETS = ("source_id", "in_training", "xy", "nn_training_distance", "training_like")
#: The datasets of a map that a placement job writes per perplexity (``p30/xy`` ...).
PLACED_DATASETS = ("xy", "nn_training_distance", "training_like")


def _write_map(out_path, data: Mapping[str, np.ndarray], attrs: Mapping) -> None:
    """One t-SNE map file (:data:`MAP_DATASETS`): every star of both samples (training
    first), its position, its distance to the nearest training star and its class."""
    from gaiacnn.io import atomic_output

    dtypes = (np.int64, bool, np.float32, np.float32, bool)
    with atomic_output(out_path) as tmp, h5py.File(tmp, "w") as h5:
        for name, dtype in zip(MAP_DATASETS, dtypes, strict=True):
            h5[name] = np.asarray(data[name], dtype)
        h5["xy"].attrs["unit"] = "t-SNE units"
        for k, v in attrs.items():
            h5.attrs[k] = v


def _map_attrs(cfg: Mapping, perplexity: float, thr, mode: str, **extra) -> dict:
    return {
        "perplexity": float(perplexity),
        "mode": mode,
        "pca_components": int(cfg["pca_components"]),
        "threshold_rule": thr.rule,
        "threshold": thr.value,
        "threshold_quantile": thr.quantile,
        "threshold_factor": thr.factor,
        "threshold_neighbours": thr.neighbours,
        "median_training_nn": thr.median_training_nn,
        **extra,
    }


def _reference_rows(observed, cfg: Mapping) -> np.ndarray:
    """Observed rows embedded in the reference maps (scalable mode)."""
    from gaiacnn import tsne

    n_obs = tsne.n_rows(observed)
    return tsne.reference_rows(n_obs, int(cfg["reference_observed"]), int(cfg["seed"]))


def _reference_training_rows(training, observed, cfg: Mapping) -> np.ndarray:
    """Training rows embedded in the reference maps (scalable mode, ``reference_training``)."""
    from gaiacnn import tsne

    return tsne.reference_training_rows(
        tsne.n_rows(training),
        tsne.n_rows(observed),
        int(cfg["reference_observed"]),
        str(cfg["reference_training"]),
        int(cfg["seed"]),
    )


#: Above this share of a reference map's training stars, the threshold's support m is
#: warned about: the validated maps ask for 0.3-0.5 % of them (README: t-SNE).
MAX_SUPPORT_SHARE = 0.01


def _warn_thin_support(n_training: int, cfg: Mapping) -> None:
    """Warn when a reference map holds so few training stars that the threshold's support
    m is more than :data:`MAX_SUPPORT_SHARE` of them (its classes then move from map to
    map); more ``reference_observed`` brings more training stars in with them."""
    from gaiacnn import tsne

    m = tsne.support_from_config(n_training, cfg)
    if m > MAX_SUPPORT_SHARE * n_training:
        log.warning(
            "the reference maps hold %d training stars, and the threshold asks for the "
            "support of m = %d of them (%.1f %%, more than %g %%): the classes will be noisy; "
            "raise tsne.reference_observed (with reference_training proportional the "
            "training stars grow with it)",
            n_training,
            m,
            100.0 * m / max(n_training, 1),
            100 * MAX_SUPPORT_SHARE,
        )


def tsne_spectra(training, observed, tsne_cfg: Mapping) -> str:
    """The dataset the t-SNE maps embed (``tsne.spectra``; auto: the RVS spectra where both
    samples have them, else the XP spectra; :func:`gaiacnn.tsne.choose_spectra`)."""
    from gaiacnn import tsne

    infos = [layout.validate(p, check_values=False) for p in (training, observed)]
    return tsne.choose_spectra(infos, str(tsne_cfg.get("spectra", "auto")))


def _map_spectra(
    training, observed, obs_rows, tr_rows=None, spectra: str = "rvs/flux"
) -> tuple[np.ndarray, np.ndarray]:
    """The spectra of a t-SNE map, in map order: the training spectra of ``tr_rows``, then
    the observed ones of ``obs_rows`` (all if None); and the in-training mask."""
    from gaiacnn import tsne

    xt = tsne.read_spectra(training, tr_rows, spectra=spectra)
    xo = tsne.read_spectra(observed, obs_rows, spectra=spectra)
    if xt.shape[1] != xo.shape[1]:
        raise tsne.TsneError(f"{xt.shape[1]} training pixels but {xo.shape[1]} observed pixels")
    is_tr = np.r_[np.ones(len(xt), bool), np.zeros(len(xo), bool)]
    return np.concatenate([xt, xo]), is_tr


def run_tsne_neighbours(training, observed, out_path, *, mode: str, tsne_cfg, threads=1) -> None:
    """Rule ``tsne_neighbours``: the nearest-neighbour graph and PCA initialisation shared by
    the maps of every perplexity (:func:`gaiacnn.tsne.neighbour_graph`), of the training +
    observed spectra (``mode`` joint) or of the reference training + observed spectra
    (``mode`` scalable), as an ``.npz``: ``source_id``, ``in_training``, ``indices``,
    ``distances``, ``init``."""
    from gaiacnn import tsne
    from gaiacnn.io import atomic_output

    if mode not in ("joint", "scalable"):
        raise ValueError(f"t-SNE mode {mode!r}: joint or scalable")
    obs_rows = tr_rows = None
    if mode == "scalable":
        obs_rows = _reference_rows(observed, tsne_cfg)
        tr_rows = _reference_training_rows(training, observed, tsne_cfg)
        _warn_thin_support(tr_rows.size, tsne_cfg)
    spectra = tsne_spectra(training, observed, tsne_cfg)
    x, is_tr = _map_spectra(training, observed, obs_rows, tr_rows, spectra)
    seed = int(tsne_cfg["seed"])
    z = tsne.fit_reducer(x, int(tsne_cfg["pca_components"]), seed)(x)
    del x
    perps = [float(p) for p in tsne_cfg["perplexities"]]
    log.info(
        "t-SNE neighbours (%s) of %s: %d training + %d observed spectra in %d dims, %d neighbours",
        mode,
        spectra,
        int(is_tr.sum()),
        int((~is_tr).sum()),
        z.shape[1],
        tsne.graph_neighbours(perps, z.shape[0]),
    )
    graph = tsne.neighbour_graph(z, perps, seed=seed, n_jobs=threads)
    obs_sid = layout.read_column(observed, "source_id")
    tr_sid = layout.read_column(training, "source_id")
    sid = np.r_[
        tr_sid if tr_rows is None else tr_sid[tr_rows],
        obs_sid if obs_rows is None else obs_sid[obs_rows],
    ]
    with atomic_output(out_path) as tmp, open(tmp, "wb") as fh:
        np.savez(
            fh,
            source_id=sid,
            in_training=is_tr,
            indices=graph.indices,
            distances=graph.distances,
            init=graph.init,
            spectra=np.array(spectra),
        )


def _embed_and_classify(graph_path, perplexity, cfg: Mapping, threads: int):
    """The map at ``perplexity`` of the spectra of a ``tsne_neighbours`` graph file, and
    its classes.  Returns (embedding, map data, threshold)."""
    from gaiacnn import tsne

    with np.load(graph_path, allow_pickle=False) as npz:
        sid, is_tr = npz["source_id"], npz["in_training"]
        graph = tsne.NeighbourGraph(npz["indices"], npz["distances"], npz["init"])
        spectra = str(npz["spectra"]) if "spectra" in npz else "rvs/flux"
    log.info(
        "t-SNE map, perplexity %g: %d training + %d observed spectra",
        perplexity,
        int(is_tr.sum()),
        int((~is_tr).sum()),
    )
    emb = tsne.embed_graph(
        graph, perplexity, seed=int(cfg["seed"]), n_jobs=threads, n_iter=cfg["n_iter"]
    )
    del graph
    xy = np.asarray(emb)
    thr = tsne.threshold_from_config(xy[is_tr], cfg)
    dist, like = tsne.classify(xy, is_tr, thr)
    data = dict(zip(MAP_DATASETS, (sid, is_tr, xy, dist, like), strict=True))
    data["spectra"] = spectra
    log.info(
        "perplexity %g: threshold %.4g (%s), %d of %d observed stars training-like",
        perplexity,
        thr.value,
        thr.rule,
        int(like[~is_tr].sum()),
        int((~is_tr).sum()),
    )
    return emb, data, thr


def run_tsne_joint(graph_path, out_path, *, perplexity, tsne_cfg, threads=1) -> None:
    """Rule ``tsne_joint``: one joint map of the training + observed spectra (Sect. 5.1)."""
    _, data, thr = _embed_and_classify(graph_path, perplexity, tsne_cfg, threads)
    attrs = _map_attrs(tsne_cfg, perplexity, thr, "joint", spectra=data.pop("spectra"))
    _write_map(out_path, data, attrs)


def run_tsne_reference(graph_path, model_out, map_out, *, perplexity, tsne_cfg, threads=1) -> None:
    """Rule ``tsne_reference`` (scalable mode): embed the reference spectra (a random
    subsample of the observed ones and the training ones of ``reference_training``); save
    the embedding for the placement jobs."""
    import pickle

    from gaiacnn import tsne
    from gaiacnn.io import atomic_output

    emb, data, thr = _embed_and_classify(graph_path, perplexity, tsne_cfg, threads)
    n_tr = int(data["in_training"].sum())
    spectra = data.pop("spectra")
    with atomic_output(model_out) as tmp, open(tmp, "wb") as fh:
        pickle.dump(
            {
                "embedding": tsne.portable_embedding(emb),
                "threshold": thr,
                "n_training": n_tr,
                "perplexity": float(perplexity),
                "spectra": spectra,
            },
            fh,
            protocol=pickle.HIGHEST_PROTOCOL,
        )
    n_ref = int((~data["in_training"]).sum())
    attrs = _map_attrs(
        tsne_cfg,
        perplexity,
        thr,
        "scalable",
        n_reference_observed=n_ref,
        n_reference_training=n_tr,
        reference_training=str(tsne_cfg["reference_training"]),
        spectra=spectra,
    )
    _write_map(map_out, data, attrs)


def run_tsne_index(training, observed, out_path, *, tsne_cfg) -> None:
    """Rule ``tsne_index`` (scalable mode): the reference spectra (the reference training and
    observed subsamples, in map order) in ``place_pca_components`` PCA components, so each
    placement job searches the nearest reference spectra once for all the maps."""
    import pickle

    from gaiacnn import tsne
    from gaiacnn.io import atomic_output

    x, _ = _map_spectra(
        training,
        observed,
        _reference_rows(observed, tsne_cfg),
        _reference_training_rows(training, observed, tsne_cfg),
        tsne_spectra(training, observed, tsne_cfg),
    )
    index = tsne.build_index(x, int(tsne_cfg["place_pca_components"]), int(tsne_cfg["seed"]))
    log.info("neighbour index: %d reference spectra in %d dimensions", *index.features.shape)
    with atomic_output(out_path) as tmp, open(tmp, "wb") as fh:
        pickle.dump(index, fh, protocol=pickle.HIGHEST_PROTOCOL)


def _place_group(perplexity: float) -> str:
    return f"p{perplexity:g}"


def placement_shards(n_observed: int, tsne_cfg: Mapping) -> int:
    """Number of placement shards (scalable mode): the observed stars left out of the
    reference maps, in shards of ``tsne.place_shard_rows``."""
    from gaiacnn import shards

    n_ref = min(int(tsne_cfg["reference_observed"]), int(n_observed))
    return shards.n_shards(int(n_observed) - n_ref, int(tsne_cfg["place_shard_rows"]))


def run_tsne_place(observed, index_path, model_paths, out_path, *, shard, tsne_cfg) -> None:
    """Rule ``tsne_place`` (scalable mode): place one shard of the observed spectra that are
    not in the reference maps (``tsne.place_shard_rows`` of them) into every map, searching
    their nearest reference spectra once (in the neighbour index) for all of them, and
    classify them against each map's training stars.  One group per perplexity (``p30/xy``
    ...) in the output file.  Memory ~ the shard and the reference maps, not N."""
    import pickle

    from tqdm.auto import tqdm

    from gaiacnn import shards, tsne
    from gaiacnn.io import atomic_output

    with open(index_path, "rb") as fh:
        index = pickle.load(fh)
    refs = []
    for path in model_paths:
        with open(path, "rb") as fh:
            refs.append(pickle.load(fh))
    n_obs = tsne.n_rows(observed)
    ref_rows = _reference_rows(observed, tsne_cfg)
    start, stop = shards.shard_range(
        n_obs - ref_rows.size, int(tsne_cfg["place_shard_rows"]), int(shard)
    )
    rows = shards.complement_slice(n_obs, ref_rows, start, stop)
    step = int(tsne_cfg["place_chunk_rows"])
    p_place, n_iter = float(tsne_cfg["place_perplexity"]), int(tsne_cfg["place_n_iter"])
    k_init = int(tsne_cfg["place_neighbours"])
    k = max(k_init, int(3 * p_place))
    xy = [[] for _ in refs]
    bar = tqdm(total=rows.size, desc=f"t-SNE placement, shard {shard}", unit="spectra")
    spectra = {ref.get("spectra", "rvs/flux") for ref in refs}
    if len(spectra) != 1:
        raise tsne.TsneError(f"the reference maps embed different spectra: {sorted(spectra)}")
    for x in tsne.iter_spectra(observed, rows, step, spectra.pop()):
        idx, dist = index.query(x, k)
        for parts, ref in zip(xy, refs, strict=True):
            parts.append(
                tsne.place_by_neighbours(
                    ref["embedding"], idx, dist, perplexity=p_place, n_iter=n_iter, k_init=k_init
                )
            )
        bar.update(len(x))
    bar.close()
    with h5py.File(observed, "r") as h5:
        sid = h5["source_id"][rows[0] : rows[-1] + 1][rows - rows[0]] if rows.size else []
    with atomic_output(out_path) as tmp, h5py.File(tmp, "w") as h5:
        h5["source_id"] = np.asarray(sid, dtype=np.int64)
        h5.attrs["shard"] = int(shard)
        for parts, ref in zip(xy, refs, strict=True):
            thr, n_tr = ref["threshold"], ref["n_training"]
            pos = np.concatenate(parts) if parts else np.empty((0, 2))
            train_xy = np.asarray(ref["embedding"])[:n_tr]
            dist = tsne.nearest_training_distance(train_xy, pos, thr.neighbours)
            g = h5.create_group(_place_group(ref["perplexity"]))
            for name, values in zip(PLACED_DATASETS, (pos, dist, dist <= thr.value), strict=True):
                g[name] = values
            g["xy"].attrs["unit"] = "t-SNE units"
            g.attrs["threshold"] = thr.value
            log.info(
                "perplexity %g: %d of %d placed spectra training-like",
                ref["perplexity"],
                int((dist <= thr.value).sum()),
                rows.size,
            )


def run_tsne_gather(reference_map, shard_files, out_path, *, perplexity) -> None:
    """Rule ``tsne_gather`` (scalable mode): the reference map of one perplexity and the
    stars placed into it by every shard as one map file, in the layout of the joint mode
    (with the reference map's attributes)."""
    parts: dict[str, list] = {k: [] for k in MAP_DATASETS}
    with h5py.File(reference_map, "r") as h5:
        attrs = dict(h5.attrs)
        for k in MAP_DATASETS:
            parts[k].append(h5[k][:])
    group = _place_group(float(perplexity))
    for path in shard_files:
        with h5py.File(path, "r") as h5:
            if group not in h5:
                raise KeyError(f"{path}: no placement for perplexity {perplexity:g} ({group})")
            sid = h5["source_id"][:]
            parts["source_id"].append(sid)
            parts["in_training"].append(np.zeros(sid.size, bool))
            for k in PLACED_DATASETS:
                parts[k].append(h5[group][k][:])
    _write_map(out_path, {k: np.concatenate(v) for k, v in parts.items()}, attrs)


def _observed_in_map(path, sid: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
    """(perplexity, threshold, distance to the m-th nearest training star, training-like) of
    the observed stars ``sid`` in one map file, in that order."""
    from gaiacnn import tsne

    with h5py.File(path, "r") as h5:
        m_sid = h5["source_id"][:]
        obs = ~h5["in_training"][:]
        dist = h5["nn_training_distance"][:][obs]
        like = h5["training_like"][:][obs]
        perp, thr = float(h5.attrs["perplexity"]), float(h5.attrs["threshold"])
    order = pd.Index(m_sid[obs]).get_indexer(sid)
    if np.any(order < 0):
        raise tsne.TsneError(f"{path}: {int((order < 0).sum())} observed stars are not in the map")
    return perp, thr, dist[order], like[order]


def run_tsne_classify(map_files, observed, out_path) -> None:
    """Rule ``tsne_classify``: training-like in every perplexity's map (Sect. 5.1), per
    observed star, in the order of the observed arrays file.  Several maps of one
    perplexity (scalable mode, ``reference_maps`` > 1) are one ensemble
    (:func:`gaiacnn.tsne.ensemble_training_like`); a lone map gives its own classes."""
    from gaiacnn import tsne
    from gaiacnn.io import atomic_output

    sid = layout.read_column(observed, "source_id")
    per_perp: dict[float, list] = {}
    for path in map_files:
        perp, *rest = _observed_in_map(path, sid)
        per_perp.setdefault(perp, []).append(rest)
    spectra = set()
    for path in map_files:
        with h5py.File(path, "r") as h5:
            spectra.add(str(h5.attrs.get("spectra", "rvs/flux")))
    if len(spectra) != 1:
        raise tsne.TsneError(f"the maps embed different spectra: {sorted(spectra)}")
    perps, likes, counts = list(per_perp), [], {len(v) for v in per_perp.values()}
    if len(counts) != 1:
        raise tsne.TsneError(f"unequal numbers of maps per perplexity: {sorted(counts)}")
    for maps in per_perp.values():
        thr, dist, like = zip(*maps, strict=True)
        likes.append(like[0] if len(maps) == 1 else tsne.ensemble_training_like(dist, thr))
    overall = tsne.combine_maps(likes)
    with atomic_output(out_path) as tmp, h5py.File(tmp, "w") as h5:
        h5["source_id"] = sid
        h5["training_like"] = overall
        for p, like in zip(perps, likes, strict=True):
            h5[f"training_like_p{p:g}"] = like
        h5.attrs["perplexities"] = perps
        h5.attrs["maps_per_perplexity"] = counts.pop()
        h5.attrs["spectra"] = next(iter(spectra))
    log.info(
        "t-SNE of %s: %d of %d observed stars (%.1f %%) training-like in all %d perplexities "
        "(%s); the paper: %s (Sect. 5.1)",
        next(iter(spectra)),
        int(overall.sum()),
        overall.size,
        100.0 * overall.mean() if overall.size else float("nan"),
        len(perps),
        ", ".join(f"p{p:g}: {int(x.sum())}" for p, x in zip(perps, likes, strict=True)),
        constants.paper_fraction(constants.PAPER_TRAINING_LIKE),
    )


def run_flag_catalogue(
    labels_fits, tsne_file, model_json, fits_out, csv_out, *, labels, input_digit=True
) -> None:
    """Rule ``flag_catalogue``: the catalogue with ``flag_boundary`` (Sect. 5.2, and unless
    ``input_digit`` is False (config ``flags.input_digit``; the paper's 8 digits) the
    input-space digit 9: the labels table's ``input_distance`` > 1, training stars inside by
    definition; ``-`` where the table has no finite distance)."""
    from gaiacnn import catalogue, ensemble, flags

    _, training_range = ensemble.read_uncertainty_model(model_json)
    table, attrs = catalogue.read(labels_fits)
    with h5py.File(tsne_file, "r") as h5:
        t_sid, t_like = h5["source_id"][:], h5["training_like"][:]
        spectra = str(h5.attrs.get("spectra", "rvs/flux"))
    not_like = np.zeros(len(table), bool)  # training stars: training-like by definition
    obs = ~table["in_training"].to_numpy(bool)
    idx = pd.Index(t_sid).get_indexer(table["source_id"].to_numpy()[obs])
    if np.any(idx < 0):
        raise flags.FlagError(f"{tsne_file}: {int((idx < 0).sum())} observed stars unclassified")
    not_like[obs] = ~t_like[idx]
    digits = flags.digit_order(labels, input_digit)
    values = {c: table[c].to_numpy(float) for c in digits[: digits.index(flags.TSNE_DIGIT)]}
    inputs_out = None
    distance = table["input_distance"].to_numpy(float) if "input_distance" in table else None
    if not input_digit:
        log.info("no input-space digit (flags.input_digit: false): the paper's 8 digits")
    elif distance is not None and np.isfinite(distance[~obs]).any():
        inputs_out = flags.input_outside(table)
        log.info(
            "input-space digit: %d of %d observed stars outside the training inputs",
            int(inputs_out.sum()),
            int(obs.sum()),
        )
    else:
        log.info("input-space digit: '-' (the arrays lack BP, RP, parallax or its error)")
    table["flag_boundary"] = flags.boundary_flags(
        values, training_range, labels, not_like, inputs_out, input_digit
    )
    flags.validate_flags(table["flag_boundary"], n_digits=len(digits))
    table.attrs.update(attrs, flag_digits=digits, tsne_spectra=spectra)
    catalogue.write(table, fits_out, csv_out)
    n_clean = int(flags.recommended(table["flag_boundary"]).sum())
    absent = [
        d
        for d, ok in zip(digits, flags.available(table["flag_boundary"], len(digits)), strict=True)
        if not ok
    ]
    recommended_obs = flags.recommended(table["flag_boundary"])[obs]
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


def run_flag_evaluation(
    catalogue_fits, truth_path, out_path, model_json=None, inputs_out=None
) -> None:
    """Rule ``evaluate_flags`` (demo): the t-SNE digit against the true populations; with
    ``model_json`` and ``inputs_out`` the input-space digit against > 3 sigma log g errors."""
    from gaiacnn import ensemble, evaluation

    if inputs_out is not None:
        _, training_range = ensemble.read_uncertainty_model(model_json)
        table = evaluation.input_flag_table(catalogue_fits, truth_path, training_range)
        for row in table.itertuples():
            log.info(
                "input-space digit, %-8s n=%6d flagged %.3f; |log g error| > 3 sigma: %d, "
                "recall %.3f; false flags %.3f",
                row.sample,
                row.n,
                row.flagged_fraction,
                row.outliers,
                row.recall,
                row.false_flag_fraction,
            )
        selection.write_table_atomic(table, inputs_out)

    table = evaluation.flag_confusion(catalogue_fits, truth_path)
    for row in table.itertuples():
        log.info(
            "%-26s n=%6d t-SNE digit 1: %6d (%.3f)  any digit 1: %.3f",
            row.population,
            row.n,
            row.tsne_digit_1,
            row.fraction_tsne_1,
            row.fraction_any_1,
        )
    selection.write_table_atomic(table, out_path)


def run_figures(inputs: Mapping, out_dir, *, figures_cfg: Mapping, snr_edges) -> None:
    """Rule ``figures``: every validation figure the data allows (SPEC stage 8) into
    ``out_dir``, with its index (figures.json)."""
    from gaiacnn.figures.context import Context, Inputs
    from gaiacnn.figures.render import render_all

    members = [Path(p).parent for p in _as_list(inputs.get("members"))]
    external = {
        k.removeprefix("external_"): Path(v) for k, v in inputs.items() if k.startswith("external_")
    }
    ctx = Context(
        Inputs(
            catalogue=Path(inputs["catalogue"]),
            training=Path(inputs["training"]),
            observed=Path(inputs["observed"]),
            uncertainty_model=Path(inputs["uncertainty_model"]),
            maps=[Path(p) for p in _as_list(inputs.get("maps"))],
            members=members,
            truth=Path(inputs["truth"]) if inputs.get("truth") else None,
            external=external,
        ),
        {**figures_cfg, "snr_edges": list(snr_edges)},
    )
    index = render_all(ctx, out_dir, formats=figures_cfg.get("formats", ("png", "pdf")))
    log.info(
        "%d figures written to %s; %d not drawn (%s)",
        len(index["figures"]),
        out_dir,
        len(index["skipped"]),
        "; ".join(f"{s['function']}: {s['reason']}" for s in index["skipped"]) or "none",
    )


def _as_list(value) -> list:
    """A Snakemake input entry (one path or a list of paths) as a list."""
    if value is None:
        return []
    return [value] if isinstance(value, str | os.PathLike) else list(value)
