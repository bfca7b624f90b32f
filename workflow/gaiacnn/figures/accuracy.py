"""Figures of the labels' accuracy and uncertainties: CNN − reference for the training sample
(Fig. 7 left, Sect. 3.3), the training uncertainties (Fig. 8, Sect. 3.4), the observed
uncertainties (Fig. 13), metal-poor stars at low S/N (Fig. 15, Sect. 4.4) and, for the demo
only, CNN − truth against the Cramér–Rao bound and the 1σ coverage per S/N bin."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np

from gaiacnn.constants import label_unit
from gaiacnn.ensemble import ONE_SIGMA_COVERAGE
from gaiacnn.figures import style as st
from gaiacnn.figures.context import Context, Skip, metallicity_note, snr_edges
from gaiacnn.figures.render import Rendered, figure

#: Fewest stars of an S/N bin whose statistics are drawn (demo figures), and of Fig. 15.
MIN_PER_BIN = 5
#: Defaults of ``figures.metal_poor`` (Fig. 15, Sect. 4.4): [M/H] in dex, S/N range.
DEFAULT_METAL_POOR = {"max_m_h": -1.0, "snr": (15.0, 25.0)}


# ---------------------------------------------------------------------- pure helpers
def snr_bin_names(edges: Sequence[float]) -> list[str]:
    """Tick text of each S/N bin: ``15-25``, ..., ``≥75``."""
    return [
        f"{lo:g}–{hi:g}" if np.isfinite(hi) else f"≥{lo:g}" for lo, hi in itertools.pairwise(edges)
    ]


def coverage(
    resid: np.ndarray, sigma: np.ndarray, snr: np.ndarray, edges: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of stars with |resid| ≤ sigma in each S/N bin [lo, hi) (NaN where empty),
    and the number of stars (finite resid and sigma) per bin."""
    resid, sigma, snr = (np.asarray(a, float) for a in (resid, sigma, snr))
    ok = np.isfinite(resid) & np.isfinite(sigma)
    frac, n = [], []
    for lo, hi in itertools.pairwise(edges):
        b = ok & (snr >= lo) & (snr < hi)
        n.append(int(b.sum()))
        frac.append(float(np.mean(np.abs(resid[b]) <= sigma[b])) if b.any() else np.nan)
    return np.asarray(frac), np.asarray(n)


def snr_bin_stats(
    resid: np.ndarray,
    snr: np.ndarray,
    edges: Sequence[float],
    bound: np.ndarray | None = None,
    min_count: int = MIN_PER_BIN,
) -> dict[str, np.ndarray]:
    """Per S/N bin [lo, hi): ``n``, ``median``, ``p16``, ``p84`` and ``std`` (ddof=1) of the
    finite residuals and the ``median_bound`` of ``bound`` (same unit); NaN where a bin has
    fewer than ``min_count`` stars."""
    resid, snr = np.asarray(resid, float), np.asarray(snr, float)
    ok = np.isfinite(resid)
    keys = ("median", "p16", "p84", "std", "median_bound")
    out: dict[str, list] = {k: [] for k in ("n", *keys)}
    for lo, hi in itertools.pairwise(edges):
        b = ok & (snr >= lo) & (snr < hi)
        n = int(b.sum())
        out["n"].append(n)
        if n < max(min_count, 2):
            for k in keys:
                out[k].append(np.nan)
            continue
        d = resid[b]
        p16, med, p84 = np.percentile(d, [16.0, 50.0, 84.0])
        out["median"].append(med)
        out["p16"].append(p16)
        out["p84"].append(p84)
        out["std"].append(np.std(d, ddof=1))
        out["median_bound"].append(float(np.nanmedian(bound[b])) if bound is not None else np.nan)
    return {k: np.asarray(v, dtype=int if k == "n" else float) for k, v in out.items()}


def _span(x: np.ndarray, q: tuple[float, float] = (0.5, 99.5)) -> list[float]:
    """Plot range of the finite ``x``: its ``q`` percentiles, padded 5 %, never empty."""
    x = x[np.isfinite(x)]
    if not x.size:
        return [0.0, 1.0]
    lo, hi = np.percentile(x, q)
    pad = 0.05 * (hi - lo) if hi > lo else 0.5 * max(abs(lo), 1e-3)
    return [float(lo - pad), float(hi + pad)]


