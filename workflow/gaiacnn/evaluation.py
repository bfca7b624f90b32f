"""Evaluation against the demo's truth: precision per label and S/N bin, CRLB, 1σ coverage.

Only the demo survey has true labels (``truth.h5``); the paper can only compare with
APOGEE.  For each label and S/N bin, for the training sample, for the observed stars
inside the training range (true labels, G and parallax within Table 1's range, training
populations only) and for the observed stars a user would call so (CNN labels, G and
parallax within the range; out-of-distribution stars included):
bias, dispersion and robust (MAD) dispersion of CNN − truth, the median Cramér–Rao bound,
their ratio, and the
fraction of stars whose truth lies within ±1 ``sigma_<label>``.

The rules' entry points: :func:`run_evaluation` (``evaluate_demo``),
:func:`run_flag_evaluation` (``evaluate_flags``).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import h5py
import numpy as np
import pandas as pd

from gaiacnn import selection
from gaiacnn.catalogue import read_attrs
from gaiacnn.demo.physics import OOD_POPULATIONS, POPULATION_CODES
from gaiacnn.flags import INPUTS_DIGIT, TSNE_DIGIT, input_outside
from gaiacnn.io import open_h5
from gaiacnn.tables import fits_column_names, read_fits_columns

log = logging.getLogger(__name__)

#: S/N bins of the evaluation (the paper's Fig. 16 ranges): 15–25, 25–35, 35–75, ≥ 75.
DEFAULT_SNR_EDGES = (15.0, 25.0, 35.0, 75.0, float("inf"))


def in_range(table: pd.DataFrame, training_range: Mapping[str, Sequence[float]]) -> np.ndarray:
    """True where every quantity of ``training_range`` present in ``table`` lies inside it."""
    ok = np.ones(len(table), dtype=bool)
    for name, (lo, hi) in training_range.items():
        if name in table.columns:
            v = table[name].to_numpy(float)
            ok &= (v >= lo) & (v <= hi)
    return ok


def _truth_rows(h5: h5py.File, source_id: np.ndarray, truth_path) -> np.ndarray:
    """Rows of ``truth.h5`` holding the stars ``source_id``; every star must be there."""
    idx = pd.Index(h5["source_id"][:]).get_indexer(source_id)
    if np.any(idx < 0):
        raise ValueError(f"{truth_path}: {int((idx < 0).sum())} catalogue stars have no truth")
    return idx


def crlb_kind(branches: Sequence[str]) -> str:
    """Which stored bound matches the model's inputs: spectrum only, or all inputs."""
    return "rvs" if tuple(branches) == ("rvs",) else "all"


@dataclass(frozen=True)
class _WithTruth:
    """Catalogue columns and the demo truth of the same stars, row by row."""

    cat: pd.DataFrame
    snr: np.ndarray  # true RVS S/N
    truth: dict[str, np.ndarray]  # truth/<name>, for the names asked that truth.h5 has
    crlb: dict[str, np.ndarray]  # crlb_<kind>/<name>, likewise (empty without a kind)
    population: np.ndarray | None  # POPULATION_CODES (None: truth.h5 has none)
    shifted: np.ndarray  # demo.shift's stars (all False without truth/shifted)
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # truth.h5 datasets asked

    def truly_inside(self, training_range: Mapping[str, Sequence[float]]) -> np.ndarray:
        """Stars inside the training range by their true labels (and by the catalogue's
        other range quantities it holds, e.g. G and parallax), training populations only:
        the out-of-distribution kinds (OB stars, M giants, cool dwarfs, binaries) can have
        a truth inside the range while their spectra are unlike any training star (the
        flag's job)."""
        true_cat = self.cat.copy()
        for x, v in self.truth.items():
            true_cat[x] = v
        inside = in_range(true_cat, training_range)
        if self.population is not None:
            inside &= ~np.isin(self.population, [POPULATION_CODES[p] for p in OOD_POPULATIONS])
        return inside

    def binned_residuals(
        self,
        groups: Mapping[str, np.ndarray],
        labels: Sequence[str],
        axes: Mapping[str, tuple[np.ndarray, Sequence[float]]],
    ) -> Iterator[tuple[str, str, str, float, float, dict[str, float]]]:
        """(group, label, axis, lo, hi, :func:`residual_stats`) of CNN − truth for every
        group (a star mask) × label with a truth × axis (values, bin edges) × bin
        [lo, hi)."""
        for group, mask in groups.items():
            for x in labels:
                if x not in self.truth:
                    continue
                resid = self.cat[x].to_numpy(float) - self.truth[x]
                sigma = self.cat[f"sigma_{x}"].to_numpy(float)
                bound = self.crlb.get(x, np.full(len(resid), np.nan))
                for axis, (values, edges) in axes.items():
                    for lo, hi in itertools.pairwise(edges):
                        sel = mask & (values >= lo) & (values < hi)
                        stats = residual_stats(resid[sel], sigma[sel], bound[sel])
                        yield group, x, axis, lo, hi, stats


