"""The stars outside the training limits (Fig. 18) and their residuals (19)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from matplotlib.lines import Line2D

from gaiacnn.constants import label_unit
from gaiacnn.figures import style as st
from gaiacnn.figures.context import Context, Skip, metallicity_note
from gaiacnn.figures.render import Rendered, figure
from gaiacnn.figures.samples.common import BOX_MARKER_SIZE, OUTSIDE_BOXES, KielBox, _join, _need
from gaiacnn.figures.spectra import mean_spectra
from gaiacnn.flags import DIGIT_NAMES, TSNE_DIGIT
from gaiacnn.layout import RVS_FLUX_DATASET

FIG18_INSETS: tuple[tuple[KielBox, str], ...] = (
    (KielBox("hot stars", (7000.0, np.inf), (-np.inf, np.inf), "", "tab:blue", ""), "upper left"),
    (
        KielBox("cool giants", (-np.inf, 4000.0), (-np.inf, 2.0), "", "tab:red", ""),
        "lower right",
    ),
)
#: Where an inset sits in its panel: (x0, y0, width, height) in axes fractions.
_INSET_PLACE = {"upper left": (0.04, 0.55, 0.42, 0.3), "lower right": (0.55, 0.06, 0.42, 0.3)}


def _inset_spectra(
    ctx: Context, panel: np.ndarray, n_panels: int
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]] | str:
    """Mean RVS spectrum of each :data:`FIG18_INSETS` region in each panel: ``panel`` is
    the panel of each catalogue row (-1: not drawn).  Returns the wavelengths [nm] and,
    per region, ``(mean flux (n_panels, P), stars (n_panels,))``; or, when the observed
    arrays have no RVS spectra, why there are no insets."""
    if not ctx.has(RVS_FLUX_DATASET, sample="observed"):
        return "no insets: the observed arrays have no rvs/flux"
    file_rows, rows = ctx.file_rows("observed")  # the catalogue row of each file row read
    teff, logg = ctx.column("teff")[rows], ctx.column("logg")[rows]
    file_panel = panel[rows]
    bins = [
        np.where((file_panel >= 0) & (kiel_box_index(teff, logg, (box,)) == 0), file_panel, -1)
        for box, _ in FIG18_INSETS
    ]
    means = mean_spectra(ctx.arrays_file("observed"), bins, [n_panels] * len(bins), rows=file_rows)
    return ctx.wavelength_nm(), means


def _draw_inset(ax, where: str, wl: np.ndarray, flux: np.ndarray, n: int, box: KielBox) -> None:
    """One inset: the mean normalised flux against wavelength [nm] of ``n`` stars."""
    inset = ax.inset_axes(_INSET_PLACE[where])
    inset.plot(wl, flux, color=box.colour, lw=0.5)
    inset.set_xlim(wl[0], wl[-1])
    inset.tick_params(labelsize=4, length=1.5, pad=1)
    inset.set_xlabel(r"$\lambda$ [nm]", fontsize=4, labelpad=0.5)
    inset.set_ylabel("flux", fontsize=4, labelpad=0.5)
    inset.set_title(f"{box.name} ({n})", fontsize=4.5, pad=1.5, color=box.colour)
    inset.patch.set_alpha(0.85)


@figure(18)
def outside_limits(ctx: Context) -> Iterator[Rendered]:
    """Fig. 18: Kiel diagrams (CNN labels) of the observed stars outside the training
    limits in bins of [M/H], with the mean RVS spectrum of the hot stars and of the cool
    giants of each bin as insets (:data:`FIG18_INSETS`)."""
    _need(ctx, "teff", "logg")
    metal = ctx.metallicity()  # bins and colour; one density panel without it
    m = ctx.outside
    if not m.any():
        raise Skip(
            "no observed star outside the training limits (no flag_boundary digit 1)"
            + ctx.flag_note()
        )
    teff, logg = (ctx.column(x)[m] for x in ("teff", "logg"))
    rng = [[3000.0, 10000.0], [-0.5, 5.5]]
    panel = np.full(len(ctx.table), -1)
    if metal is not None:
        mh_all = ctx.column(metal)
        mh = mh_all[m]
        name = st.label_name(metal)
        edges = [-np.inf, -1.0, -0.5, 0.0, np.inf]
        fig, axes = st.new_figure(1, len(edges) - 1, width=st.PAGE_WIDTH, height=2.8, sharey=True)
        for k, (ax, lo, hi) in enumerate(zip(axes[0], edges[:-1], edges[1:], strict=True)):
            b = (mh >= lo) & (mh < hi)
            panel[np.flatnonzero(m)[b]] = k
            mean, xe, ye = st.binned_mean(teff[b], logg[b], mh[b], bins=60, range_=rng)
            ax.pcolormesh(
                xe, ye, mean.T, cmap=st.CMAP["sequential"], vmin=-2, vmax=0.5, rasterized=True
            )
            st.kiel_axes(ax, (10000, 3000), (5.5, -0.5))
            which = (
                f"{name} < {hi:g}"
                if not np.isfinite(lo)
                else f"{name} $\\geq$ {lo:g}"
                if not np.isfinite(hi)
                else f"{lo:g} $\\leq$ {name} < {hi:g}"
            )
            ax.set_title(f"{which} ({st.stars(int(b.sum()))})", fontsize=7)
            if ax is not axes[0, 0]:
                ax.set_ylabel("")
        shown = f"in bins of CNN {name}, coloured by {name}"
    else:
        fig, axes = st.new_figure(1, 1, width=st.COLUMN_WIDTH, height=3.2)
        panel[m] = 0
        mesh = st.density(axes[0, 0], teff, logg, bins=60, range_=rng)
        fig.colorbar(mesh, ax=axes[0, 0], label="stars per bin")
        st.kiel_axes(axes[0, 0], (10000, 3000), (5.5, -0.5))
        axes[0, 0].set_title(st.stars(int(m.sum())), fontsize=7)
        shown = "coloured by star density (no [M/H] or [Fe/H] label to bin by)"
    insets = _inset_spectra(ctx, panel, axes.shape[1])
    if isinstance(insets, str):
        inset_text = f" ({insets})"
    else:
        wl, means = insets
        drawn = []
        for (box, where), (flux, count) in zip(FIG18_INSETS, means, strict=True):
            for k, ax in enumerate(axes[0]):
                if count[k]:
                    _draw_inset(ax, where, wl, flux[k], int(count[k]), box)
            drawn.append(
                f"{box.name} ({box.text()}; {where}: {st.number(int(count.sum()))} stars in all)"
            )
        inset_text = (
            "; insets: the mean normalised RVS spectrum (flux against wavelength [nm]) of the "
            + _join(drawn)
            + " of each panel, with their number of stars"
        )
    flag_str = ctx.table["flag_boundary"].astype(str)
    j = ctx.flag_digits.index(TSNE_DIGIT) if TSNE_DIGIT in ctx.flag_digits else -1
    n_tsne = int((flag_str.str[j] == "1").to_numpy(bool)[m].sum())
    n = int(m.sum())
    which = "not all zeros" if not ctx.unavailable_digits else "with a digit 1"
    yield Rendered(
        "fig18_outside_limits",
        fig,
        f"Kiel diagrams (CNN labels) of the {st.number(n)} observed stars outside the training "
        f"limits (flag_boundary {which}; {n_tsne} of them training-unlike in t-SNE), "
        f"{shown}{inset_text}.{metallicity_note(metal) if metal else ''}{ctx.flag_note()}",
        n,
    )


def kiel_box_index(
    teff: np.ndarray, logg: np.ndarray, boxes: Sequence[KielBox] = OUTSIDE_BOXES
) -> np.ndarray:
    """Index in ``boxes`` of the first box holding each star (bounds inclusive), -1 for a
    star in none (or with a NaN T_eff [K] or log g [dex]); shape of the inputs, int."""
    teff, logg = np.asarray(teff, dtype=float), np.asarray(logg, dtype=float)
    out = np.full(np.broadcast(teff, logg).shape, -1, dtype=int)
    for k in range(len(boxes) - 1, -1, -1):  # backwards: the first box wins
        box = boxes[k]
        with np.errstate(invalid="ignore"):
            inside = (
                (teff >= box.teff[0])
                & (teff <= box.teff[1])
                & (logg >= box.logg[0])
                & (logg <= box.logg[1])
            )
        out[inside] = k
    return out


def box_stat_text(bias: float, sigma: float, name: str) -> str:
    """``b = 59, σ = 120 K`` or ``b = 0.071, σ = 0.120 dex``: the bias and dispersion of
    CNN - reference of label ``name``, in its unit (given once); a NaN ``sigma`` (one star)
    gives ``b = 59 K, σ = n/a``."""
    unit = label_unit(name)
    sep = f" {unit}" if unit else ""

    def value(v: float) -> str:
        return f"{v:.0f}" if unit == "K" else f"{v:.3f}"

    if not np.isfinite(sigma):
        return f"b = {value(bias)}{sep}, $\\sigma$ = n/a"
    return f"b = {value(bias)}, $\\sigma$ = {value(sigma)}{sep}"


@figure(19)
def outside_residuals(ctx: Context) -> Iterator[Rendered]:
    """Fig. 19: CNN - reference label against the reference label (unit of each label) of
    the observed stars outside the training limits (:attr:`Context.outside`) whose
    reference T_eff [K] and log g [dex] put them in one of :data:`OUTSIDE_BOXES`."""
    _need(ctx, "teff", "logg")
    ref = ctx.reference
    missing = [x for x in ("teff", "logg") if x not in ref]
    if missing:
        raise Skip(f"the arrays files have no reference {', '.join(missing)} (labels/<name>)")
    out = ctx.outside
    if not out.any():
        raise Skip(
            "no observed star outside the training limits (no flag_boundary digit 1)"
            + ctx.flag_note()
        )
    box = kiel_box_index(ref["teff"].to_numpy(float), ref["logg"].to_numpy(float))
    box = np.where(out, box, -1)
    selected = box >= 0
    with_ref = (
        out & np.isfinite(ref["teff"].to_numpy(float)) & np.isfinite(ref["logg"].to_numpy(float))
    )
    if not selected.any():
        raise Skip(
            f"none of the {st.stars(int(out.sum()))} outside the training limits "
            f"({int(with_ref.sum())} with a reference Teff and log g) lies in the "
            + _join([b.name for b in OUTSIDE_BOXES], "or")
            + " box of Sect. 5.3 (reference Teff and log g)"
        )
    labels = [
        x for x in ctx.labels if x in ref and np.isfinite(ref[x].to_numpy(float)[selected]).any()
    ]
    ncols = 2 if len(labels) == 4 else min(3, len(labels))
    nrows = int(np.ceil(len(labels) / ncols))
    fig, axes = st.new_figure(
        nrows,
        ncols,
        width=st.PAGE_WIDTH if ncols > 1 else st.COLUMN_WIDTH,
        height=2.5 * nrows + 0.2,
    )
    flat = axes.ravel()
    for ax in flat[len(labels) :]:
        ax.set_axis_off()
    counts = {b.name: int((box == k).sum()) for k, b in enumerate(OUTSIDE_BOXES)}
    for ax, x in zip(flat, labels, strict=False):
        r = ref[x].to_numpy(float)
        d = ctx.column(x) - r
        lines = 0
        for k, b in enumerate(OUTSIDE_BOXES):
            s = (box == k) & np.isfinite(r) & np.isfinite(d)
            n = int(s.sum())
            if not n:
                continue
            bias = float(np.mean(d[s]))
            sd = float(np.std(d[s], ddof=1)) if n > 1 else np.nan
            ax.scatter(
                r[s],
                d[s],
                marker=b.marker,
                s=BOX_MARKER_SIZE[b.marker],
                c=b.colour,
                lw=0.6 if b.marker == "x" else 0,
                alpha=0.7,
                rasterized=True,
                label=f"{b.name} ({n})",
            )
            # this box's bias and dispersion, in its colour, stacked in the upper left
            ax.text(
                0.03,
                0.97 - 0.075 * lines,
                f"{b.name}: {box_stat_text(bias, sd, x)}",
                transform=ax.transAxes,
                ha="left",
                va="top",
                fontsize=5.5,
                color=b.colour,
                bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 0.5},
            )
            lines += 1
        ax.axhline(0.0, color="k", ls="--", lw=0.8)
        ax.set_xlabel(st.label_text(x, "reference "))
        ax.set_ylabel(st.label_text(x, "CNN $-$ reference "))
        if ax.collections:  # head room for the statistics
            lo, hi = ax.get_ylim()
            ax.set_ylim(lo, hi + 0.085 * lines * (hi - lo))
    handles = [
        Line2D(
            [],
            [],
            marker=b.marker,
            ls="none",
            color=b.colour,
            markersize=5,
            label=f"{b.name} ({st.stars(counts[b.name])})",
        )
        for b in OUTSIDE_BOXES
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=7)
    n = int(selected.sum())
    boxes = "; ".join(
        f"{b.name} ({b.text()}; {b.marker_words}; {st.stars(counts[b.name])})"
        for b in OUTSIDE_BOXES
    )
    others = int((with_ref & ~selected).sum())
    yield Rendered(
        "fig19_outside_residuals",
        fig,
        "CNN - reference label against the reference label for the "
        f"{st.stars(n)} of the observed sample outside the training limits (flag_boundary "
        "with at least one digit 1) whose reference Teff and log g (not the CNN's) place "
        f"them in one of the Kiel-diagram boxes of Sect. 5.3: {boxes}; "
        + _join([DIGIT_NAMES.get(x, x) for x in labels])
        + " (panels); dashed: zero; in each panel the mean bias b and standard deviation σ "
        "of each box (n/a for a single star)."
        + (
            f" {st.stars(others)} outside the limits with a reference Teff and log g "
            f"{'lies' if others == 1 else 'lie'} in none of the boxes."
            if others
            else ""
        )
        + ctx.flag_note(),
        n,
    )
