"""Example RVS spectra (Fig. 2) and mean spectra in label sequences (Fig. 12)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import BoundaryNorm

from gaiacnn import layout
from gaiacnn.constants import label_unit
from gaiacnn.figures import style as st
from gaiacnn.figures.context import (
    METALLICITY_LABELS,
    Context,
    Skip,
    metallicity_note,
)
from gaiacnn.figures.render import Rendered, figure
from gaiacnn.figures.spectra.common import (
    _COLOUR_NAMES,
    CHUNK_ROWS,
    EXAMPLE_M_H,
    EXAMPLE_M_H_TOLERANCE,
    EXAMPLE_NEAREST,
    MIN_STARS_PER_BIN,
    SEQUENCES,
    SOLAR_LOGG,
    SOLAR_TEFF_K,
    SOLAR_TWIN_LOGG_HALF_WIDTH,
    SOLAR_TWIN_TEFF_HALF_WIDTH_K,
    ExampleChoice,
    ExamplePanel,
    SpectraSequence,
    _features,
    iter_selected_rows,
    read_rows,
)
from gaiacnn.figures.spectra.gradients import _red_clump_config, red_clump_metallicity
from gaiacnn.layout import RVS_FLUX_DATASET, RVS_SNR_DATASET


# ---------------------------------------------------------------------- mean spectra
def mean_spectra(
    path: str | os.PathLike,
    bin_ids: Sequence[np.ndarray],
    n_bins: Sequence[int],
    chunk_rows: int = CHUNK_ROWS,
    rows: np.ndarray | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Mean ``rvs/flux`` per bin of each binning of the file's rows, streamed.

    ``bin_ids[s]``: int, the bin of each file row in binning ``s`` (-1: none), of every
    row of the file, or of the sorted file rows ``rows``; ``n_bins[s]``: its number of
    bins.  Returns per binning ``(mean (n_bins, P), stars (n_bins,))``; the mean of a pixel
    is over its finite values (NaN for an empty bin)."""
    bin_ids = [np.asarray(b, dtype=np.int64) for b in bin_ids]
    used = np.zeros(len(bin_ids[0]) if bin_ids else 0, bool)
    for b in bin_ids:
        used |= b >= 0
    which = np.flatnonzero(used)  # positions in bin_ids
    file_rows = which if rows is None else np.asarray(rows, dtype=np.int64)[which]
    with h5py.File(path, "r") as h5:
        if RVS_FLUX_DATASET not in h5:
            raise Skip(f"{Path(path).name} has no dataset rvs/flux")
        ds = h5[RVS_FLUX_DATASET]
        p = ds.shape[1]
        sums = [np.zeros((k, p)) for k in n_bins]
        finite = [np.zeros((k, p)) for k in n_bins]
        for i, flux in iter_selected_rows(ds, file_rows, chunk_rows):
            flux = np.asarray(flux, dtype=np.float32)
            ok = np.isfinite(flux)
            flux = np.where(ok, flux, 0.0).astype(np.float32)
            ok = ok.astype(np.float32)
            sel = which[i : i + len(flux)]
            for s, (b, k) in enumerate(zip(bin_ids, n_bins, strict=True)):
                onehot = (b[sel][None, :] == np.arange(k)[:, None]).astype(np.float32)
                if onehot.any():
                    sums[s] += onehot @ flux
                    finite[s] += onehot @ ok
    out = []
    for s, b in enumerate(bin_ids):
        count = np.bincount(b[b >= 0], minlength=n_bins[s])[: n_bins[s]]
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append((np.where(finite[s] > 0, sums[s] / finite[s], np.nan), count))
    return out


def sequence_bins(values: Mapping[str, np.ndarray], seq: SpectraSequence) -> np.ndarray:
    """Bin (0 .. len(edges) - 2) of each star in ``seq``, -1 outside it; ``values``: labels
    by name (stars without a label value are outside)."""
    x = np.asarray(values[seq.label], float)
    keep = np.isfinite(x) & (x >= seq.edges[0]) & (x < seq.edges[-1])
    for name, lo, hi in seq.cuts:
        v = np.asarray(values[name], float)
        with np.errstate(invalid="ignore"):
            keep &= (v >= lo) & (v < hi)
    out = np.full(x.shape, -1, dtype=np.int64)
    out[keep] = np.searchsorted(np.asarray(seq.edges), x[keep], side="right") - 1
    return out