def _symmetric(d: np.ndarray, q: float = 99.5) -> list[float]:
    """Range ±m around zero holding the ``q`` percentile of |d| (padded 10 %)."""
    d = np.abs(d[np.isfinite(d)])
    m = 1.1 * float(np.percentile(d, q)) if d.size else 1.0
    return [-m, m] if m > 0 else [-1.0, 1.0]


def _value(v: float, name: str) -> str:
    """``59 K`` or ``0.071 dex``."""
    unit = label_unit(name)
    return f"{v:.0f} {unit}" if unit == "K" else f"{v:.3f} {unit}"


def _panels(n: int, ncols: int = 3, row_height: float = 2.2):
    """A figure with ``n`` panels on a grid (page wide unless one column); (fig, axes[n])."""
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    width = st.PAGE_WIDTH if ncols > 1 else st.COLUMN_WIDTH
    fig, axes = st.new_figure(nrows, ncols, width=width, height=row_height * nrows + 0.2)
    flat = axes.ravel()
    for ax in flat[n:]:
        ax.set_axis_off()
    return fig, flat[:n]


def _residual_panel(
    ax, ref: np.ndarray, cnn: np.ndarray, name: str, *, bins: int = 80, with_hist: bool = True
) -> int:
    """Density of CNN − reference against the reference label, zero line, b and σ; the
    number of stars drawn."""
    d = cnn - ref
    ok = np.isfinite(ref) & np.isfinite(d)
    n = int(ok.sum())
    ax.set_xlabel(st.label_text(name, "reference "))
    ax.set_ylabel(st.label_text(name, r"$\Delta$"))
    if not n:
        st.corner_text(ax, "no stars")
        return 0
    x, d = ref[ok], d[ok]
    xr = _span(x)
    st.density(ax, x, d, bins=bins, range_=[xr, _symmetric(d)])
    if with_hist:  # the reference label's histogram along the bottom (Fig. 7)
        counts, edges = np.histogram(x, bins=bins, range=xr)
        twin = ax.twinx()
        twin.stairs(counts, edges, color="0.45", lw=0.7)
        twin.set_ylim(0, max(1, counts.max()) / 0.3)
        twin.set_yticks([])
    ax.axhline(0.0, color="k", ls="--", lw=0.8)
    ax.set_xlim(*xr)
    sd = float(np.std(d, ddof=1)) if n > 1 else np.nan
    st.corner_text(
        ax,
        f"b = {_value(float(np.mean(d)), name)}\n$\\sigma$ = {_value(sd, name)}\n{st.stars(n)}",
        box=True,
    )
    return n


def _reference_labels(ctx: Context, mask: np.ndarray) -> list[str]:
    """Labels with a finite reference value for at least one star of ``mask``."""
    ref = ctx.reference
    return [x for x in ctx.labels if x in ref and np.isfinite(ref[x].to_numpy(float)[mask]).any()]


# ---------------------------------------------------------------------- paper figures
@figure(7)
def residuals(ctx: Context) -> Iterator[Rendered]:
    m = ctx.in_training
    labels = _reference_labels(ctx, m)
    if not labels:
        raise Skip("no training star has a reference label")
    ref = ctx.reference
    fig, axes = _panels(len(labels))
    counts = [
        _residual_panel(ax, ref[x].to_numpy(float)[m], ctx.column(x)[m], x)
        for ax, x in zip(axes, labels, strict=True)
    ]
    n = max(counts)
    yield Rendered(
        "fig07_residuals",
        fig,
        "Density of CNN − reference label (Δ) against the reference label for the training "
        f"sample ({st.stars(n)}); dashed: zero; mean bias b and standard deviation σ in each "
        "panel; grey: histogram of the reference label.",
        n,
    )