def _with_truth(
    catalogue_path: str | os.PathLike,
    truth_path: str | os.PathLike,
    columns: Sequence[str],
    truth_names: Sequence[str],
    kind: str | None = None,
    extra: Sequence[str] = (),
) -> _WithTruth:
    """Read ``columns`` of the catalogue and, for the same stars (every one must be in
    ``truth.h5``), ``truth/<name>`` of ``truth_names``, the Cramér–Rao bounds
    ``crlb_<kind>/<name>`` where ``kind`` is given, and the datasets ``extra`` (paths in
    ``truth.h5``)."""
    cat = read_fits_columns(catalogue_path, list(columns))
    with open_h5(truth_path) as h5:
        idx = _truth_rows(h5, cat["source_id"].to_numpy(), truth_path)

        def read(names: Sequence[str], prefix: str) -> dict[str, np.ndarray]:
            return {x: h5[f"{prefix}/{x}"][:][idx] for x in names if f"{prefix}/{x}" in h5}

        return _WithTruth(
            cat=cat,
            snr=h5["truth/snr"][:][idx],
            truth=read(truth_names, "truth"),
            crlb=read(truth_names, f"crlb_{kind}") if kind else {},
            population=h5["truth/population"][:][idx] if "truth/population" in h5 else None,
            shifted=(
                h5["truth/shifted"][:][idx] if "truth/shifted" in h5 else np.zeros(len(idx), bool)
            ),
            extra={name: h5[name][:][idx] for name in extra},
        )


def evaluate(
    catalogue_path: str | os.PathLike,
    truth_path: str | os.PathLike,
    training_range: Mapping[str, Sequence[float]],
    labels: Sequence[str],
    branches: Sequence[str],
    snr_edges: Sequence[float] = DEFAULT_SNR_EDGES,
) -> pd.DataFrame:
    """The precision table (one row per sample group × label × S/N bin)."""
    cols = ["source_id", "in_training", "phot_g_mean_mag", "parallax"]
    for x in labels:
        cols += [x, f"sigma_{x}"]
    kind = crlb_kind(branches)
    view = _with_truth(catalogue_path, truth_path, cols, labels, kind)
    observed = ~view.cat["in_training"].to_numpy(bool)
    # "Within the training range" by the true labels (what the demo can know): the stars
    # the network was built for (with G and parallax inside too).
    groups = {
        "training": ~observed,
        "observed_in_range": observed & view.truly_inside(training_range),
        # what a user without truth can select: CNN labels, G and parallax inside the range
        "observed_cnn_in_range": observed & in_range(view.cat, training_range),
    }
    rows = [
        dict(sample=group, label=x, snr_min=lo, snr_max=hi, **stats, crlb_inputs=kind)
        for group, x, _, lo, hi, stats in view.binned_residuals(
            groups, labels, {"snr": (view.snr, snr_edges)}
        )
    ]
    return pd.DataFrame(rows)