# ---------------------------------------------------------------------- example stars
def example_panels(ctx: Context) -> list[ExamplePanel]:
    """The two panels of Fig. 2: red-clump stars (the ``figures.red_clump`` T_eff, log g box
    of Figs. 9-10) and solar twins (:data:`SOLAR_TEFF_K` ± 100 K, :data:`SOLAR_LOGG` ± 0.2),
    each at the target metallicities :data:`EXAMPLE_M_H`."""
    rc = _red_clump_config(ctx)
    t0, t1 = (float(v) for v in rc["teff"])
    g0, g1 = (float(v) for v in rc["logg"])
    twin_teff = (
        SOLAR_TEFF_K - SOLAR_TWIN_TEFF_HALF_WIDTH_K,
        SOLAR_TEFF_K + SOLAR_TWIN_TEFF_HALF_WIDTH_K,
    )
    twin_logg = (SOLAR_LOGG - SOLAR_TWIN_LOGG_HALF_WIDTH, SOLAR_LOGG + SOLAR_TWIN_LOGG_HALF_WIDTH)
    return [
        ExamplePanel("red-clump star", (t0, t1), (g0, g1)),
        ExamplePanel("solar twin", twin_teff, twin_logg),
    ]


def example_stars(
    teff: np.ndarray,
    logg: np.ndarray,
    m_h: np.ndarray,
    snr: np.ndarray | None,
    panels: Sequence[ExamplePanel],
    *,
    nearest: int = EXAMPLE_NEAREST,
    tolerance: float = EXAMPLE_M_H_TOLERANCE,
) -> list[ExampleChoice]:
    """The example stars of Fig. 2, from reference labels of the training stars.

    ``teff`` [K], ``logg`` [dex], ``m_h`` [dex] and ``snr`` (RVS S/N; None or NaN: unknown):
    (N,) arrays, one entry per training-file row.  For each panel, among the stars in its
    T_eff, log g box with finite labels, and for each target ``panel.m_h`` in turn: the
    ``nearest`` stars closest to the target [M/H] not chosen for an earlier target, of which
    those at most ``tolerance`` dex farther from it than the closest one; of these the one
    with the highest S/N (the closest on a tie or without S/N).  :class:`Skip` naming the
    box when it holds fewer stars than targets."""
    teff, logg, m_h = (np.asarray(v, dtype=float) for v in (teff, logg, m_h))
    s = np.full(teff.shape, np.nan) if snr is None else np.asarray(snr, dtype=float)
    s = np.where(np.isfinite(s), s, -np.inf)
    out = []
    for panel in panels:
        (t0, t1), (g0, g1) = panel.teff, panel.logg
        with np.errstate(invalid="ignore"):
            box = (teff >= t0) & (teff <= t1) & (logg >= g0) & (logg <= g1) & np.isfinite(m_h)
        idx = np.flatnonzero(box)
        if idx.size < len(panel.m_h):
            have = "no" if idx.size == 0 else f"only {idx.size}"
            raise Skip(
                f"the training sample has {have} {panel.name} with a reference metallicity "
                f"({panel.box_text()}): Fig. 2 needs {len(panel.m_h)}, one per target [M/H]"
            )
        free = np.ones(idx.size, bool)
        rows = []
        for target in panel.m_h:
            cand = idx[free]
            d = np.abs(m_h[cand] - float(target))
            order = np.argsort(d, kind="stable")[: max(int(nearest), 1)]
            order = order[d[order] <= d[order[0]] + float(tolerance)]
            best = order[int(np.argmax(s[cand[order]]))]  # first maximum: the closest
            rows.append(int(cand[best]))
            free[np.searchsorted(idx, cand[best])] = False
        out.append(ExampleChoice(panel, tuple(rows), int(idx.size)))
    return out