@figure(8)
def training_uncertainties(ctx: Context) -> Iterator[Rendered]:
    m = ctx.in_training
    if not m.any():
        raise Skip("no training star in the catalogue")
    fits = ctx.dispersion_fits
    labels = [
        x for x in ctx.labels if x in fits and f"e_{x}" in ctx.table and f"sigma_{x}" in ctx.table
    ]
    if not labels:
        raise Skip("no label has e_, sigma_ columns and a running-dispersion fit")
    fig, axes = st.new_figure(
        len(labels), 2, width=st.PAGE_WIDTH, height=1.9 * len(labels) + 0.3, sharey="row"
    )
    for row, x in zip(axes, labels, strict=True):
        fit = fits[x]
        cnn, e, sigma = (ctx.column(c)[m] for c in (x, f"e_{x}", f"sigma_{x}"))
        xr = _span(cnn)
        top = max(
            float(np.nanpercentile(sigma, 99.5)) if np.isfinite(sigma).any() else 0.0,
            float(np.nanmax(fit.dispersion)),
        )
        yr = [0.0, 1.15 * top if top > 0 else 1.0]
        grid = np.linspace(*xr, 200)
        inside = (grid >= fit.x_min) & (grid <= fit.x_max)
        for ax, values, what in ((row[0], e, "internal"), (row[1], sigma, "total")):
            st.density(ax, cnn, values, bins=(80, 60), range_=[xr, yr])
            curve = fit(grid)
            ax.plot(grid[inside], curve[inside], color="k", lw=1.2, label="fit D")
            ax.plot(grid, np.where(inside, np.nan, curve), color="k", lw=0.8, ls=":")
            ax.set_xlim(*xr)
            ax.set_ylim(*yr)
            ax.set_xlabel(st.label_text(x, "CNN "))
            st.corner_text(ax, what, "upper right", box=True)
        row[0].plot(fit.centres, fit.dispersion, "o", color="k", ms=3, label="running σ")
        row[0].set_ylabel(st.label_text(x, r"$\sigma$ "))
    axes[0, 0].legend(loc="upper left", fontsize=6)
    n = int(m.sum())
    calibrated = [
        k
        for k, v in (ctx.uncertainty_doc.get("snr_calibration") or {}).items()
        if v and k in labels
    ]
    note = (
        f", times the S/N calibration factor for {', '.join(calibrated)} (not in the paper)"
        if calibrated
        else ""
    )
    yield Rendered(
        "fig08_training_uncertainties",
        fig,
        f"Uncertainties of the training sample ({st.stars(n)}) against the CNN labels: left, "
        "density of the internal (model-to-model) spread e with the running dispersion of "
        "CNN − reference (points, at each bin's median reference label) and its polynomial "
        "fit D (line; dotted where clamped); right, density of the total uncertainty "
        f"sigma = sqrt(e² + D²){note}.",
        n,
    )


@figure(13)
def observed_uncertainties(ctx: Context) -> Iterator[Rendered]:
    inside, outside = ctx.inside, ctx.outside
    if not inside.any():
        raise Skip("no observed star inside the training limits")
    labels = [x for x in ctx.labels if f"sigma_{x}" in ctx.table]
    if not labels:
        raise Skip("the catalogue has no sigma_ column")
    grey = st.CMAP["background"]
    fig, axes = _panels(len(labels))
    for ax, x in zip(axes, labels, strict=True):
        cnn, sigma = ctx.column(x), ctx.column(f"sigma_{x}")
        # axes: the inside stars' labels (the training limits), the larger sigma of either
        xr = _span(cnn[inside])
        bottom, top = _span(sigma[inside])
        if np.isfinite(sigma[outside]).any():
            top = max(top, _span(sigma[outside], (0.5, 95.0))[1])
        rng = [xr, [max(0.0, bottom), top]]
        if outside.any():
            st.density(ax, cnn[outside], sigma[outside], bins=70, range_=rng, cmap=grey)
        st.density(ax, cnn[inside], sigma[inside], bins=70, range_=rng)
        ax.set_xlim(*rng[0])
        ax.set_ylim(*rng[1])
        ax.set_xlabel(st.label_text(x, "CNN "))
        ax.set_ylabel(st.label_text(x, r"$\sigma$ "))
    n_in, n_out = int(inside.sum()), int(outside.sum())
    yield Rendered(
        "fig13_observed_uncertainties",
        fig,
        "Density of the total uncertainty sigma against the CNN label for the observed stars "
        f"inside the training limits ({st.stars(n_in)}); grey behind: the {st.stars(n_out)} "
        "outside them (flag_boundary "
        + ("not all zeros" if not ctx.unavailable_digits else "with a digit 1")
        + "; those within the axes)."
        + ctx.flag_note(),
        n_in + n_out,
    )


