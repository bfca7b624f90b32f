"""Build the per-sample HDF5 arrays (SPEC stage 3) by streaming the raw spectra store.

Inputs: the *raw store* (a layout file holding every RVS star's spectrum, NaN
pixels included, XP coefficients and, from the demo, XP sampled spectra — written by the
demo generator or by the archive download), the ``gaia_source`` table (photometry,
astrometry, S/N and, when it has ``ra``/``dec``, the sky position), and
a sample table from :mod:`gaiacnn.selection` (source ids, labels).  Output: one
layout file per sample, written in row chunks (memory ~ chunk size, never N)
and atomically, holding the :data:`DATASET_GROUPS` asked for (``demo.datasets``).

The rules' entry points: :func:`run_build_arrays`, :func:`run_import_arrays`
(``data.source: files``), :func:`summarize` (``summarize_arrays``), :func:`run_count_rows`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import h5py
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from gaiacnn import __version__, layout, selection
from gaiacnn.constants import label_unit
from gaiacnn.io import read_tsv, write_text_atomic
from gaiacnn.layout import (
    PARALLAX_DATASET,
    PARALLAX_ERROR_DATASET,
    RUWE_DATASET,
    RVS_FLUX_DATASET,
    RVS_FLUX_ERROR_DATASET,
    RVS_SNR_DATASET,
    XP_SAMPLED_DATASET,
)
from gaiacnn.spectra import fill_nan_pixels
from gaiacnn.tables import fits_column_names, read_fits_columns

log = logging.getLogger(__name__)

#: gaia_source column -> layout dataset, for the per-star scalars.
GAIA_SCALARS: dict[str, str] = {
    "rvs_spec_sig_to_noise": RVS_SNR_DATASET,
    "radial_velocity_error": layout.RV_ERROR_DATASET,
    "phot_g_mean_mag": "phot/g",
    "phot_bp_mean_mag": "phot/bp",
    "phot_rp_mean_mag": "phot/rp",
    "parallax": PARALLAX_DATASET,
    "parallax_error": PARALLAX_ERROR_DATASET,
    "ruwe": RUWE_DATASET,
    "ra": "astrometry/ra",
    "dec": "astrometry/dec",
}
#: GAIA_SCALARS columns a ``gaia`` table may lack: their datasets are then not written
#: (positions feed only the Galactic figures, the radial-velocity uncertainty [km/s] only
#: Fig. C.1; never the model).
OPTIONAL_GAIA_SCALARS = frozenset({"ra", "dec", "radial_velocity_error"})
RAW_ARRAYS = (
    RVS_FLUX_DATASET,
    RVS_FLUX_ERROR_DATASET,
    "xp/bp_coefficients",
    "xp/rp_coefficients",
    *layout.XP_ERROR_DATASETS,
    XP_SAMPLED_DATASET,
)
#: Raw-store arrays copied when the store has them, NaN allowed (unknown errors): not
#: needed to write their group, and no star is left out for them.
OPTIONAL_RAW_ARRAYS = frozenset({RVS_FLUX_ERROR_DATASET, *layout.XP_ERROR_DATASETS})
#: Raw-store datasets whose attributes are copied to the sample file (besides ``unit``).
RAW_ATTRS: dict[str, tuple[str, ...]] = {
    RVS_FLUX_DATASET: ("wavelength_nm",),
    XP_SAMPLED_DATASET: ("wavelength_nm", "flux_kind"),
}
#: The dataset groups a sample file can hold (``demo.datasets``, config/schema.yaml);
#: ``source_id``, ``labels/*`` and ``astrometry/ra``, ``astrometry/dec`` are always written.
DATASET_GROUPS: dict[str, tuple[str, ...]] = {
    "rvs": (RVS_FLUX_DATASET, RVS_FLUX_ERROR_DATASET, RVS_SNR_DATASET, layout.RV_ERROR_DATASET),
    "xp_coefficients": (*layout.XP_COEFFICIENT_DATASETS, *layout.XP_ERROR_DATASETS),
    "xp_sampled": (XP_SAMPLED_DATASET,),
    "phot": ("phot/g", "phot/bp", "phot/rp"),
    "parallax": (PARALLAX_DATASET, PARALLAX_ERROR_DATASET, RUWE_DATASET),
}


def raw_positions(raw_ids: np.ndarray, wanted: np.ndarray, what: str) -> np.ndarray:
    """Row of each ``wanted`` source id in ``raw_ids``; raise naming the first one absent."""
    index = pd.Index(raw_ids)
    pos = index.get_indexer(wanted)
    if np.any(pos < 0):
        first = int(wanted[np.argmax(pos < 0)])
        raise ValueError(
            f"{what}: {int((pos < 0).sum())} source ids have no spectrum in the raw "
            f"store (e.g. {first})"
        )
    return pos


def _read_rows(ds: h5py.Dataset, rows: np.ndarray, chunk_rows: int) -> np.ndarray:
    """Read sorted unique ``rows`` of ``ds``: one contiguous slab when dense, else fancy-indexed."""
    lo, hi = int(rows[0]), int(rows[-1]) + 1
    if hi - lo <= 4 * max(chunk_rows, len(rows)):
        return ds[lo:hi][rows - lo]
    return ds[rows]


def complete_rows(
    raw_path: str | os.PathLike, rows: np.ndarray, chunk_rows: int, names: Sequence[str]
) -> np.ndarray:
    """Mask of ``rows`` (sorted positions in the raw store) whose datasets ``names``, where
    the store has them, are all finite, streamed in chunks of ``chunk_rows``."""
    keep = np.ones(rows.size, bool)
    with h5py.File(raw_path, "r") as raw:
        for name in names:
            if name not in raw:
                continue
            for start in range(0, rows.size, chunk_rows):
                block = _read_rows(raw[name], rows[start : start + chunk_rows], chunk_rows)
                keep[start : start + chunk_rows] &= np.isfinite(block).all(axis=1)
    return keep


def complete_xp_rows(raw_path: str | os.PathLike, rows: np.ndarray, chunk_rows: int) -> np.ndarray:
    """Mask of ``rows`` (sorted positions in the raw store) whose XP coefficients, if the
    store has any, are all finite: a DR3 source can lack a band (ARCHIVE_NOTES), and the
    hybrid CNN needs both."""
    return complete_rows(raw_path, rows, chunk_rows, layout.XP_COEFFICIENT_DATASETS)


def _raw_needs(group: str) -> tuple[str, ...]:
    """Raw-store arrays without which ``group`` cannot be written (those of
    :data:`OPTIONAL_RAW_ARRAYS` are copied when the store has them)."""
    return tuple(
        n for n in DATASET_GROUPS[group] if n in RAW_ARRAYS and n not in OPTIONAL_RAW_ARRAYS
    )


def resolve_groups(
    datasets: Sequence[str] | None, raw_names: Sequence[str], raw_path: str | os.PathLike
) -> tuple[str, ...]:
    """The groups of :data:`DATASET_GROUPS` to write, in that order: ``datasets`` (checked:
    known, non-empty, each group's raw-store arrays present), or with None every group
    whose raw-store arrays ``raw_names`` has (rvs, phot and parallax always)."""
    if datasets is None:
        return tuple(g for g in DATASET_GROUPS if all(n in raw_names for n in _raw_needs(g)))
    wanted = list(datasets)
    unknown = [g for g in wanted if g not in DATASET_GROUPS]
    if unknown or not wanted:
        raise ValueError(
            f"datasets {wanted}: a non-empty list of {', '.join(DATASET_GROUPS)}"
            + (f" (unknown: {', '.join(map(str, unknown))})" if unknown else "")
        )
    for group in wanted:
        for name in _raw_needs(group):
            if name not in raw_names:
                raise layout.LayoutError(
                    raw_path, name, f"dataset group {group!r} asked for, but the raw store lacks it"
                )
    return tuple(g for g in DATASET_GROUPS if g in wanted)


def build_sample_file(
    raw_path: str | os.PathLike,
    gaia: pd.DataFrame,
    sample: pd.DataFrame,
    out_path: str | os.PathLike,
    *,
    sample_name: str,
    labels: Sequence[str] = (),
    continuum_windows_nm: Sequence[Sequence[float]],
    nan_fill_quantile: float,
    datasets: Sequence[str] | None = None,
    chunk_rows: int = 1024,
    compression: str | None = None,
    provenance: Mapping[str, object] | None = None,
    progress: bool = True,
) -> dict[str, int]:
    """Write the layout file of one sample; return counts for the log.

    ``sample`` has ``source_id`` and, for ``labels``, columns ``<name>`` and
    ``<name>_err``.  Rows are written in raw-store order.  ``datasets`` names the
    :data:`DATASET_GROUPS` to write (``demo.datasets``); None writes every group the raw
    store has (rvs, phot and parallax always).  ``source_id``, ``labels/*`` and, when
    ``gaia`` has ``ra``/``dec``, ``astrometry/ra``/``astrometry/dec`` are always written.
    The raw store must hold ``rvs/flux`` (every star is an RVS star), written only with
    the rvs group: its NaN pixels are then replaced by the continuum-window Q3 (Sect. 2.1)
    and stars whose spectrum has no finite pixel are refused with an error naming them.
    Stars whose XP coefficients (a band missing in DR3) or XP sampled flux are incomplete
    are left out, and logged, when that group is written.  ``gaia`` gives the
    :data:`GAIA_SCALARS` columns of the groups written; of the :data:`OPTIONAL_GAIA_SCALARS`
    only those it has (``radial_velocity_error`` [km/s], NaN where the archive has none, is
    written as ``rvs/radial_velocity_error`` with the rvs group).
    """
    raw_info = layout.validate(raw_path, check_values=False)
    if raw_info.n_pixels is None:
        raise layout.LayoutError(raw_path, RVS_FLUX_DATASET, "raw store holds no spectra")
    with h5py.File(raw_path, "r") as raw:
        raw_names = [name for name in RAW_ARRAYS if name in raw]
    groups = resolve_groups(datasets, raw_names, raw_path)
    written = {name for g in groups for name in DATASET_GROUPS[g]}
    raw_ids = layout.read_column(raw_path, "source_id")
    ids = sample["source_id"].to_numpy(np.int64)
    pos = raw_positions(raw_ids, ids, str(raw_path))
    order = np.argsort(pos, kind="stable")
    pos, ids = pos[order], ids[order]
    sample = sample.iloc[order].reset_index(drop=True)
    checks = [
        (group, what)
        for group, what in (
            ("xp_coefficients", "XP coefficients are incomplete (a band missing in the archive)"),
            ("xp_sampled", "XP sampled flux is missing or incomplete (NaN)"),
        )
        if group in groups
    ]
    for group, what in checks:
        keep = complete_rows(raw_path, pos, chunk_rows, _raw_needs(group))
        if not keep.all():
            log.warning(
                "%s: %d %s stars left out: their %s, e.g. source_id %s",
                raw_path,
                int((~keep).sum()),
                sample_name,
                what,
                [int(i) for i in ids[~keep][:5]],
            )
            pos, ids = pos[keep], ids[keep]
            sample = sample[keep].reset_index(drop=True)
    gaia_idx = pd.Index(gaia["source_id"].to_numpy(np.int64)).get_indexer(ids)
    if np.any(gaia_idx < 0):
        raise ValueError(f"{int((gaia_idx < 0).sum())} sample stars are not in gaia_source")
    wanted_cols = {
        c: ds for c, ds in GAIA_SCALARS.items() if ds in written or ds in layout.POSITION_DATASETS
    }
    missing = [c for c in wanted_cols if c not in gaia.columns and c not in OPTIONAL_GAIA_SCALARS]
    if missing:
        raise ValueError(f"gaia_source table: missing column(s) {', '.join(missing)}")
    if ("ra" in gaia.columns) != ("dec" in gaia.columns):
        raise ValueError("gaia_source table: ra and dec must come together")
    scalars = {
        ds: gaia[col].to_numpy(np.float32)[gaia_idx]
        for col, ds in wanted_cols.items()
        if col in gaia.columns
    }
    for label in labels:
        for col in (label, f"{label}_err"):
            scalars[f"labels/{col}"] = sample[col].to_numpy(np.float32)

    n = len(ids)
    with h5py.File(raw_path, "r") as raw:
        wl = np.asarray(raw[RVS_FLUX_DATASET].attrs["wavelength_nm"], dtype=float)
        present = [name for name in raw_names if name in written]
        columns: dict[str, tuple] = {"source_id": ((), np.int64, {})}
        for name in present:
            ds_attrs = raw[name].attrs
            attrs = {key: ds_attrs[key] for key in RAW_ATTRS.get(name, ()) if key in ds_attrs}
            columns[name] = (raw[name].shape[1:], np.float32, attrs)
        for name in scalars:
            unit = {"unit": label_unit(name[7:])} if name.startswith("labels/") else {}
            columns[name] = ((), np.float32, unit)
        attrs = {
            "sample": sample_name,
            "n_stars": n,
            "provenance": layout.provenance_attr(**dict(provenance or {})),
        }
        n_filled_pixels = 0
        n_filled_spectra = 0
        with layout.ArraysWriter(
            out_path,
            n,
            columns,
            attrs=attrs,
            chunk_rows=min(chunk_rows, 256),
            compression=compression,
        ) as writer:
            bar = tqdm(
                total=n,
                desc=f"arrays {sample_name}",
                unit="star",
                disable=not progress,
                mininterval=2.0,
            )
            for start in range(0, n, chunk_rows):
                stop = min(start + chunk_rows, n)
                rows = pos[start:stop]
                block: dict[str, np.ndarray] = {"source_id": ids[start:stop]}
                for name in present:
                    block[name] = _read_rows(raw[name], rows, chunk_rows).astype(np.float32)
                if RVS_FLUX_DATASET in block:
                    try:
                        block[RVS_FLUX_DATASET], filled = fill_nan_pixels(
                            block[RVS_FLUX_DATASET], wl, continuum_windows_nm, nan_fill_quantile
                        )
                    except ValueError as exc:
                        finite = np.isfinite(block[RVS_FLUX_DATASET]).any(axis=1)
                        bad = [int(i) for i in block["source_id"][~finite][:5]]
                        raise ValueError(
                            f"{raw_path}: rvs/flux: spectra with no finite pixel, "
                            f"source_id {bad}: {exc}"
                        ) from None
                    n_filled_pixels += int(filled.sum())
                    n_filled_spectra += int((filled > 0).sum())
                for name, values in scalars.items():
                    block[name] = values[start:stop]
                writer.append(block)
                bar.update(stop - start)
            bar.close()
    return {
        "n_stars": n,
        "nan_filled_pixels": n_filled_pixels,
        "nan_filled_spectra": n_filled_spectra,
    }


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
        c for c in GAIA_SCALARS if c not in OPTIONAL_GAIA_SCALARS or c in present
    ]
    gaia = read_fits_columns(gaia_path, gaia_cols)
    sample = read_tsv(sample_path, "a sample table (rule select_samples)", ["source_id"])
    with_labels = [x for x in labels if x in sample.columns]
    counts = build_sample_file(
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
    selection.log_cut_report(report)
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
                attrs = {k: ds.attrs[k] for k in RAW_ATTRS.get(name, ())}
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
            if RVS_FLUX_DATASET in block:
                block[RVS_FLUX_DATASET], _ = fill_nan_pixels(
                    block[RVS_FLUX_DATASET],
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


def run_count_rows(arrays_file, out_path) -> None:
    """Checkpoint ``count_rows``: the number of stars of an arrays file, from which the
    workflow derives the shards of the prediction and the t-SNE placement."""
    from gaiacnn import shards

    log.info("%s: %d stars", arrays_file, shards.write_row_count(arrays_file, out_path))