# ---------------------------------------------------------------------- figures
@figure(2)
def example_spectra(ctx: Context) -> Iterator[Rendered]:
    """Fig. 2: normalised RVS flux against wavelength [nm] of a red-clump star and of a
    solar twin of the training sample, each at the reference [M/H] nearest 0 and -0.87 dex
    (:func:`example_stars`; [Fe/H] stands in without ``labels/m_h``)."""
    ctx.require(RVS_FLUX_DATASET)
    names = [layout.label_dataset(x) for x in ("teff", "logg")]
    missing = [x for x in names if not ctx.has(x)]
    if missing:
        raise Skip(f"the training file has no {', '.join(missing)}")
    metal = red_clump_metallicity(ctx)
    if metal is None:
        raise Skip("the training file has no labels/m_h or labels/fe_h to choose stars by")
    metal_ds = layout.label_dataset(metal)
    cols = ctx.read_arrays("training", ["source_id", *names, metal_ds])
    has_snr = ctx.has(RVS_SNR_DATASET)
    snr = ctx.read_arrays("training", [RVS_SNR_DATASET])[RVS_SNR_DATASET] if has_snr else None
    teff, logg, mh = (cols[x].astype(float) for x in (*names, metal_ds))
    snr_f = np.full(teff.shape, np.nan) if snr is None else snr.astype(float)
    chosen = example_stars(teff, logg, mh, snr, example_panels(ctx))
    rows = np.unique([r for c in chosen for r in c.rows])
    flux = read_rows(ctx.inputs.training, [RVS_FLUX_DATASET], rows)[RVS_FLUX_DATASET]
    wl = ctx.wavelength_nm()
    sid = cols["source_id"]

    fig, axes = st.new_figure(len(chosen), 1, width=st.PAGE_WIDTH, height=4.4, sharex=True)
    parts = []
    for ax, c in zip(axes[:, 0], chosen, strict=True):
        stars = []
        for i, (row, target) in enumerate(zip(c.rows, c.panel.m_h, strict=True)):
            s = snr_f[row]
            snr_text = f"{s:.0f}" if np.isfinite(s) else "n/a"
            ax.plot(
                wl,
                flux[np.searchsorted(rows, row)],
                color=f"C{i}",
                lw=0.6,
                label=(
                    f"{st.label_name('teff')} = {teff[row]:.0f} K, "
                    f"{st.label_name('logg')} = {logg[row]:.2f}, "
                    f"{st.label_name(metal)} = {mh[row]:+.2f} dex, S/N = {snr_text}"
                ),
            )
            stars.append(
                f"Gaia DR3 {int(sid[row])} at {target:+g} dex ({_COLOUR_NAMES[i % 4]}: "
                f"T_eff = {teff[row]:.0f} K, log g = {logg[row]:.2f}, "
                f"{st.label_name(metal)} = {mh[row]:+.2f}, S/N {snr_text})"
            )
        (t0, t1), (g0, g1) = c.panel.teff, c.panel.logg
        ax.set_title(
            f"{c.panel.name}: {t0:g} ≤ {st.label_name('teff')} ≤ {t1:g} K, "
            f"{g0:g} ≤ {st.label_name('logg')} ≤ {g1:g}",
            fontsize=8,
        )
        ax.set_ylabel("normalised flux")
        # between the Ca II lines 854.2 and 866.2 nm, where the flux stays near 1
        ax.legend(fontsize=6, loc="lower center", bbox_to_anchor=(0.6, 0.02))
        parts.append(
            f"{c.panel.name} ({c.panel.box_text()}; {st.stars(c.n_box)} in the box): "
            + "; ".join(stars)
        )
    axes[-1, 0].set_xlabel(r"wavelength $\lambda$ [nm]")
    axes[-1, 0].set_xlim(wl[0], wl[-1])
    n = int(rows.size)
    targets = " and ".join(f"{m:+g}" for m in EXAMPLE_M_H)
    yield Rendered(
        "fig02_example_spectra",
        fig,
        "Example RVS spectra of training stars chosen by their reference labels: a red-clump "
        "star (top) and a solar twin (bottom), each at two metallicities, the reference "
        f"{st.label_name(metal)} nearest {targets} dex (the paper's red-clump pair; the "
        "same targets for the solar twins). For each target, of "
        f"the {EXAMPLE_NEAREST} stars of the box nearest it (within {EXAMPLE_M_H_TOLERANCE:g} "
        "dex of the nearest), the one with the highest RVS S/N"
        + ("" if has_snr else " (the training file has no rvs/snr: the nearest)")
        + f". {'. '.join(parts)}; {st.stars(n)} drawn."
        + metallicity_note(metal),
        n,
    )


def sequences_for(labels: Sequence[str]) -> list[SpectraSequence]:
    """The :data:`SEQUENCES` that ``labels`` allow; without ``m_h``, ``fe_h`` stands in for
    it (in the binned label, the cuts and the description)."""
    metal = next((x for x in METALLICITY_LABELS if x in labels), None)
    out = []
    for seq in SEQUENCES:
        if metal is not None and metal != "m_h":

            def swap(name: str) -> str:
                return metal if name == "m_h" else name

            seq = dataclasses.replace(
                seq,
                label=swap(seq.label),
                cuts=tuple((swap(x), lo, hi) for x, lo, hi in seq.cuts),
                what=seq.what.replace("[M/H]", st.label_name(metal)),
            )
        if all(x in labels for x in (seq.label, *(c[0] for c in seq.cuts))):
            out.append(seq)
    return out