@figure(15)
def metal_poor(ctx: Context) -> Iterator[Rendered]:
    cfg = {**DEFAULT_METAL_POOR, **(ctx.cfg.get("metal_poor") or {})}
    max_m_h = float(cfg["max_m_h"])
    lo, hi = (float(v) for v in cfg["snr"])
    ref = ctx.reference
    metal = ctx.metallicity(list(ref.columns))  # [Fe/H] stands in for a missing [M/H]
    if metal is None:
        raise Skip("no reference [M/H] (nor [Fe/H]): the arrays files have no labels/m_h")
    name = st.label_name(metal)
    snr = ctx.measured("rvs_snr")
    with np.errstate(invalid="ignore"):
        m = ctx.inside & (ref[metal].to_numpy(float) < max_m_h) & (snr >= lo) & (snr < hi)
    n = int(m.sum())
    if n < MIN_PER_BIN:
        raise Skip(
            f"{n} observed stars inside the training limits with reference {name} < "
            f"{max_m_h:g} and {lo:g} <= S/N < {hi:g} (fewer than {MIN_PER_BIN})"
        )
    labels = _reference_labels(ctx, m)
    fig, axes = _panels(len(labels))
    for ax, x in zip(axes, labels, strict=True):
        _residual_panel(
            ax, ref[x].to_numpy(float)[m], ctx.column(x)[m], x, bins=40, with_hist=False
        )
    yield Rendered(
        "fig15_metal_poor",
        fig,
        "Density of CNN − reference label (Δ) against the reference label for the "
        f"{st.stars(n)} of the observed sample inside the training limits with reference "
        f"{name} < {max_m_h:g} dex and {lo:g} <= S/N < {hi:g}; dashed: zero; mean bias b and "
        "standard deviation σ in each panel." + metallicity_note(metal) + ctx.flag_note(),
        n,
    )


# ---------------------------------------------------------------------- demo figures
def _truth_labels(ctx: Context) -> list[str]:
    truth = ctx.truth  # Skip outside the demo
    labels = [x for x in ctx.labels if x in truth]
    if not labels:
        raise Skip("the truth file has none of the catalogue's labels")
    return labels


_DEMO_SAMPLES = (("training", "training"), ("inside", "observed, inside"))


#: The x axis of the demo figures without S/N: every star in one bin.
NO_SNR_AXIS = "all stars (no S/N in the data)"


def _demo_bins(ctx: Context) -> tuple[np.ndarray, list[float], list[str], np.ndarray, dict]:
    """What both demo figures bin by: S/N per star, the S/N bin edges, their names, their
    x positions, and the masks of the two samples (``_DEMO_SAMPLES``).  Without S/N in the
    data (no rvs/snr): one bin of every star, named ``all``."""
    masks = {"training": ctx.in_training, "inside": ctx.inside}
    snr = ctx.optional("rvs_snr")
    if snr is None:
        return np.zeros(len(ctx.table)), [-np.inf, np.inf], ["all"], np.zeros(1), masks
    edges = snr_edges(ctx.cfg)
    names = snr_bin_names(edges)
    return snr, edges, names, np.arange(len(names), dtype=float), masks


def _snr_axis(names: Sequence[str]) -> tuple[str, str]:
    """(x-axis label, caption words) of the demo figures' bins."""
    if list(names) == ["all"]:
        return NO_SNR_AXIS, "over all stars (one bin: the data have no rvs/snr)"
    return "RVS S/N", "per S/N bin"