#: The out-of-distribution populations the t-SNE digit must catch (issue acceptance):
#: spectra unlike any training star.  Cool dwarfs and binaries are reported separately.
TSNE_TARGET_POPULATIONS = ("ob_star", "m_giant")


def flag_confusion(
    catalogue_path: str | os.PathLike, truth_path: str | os.PathLike
) -> pd.DataFrame:
    """The t-SNE digit of ``flag_boundary`` (located by the header's FLAGDIGS) of the
    observed stars against their true population: one row per population and per group
    (the OB stars + M giants, and the training populations), with the counts of digit 0 and
    1, the fraction of 1, and the fraction with any digit 1."""
    cat = read_fits_columns(catalogue_path, ["source_id", "in_training", "flag_boundary"])
    cat = cat[~cat["in_training"].to_numpy(bool)]
    with open_h5(truth_path) as h5:
        idx = _truth_rows(h5, cat["source_id"].to_numpy(), truth_path)
        pop = h5["truth/population"][:][idx]
    flag = cat["flag_boundary"].astype(str).to_numpy()
    tsne_out = _digit(flag, _digit_index(catalogue_path, TSNE_DIGIT))
    any_out = np.array(["1" in f for f in flag])
    names = {v: k for k, v in POPULATION_CODES.items()}
    ood_codes = [POPULATION_CODES[p] for p in OOD_POPULATIONS]
    target_codes = [POPULATION_CODES[p] for p in TSNE_TARGET_POPULATIONS]
    groups = {names[c]: pop == c for c in np.unique(pop)}
    groups["ALL ob_star+m_giant"] = np.isin(pop, target_codes)
    groups["ALL training populations"] = ~np.isin(pop, ood_codes)
    rows = []
    for name, m in groups.items():
        n = int(m.sum())
        rows.append(
            dict(
                population=name,
                n=n,
                tsne_digit_0=int((m & ~tsne_out).sum()),
                tsne_digit_1=int((m & tsne_out).sum()),
                fraction_tsne_1=float(tsne_out[m].mean()) if n else np.nan,
                fraction_any_1=float(any_out[m].mean()) if n else np.nan,
            )
        )
    return pd.DataFrame(rows)


#: Bins of the shift table (issue 24): extinction A0 ~ A_V [mag] (the issue's bins),
#: true distance [kpc] and parallax S/N (parallax / parallax_error).
SHIFT_BINS: dict[str, tuple[float, ...]] = {
    "a0": (0.0, 0.3, 0.8, 1.5, float("inf")),
    "distance_kpc": (0.0, 1.0, 2.0, 4.0, float("inf")),
    "parallax_snr": (0.0, 5.0, 10.0, 20.0, float("inf")),
    "g_mag": (0.0, 11.0, 12.0, 13.0, 14.0, float("inf")),
}


