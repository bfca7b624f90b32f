"""Crossmatch and quality cuts: the training and observed samples (Sect. 2.1–2.5).

The same functions run on the demo survey and on the real archive tables: they
take ``pandas.DataFrame``s with the archive's column names (``gaiadr3.gaia_source``
+ ``classlabel_espels`` from ``gaiadr3.astrophysical_parameters``; APOGEE DR17
allStar) and a ``selection`` config dict.  Each cut is applied in a fixed order
and recorded as a :class:`CutStep`, so the report says how many stars each cut
removed and the numbers add up.

The rules' entry points: :func:`run_selection` (``select_samples``),
:func:`run_file_cut_report`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from gaiacnn.io import atomic_output, read_tsv
from gaiacnn.layout import (
    PARALLAX_DATASET,
    PARALLAX_ERROR_DATASET,
    RUWE_DATASET,
    RVS_FLUX_DATASET,
    RVS_SNR_DATASET,
    XP_SAMPLED_DATASET,
)
from gaiacnn.tables import read_fits_columns

log = logging.getLogger(__name__)

#: gaiadr3.gaia_source (+ classlabel_espels) columns queried: those of the cuts, plus ``ra``,
#: ``dec`` and ``radial_velocity_error`` [km/s] that the arrays stage copies
#: (:data:`gaiacnn.arrays.GAIA_SCALARS`; Fig. 24, Fig. C.1).
GAIA_COLUMNS = (
    "source_id",
    "ra",
    "dec",
    "has_rvs",
    "has_xp_continuous",
    "rvs_spec_sig_to_noise",
    "radial_velocity_error",
    "phot_g_mean_mag",
    "phot_bp_mean_mag",
    "phot_rp_mean_mag",
    "phot_g_mean_flux_over_error",
    "phot_bp_mean_flux_over_error",
    "phot_rp_mean_flux_over_error",
    "parallax",
    "parallax_error",
    "ruwe",
    "non_single_star",
    "phot_variable_flag",
    "in_qso_candidates",
    "in_galaxy_candidates",
    "classlabel_espels",
)
#: GAIA_COLUMNS a gaia_source table may lack (no cut reads them; a table queried before
#: they were added, or a demo survey without them): the figures they feed are then skipped.
OPTIONAL_GAIA_COLUMNS = frozenset({"radial_velocity_error"})
#: The GAIA_COLUMNS every gaia_source table must have.
REQUIRED_GAIA_COLUMNS = tuple(c for c in GAIA_COLUMNS if c not in OPTIONAL_GAIA_COLUMNS)
APOGEE_BASE_COLUMNS = (
    "APOGEE_ID",
    "GAIAEDR3_SOURCE_ID",
    "SNR",
    "EXTRATARG",
    "ASPCAPFLAG",
    "ASPCAP_CHI2",
    "FE_H_FLAG",
)


class SelectionError(ValueError):
    """An input table that the cuts cannot run on (a missing column, a bad type)."""


@dataclass(frozen=True)
class CutStep:
    """One line of the cut report."""

    stage: str  # "gaia_source", "apogee", "training"
    cut: str  # short name, e.g. "ruwe"
    rule: str  # the condition kept, with its threshold, e.g. "ruwe < 1.4"
    removed: int
    remaining: int


def require_columns(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise :class:`SelectionError` naming the first column of ``columns`` missing in ``table``."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise SelectionError(f"{what}: missing column(s) {', '.join(missing)}")


def bit_set(flags: np.ndarray, bit: int) -> np.ndarray:
    """True where ``bit`` (0-based) is set in the 64-bit integer ``flags``.

    Works for bits 0–63 on int64 input (ASPCAPFLAG is a signed 64-bit column in
    the allStar file, so bit 63 is the sign bit).
    """
    if not 0 <= bit <= 63:
        raise ValueError(f"bit {bit} outside 0..63")
    values = np.asarray(flags)
    if values.dtype.kind not in "iu":
        raise SelectionError(f"flag column has dtype {values.dtype}, expected an integer")
    as_u64 = values.astype(np.int64, copy=False).view(np.uint64)
    return (as_u64 & np.uint64(1 << bit)) != 0


def _is_null_string(values: pd.Series) -> np.ndarray:
    """Null test for a string column read from VOTable/FITS (masked, None, '' or 'nan')."""
    s = values.astype("string")
    stripped = s.str.strip()
    return (
        s.isna() | (stripped == "") | (stripped.str.lower().isin(["nan", "none", "null"]))
    ).to_numpy(dtype=bool)


class _Steps:
    """Apply boolean keep-masks in order, recording what each removed."""

    def __init__(self, stage: str, keep: np.ndarray):
        self.stage = stage
        self.keep = keep.copy()
        self.steps: list[CutStep] = []

    def apply(self, cut: str, rule: str, ok: np.ndarray) -> None:
        before = int(self.keep.sum())
        self.keep &= np.asarray(ok, dtype=bool)
        after = int(self.keep.sum())
        self.steps.append(CutStep(self.stage, cut, rule, before - after, after))


def gaia_source_cuts(gaia: pd.DataFrame, cfg: Mapping) -> tuple[np.ndarray, list[CutStep]]:
    """Keep-mask of ``gaia_source`` rows passing the Gaia cuts (Sect. 2.1–2.3).

    ``cfg`` is ``config["selection"]["gaia"]``.  Rows: every RVS star of the query.
    """
    require_columns(gaia, REQUIRED_GAIA_COLUMNS, "gaia_source table")
    s = _Steps("gaia_source", np.ones(len(gaia), dtype=bool))
    s.apply("has_rvs", "has_rvs = true", gaia["has_rvs"].to_numpy(dtype=bool))
    if cfg["require_xp_continuous"]:
        s.apply(
            "has_xp_continuous",
            "has_xp_continuous = true (Sect. 2.3)",
            gaia["has_xp_continuous"].to_numpy(dtype=bool),
        )
    if cfg["exclude_qso_candidates"]:
        s.apply(
            "qso_candidates",
            "in_qso_candidates = false (Sect. 2.1)",
            ~gaia["in_qso_candidates"].to_numpy(dtype=bool),
        )
    if cfg["exclude_galaxy_candidates"]:
        s.apply(
            "galaxy_candidates",
            "in_galaxy_candidates = false (Sect. 2.1)",
            ~gaia["in_galaxy_candidates"].to_numpy(dtype=bool),
        )
    if cfg["exclude_variable"]:
        flag = gaia["phot_variable_flag"].astype("string").str.strip().str.upper()
        s.apply(
            "variable",
            "phot_variable_flag != 'VARIABLE' (Sect. 2.1)",
            (flag != "VARIABLE").fillna(True).to_numpy(dtype=bool),
        )
    if cfg["require_single_star"]:
        s.apply(
            "non_single_star",
            "non_single_star = 0 (Sect. 2.1)",
            gaia["non_single_star"].to_numpy() == 0,
        )
    limit = float(cfg["min_flux_over_error"])
    for band in ("g", "bp", "rp"):
        foe = gaia[f"phot_{band}_mean_flux_over_error"].to_numpy(dtype=float)
        s.apply(
            f"{band}_flux_over_error",
            f"phot_{band}_mean_flux_over_error > {limit:g} (Sect. 2.2)",
            np.nan_to_num(foe, nan=-np.inf) > limit,
        )
    plx_min = float(cfg["min_parallax_mas"])
    plx = gaia["parallax"].to_numpy(dtype=float)
    s.apply(
        "parallax",
        f"parallax > {plx_min:g} mas (Sect. 2.2)",
        np.nan_to_num(plx, nan=-np.inf) > plx_min,
    )
    if cfg["exclude_emission_line"]:
        s.apply(
            "emission_line",
            "classlabel_espels is null (Sect. 2.3)",
            _is_null_string(gaia["classlabel_espels"]),
        )
    return s.keep, s.steps


def apogee_error_ok(value: np.ndarray, error: np.ndarray, cfg: Mapping) -> np.ndarray:
    """The [M/H]-dependent error cut of Sect. 2.4.

    ``error < max_err_metal_poor`` where ``value < metal_poor_below`` (−0.5 dex),
    else ``error < max_err``.  NaN value or error fails.
    """
    value = np.asarray(value, dtype=float)
    error = np.asarray(error, dtype=float)
    limit = np.where(
        value < float(cfg["metal_poor_below"]),
        float(cfg["max_metal_err_metal_poor"]),
        float(cfg["max_metal_err"]),
    )
    return np.isfinite(value) & np.isfinite(error) & (error < limit)


def resolve_duplicates(apogee: pd.DataFrame, policy: str, duplicate_bit: int) -> np.ndarray:
    """Keep-mask leaving one allStar row per ``GAIAEDR3_SOURCE_ID`` (Sect. 2.4).

    ``policy="keep_best"``: the row without the EXTRATARG DUPLICATE bit, then the one
    with the highest SNR, then the first.  ``policy="drop_all"``: ids that occur more
    than once are dropped entirely.
    """
    ids = apogee["GAIAEDR3_SOURCE_ID"].to_numpy(dtype=np.int64)
    if policy == "drop_all":
        _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
        return counts[inverse] == 1
    if policy != "keep_best":
        raise SelectionError(f"unknown duplicates policy {policy!r}")
    is_dup = bit_set(apogee["EXTRATARG"].to_numpy(dtype=np.int64), duplicate_bit)
    snr = np.nan_to_num(apogee["SNR"].to_numpy(dtype=float), nan=-np.inf)
    order = np.lexsort((np.arange(len(ids)), -snr, is_dup, ids))
    first = np.ones(len(ids), dtype=bool)
    first[1:] = ids[order][1:] != ids[order][:-1]
    keep = np.zeros(len(ids), dtype=bool)
    keep[order[first]] = True
    return keep


def apogee_cuts(
    apogee: pd.DataFrame, gaia_ids: np.ndarray, cfg: Mapping, label_columns: Mapping[str, str]
) -> tuple[np.ndarray, list[CutStep]]:
    """Keep-mask of allStar rows: crossmatch, duplicates, and the quality cuts of Sect. 2.4.

    ``gaia_ids`` are the source ids that passed :func:`gaia_source_cuts`; ``cfg`` is
    ``config["selection"]["apogee"]``; ``label_columns`` maps label name -> allStar
    column (its error is ``<column>_ERR``).
    """
    needed = list(APOGEE_BASE_COLUMNS)
    for col in label_columns.values():
        needed += [col, f"{col}_ERR"]
    require_columns(apogee, needed, "APOGEE allStar table")
    ids = apogee["GAIAEDR3_SOURCE_ID"].to_numpy(dtype=np.int64)
    s = _Steps("apogee", np.ones(len(apogee), dtype=bool))
    s.apply(
        "crossmatch",
        "GAIAEDR3_SOURCE_ID in the Gaia sample (Sect. 2.4)",
        np.isin(ids, np.asarray(gaia_ids, dtype=np.int64)),
    )
    # Duplicates are resolved among the matched rows only.
    dup_keep = np.zeros(len(apogee), dtype=bool)
    matched = np.nonzero(s.keep)[0]
    dup_keep[matched] = resolve_duplicates(
        apogee.iloc[matched], cfg["duplicates"], int(cfg["extratarg_duplicate_bit"])
    )
    s.apply("duplicates", f"one row per source id ({cfg['duplicates']}) (Sect. 2.4)", dup_keep)
    flags = apogee["ASPCAPFLAG"].to_numpy()
    for bit in cfg["aspcapflag_bits"]:
        s.apply(
            f"aspcapflag_bit_{bit}",
            f"ASPCAPFLAG bit {bit} unset (Sect. 2.4)",
            ~bit_set(flags, int(bit)),
        )
    chi2 = np.nan_to_num(apogee["ASPCAP_CHI2"].to_numpy(dtype=float), nan=np.inf)
    s.apply(
        "aspcap_chi2",
        f"ASPCAP_CHI2 < {cfg['max_aspcap_chi2']:g} (Sect. 2.4)",
        chi2 < float(cfg["max_aspcap_chi2"]),
    )
    s.apply(
        "fe_h_flag",
        f"FE_H_FLAG = {cfg['fe_h_flag']} (Sect. 2.4)",
        apogee["FE_H_FLAG"].to_numpy() == int(cfg["fe_h_flag"]),
    )
    snr = np.nan_to_num(apogee["SNR"].to_numpy(dtype=float), nan=-np.inf)
    s.apply("apogee_snr", f"SNR >= {cfg['min_snr']:g} (Sect. 2.4)", snr >= float(cfg["min_snr"]))
    err_cfg = cfg["max_error"]
    metal = set(cfg["metallicity_dependent_error"])
    for name, col in label_columns.items():
        value = apogee[col].to_numpy(dtype=float)
        error = apogee[f"{col}_ERR"].to_numpy(dtype=float)
        if name in metal:
            rule = (
                f"{col}_ERR < {cfg['max_metal_err_metal_poor']:g} if {col} < "
                f"{cfg['metal_poor_below']:g} else < {cfg['max_metal_err']:g} (Sect. 2.4)"
            )
            ok = apogee_error_ok(value, error, cfg)
        elif name in err_cfg:
            rule = f"{col}_ERR < {err_cfg[name]:g} (Sect. 2.4)"
            ok = np.isfinite(value) & (np.nan_to_num(error, nan=np.inf) < float(err_cfg[name]))
        else:
            rule = f"{col} and {col}_ERR finite"
            ok = np.isfinite(value) & np.isfinite(error)
        s.apply(f"{name}_error", rule, ok)
    return s.keep, s.steps


def training_cuts(gaia_rows: pd.DataFrame, cfg: Mapping) -> tuple[np.ndarray, list[CutStep]]:
    """Keep-mask of the labelled stars that enter the training sample (Sect. 2.5).

    ``gaia_rows`` are the gaia_source rows of the labelled stars; ``cfg`` is
    ``config["selection"]["training"]``.
    """
    s = _Steps("training", np.ones(len(gaia_rows), dtype=bool))
    snr = np.nan_to_num(gaia_rows["rvs_spec_sig_to_noise"].to_numpy(dtype=float), nan=-np.inf)
    s.apply(
        "rvs_snr",
        f"rvs_spec_sig_to_noise >= {cfg['min_rvs_snr']:g} (Sect. 2.5)",
        snr >= float(cfg["min_rvs_snr"]),
    )
    plx = gaia_rows["parallax"].to_numpy(dtype=float)
    rel = gaia_rows["parallax_error"].to_numpy(dtype=float) / plx
    lim = float(cfg["max_parallax_relative_error"])
    s.apply(
        "parallax_error",
        f"parallax_error / parallax < {lim:g} (Sect. 2.5)",
        np.nan_to_num(rel, nan=np.inf) < lim,
    )
    ruwe = np.nan_to_num(gaia_rows["ruwe"].to_numpy(dtype=float), nan=np.inf)
    s.apply("ruwe", f"ruwe < {cfg['max_ruwe']:g} (Sect. 2.5)", ruwe < float(cfg["max_ruwe"]))
    return s.keep, s.steps


@dataclass(frozen=True)
class Samples:
    """The outcome of the selection."""

    training: pd.DataFrame  # source_id + label columns (<name>, <name>_err), by gaia row order
    observed: pd.DataFrame  # source_id (+ reference labels where APOGEE has good ones, else NaN)
    steps: list[CutStep]


def select_samples(
    gaia: pd.DataFrame,
    apogee: pd.DataFrame,
    selection_cfg: Mapping,
    label_columns: Mapping[str, str],
) -> Samples:
    """Run every cut; split the Gaia stars into training and observed samples.

    Training: Gaia cuts, an APOGEE match passing the APOGEE cuts, and the training
    cuts.  Observed: every other star passing the Gaia cuts (Sect. 2.5).  Observed
    stars with good APOGEE labels keep them as *reference* labels for validation
    (Sect. 4.5); they are never model inputs.  Both frames follow the row order of
    ``gaia`` (itself the order of the raw spectra store).
    """
    gaia_keep, steps = gaia_source_cuts(gaia, selection_cfg["gaia"])
    if gaia["source_id"].duplicated().any():
        dup = gaia.loc[gaia["source_id"].duplicated(), "source_id"].iloc[0]
        raise SelectionError(f"gaia_source table: duplicated source_id {dup}")
    gaia_ok = gaia.loc[gaia_keep].reset_index(drop=True)
    ap_keep, ap_steps = apogee_cuts(
        apogee, gaia_ok["source_id"].to_numpy(), selection_cfg["apogee"], label_columns
    )
    steps += ap_steps
    good = apogee.loc[ap_keep]
    label_frame = pd.DataFrame({"source_id": good["GAIAEDR3_SOURCE_ID"].to_numpy(np.int64)})
    for name, col in label_columns.items():
        label_frame[name] = good[col].to_numpy(np.float64)
        label_frame[f"{name}_err"] = good[f"{col}_ERR"].to_numpy(np.float64)
    merged = gaia_ok.merge(label_frame, on="source_id", how="left", validate="one_to_one")
    labelled = merged[next(iter(label_columns))].notna().to_numpy()
    tr_keep, tr_steps = training_cuts(merged.loc[labelled], selection_cfg["training"])
    steps += tr_steps
    is_training = np.zeros(len(merged), dtype=bool)
    is_training[np.nonzero(labelled)[0][tr_keep]] = True
    cols = ["source_id"] + [c for n in label_columns for c in (n, f"{n}_err")]
    training = merged.loc[is_training, cols].reset_index(drop=True)
    observed = merged.loc[~is_training, cols].reset_index(drop=True)
    return Samples(training=training, observed=observed, steps=steps)


#: Columns of a cut report (:func:`cut_report`, :func:`file_cut_report`).
REPORT_COLUMNS = ("stage", "cut", "rule", "removed", "remaining")


def cut_report(samples: Samples, n_input: int) -> pd.DataFrame:
    """The cut report as a table; the last rows give the sample sizes."""
    rows = [asdict(step) for step in samples.steps]
    rows.append(
        dict(
            stage="samples",
            cut="training",
            rule="passes every cut",
            removed=0,
            remaining=len(samples.training),
        )
    )
    rows.append(
        dict(
            stage="samples",
            cut="observed",
            rule="passes the gaia_source cuts, not training",
            removed=0,
            remaining=len(samples.observed),
        )
    )
    rows.insert(
        0,
        dict(stage="input", cut="rvs_stars", rule="gaia_source rows", removed=0, remaining=n_input),
    )
    return pd.DataFrame(rows, columns=list(REPORT_COLUMNS))


def write_table_atomic(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a TSV atomically."""
    with atomic_output(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.9g")


# --------------------------------------------------------------------------- own files

#: How ``data.source: files`` treats rows that fail a per-star cut (``data.files_cuts``):
#: cut them and count them in the cut report, or refuse the whole file.
FILE_CUT_MODES = ("apply", "refuse")


def file_row_cuts(
    block: Mapping[str, np.ndarray],
    sample: str,
    training_cfg: Mapping | None = None,
    xp_flux_kind: str | None = None,
) -> list[tuple[str, str, np.ndarray]]:
    """The paper's per-star cuts that a block of a layout file allows, in order.

    ``block`` maps layout dataset names (those present in the file) to a row chunk;
    ``sample`` is "training" or "observed"; ``training_cfg`` is
    ``config["selection"]["training"]`` (the training sample's cuts, Sect. 2.5, applied to
    the training file only).  Returns ``(cut, rule, ok)`` per cut whose datasets the block
    has, ``ok`` a bool mask (n,).  A cut is applied to every star, never to the whole file:
    parallax > 0 (Sect. 2.2), finite model inputs (a DR3 source can lack an XP band;
    a spectrum with no finite pixel carries no information).  Pixels that are only partly
    NaN are filled by the arrays stage (Sect. 2.1), not cut.
    """
    out: list[tuple[str, str, np.ndarray]] = []
    if RVS_FLUX_DATASET in block:
        flux = np.asarray(block[RVS_FLUX_DATASET])
        out.append(
            ("rvs_finite_pixel", "rvs/flux has a finite pixel", np.isfinite(flux).any(axis=1))
        )
    phot = [block[k] for k in ("phot/g", "phot/bp", "phot/rp") if k in block]
    if phot:
        ok = np.all([np.isfinite(np.asarray(p, float)) for p in phot], axis=0)
        out.append(("photometry_finite", "phot/g, phot/bp, phot/rp finite", ok))
    if PARALLAX_DATASET in block:
        plx = np.nan_to_num(np.asarray(block[PARALLAX_DATASET], float), nan=-np.inf)
        out.append(("parallax_positive", "parallax > 0 (Sect. 2.2)", plx > 0))
    if "xp/bp_coefficients" in block:
        bp = np.asarray(block["xp/bp_coefficients"], float)
        rp = np.asarray(block["xp/rp_coefficients"], float)
        ok = np.isfinite(bp).all(axis=1) & np.isfinite(rp).all(axis=1)
        ok &= (np.nan_to_num(bp[:, 0]) != 0) & (np.nan_to_num(rp[:, 0]) != 0)
        out.append(("xp_coefficients_finite", "both XP bands finite, first coefficient != 0", ok))
    if XP_SAMPLED_DATASET in block:
        flux = np.asarray(block[XP_SAMPLED_DATASET], float)
        ok = np.isfinite(flux).all(axis=1)
        rule = "xp/sampled_flux finite"
        if xp_flux_kind == "absolute":
            with np.errstate(invalid="ignore"):
                ok &= np.nan_to_num(flux.mean(axis=1), nan=-1.0) > 0
            rule += ", mean flux > 0"
        out.append(("xp_sampled_finite", rule, ok))
    if sample == "training" and training_cfg is not None:
        if RVS_SNR_DATASET in block:
            snr = np.nan_to_num(np.asarray(block[RVS_SNR_DATASET], float), nan=-np.inf)
            lim = float(training_cfg["min_rvs_snr"])
            out.append(("rvs_snr", f"rvs/snr >= {lim:g} (Sect. 2.5)", snr >= lim))
        if PARALLAX_DATASET in block and PARALLAX_ERROR_DATASET in block:
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.asarray(block[PARALLAX_ERROR_DATASET], float) / np.asarray(
                    block[PARALLAX_DATASET], float
                )
            lim = float(training_cfg["max_parallax_relative_error"])
            out.append(
                (
                    "parallax_error",
                    f"parallax_error / parallax < {lim:g} (Sect. 2.5)",
                    np.nan_to_num(rel, nan=np.inf) < lim,
                )
            )
        if RUWE_DATASET in block:
            ruwe = np.nan_to_num(np.asarray(block[RUWE_DATASET], float), nan=np.inf)
            lim = float(training_cfg["max_ruwe"])
            out.append(("ruwe", f"ruwe < {lim:g} (Sect. 2.5)", ruwe < lim))
    return out


def file_cut_datasets(sample: str) -> tuple[str, ...]:
    """Every dataset :func:`file_row_cuts` may read for ``sample`` (read those present)."""
    names = [
        RVS_FLUX_DATASET,
        "phot/g",
        "phot/bp",
        "phot/rp",
        PARALLAX_DATASET,
        "xp/bp_coefficients",
        "xp/rp_coefficients",
        XP_SAMPLED_DATASET,
    ]
    if sample == "training":
        names += [RVS_SNR_DATASET, PARALLAX_ERROR_DATASET, RUWE_DATASET]
    return tuple(names)


def file_cut_report(
    sample: str, n_input: int, counts: Sequence[tuple[str, str, int]]
) -> pd.DataFrame:
    """The cut report of one imported file: ``counts`` are ``(cut, rule, removed)`` in order,
    each counted among the rows the earlier cuts kept; the rows add up as in
    :func:`cut_report`."""
    rows = [
        dict(
            stage="input",
            cut=f"{sample}_rows",
            rule="rows of the file",
            removed=0,
            remaining=n_input,
        )
    ]
    left = int(n_input)
    for cut, rule, removed in counts:
        left -= int(removed)
        rows.append(dict(stage=sample, cut=cut, rule=rule, removed=int(removed), remaining=left))
    rows.append(
        dict(stage="samples", cut=sample, rule="passes every cut", removed=0, remaining=left)
    )
    return pd.DataFrame(rows, columns=list(REPORT_COLUMNS))


def log_cut_report(report: pd.DataFrame) -> None:
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
) -> Samples:
    """Rule ``select_samples``: crossmatch, cuts, cut report (TSV and log)."""
    gaia = read_fits_columns(gaia_path, REQUIRED_GAIA_COLUMNS)
    ap_cols = list(APOGEE_BASE_COLUMNS)
    for col in label_columns.values():
        ap_cols += [col, f"{col}_ERR"]
    apogee = read_fits_columns(apogee_path, ap_cols)
    samples = select_samples(gaia, apogee, selection_cfg, label_columns)
    report = cut_report(samples, len(gaia))
    log_cut_report(report)
    write_table_atomic(samples.training, training_out)
    write_table_atomic(samples.observed, observed_out)
    write_table_atomic(report, report_out)
    return samples


def run_file_cut_report(reports: Sequence, out_path) -> None:
    """Rule ``file_cut_report`` (``data.source: files``): the imports' cut reports as one."""
    what = "a cut report (rule import_arrays)"
    table = pd.concat([read_tsv(p, what, REPORT_COLUMNS) for p in reports], ignore_index=True)
    write_table_atomic(table, out_path)