@figure(100)
def demo_truth_residuals_snr(ctx: Context) -> Iterator[Rendered]:
    labels = _truth_labels(ctx)
    truth = ctx.truth
    snr, edges, names, pos, masks = _demo_bins(ctx)
    fig, axes = st.new_figure(
        len(labels), 2, width=st.PAGE_WIDTH, height=1.7 * len(labels) + 0.3, sharex=True
    )
    for row, x in zip(axes, labels, strict=True):
        resid = ctx.column(x) - truth[x].to_numpy(float)
        for k, (key, text) in enumerate(_DEMO_SAMPLES):
            colour = st.SAMPLE_COLOUR[key]
            dx = (k - 0.5) * 0.16
            mk = masks[key]
            for kind, ls in (("all", "-"), ("rvs", "--")):
                col = f"crlb_{kind}_{x}"
                bound = truth[col].to_numpy(float)[mk] if col in truth else None
                s = snr_bin_stats(resid[mk], snr[mk], edges, bound)
                if kind == "all":
                    row[0].errorbar(
                        pos + dx,
                        s["median"],
                        yerr=[s["median"] - s["p16"], s["p84"] - s["median"]],
                        fmt="o",
                        ms=3,
                        capsize=2,
                        color=colour,
                        label=text,
                    )
                if bound is not None:
                    with np.errstate(invalid="ignore", divide="ignore"):
                        ratio = s["std"] / s["median_bound"]
                    row[1].plot(
                        pos + dx, ratio, "o", ls=ls, ms=3, color=colour, label=f"{text}, {kind}"
                    )
        row[0].axhline(0.0, color="k", ls="--", lw=0.8)
        row[0].set_ylabel(st.label_text(x, r"$\Delta$"))
        row[1].axhline(1.0, color="0.4", ls=":", lw=0.8)
        row[1].set_ylabel(r"$\sigma$ / CRLB " + f"({st.label_name(x)})")
        row[1].set_ylim(bottom=0)
    xlabel, per_bin = _snr_axis(names)
    for ax in axes[-1]:
        ax.set_xticks(pos, names)
        ax.set_xlabel(xlabel)
    axes[0, 0].legend(fontsize=6)
    axes[0, 1].legend(fontsize=5)
    n = int(sum(int(m.sum()) for m in masks.values()))
    yield Rendered(
        "demo_truth_residuals_snr",
        fig,
        f"Demo: left, median and 16–84 % range of CNN − true label (Δ) {per_bin} for the "
        f"training stars ({st.stars(int(masks['training'].sum()))}) and the observed stars "
        f"inside the training limits ({st.stars(int(masks['inside'].sum()))}); right, the ratio "
        "of the scatter σ(CNN − truth) to the median Cramér–Rao bound of all inputs (solid) and "
        f"of the spectrum alone (dashed); 1 = the information limit; bins with < {MIN_PER_BIN} "
        "stars omitted." + ctx.flag_note(),
        n,
    )


@figure(101)
def demo_sigma_coverage(ctx: Context) -> Iterator[Rendered]:
    labels = [x for x in _truth_labels(ctx) if f"sigma_{x}" in ctx.table]
    if not labels:
        raise Skip("the catalogue has no sigma_ column")
    truth = ctx.truth
    snr, edges, names, pos, masks = _demo_bins(ctx)
    fig, axes = _panels(len(labels), row_height=2.0)
    for ax, x in zip(axes, labels, strict=True):
        resid = ctx.column(x) - truth[x].to_numpy(float)
        sigma = ctx.column(f"sigma_{x}")
        for key, text in _DEMO_SAMPLES:
            mk = masks[key]
            frac, n = coverage(resid[mk], sigma[mk], snr[mk], edges)
            frac = np.where(n >= MIN_PER_BIN, frac, np.nan)
            ax.plot(pos, frac, "o-", ms=3, color=st.SAMPLE_COLOUR[key], label=text)
        ax.axhline(ONE_SIGMA_COVERAGE, color="k", ls="--", lw=0.8)
        ax.set_ylim(0, 1.02)
        ax.set_xticks(pos, names)
        ax.set_xlabel(_snr_axis(names)[0])
        ax.set_ylabel(r"fraction with |$\Delta$| $\leq \sigma$")
        ax.set_title(st.label_name(x))
    axes[0].legend(fontsize=6, loc="lower left")
    n = int(sum(int(m.sum()) for m in masks.values()))
    yield Rendered(
        "demo_sigma_coverage",
        fig,
        "Demo: fraction of stars whose true label lies within ±sigma_<label> of the CNN "
        f"label {_snr_axis(names)[1]}, for the training stars "
        f"({st.stars(int(masks['training'].sum()))}) and the observed stars inside the "
        f"training limits ({st.stars(int(masks['inside'].sum()))}); dashed: 68.27 %; bins "
        f"with < {MIN_PER_BIN} stars omitted." + ctx.flag_note(),
        n,
    )


FIGURES = [
    residuals,
    training_uncertainties,
    observed_uncertainties,
    metal_poor,
    demo_truth_residuals_snr,
    demo_sigma_coverage,
]
