"""Comparisons with GALAH (Fig. 22), asteroseismic (21) and open-cluster (23) tables."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import matplotlib
import numpy as np
import pandas as pd

from gaiacnn.figures import style as st
from gaiacnn.figures.context import Context, Skip
from gaiacnn.figures.external.drawing import (
    _cnn_pairs,
    _difference_figure,
    _limits,
    _Pair,
    _points,
    _residual_limits,
    _stat_lines,
)
from gaiacnn.figures.external.tables import (
    MIN_CLUSTER_MEMBERS,
    SCATTER_MAX,
    SEISMIC_RANGES,
    _add_reference,
    _bs,
    _sample_counts,
    _samples,
    bias_sigma,
    matched,
)
from gaiacnn.figures.render import Rendered, figure


def _metallicity(ctx: Context, ext_columns, prefer: Sequence[str] = ("fe_h", "m_h")):
    """(table column, CNN label) of the metallicity comparison: the same quantity where the
    catalogue has it ([Fe/H] first), else the catalogue's [M/H] or [Fe/H]."""
    for x in prefer:
        if x in ext_columns and x in ctx.labels:
            return x, x
    for x in prefer:
        for y in ("fe_h", "m_h"):
            if x in ext_columns and y in ctx.labels:
                return x, y
    raise Skip("the catalogue has neither fe_h nor m_h")


@figure(22)
def galah(ctx: Context) -> Iterator[Rendered]:
    """Fig. 22: CNN - GALAH against GALAH: T_eff, log g, [Fe/H], [alpha/M] vs [alpha/Fe]."""
    m = matched(ctx, "galah")
    pairs = _cnn_pairs(ctx, "galah", ("teff", "logg"))
    try:
        ref_fe, cnn_fe = _metallicity(ctx, ("fe_h",))
    except Skip:  # no metallicity label: the other panels are still drawn
        ref_fe = cnn_fe = None
    if cnn_fe is not None:
        pairs.append(
            _Pair(
                "fe_h",
                "fe_h",
                f"cnn_{cnn_fe}",
                "ext_fe_h",
                st.label_text("fe_h", "GALAH "),
                f"CNN {st.label_name(cnn_fe)} $-$ GALAH [dex]",
            )
        )
    if "alpha_m" in ctx.labels:
        pairs.append(
            _Pair(
                "alpha",
                "alpha_m",
                "cnn_alpha_m",
                "ext_alpha_fe",
                "GALAH [$\\alpha$/Fe] [dex]",
                "CNN [$\\alpha$/M] $-$ GALAH [dex]",
            )
        )
    if not pairs:
        raise Skip("the catalogue has none of teff, logg, fe_h, m_h, alpha_m")
    shown = [x for x, present in (("T_eff", "teff"), ("log g", "logg")) if present in ctx.labels]
    if cnn_fe is not None:
        shown.append(f"CNN {cnn_fe} - GALAH {ref_fe}")
    if "alpha_m" in ctx.labels:
        alpha = "CNN [alpha/M] - GALAH [alpha/Fe] (note the different definitions)"
        shown = [", ".join(shown) + " and " + alpha] if shown else [alpha]
    what = "CNN minus GALAH DR3 labels against GALAH: " + ", ".join(shown)
    if cnn_fe is None:
        what += " (the catalogue has no fe_h or m_h label: no metallicity panel)"
    yield _difference_figure(ctx, m, pairs, "fig22_galah", what)


