"""S/N (Fig. 1), G (3), Kiel diagrams (4, 11), correlations (5), [alpha/M] (14), precision (16)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from gaiacnn.constants import label_unit
from gaiacnn.figures import external
from gaiacnn.figures import style as st
from gaiacnn.figures.context import Context, Skip, metallicity_note, photometry
from gaiacnn.figures.render import Rendered, figure
from gaiacnn.figures.samples.common import (
    _bin_text,
    _join,
    _need,
    _need_metallicity,
    _sample_histograms,
    _snr_bins,
)


@figure(1)
def snr_distribution(ctx: Context) -> Iterator[Rendered]:
    snr = ctx.measured("rvs_snr")
    ok = np.isfinite(snr) & (snr > 0)
    if not ok.any():
        raise Skip("no finite S/N")
    fig, ax = st.new_figure()
    ax = ax[0, 0]
    bins = np.geomspace(max(1.0, snr[ok].min()), snr[ok].max() * 1.01, 60)
    counts = _sample_histograms(ax, ctx, snr, ok, bins)
    lo, hi = _snr_bins(ctx)[0]  # the lowest S/N bin (15-25 in the paper, Sect. 4.2)
    for x in (lo, hi):
        if np.isfinite(x):
            ax.axvline(x, color="0.5", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("RVS S/N (rvs_spec_sig_to_noise)")
    ax.set_ylabel("stars per bin")
    ax.legend()
    low = int((ok & (snr >= lo) & (snr < hi)).sum())
    yield Rendered(
        "fig01_snr",
        fig,
        f"RVS S/N distribution of the training ({st.stars(counts['training'])}) and observed "
        f"({st.stars(counts['observed'])}) samples; {low / max(1, ok.sum()):.0%} of the spectra "
        f"have {lo:g} <= S/N < {hi:g} (dotted lines).",
        int(ok.sum()),
    )


@figure(3)
def g_distribution(ctx: Context) -> Iterator[Rendered]:
    g = ctx.measured("phot_g_mean_mag")
    ok = np.isfinite(g)
    fig, ax = st.new_figure()
    ax = ax[0, 0]
    bins = np.linspace(np.nanmin(g), np.nanmax(g) + 1e-6, 50)
    counts = _sample_histograms(ax, ctx, g, ok, bins)
    ax.set_yscale("log")
    ax.set_xlabel("Gaia $G$ [mag]")
    ax.set_ylabel("stars per bin")
    ax.legend()
    yield Rendered(
        "fig03_g_mag",
        fig,
        f"Gaia G magnitude distributions of the training ({st.stars(counts['training'])}) "
        f"and observed ({st.stars(counts['observed'])}) samples.",
        int(ok.sum()),
    )


@figure(4)
def training_kiel(ctx: Context) -> Iterator[Rendered]:
    _need(ctx, "teff", "logg")
    ref = ctx.reference
    missing = [x for x in ("teff", "logg") if x not in ref]
    if missing:
        raise Skip(f"the arrays files have no reference {', '.join(missing)} (labels/<name>)")
    metal = ctx.metallicity(list(ref.columns))  # colour: [M/H] ([Fe/H]) where there is one
    m = ctx.in_training
    teff, logg = (ref[k].to_numpy(float)[m] for k in ("teff", "logg"))
    ok = np.isfinite(teff) & np.isfinite(logg)
    if not ok.any():
        raise Skip("no training star has a reference teff and logg")
    rng = [[3000.0, 7500.0], [-0.5, 5.5]]
    n = int(ok.sum())
    if metal is None:  # no metallicity label: the density panel alone
        fig, axes = st.new_figure(1, 1, width=st.COLUMN_WIDTH, height=3.2)
        mesh = st.density(axes[0, 0], teff, logg, bins=80, range_=rng)
        fig.colorbar(mesh, ax=axes[0, 0], label="stars per bin")
        st.kiel_axes(axes[0, 0], (7500, 3000), (5.5, -0.5))
        st.corner_text(axes[0, 0], st.stars(n))
        yield Rendered(
            "fig04_training_kiel",
            fig,
            "Kiel diagram of the training sample from its reference labels, coloured by star "
            f"density; {st.stars(n)} (no [M/H] or [Fe/H] label to colour by).",
            n,
        )
        return
    mh = ref[metal].to_numpy(float)[m]
    fig, axes = st.new_figure(1, 2, width=st.PAGE_WIDTH, height=3.2, sharey=True)
    mean, xe, ye = st.binned_mean(teff, logg, mh, bins=80, range_=rng)
    mesh = axes[0, 0].pcolormesh(xe, ye, mean.T, cmap=st.CMAP["sequential"], rasterized=True)
    fig.colorbar(mesh, ax=axes[0, 0], label="mean " + st.label_text(metal, "reference "))
    mesh = st.density(axes[0, 1], teff, logg, bins=80, range_=rng)
    fig.colorbar(mesh, ax=axes[0, 1], label="stars per bin")
    for ax in axes[0]:
        st.kiel_axes(ax, (7500, 3000), (5.5, -0.5))
        st.corner_text(ax, st.stars(n))
    axes[0, 1].set_ylabel("")
    yield Rendered(
        "fig04_training_kiel",
        fig,
        "Kiel diagram of the training sample from its reference labels, coloured by the "
        f"mean reference {st.label_name(metal)} (left) and by star density (right); "
        f"{st.stars(n)}.{metallicity_note(metal)}",
        n,
    )


def _correlation(columns: dict[str, np.ndarray], mask: np.ndarray) -> tuple[np.ndarray, int]:
    x = np.stack([v[mask] for v in columns.values()], axis=1)
    ok = np.all(np.isfinite(x), axis=1)
    n = int(ok.sum())
    if n < 3:
        return np.full((x.shape[1],) * 2, np.nan), n
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.corrcoef(x[ok], rowvar=False), n


@figure(5)
def correlation_matrices(ctx: Context) -> Iterator[Rendered]:
    phot = photometry(ctx)
    columns = {st.label_name(x): ctx.column(x) for x in ctx.labels}
    for key, tex in (("g", "$G$"), ("bp", "$G_\\mathrm{BP}$"), ("rp", "$G_\\mathrm{RP}$")):
        columns[tex] = phot[key].to_numpy(float)
    for key, name in ((r"$\varpi$", "parallax"), ("S/N", "rvs_snr")):
        values = ctx.optional(name)  # None where the data lack it: left out below
        columns[key] = values if values is not None else np.full(len(ctx.table), np.nan)
    columns = {k: v for k, v in columns.items() if np.isfinite(v).any()}
    if not columns:
        raise Skip("no catalogue label or input with a finite value")
    shown = [
        text
        for key, text in (
            ("$G$", "G"),
            ("$G_\\mathrm{BP}$", "G_BP"),
            ("$G_\\mathrm{RP}$", "G_RP"),
            (r"$\varpi$", "parallax"),
            ("S/N", "S/N"),
        )
        if key in columns
    ]
    absent = [
        text
        for key, text in (("$G$", "photometry"), (r"$\varpi$", "parallax"), ("S/N", "S/N"))
        if key not in columns
    ]
    samples = (
        ("training", ctx.in_training),
        ("observed, inside the training limits", ctx.inside),
        ("observed, outside", ctx.outside),
    )
    fig, axes = st.new_figure(1, 3, width=st.PAGE_WIDTH * 1.3, height=3.2)
    names = list(columns)
    total = 0
    for ax, (title, mask) in zip(axes[0], samples, strict=True):
        c, n = _correlation(columns, mask)
        total += n
        im = ax.imshow(c, cmap=st.CMAP["diverging"], vmin=-1, vmax=1)
        for i in range(len(names)):
            for j in range(len(names)):
                if np.isfinite(c[i, j]):
                    ax.text(j, i, f"{c[i, j]:.2f}", ha="center", va="center", fontsize=5)
        ax.set_xticks(range(len(names)), names, rotation=90)
        ax.set_yticks(range(len(names)), names)
        ax.set_title(f"{title}\n{st.stars(n)}")
    fig.colorbar(im, ax=axes[0, :], label="Pearson correlation", shrink=0.8)
    yield Rendered(
        "fig05_correlations",
        fig,
        f"Correlation matrices of {_join(['the CNN labels', *shown])} for the "
        f"training sample ({st.stars(int(ctx.in_training.sum()))}), the observed stars inside "
        f"the training limits ({st.stars(int(ctx.inside.sum()))}) and outside them "
        f"({st.stars(int(ctx.outside.sum()))})."
        + (f" No {_join(absent, 'or')} in the data." if absent else "")
        + ctx.flag_note(),
        total,
    )


@figure(11)
def observed_kiel_by_snr(ctx: Context) -> Iterator[Rendered]:
    _need(ctx, "teff", "logg")
    metal = ctx.metallicity()  # colour; star density without a metallicity label
    snr = ctx.optional("rvs_snr")  # one panel of every observed star without S/N
    teff, logg = (ctx.column(x) for x in ("teff", "logg"))
    mh = ctx.column(metal) if metal is not None else None
    obs = ~ctx.in_training
    if not obs.any():
        raise Skip("no observed star in the catalogue")
    bins = _snr_bins(ctx) if snr is not None else [(-np.inf, np.inf)]
    fig, axes = st.new_figure(
        1,
        len(bins),
        width=st.PAGE_WIDTH if snr is not None else st.COLUMN_WIDTH,
        height=2.6 if snr is not None else 3.2,
        sharey=True,
    )
    rng = [[3000.0, 8000.0], [-0.5, 5.5]]
    total, mesh = 0, None
    for ax, (lo, hi) in zip(axes[0], bins, strict=True):
        m = obs & (snr >= lo) & (snr < hi) if snr is not None else obs
        total += int(m.sum())
        if mh is not None:
            mean, xe, ye = st.binned_mean(teff[m], logg[m], mh[m], bins=70, range_=rng)
            mesh = ax.pcolormesh(
                xe, ye, mean.T, cmap=st.CMAP["sequential"], vmin=-1.5, vmax=0.5, rasterized=True
            )
        else:
            mesh = st.density(ax, teff[m], logg[m], bins=70, range_=rng)
        st.kiel_axes(ax, (8000, 3000), (5.5, -0.5))
        ax.set_title(_bin_text(lo, hi) if snr is not None else "every observed star (no S/N)")
        st.corner_text(ax, st.stars(int(m.sum())))
        if ax is not axes[0, 0]:
            ax.set_ylabel("")
    if mh is not None:
        fig.colorbar(mesh, ax=axes[0, :], label="mean " + st.label_text(metal, "CNN "))
        colour = f"coloured by the mean CNN {st.label_name(metal)}"
    else:
        fig.colorbar(mesh, ax=axes[0, :], label="stars per bin")
        colour = "coloured by star density (no [M/H] or [Fe/H] label)"
    where = (
        "in S/N bins" if snr is not None else "in one panel (the data have no rvs/snr: no S/N bins)"
    )
    yield Rendered(
        "fig11_observed_kiel_snr",
        fig,
        f"Kiel diagrams of the observed sample (CNN labels) {where}, {colour}; "
        f"{st.stars(total)}.{metallicity_note(metal) if metal else ''}",
        total,
    )


@figure(14)
def alpha_vs_metallicity_kiel_bins(ctx: Context) -> Iterator[Rendered]:
    _need(ctx, "teff", "logg", "alpha_m")
    metal = _need_metallicity(ctx)
    teff, logg, mh, am = (ctx.column(x) for x in ("teff", "logg", metal, "alpha_m"))
    m = ctx.inside
    t_step = float(ctx.cfg.get("kiel_bin_teff", 500.0))  # 500 K (Fig. 14)
    g_step = float(ctx.cfg.get("kiel_bin_logg", 1.0))  # 1 dex (Fig. 14)
    min_stars = int(ctx.cfg.get("min_stars_per_panel", 20))
    if m.sum() < min_stars:
        raise Skip(f"{int(m.sum())} observed stars inside the training limits")
    t_edges = np.arange(
        np.floor(np.nanmin(teff[m]) / t_step) * t_step, np.nanmax(teff[m]) + t_step, t_step
    )
    g_edges = np.arange(
        np.floor(np.nanmin(logg[m]) / g_step) * g_step, np.nanmax(logg[m]) + g_step, g_step
    )
    cells = []
    for gi in range(len(g_edges) - 1):
        for ti in range(len(t_edges) - 1):
            c = (
                m
                & (teff >= t_edges[ti])
                & (teff < t_edges[ti + 1])
                & (logg >= g_edges[gi])
                & (logg < g_edges[gi + 1])
            )
            if c.sum() >= min_stars:
                cells.append((t_edges[ti], g_edges[gi], c))
    if not cells:
        raise Skip(f"no T_eff x log g bin holds {min_stars} stars")
    n_panels = len(cells) + 1
    ncols = min(5, n_panels)
    nrows = int(np.ceil(n_panels / ncols))
    fig, axes = st.new_figure(nrows, ncols, width=st.PAGE_WIDTH, height=1.55 * nrows + 0.4)
    flat = axes.ravel()
    st.density(flat[0], teff[m], logg[m], bins=60)
    st.kiel_axes(
        flat[0], (np.nanmax(teff[m]), np.nanmin(teff[m])), (np.nanmax(logg[m]), np.nanmin(logg[m]))
    )
    rng = [[-2.0, 0.6], [-0.15, 0.45]]
    for ax, (t0, g0, c) in zip(flat[1:], cells, strict=False):
        # linear scale: the high- and low-alpha sequences show as two ridges (Sect. 4.3)
        st.density(ax, mh[c], am[c], bins=45, range_=rng, log=False)
        ax.set_title(f"{t0:.0f}-{t0 + t_step:.0f} K, {g0:.1f}-{g0 + g_step:.1f}", fontsize=7)
        st.corner_text(ax, st.stars(int(c.sum())), "lower left")
        ax.set_xlabel(st.label_text(metal), fontsize=7)
        ax.set_ylabel(st.label_text("alpha_m"), fontsize=7)
    for ax in flat[n_panels:]:
        ax.set_axis_off()
    n = int(m.sum())
    yield Rendered(
        "fig14_alpha_m_h_kiel_bins",
        fig,
        f"[alpha/M] against {st.label_name(metal)} of the observed stars inside the training "
        f"limits ({st.stars(n)}) in bins of {t_step:g} K in T_eff and {g_step:g} dex in log g "
        f"(panels with >= {min_stars} stars); first panel: their Kiel diagram."
        + metallicity_note(metal)
        + ctx.flag_note(),
        n,
    )


#: Fewest stars of an S/N bin whose standard deviation Fig. 16 draws.
MIN_BIN_STARS = 5


def _binned_sd(
    d: np.ndarray, snr: np.ndarray, mask: np.ndarray, bins: Sequence[tuple[float, float]]
) -> list[float]:
    """Standard deviation of the finite ``d`` (a label difference, in its unit) of the
    stars of ``mask`` in each S/N bin [lo, hi); NaN with fewer than :data:`MIN_BIN_STARS`."""
    sd = []
    with np.errstate(invalid="ignore"):
        for lo, hi in bins:
            b = mask & (snr >= lo) & (snr < hi) & np.isfinite(d)
            sd.append(float(np.std(d[b])) if b.sum() >= MIN_BIN_STARS else np.nan)
    return sd


def _in_bins(
    diffs: dict[str, np.ndarray], snr: np.ndarray, bins: Sequence[tuple[float, float]]
) -> np.ndarray:
    """Stars in one of the S/N ``bins`` with a finite difference for at least one label."""
    lo, hi = bins[0][0], bins[-1][1]
    any_finite = np.zeros(snr.shape, bool)
    for d in diffs.values():
        any_finite |= np.isfinite(d)
    with np.errstate(invalid="ignore"):
        return any_finite & (snr >= lo) & (snr < hi)


@figure(16)
def precision_vs_snr(ctx: Context) -> Iterator[Rendered]:
    """Fig. 16 (Sect. 4.5): standard deviation of CNN - reference (solid) and, when
    ``figures.external.gsp_spec`` is given, of GSP-Spec - reference (dashed; the stars of
    Fig. 7 right) in S/N bins, for the training stars and the observed stars inside the
    training limits; one panel per label (units of the label: K or dex)."""
    ref = ctx.reference
    labels = [x for x in ctx.labels if x in ref and np.isfinite(ref[x]).any()]
    if not labels:
        raise Skip("no reference labels to compare with")
    snr = ctx.measured("rvs_snr")
    bins = _snr_bins(ctx)
    samples = (("training", ctx.in_training), ("inside", ctx.inside))
    names = {"training": "training", "inside": "observed, inside"}
    cnn = {x: ctx.column(x) - ref[x].to_numpy(float) for x in labels}
    gsp: dict[str, np.ndarray] = {}
    try:
        m, have = external.gsp_spec_minus_reference(ctx)
    except Skip as why:
        gsp_note = (
            " GSP-Spec not given (figures.external.gsp_spec is null): no dashed lines."
            if external.configured(ctx, "gsp_spec") is None
            else f" No GSP-Spec - reference lines: {why}."
        )
    else:
        rows = m.frame["row"].to_numpy()
        for x in (x for x in have if x in labels):
            gsp[x] = np.full(len(ctx.table), np.nan)
            gsp[x][rows] = m.frame[f"ext_{x}"].to_numpy(float) - m.frame[f"ref_{x}"].to_numpy(float)
        gsp_note = "" if gsp else " No GSP-Spec - reference lines: no drawn label in common."
    n_cnn = {s: int((_in_bins(cnn, snr, bins) & mask).sum()) for s, mask in samples}
    n_gsp = {s: int((_in_bins(gsp, snr, bins) & mask).sum()) for s, mask in samples}
    fig, axes = st.new_figure(1, len(labels), width=st.PAGE_WIDTH, height=2.9 if gsp else 2.6)
    ticks = range(len(bins))
    for ax, name in zip(axes[0], labels, strict=True):
        for sample, mask in samples:
            colour = st.SAMPLE_COLOUR[sample]
            sd = _binned_sd(cnn[name], snr, mask, bins)
            ax.plot(ticks, sd, "o-", color=colour, ms=4,
                    label=f"CNN $-$ ref., {names[sample]} ({st.stars(n_cnn[sample])})")  # fmt: skip
            if name in gsp:
                sd = _binned_sd(gsp[name], snr, mask, bins)
                ax.plot(ticks, sd, "s--", color=colour, ms=3,
                        label=f"GSP-Spec $-$ ref., {names[sample]} "
                        f"({st.stars(n_gsp[sample])})")  # fmt: skip
        ax.set_xticks(ticks, [f"{lo:g}" for lo, _ in bins])
        ax.set_xlabel("S/N (bin start)", fontsize=7)
        ax.set_ylabel(f"$\\sigma$ [{label_unit(name)}]")
        ax.set_title(st.label_name(name))
        ax.set_ylim(bottom=0)
    legend = {}  # one entry per line kind, from whichever panel has it
    for ax in axes[0]:
        for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(text, handle)
    fig.legend(legend.values(), legend.keys(), loc="outside lower center", ncols=2, fontsize=6)
    n_total = sum(n_cnn.values())
    counts = (
        f"CNN: {st.stars(n_cnn['training'])} of the training sample and "
        f"{st.stars(n_cnn['inside'])} observed inside the training limits"
    )
    if gsp:
        counts += (
            f"; GSP-Spec - reference ({m.path.name}, {_join(list(gsp))}): "
            f"{st.stars(n_gsp['training'])} of the training sample and "
            f"{st.stars(n_gsp['inside'])} observed inside the training limits"
        )
    yield Rendered(
        "fig16_precision_snr",
        fig,
        "Precision (standard deviation of CNN - reference label, solid lines"
        + (", and of GSP-Spec - reference, dashed lines" if gsp else "")
        + ") against S/N for the training stars (orange) and the observed stars inside the "
        f"training limits (green) that have a reference label ({counts}; a star counts when "
        f"it has a difference for at least one label; bins with < {MIN_BIN_STARS} stars "
        "omitted)." + gsp_note,
        n_total,
    )


#: The regions of the Kiel diagram (CNN labels) whose mean RVS spectrum Fig. 18 shows as
#: an inset in each [M/H] panel (Sect. 5.3): the hot stars in the top-left corner (strong
#: Paschen lines: OB stars) and the cool end of the giant branch in the bottom-right one
#: (strong TiO bands: M giants).  The paper shows "typical" spectra of these regions
#: without giving their bounds; these are ours.