def shift_table(
    catalogue_path: str | os.PathLike,
    truth_path: str | os.PathLike,
    gaia_source_path: str | os.PathLike,
    training_range: Mapping[str, Sequence[float]],
    labels: Sequence[str],
    branches: Sequence[str],
    snr_edges: Sequence[float] = DEFAULT_SNR_EDGES,
) -> pd.DataFrame:
    """CNN − truth under a shift of the observed sample (demo only).

    One row per group × label × axis × bin.  Groups: ``training``; ``observed`` (the
    ordinary observed stars) and ``shifted`` (those of ``demo.shift``, ``truth/shifted``),
    both truly inside the training range by their true labels and of the training
    populations (:func:`evaluate`'s ``observed_in_range`` also keeps G and the parallax
    inside the range: a shifted field moves those); and, where the catalogue has
    ``input_distance``, ``shifted`` split by the flag's input-space digit:
    ``shifted_inputs_inside`` (digit 0) and ``shifted_inputs_outside`` (digit 1), to
    show whether the stars the catalogue marks are those where sigma does not cover; and,
    where it has ``parallax_withheld``, ``shifted`` split by it: ``shifted_parallax_used``
    and ``shifted_parallax_withheld`` (the stars whose uncertainty has a term of its own).
    Axes: ``a0`` (true A_V [mag]),
    ``distance_kpc`` (true), ``parallax_snr`` (Gaia parallax_over_error), ``g_mag`` (G
    [mag]: fainter stars have noisier XP coefficients) and ``snr`` (rvs_spec_sig_to_noise,
    ``snr_edges``).  Columns: n, bias, dispersion, dispersion_mad,
    median_crlb, ratio_to_crlb, coverage_1sigma (|CNN − truth| <= sigma_<label>).
    """
    cols = ["source_id", "in_training"]
    for x in labels:
        cols += [x, f"sigma_{x}"]
    names = fits_column_names(catalogue_path)
    has_distance = "input_distance" in names
    has_withheld = "parallax_withheld" in names
    view = _with_truth(
        catalogue_path,
        truth_path,
        cols + ["input_distance"] * has_distance + ["parallax_withheld"] * has_withheld,
        labels,
        crlb_kind(branches),
        extra=("truth/a_v", "truth/distance_pc"),
    )
    sid = view.cat["source_id"].to_numpy()
    gaia = read_fits_columns(
        gaia_source_path, ["source_id", "parallax_over_error", "phot_g_mean_mag"]
    )
    gidx = pd.Index(gaia["source_id"].to_numpy()).get_indexer(sid)
    if np.any(gidx < 0):
        raise ValueError(f"{gaia_source_path}: {int((gidx < 0).sum())} catalogue stars missing")
    values = {
        "a0": view.extra["truth/a_v"],
        "distance_kpc": view.extra["truth/distance_pc"] / 1000.0,
        "parallax_snr": gaia["parallax_over_error"].to_numpy(float)[gidx],
        "g_mag": gaia["phot_g_mean_mag"].to_numpy(float)[gidx],
        "snr": view.snr,
    }
    bins = dict(SHIFT_BINS, snr=tuple(snr_edges))
    inside = view.truly_inside(training_range)
    observed = ~view.cat["in_training"].to_numpy(bool)
    groups = {
        "training": ~observed,
        "observed": observed & inside & ~view.shifted,
        "shifted": observed & inside & view.shifted,
    }
    if has_distance:
        outside = input_outside(view.cat)
        groups["shifted_inputs_inside"] = groups["shifted"] & ~outside
        groups["shifted_inputs_outside"] = groups["shifted"] & outside
    if has_withheld:
        withheld = view.cat["parallax_withheld"].to_numpy(bool)
        groups["shifted_parallax_used"] = groups["shifted"] & ~withheld
        groups["shifted_parallax_withheld"] = groups["shifted"] & withheld
    axes = {axis: (values[axis], edges) for axis, edges in bins.items()}
    rows = [
        dict(sample=group, label=x, axis=axis, lo=lo, hi=hi, **stats)
        for group, x, axis, lo, hi, stats in view.binned_residuals(groups, labels, axes)
    ]
    return pd.DataFrame(rows)


def residual_stats(d: np.ndarray, sigma: np.ndarray, bound: np.ndarray) -> dict[str, float]:
    """n, bias, dispersion, robust (1.4826 MAD) dispersion of residuals ``d``; the median
    Cramér–Rao ``bound`` and the dispersion's ratio to it; the share within ±1 ``sigma``."""
    n = int(d.size)
    disp = float(np.std(d, ddof=1)) if n > 1 else np.nan
    # 1.4826 x median absolute deviation: the core, without the outliers that
    # training-unlike stars (the boundary flag's job) put in the plain dispersion.
    crlb = float(np.median(bound)) if n else np.nan
    return dict(
        n=n,
        bias=float(np.mean(d)) if n else np.nan,
        dispersion=disp,
        dispersion_mad=float(1.4826 * np.median(np.abs(d - np.median(d)))) if n else np.nan,
        median_crlb=crlb,
        ratio_to_crlb=disp / crlb if n > 1 and crlb > 0 else np.nan,
        coverage_1sigma=float(np.mean(np.abs(d) <= sigma)) if n else np.nan,
    )