@figure(21)
def asteroseismic(ctx: Context) -> Iterator[Rendered]:
    """Fig. 21: reference (e.g. APOGEE), CNN and (if configured) GSP-Spec log g against the
    seismic log g, one-to-one and residual panels, bias and sigma in seismic log g ranges."""
    m = matched(ctx, "asteroseismic")
    frame = m.frame
    sources: list[tuple[str, str]] = []
    if _add_reference(ctx, frame, ("logg",)):
        sources.append(("reference", "ref_logg"))
    if "logg" in ctx.labels:
        sources.append(("CNN", "cnn_logg"))
    try:
        g = matched(ctx, "gsp_spec").frame
    except Skip:
        g = None
    if g is not None:
        lookup = pd.Series(g["ext_logg"].to_numpy(float), index=g["source_id"].to_numpy())
        frame["gsp_logg"] = lookup.reindex(frame["source_id"].to_numpy()).to_numpy(float)
        if np.isfinite(frame["gsp_logg"]).any():
            sources.append(("GSP-Spec", "gsp_logg"))
    if not sources:
        raise Skip("the catalogue has no logg and no reference log g")
    samples = _samples(frame)
    nrows, ncols = 2 * len(samples), len(sources)
    fig, axes = st.new_figure(
        nrows,
        ncols,
        width=st.PAGE_WIDTH if ncols > 1 else st.COLUMN_WIDTH,
        height=3.0 * len(samples) + 0.3,
        gridspec_kw={"height_ratios": [2.2, 1.0] * len(samples)},
    )
    seismic_all = frame["ext_logg"].to_numpy(float)
    lim = _limits(np.concatenate([seismic_all, *(frame[c].to_numpy(float) for _, c in sources)]))
    dlim = _residual_limits(
        np.concatenate([frame[c].to_numpy(float) - seismic_all for _, c in sources])
    )
    parts = []
    for i, (title, colour, f) in enumerate(samples):
        x = f["ext_logg"].to_numpy(float)
        for j, (who, col) in enumerate(sources):
            top, bottom = axes[2 * i, j], axes[2 * i + 1, j]
            y = f[col].to_numpy(float)
            d = y - x
            stats = bias_sigma(d)
            lines = []
            if stats[2] > SCATTER_MAX:
                _points(top, x, y, colour, lim, lim)
                _points(bottom, x, d, colour, lim, dlim)
            for lo, hi, c in SEISMIC_RANGES:
                r = (x >= lo) & (x < hi)
                if stats[2] <= SCATTER_MAX:
                    _points(top, x[r], y[r], c, lim, lim)
                    _points(bottom, x[r], d[r], c, lim, dlim)
                b, s, k = bias_sigma(d[r])
                if k:
                    lines.append((f"{_range_text(lo, hi)}: b = {b:+.2f}, σ = {s:.2f}", c))
            lines.append((f"all: b = {stats[0]:+.2f}, σ = {stats[1]:.2f}", "k"))
            top.plot(lim, lim, color="k", ls="--", lw=0.8)
            bottom.axhline(0.0, color="k", ls="--", lw=0.8)
            top.set_title(f"{title}: {who}, {st.stars(stats[2])}", fontsize=7)
            _stat_lines(top, lines, "lower right")
            for ax, ylim in ((top, lim), (bottom, dlim)):
                ax.set_xlim(*lim)
                ax.set_ylim(*ylim)
            top.set_ylabel(st.label_text("logg", f"{who} "))
            bottom.set_ylabel(f"{who} $-$ seismic", fontsize=7)
            bottom.set_xlabel(st.label_text("logg", "seismic "))
            parts.append(f"{title}, {who} - seismic: {_bs(stats, 'logg', 'sigma')} "
                         f"({st.stars(stats[2])})")  # fmt: skip
    n = sum(len(f) for _, _, f in samples)
    names = ", ".join(who for who, _ in sources)
    yield Rendered(
        "fig21_asteroseismic",
        fig,
        f"log g of {names} against the seismic log g of {m.path.name} for the {st.stars(n)} "
        f"in common: {_sample_counts(frame)}; top: one-to-one (dashed), bottom: "
        "difference; colours: seismic log g < 2.3, 2.3-2.6, >= 2.6, with their bias b and "
        "dispersion sigma. " + "; ".join(parts),
        n,
    )


def _range_text(lo: float, hi: float) -> str:
    if not np.isfinite(lo):
        return f"< {hi:g}"
    if not np.isfinite(hi):
        return f"$\\geq$ {lo:g}"
    return f"{lo:g}-{hi:g}"


def cluster_summary(
    frame: pd.DataFrame, ref: str, cnn: str, min_members: int = MIN_CLUSTER_MEMBERS
) -> pd.DataFrame:
    """Per cluster (column ``ext_cluster``) with at least ``min_members`` members having a
    finite ``ref`` and ``cnn``: n, the reference mean and standard deviation, the median
    and 16th/84th percentiles of the CNN value and delta = median - reference; sorted by
    the reference value."""
    ok = np.isfinite(frame[ref].to_numpy(float)) & np.isfinite(frame[cnn].to_numpy(float))
    rows = []
    for name, g in frame[ok].groupby("ext_cluster", sort=True):
        if len(g) < min_members:
            continue
        v = g[cnn].to_numpy(float)
        r = g[ref].to_numpy(float)
        p16, med, p84 = np.percentile(v, [16, 50, 84])
        rows.append(
            {
                "cluster": str(name),
                "n": len(g),
                "ref": float(r.mean()),
                "ref_sd": float(r.std()),
                "median": float(med),
                "p16": float(p16),
                "p84": float(p84),
                "delta": float(med - r.mean()),
            }
        )
    columns = ["cluster", "n", "ref", "ref_sd", "median", "p16", "p84", "delta"]
    out = pd.DataFrame(rows, columns=columns)
    return out.sort_values("ref", kind="stable").reset_index(drop=True)