@figure(12)
def mean_spectra_sequences(ctx: Context) -> Iterator[Rendered]:
    ctx.require(RVS_FLUX_DATASET, "observed")
    path = ctx.arrays_file("observed")
    file_rows, cat = ctx.file_rows("observed")  # the catalogue row of each file row read
    use = ctx.inside[cat]
    if not use.any():
        raise Skip("no observed star inside the training limits")

    def values(name: str) -> np.ndarray:
        v = np.full(cat.size, np.nan)
        if name in ctx.labels:
            v[use] = ctx.column(name)[cat[use]]
        return v

    sequences = sequences_for(ctx.labels)
    if not sequences:
        raise Skip(
            "the catalogue lacks the labels of every sequence (teff, logg, m_h or fe_h, alpha_m)"
        )
    metal = ctx.metallicity()
    swapped = metal not in (None, "m_h") and any(
        metal in (s.label, *(c[0] for c in s.cuts)) for s in sequences
    )
    cache: dict[str, np.ndarray] = {}
    bins = []
    for s in sequences:
        for name in (s.label, *(c[0] for c in s.cuts)):
            if name not in cache:
                cache[name] = values(name)
        bins.append(sequence_bins(cache, s))
    results = mean_spectra(path, bins, [len(s.edges) - 1 for s in sequences], rows=file_rows)
    drawn = [np.flatnonzero(cnt >= MIN_STARS_PER_BIN) for _, cnt in results]
    if not any(d.size for d in drawn):
        raise Skip(f"no sequence bin holds {MIN_STARS_PER_BIN} observed stars")
    wl = layout.wavelength_nm(path)

    fig, axes = st.new_figure(2, 2, width=st.PAGE_WIDTH, height=5.4)
    flat = axes.ravel()
    used_rows = np.zeros(cat.size, bool)
    parts = []
    for ax, s, b, (mean, cnt), keep in zip(flat, sequences, bins, results, drawn, strict=False):
        edges = np.asarray(s.edges)
        norm = BoundaryNorm(edges, 256)
        sm = ScalarMappable(norm=norm, cmap=st.CMAP["sequential"])
        _features(ax, only=("Ca II", "Fe I+Ti I"))
        for k in keep:
            centre = 0.5 * (edges[k] + edges[k + 1])
            ax.plot(wl, mean[k], color=sm.to_rgba(centre), lw=0.6)
        fig.colorbar(sm, ax=ax, label=st.label_text(s.label, "CNN "), ticks=edges)
        cut = ", ".join(f"{lo:g} $\\leq$ {st.label_name(x)} < {hi:g}" for x, lo, hi in s.cuts)
        ax.set_title(f"({s.panel}) {st.label_name(s.label)} sequence: {cut}", fontsize=7)
        ax.set_xlabel(r"wavelength $\lambda$ [nm]")
        ax.set_ylabel("mean normalised flux")
        ax.set_xlim(wl[0], wl[-1])
        n_s = int(cnt[keep].sum())
        st.corner_text(ax, st.stars(n_s), "lower left")
        if not keep.size:
            st.corner_text(ax, f"no bin with $\\geq$ {MIN_STARS_PER_BIN} stars", "upper right")
        used_rows |= np.isin(b, keep) & (b >= 0)
        unit = label_unit(s.label)
        counts = "; ".join(f"{edges[k]:g} to {edges[k + 1]:g}: {int(cnt[k])}" for k in keep)
        parts.append(f"({s.panel}) {s.label} [{unit}] for {s.what} ({counts or 'no bin drawn'})")
    for ax in flat[len(sequences) :]:
        ax.set_axis_off()
    n = int(used_rows.sum())
    yield Rendered(
        "fig12_mean_spectra_sequences",
        fig,
        "Mean observed RVS spectra of the stars inside the training limits in sequences of "
        f"their CNN labels, coloured by bin (bins with < {MIN_STARS_PER_BIN} stars left out; "
        f"stars per bin in brackets): {'; '.join(parts)}. Vertical lines: Ca II and the "
        f"Fe I+Ti I blend; {st.stars(n)} in all."
        + (metallicity_note(metal) if swapped else "")
        + ctx.flag_note(),
        n,
    )