def _digit_index(catalogue_path, name: str) -> int:
    digits = read_attrs(catalogue_path)["flag_digits"]
    if name not in digits:
        raise ValueError(f"{catalogue_path}: flag_boundary has no {name!r} digit ({digits})")
    return digits.index(name)


def _digit(flag: np.ndarray, j: int) -> np.ndarray:
    """True where character ``j`` of each flag string is ``1``."""
    return np.array([f[j] == "1" for f in flag], dtype=bool)


def input_flag_table(
    catalogue_path: str | os.PathLike,
    truth_path: str | os.PathLike,
    training_range: Mapping[str, Sequence[float]],
    label: str = "logg",
    n_sigma: float = 3.0,
    flagged: np.ndarray | None = None,
) -> pd.DataFrame:
    """The input-space digit against the truth (demo only), per observed group (ordinary,
    shifted; truly inside the training range, training populations): the stars, those
    flagged (false flags where the label is good), those whose ``label`` errs by more than
    ``n_sigma`` x ``sigma_<label>`` and the share of them the digit catches (recall).
    ``flagged`` (bool per catalogue row): the digit, when the catalogue has no flag yet; by
    default the flag's inputs digit or, for a flag without it (``flags.input_digit: false``),
    the digit it would have been (:func:`gaiacnn.flags.input_outside` of ``input_distance``)."""
    cols = ["source_id", "in_training", label, f"sigma_{label}"]
    with_digit = flagged is None and INPUTS_DIGIT in read_attrs(catalogue_path)["flag_digits"]
    if flagged is None and not with_digit:
        distance = read_fits_columns(catalogue_path, ["in_training", "input_distance"])
        flagged = input_outside(distance)
    cols += ["flag_boundary"] if with_digit else []
    view = _with_truth(catalogue_path, truth_path, cols, [label, *training_range])
    cat, true, shifted = view.cat, view.truth[label], view.shifted
    if flagged is None:
        j = _digit_index(catalogue_path, INPUTS_DIGIT)
        flagged = _digit(cat["flag_boundary"].astype(str).to_numpy(), j)
    flagged = np.asarray(flagged, dtype=bool)
    observed = ~cat["in_training"].to_numpy(bool) & view.truly_inside(training_range)
    bad = np.abs(cat[label].to_numpy(float) - true) > n_sigma * cat[f"sigma_{label}"].to_numpy(
        float
    )
    rows = []
    for group, mask in (("observed", observed & ~shifted), ("shifted", observed & shifted)):
        n_bad = int((mask & bad).sum())
        rows.append(
            dict(
                sample=group,
                n=int(mask.sum()),
                flagged=int((mask & flagged).sum()),
                flagged_fraction=float(flagged[mask].mean()) if mask.any() else np.nan,
                outliers=n_bad,
                outliers_flagged=int((mask & bad & flagged).sum()),
                recall=float(flagged[mask & bad].mean()) if n_bad else np.nan,
                false_flag_fraction=float(flagged[mask & ~bad].mean())
                if (mask & ~bad).any()
                else np.nan,
                label=label,
                n_sigma=n_sigma,
            )
        )
    return pd.DataFrame(rows)


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
    from gaiacnn import catalogue, ensemble

    _, training_range = ensemble.read_uncertainty_model(model_json)
    # model.branches: [] = what the training file offered; the members recorded it
    branches = list(branches) or catalogue.read_attrs(catalogue_fits)["branches"]
    table = evaluate(
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
        shift = shift_table(
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


def run_flag_evaluation(
    catalogue_fits, truth_path, out_path, model_json=None, inputs_out=None
) -> None:
    """Rule ``evaluate_flags`` (demo): the t-SNE digit against the true populations; with
    ``model_json`` and ``inputs_out`` the input-space digit against > 3 sigma log g errors."""
    from gaiacnn import ensemble

    if inputs_out is not None:
        _, training_range = ensemble.read_uncertainty_model(model_json)
        table = input_flag_table(catalogue_fits, truth_path, training_range)
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

    table = flag_confusion(catalogue_fits, truth_path)
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
