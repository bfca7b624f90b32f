"""Fig. C.1 (Appendix C): the labels' stability against the Gaia DR3 radial-velocity
uncertainty; and, not in the paper, against the input-space distance (flag digit 9).

The RVS spectra are published shifted to the rest frame; a star with a large radial-velocity
uncertainty eVrad (``radial_velocity_error`` [km/s], the optional arrays dataset
``rvs/radial_velocity_error``) may keep a residual shift of a fraction of a pixel, which can
bias labels (Nepal et al. 2023).  The figure shows CNN − reference (e.g. APOGEE DR17) and,
when a GSP-Spec table is configured (``figures.external.gsp_spec``), GSP-Spec − reference
against eVrad, for the training sample and for the observed stars inside the training limits
that have a reference label (the samples of Fig. 16), one row per label (T_eff, log g, [M/H],
[α/M]; [Fe/H] stands in for a missing [M/H]), with the running median and 16–84 % band in
equal-count bins of eVrad.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from matplotlib.ticker import FuncFormatter

from gaiacnn.constants import label_unit
from gaiacnn.figures import external
from gaiacnn.figures import style as st
from gaiacnn.figures.context import Context, Skip, metallicity_note
from gaiacnn.figures.render import Rendered, figure
from gaiacnn.layout import RV_ERROR_DATASET

#: The labels of Fig. C.1 in row order (the paper's four; [Fe/H] stands in for a missing
#: [M/H], as in the other figures).
RV_LABELS = ("teff", "logg", "m_h", "alpha_m")
#: Running statistics: at most MAX_BINS equal-count bins of eVrad; a bin with fewer than
#: MIN_PER_BIN stars is not drawn.
MAX_BINS = 12
MIN_PER_BIN = 10
#: Up to this many stars a panel shows the stars as points; above it a 2-D histogram.
SCATTER_MAX = 3000
#: Colour of the GSP-Spec − reference points and running median.
GSP_COLOUR = "tab:purple"
#: The two columns: (title, Context mask attribute, colour key of style.SAMPLE_COLOUR,
#: external.Match frame column).
COLUMNS = (
    ("training", "in_training", "training", "in_training"),
    ("observed, inside the training limits", "inside", "inside", "inside"),
)
#: x-axis text.
X_TEXT = r"Gaia DR3 $e_{V_\mathrm{rad}}$ [km s$^{-1}$]"


# ---------------------------------------------------------------------- pure helpers
def running_stats(
    x: np.ndarray,
    d: np.ndarray,
    *,
    max_bins: int = MAX_BINS,
    min_per_bin: int = MIN_PER_BIN,
) -> dict[str, np.ndarray]:
    """Running statistics of ``d`` against ``x`` in equal-count bins of ``x``.

    Only pairs with finite ``d`` and finite ``x`` > 0 count.  ``min(max_bins, n //
    min_per_bin)`` bins between quantiles of ``x`` (none when fewer than ``min_per_bin``
    stars).  Returns ``x`` (median x of each bin, same unit as ``x``), ``median``, ``p16``,
    ``p84`` (same unit as ``d``; NaN for a bin with fewer than ``min_per_bin`` stars, which
    ties in ``x`` can make) and ``n`` (stars per bin), each (bins,).
    """
    x = np.asarray(x, dtype=float)
    d = np.asarray(d, dtype=float)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(x) & (x > 0) & np.isfinite(d)
    x, d = x[ok], d[ok]
    n_bins = min(int(max_bins), x.size // max(int(min_per_bin), 1))
    keys = ("x", "median", "p16", "p84")
    if n_bins < 1:
        return {**{k: np.empty(0) for k in keys}, "n": np.empty(0, dtype=int)}
    edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, n_bins + 1)))
    which = np.searchsorted(edges[1:-1], x, side="right")
    out: dict[str, list] = {k: [] for k in (*keys, "n")}
    for k in range(edges.size - 1):
        b = which == k
        n = int(b.sum())
        out["n"].append(n)
        if n < min_per_bin:
            for key in keys:
                out[key].append(np.nan)
            continue
        p16, med, p84 = np.percentile(d[b], [16.0, 50.0, 84.0])
        out["x"].append(float(np.median(x[b])))
        out["median"].append(med)
        out["p16"].append(p16)
        out["p84"].append(p84)
    return {k: np.asarray(v, dtype=int if k == "n" else float) for k, v in out.items()}


def rv_error(ctx: Context) -> np.ndarray:
    """eVrad [km/s] of every catalogue star (aligned with ``ctx.table``) from the arrays
    files' :data:`~gaiacnn.layout.RV_ERROR_DATASET`, NaN where unknown (or where a file lacks
    it); :class:`Skip` when neither arrays file has it."""
    have = [s for s in ("training", "observed") if ctx.has(RV_ERROR_DATASET, sample=s)]
    if not have:
        raise Skip(
            f"no {RV_ERROR_DATASET} in the arrays: the survey has no radial-velocity "
            "uncertainties (Gaia DR3 radial_velocity_error)"
        )
    out = np.full(len(ctx.table), np.nan)
    for sample in have:
        file_rows, rows = ctx.file_rows(sample)
        out[rows] = ctx.read_arrays(sample, [RV_ERROR_DATASET], file_rows)[RV_ERROR_DATASET]
    return out


def _labels(ctx: Context) -> list[str]:
    """The labels of the rows: :data:`RV_LABELS` the catalogue and the reference labels
    both have ([Fe/H] for a missing [M/H])."""
    ref = ctx.reference
    metal = ctx.metallicity([x for x in ctx.labels if x in ref])
    wanted = [metal if x == "m_h" else x for x in RV_LABELS]
    return [
        x
        for x in wanted
        if x is not None and x in ctx.labels and x in ref and np.isfinite(ref[x]).any()
    ]


def _gsp_spec(ctx: Context, labels: Sequence[str]) -> tuple[dict, str]:
    """GSP-Spec − reference per label, aligned with the catalogue (NaN where a star is not
    in the table or either value is missing), and a caption note; ({}, why) without a
    usable table.  A configured table that cannot be read raises
    :class:`~gaiacnn.figures.external.ExternalTableError` (bad input)."""
    try:
        m = external.matched(ctx, "gsp_spec")
    except Skip as why:
        return {}, f" No GSP-Spec points: {why}."
    ref = ctx.reference
    rows = m.frame["row"].to_numpy()
    out = {}
    for x in labels:
        col = f"ext_{x}"
        if col not in m.frame or x not in ref:
            continue  # e.g. [Fe/H] standing in for [M/H]: GSP-Spec gives [M/H]
        d = np.full(len(ctx.table), np.nan)
        d[rows] = m.frame[col].to_numpy(float) - ref[x].to_numpy(float)[rows]
        if np.isfinite(d).any():
            out[x] = d
    if not out:
        return {}, f" No GSP-Spec points: no star of {m.path.name} has a reference label."
    return out, (
        f" GSP-Spec − reference ({m.path.name}, {m.n_table} stars, quality cuts applied "
        "by the user): purple points, purple dashed line its running median"
    )


def _limits(values: Sequence[np.ndarray], q: float = 99.0) -> tuple[float, float]:
    """Symmetric residual limits ±m holding the ``q`` percentile of every |value|."""
    v = np.abs(np.concatenate([np.asarray(a, float).ravel() for a in values]))
    v = v[np.isfinite(v)]
    m = 1.15 * float(np.percentile(v, q)) if v.size else 1.0
    return (-m, m) if m > 0 else (-1.0, 1.0)


def _x_limits(x: np.ndarray) -> tuple[float, float]:
    """Log-axis limits of the positive finite eVrad [km/s], padded by 10 %."""
    x = x[np.isfinite(x) & (x > 0)]
    if not x.size:
        return 0.1, 10.0
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        lo, hi = lo / 2, hi * 2
    return lo / 1.1, hi * 1.1


def _panel(ax, x, d, colour: str, xlim, ylim) -> int:
    """The stars (points, or a 2-D histogram above :data:`SCATTER_MAX`), their running
    median (solid) and 16–84 % band; the number of stars drawn."""
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(x) & (x > 0) & np.isfinite(d)
    n = int(ok.sum())
    if n <= SCATTER_MAX:
        ax.scatter(x[ok], d[ok], s=2, color=colour, alpha=0.35, lw=0, rasterized=True)
    else:
        xe = np.geomspace(*xlim, 60)
        ye = np.linspace(*ylim, 50)
        st.density(ax, x[ok], d[ok], bins=[xe, ye])
    s = running_stats(x[ok], d[ok])
    if s["x"].size:
        ax.fill_between(s["x"], s["p16"], s["p84"], color=colour, alpha=0.35, lw=0)
        for edge in ("p16", "p84"):
            ax.plot(s["x"], s[edge], "-", color="k", lw=0.5, alpha=0.7)
        ax.plot(s["x"], s["median"], "-", color="k", lw=1.2, label="CNN running median")
    return n


# ---------------------------------------------------------------------- the figure
@figure(90)
def rv_error_residuals(ctx: Context) -> Iterator[Rendered]:
    """Fig. C.1: CNN − reference (and GSP-Spec − reference) against eVrad."""
    evrad = rv_error(ctx)
    labels = _labels(ctx)
    if not labels:
        raise Skip("no reference label of T_eff, log g, [M/H] (or [Fe/H]) or [alpha/M]")
    ref = ctx.reference
    resid = {x: ctx.column(x) - ref[x].to_numpy(float) for x in labels}
    with np.errstate(invalid="ignore"):
        known = np.isfinite(evrad) & (evrad > 0)
    any_resid = np.zeros(len(ctx.table), bool)
    for d in resid.values():
        any_resid |= np.isfinite(d)
    masks = {key: getattr(ctx, attr) for _, attr, key, _ in COLUMNS}
    counts = {key: int((m & known & any_resid).sum()) for key, m in masks.items()}
    unknown = {key: int((m & ~known & any_resid).sum()) for key, m in masks.items()}
    if not sum(counts.values()):
        raise Skip(
            "no training star, nor observed star inside the training limits, has both a "
            f"reference label and a radial-velocity uncertainty ({RV_ERROR_DATASET} > 0)"
        )
    gsp, gsp_note = _gsp_spec(ctx, labels)
    gsp_counts = {
        key: int((m & known & np.any([np.isfinite(d) for d in gsp.values()], axis=0)).sum())
        if gsp
        else 0
        for key, m in masks.items()
    }
    xlim = _x_limits(np.where(masks["training"] | masks["inside"], evrad, np.nan))
    fig, axes = st.new_figure(
        len(labels),
        len(COLUMNS),
        width=st.PAGE_WIDTH,
        height=1.75 * len(labels) + 0.5,
        sharex=True,
        sharey="row",
    )
    for row, x in zip(axes, labels, strict=True):
        drawn = [resid[x][masks[key] & known] for _, _, key, _ in COLUMNS]
        if x in gsp:
            drawn += [gsp[x][masks[key] & known] for _, _, key, _ in COLUMNS]
        ylim = _limits(drawn)
        for ax, (title, _, key, _) in zip(row, COLUMNS, strict=True):
            mask = masks[key]
            n = _panel(ax, evrad[mask], resid[x][mask], st.SAMPLE_COLOUR[key], xlim, ylim)
            text = f"CNN: {st.stars(n)}"
            if x in gsp:
                gx, gd = evrad[mask], gsp[x][mask]
                with np.errstate(invalid="ignore"):
                    ok = np.isfinite(gx) & (gx > 0) & np.isfinite(gd)
                ax.scatter(gx[ok], gd[ok], s=4, marker="x", color=GSP_COLOUR, alpha=0.6,
                           lw=0.5, rasterized=True)  # fmt: skip
                g = running_stats(gx[ok], gd[ok])
                if g["x"].size:
                    ax.plot(g["x"], g["median"], "--", color=GSP_COLOUR, lw=1.2,
                            label="GSP-Spec running median")  # fmt: skip
                text += f"\nGSP-Spec: {st.stars(int(ok.sum()))}"
            ax.axhline(0.0, color="k", ls=":", lw=0.8)
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.set_xlim(*xlim)
            ax.set_ylim(*ylim)
            st.corner_text(ax, text, "upper left", box=True)
            if x == labels[0]:
                ax.set_title(title)
            if x == labels[-1]:
                ax.set_xlabel(X_TEXT)
        row[0].set_ylabel(f"{st.label_name(x)} $-$ reference [{label_unit(x)}]")
    n_total = counts["training"] + counts["inside"]
    left_out = unknown["training"] + unknown["inside"]
    metal = next((x for x in labels if x in ("m_h", "fe_h")), "m_h")
    caption = (
        "CNN − reference label (e.g. APOGEE DR17) against the Gaia DR3 radial-velocity "
        "uncertainty eVrad [km/s] (log scale), one row per label: left, the training sample "
        f"({st.stars(counts['training'])}); right, the observed stars inside the training "
        f"limits that have a reference label ({st.stars(counts['inside'])}).  Points (a 2-D "
        f"histogram above {SCATTER_MAX} stars): the stars; black line and shaded band: "
        f"running median and 16–84 % range of CNN − reference in equal-count bins of eVrad "
        f"(at most "
        f"{MAX_BINS}, >= {MIN_PER_BIN} stars each); dotted: zero."
        + (
            f"{gsp_note} ({st.stars(gsp_counts['training'])} of the training sample, "
            f"{st.stars(gsp_counts['inside'])} observed inside the limits)."
            if gsp
            else gsp_note
        )
        + (
            f" {st.stars(left_out)} with a reference label but no eVrad (NaN or <= 0) left out."
            if left_out
            else ""
        )
        + metallicity_note(metal)
        + ctx.flag_note()
    )
    yield Rendered("figC1_rv_error", fig, caption, n_total)


@figure(91)
def input_distance_residuals(ctx: Context) -> Iterator[Rendered]:
    """Not in the paper: CNN − reference against the input-space distance (flag digit 9)
    of the observed stars with a reference label, inside the label limits and all of them:
    how the labels drift as a star's photometry and parallax leave the training stars'
    (farther, more reddened, worse parallaxes)."""
    table = ctx.table
    dist = table["input_distance"].to_numpy(float) if "input_distance" in table else None
    if dist is None or not np.isfinite(dist[~ctx.in_training]).any():
        raise Skip(
            "no input_distance in the catalogue: the arrays lack BP, RP, G, parallax or its "
            "error (the input-space digit is not available)"
        )
    labels = _labels(ctx)
    if not labels:
        raise Skip("no reference label of T_eff, log g, [M/H] (or [Fe/H]) or [alpha/M]")
    ref = ctx.reference
    resid = {x: ctx.column(x) - ref[x].to_numpy(float) for x in labels}
    observed = ~ctx.in_training
    has_ref = np.any([np.isfinite(d) for d in resid.values()], axis=0)
    columns = (
        ("observed, inside the training limits", ctx.inside, "inside"),
        ("observed, all", observed, "observed"),
    )
    counts = [int((m & has_ref & np.isfinite(dist) & (dist > 0)).sum()) for _, m, _ in columns]
    if not counts[1]:
        raise Skip("no observed star has both a reference label and an input-space distance")
    xlim = _x_limits(np.where(observed, dist, np.nan))
    xlim = (min(xlim[0], 0.5), max(xlim[1], 2.0))  # the digit's threshold (1) in view
    fig, axes = st.new_figure(
        len(labels), 2, width=st.PAGE_WIDTH, height=1.75 * len(labels) + 0.5,
        sharex=True, sharey="row",
    )  # fmt: skip
    for row, x in zip(axes, labels, strict=True):
        ylim = _limits([resid[x][m] for _, m, _ in columns])
        for ax, (title, mask, key), n in zip(row, columns, counts, strict=True):
            _panel(ax, dist[mask], resid[x][mask], st.SAMPLE_COLOUR[key], xlim, ylim)
            ax.axhline(0.0, color="k", ls=":", lw=0.8)
            ax.axvline(1.0, color="tab:red", ls="--", lw=0.9)
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.set_xlim(*xlim)
            ax.set_ylim(*ylim)
            if x == labels[0]:
                ax.set_title(title)
                st.corner_text(ax, st.stars(n), "upper left", box=True)
            if x == labels[-1]:
                ax.set_xlabel("input_distance (> 1: flag digit 9)")
        row[0].set_ylabel(f"{st.label_name(x)} $-$ reference [{label_unit(x)}]")
    metal = next((x for x in labels if x in ("m_h", "fe_h")), "m_h")
    caption = (
        "CNN − reference label against each observed star's distance from the training "
        "stars' inputs (BP − RP, M_G, parallax S/N; column input_distance, log scale; "
        "dashed red: 1, beyond which flag digit 9 is 1), one row per label: left, the "
        f"observed stars inside the training limits ({st.stars(counts[0])}); right, every "
        f"observed star with a reference label ({st.stars(counts[1])}).  Points (a 2-D "
        f"histogram above {SCATTER_MAX} stars) and the running median and 16–84 % range "
        "in equal-count bins; dotted: zero.  Stars farther, more reddened or with worse "
        "parallaxes than the training stars lie to the right (not in the paper; "
        "docs/shift.md)." + metallicity_note(metal) + ctx.flag_note()
    )
    yield Rendered("input_distance_residuals", fig, caption, counts[1])


FIGURES = [rv_error_residuals, input_distance_residuals]