@figure(23)
def open_clusters(ctx: Context) -> Iterator[Rendered]:
    """Fig. 23: per cluster, the CNN metallicity of its members (median, 16-84 %) against
    the cluster's reference value, and their difference."""
    m = matched(ctx, "open_clusters")
    ext_cols = [c.removeprefix("ext_") for c in m.frame.columns if c.startswith("ext_")]
    ref_lbl, cnn_lbl = _metallicity(ctx, ext_cols)
    frame = m.frame[~(~m.frame["in_training"] & ~m.frame["inside"])]
    summary = cluster_summary(frame, f"ext_{ref_lbl}", f"cnn_{cnn_lbl}")
    if summary.empty:
        raise Skip(
            f"no cluster of {m.path.name} has {MIN_CLUSTER_MEMBERS} matched members in the "
            "training sample or inside the training limits"
        )
    k = len(summary)
    fig, axes = st.new_figure(
        2,
        1,
        width=st.COLUMN_WIDTH * 1.4,
        height=4.6,
        sharex=True,
        gridspec_kw={"height_ratios": [3.0, 1.2]},
    )
    top, bottom = axes[0, 0], axes[1, 0]
    colours = matplotlib.colormaps[st.CMAP["sequential"]](np.linspace(0.0, 0.9, k))
    for c, row in zip(colours, summary.itertuples(index=False), strict=True):
        yerr = [[row.median - row.p16], [row.p84 - row.median]]
        label = f"{row.cluster} ({row.n}): {row.delta:+.2f}"
        top.errorbar(row.ref, row.median, xerr=row.ref_sd, yerr=yerr, fmt="o", ms=3,
                     color=c, elinewidth=0.8, capsize=1.5, label=label)  # fmt: skip
        bottom.errorbar(row.ref, row.delta, yerr=yerr, fmt="o", ms=3, color=c,
                        elinewidth=0.8, capsize=1.5)  # fmt: skip
    lo = min(summary["ref"].min(), summary["p16"].min()) - 0.1
    hi = max(summary["ref"].max(), summary["p84"].max()) + 0.1
    top.plot([lo, hi], [lo, hi], color="k", ls="--", lw=0.8)
    top.set_xlim(lo, hi)
    top.set_ylim(lo, hi)
    bottom.axhline(0.0, color="k", ls="--", lw=0.8)
    if k <= 15:
        top.legend(fontsize=5, loc="upper left", title="cluster (members): $\\Delta$",
                   title_fontsize=5)  # fmt: skip
    n = int(summary["n"].sum())
    stats = bias_sigma(summary["delta"].to_numpy())
    st.corner_text(top, f"{k} clusters\n{st.stars(n)}", "lower right")
    st.corner_text(bottom, f"{_bs(stats, cnn_lbl)} ({k} clusters)", "lower left")
    top.set_ylabel(st.label_text(cnn_lbl, "CNN ") + " (median)")
    bottom.set_ylabel("$\\Delta$ (CNN $-$ cluster)", fontsize=7)
    bottom.set_xlabel(st.label_text(ref_lbl, "cluster "))
    yield Rendered(
        "fig23_open_clusters",
        fig,
        f"CNN {cnn_lbl} (median and 16-84 % of the members) against the cluster {ref_lbl} of "
        f"{m.path.name} (mean and standard deviation over the members) for {k} clusters with "
        f">= {MIN_CLUSTER_MEMBERS} matched members in the training sample or inside the "
        f"training limits ({st.stars(n)}); dashed: one-to-one; bottom: Delta = CNN median - "
        f"cluster value; over the clusters {_bs(stats, cnn_lbl, 'sigma')}.",
        n,
    )
