"""The t-SNE classification of the spectra (Sect. 5.1): one map per perplexity (Fig. 17),
every perplexity side by side (Fig. A.1) and the map at perplexity 50 coloured by the CNN
labels (Fig. A.2).

A map file (:data:`gaiacnn.tsne.MAP_DATASETS`) holds every star of both samples with
its position ``xy`` [t-SNE units], ``in_training`` and ``training_like``; attributes
``perplexity`` and ``threshold`` (the distance to the nearest training star below which an
observed star is training-like), and ``spectra``, the dataset embedded: ``rvs/flux`` (the
paper; also a map without the attribute), or, for a survey without RVS spectra,
``xp/sampled_flux`` or ``xp/coefficients`` (the captions and titles say which).  Maps may
hold a million stars: Figs. 17 (panels b-d) and A.2 scatter a random subsample of at
most :data:`MAX_POINTS` (rasterized); Figs. 17 (panel a) and A.1 draw 2-D histograms of
every star.  Fig. A.2 finds each star's CNN labels in the catalogue by the map's
``source_id``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from gaiacnn.figures import style as st
from gaiacnn.figures.context import Context, Skip, iter_selected_rows, metallicity_note
from gaiacnn.figures.render import Rendered, figure
from gaiacnn.flags import DIGIT_NAMES
from gaiacnn.layout import RVS_FLUX_DATASET, XP_SAMPLED_DATASET

#: At most this many points are scattered per panel (a random subsample, figures.seed).
MAX_POINTS = 200_000
#: Bins per axis of the density maps of Fig. A.1: sqrt(n)/2 within these bounds.
DENSITY_BINS = (30, 150)
#: The map's ``spectra`` attribute (the dataset embedded) in words; no attribute: RVS.
SPECTRA_TEXT = {
    RVS_FLUX_DATASET: "RVS spectra",
    XP_SAMPLED_DATASET: "XP spectra (sampled flux)",
    "xp/coefficients": "XP spectra (BP/RP coefficients)",
}
#: The dataset embedded by a map without a ``spectra`` attribute.
DEFAULT_SPECTRA = RVS_FLUX_DATASET
#: The perplexity of the map of Fig. A.2 (Appendix A and the figure's caption: 50; Sect. 5.1
#: names 75 for the same figure); without such a map Fig. A.2 shows the closest one.
LABEL_MAP_PERPLEXITY = 50.0


def spectra_text(spectra: str) -> str:
    """``RVS spectra``, ``XP spectra (sampled flux)``, ... of a map's ``spectra`` attribute."""
    return SPECTRA_TEXT.get(spectra, f"spectra ({spectra})")


@dataclass
class TsneMap:
    """One map file's content (the columns the figures use)."""

    path: Path
    perplexity: float
    threshold: float
    threshold_rule: str
    threshold_quantile: float
    threshold_factor: float
    neighbours: int
    xy: np.ndarray  # (n, 2) float32
    in_training: np.ndarray  # (n,) bool
    training_like: np.ndarray  # (n,) bool
    spectra: str = DEFAULT_SPECTRA  # the dataset embedded (root attribute ``spectra``)
    source_id: np.ndarray | None = None  # (n,) int64; None in a map without it

    @property
    def kind(self) -> str:
        """What the map embeds, for titles: ``spectra`` (RVS) or ``XP spectra``."""
        return "XP spectra" if self.spectra.startswith("xp/") else "spectra"

    @property
    def label(self) -> str:
        """``30`` for perplexity 30, ``32.5`` for 32.5 (file-name safe)."""
        return f"{self.perplexity:g}"


def read_map(path: str | Path, observed_rows: np.ndarray | None = None) -> TsneMap:
    """The positions, sample and class of every star of one map file; with
    ``observed_rows`` (sorted rows of the observed arrays file, whose stars the map holds
    after its training stars, in that file's order, as the workflow writes it), those of
    the training stars and of these observed stars only, read a block at a time."""
    path = Path(path)
    with h5py.File(path, "r") as h5:
        for name in ("xy", "in_training", "training_like"):
            if name not in h5:
                raise Skip(f"{path.name} has no dataset {name}")
        names = [n for n in ("source_id", "xy", "in_training", "training_like") if n in h5]
        if observed_rows is None:
            data = {n: h5[n][:] for n in names}
        else:
            data = _read_map_rows(path, h5, names, observed_rows)
        attrs = dict(h5.attrs)
    rule = attrs.get("threshold_rule", "")
    spectra = attrs.get("spectra", DEFAULT_SPECTRA)
    return TsneMap(
        path=path,
        perplexity=float(attrs.get("perplexity", np.nan)),
        threshold=float(attrs.get("threshold", np.nan)),
        threshold_rule=rule.decode() if isinstance(rule, bytes) else str(rule),
        threshold_quantile=float(attrs.get("threshold_quantile", np.nan)),
        threshold_factor=float(attrs.get("threshold_factor", np.nan)),
        neighbours=int(attrs.get("threshold_neighbours", 1)),
        xy=np.asarray(data["xy"], dtype=np.float32),
        in_training=np.asarray(data["in_training"], dtype=bool),
        training_like=np.asarray(data["training_like"], dtype=bool),
        spectra=spectra.decode() if isinstance(spectra, bytes) else str(spectra),
        source_id=(np.asarray(data["source_id"], dtype=np.int64) if "source_id" in data else None),
    )


def _read_map_rows(path: Path, h5, names: list[str], observed_rows: np.ndarray) -> dict:
    """Datasets ``names`` of an open map file at its training stars and at the observed
    file's rows ``observed_rows``, a block at a time."""
    in_tr = h5["in_training"]
    n_tr = int(np.count_nonzero(in_tr[:]))  # 1 byte a star, read once
    rows = np.r_[np.arange(n_tr), n_tr + np.asarray(observed_rows, np.int64)]
    if not in_tr[:n_tr].all() or (rows.size and rows[-1] >= in_tr.shape[0]):
        raise ValueError(
            f"{path}: not a map of its training stars then the observed file's stars in that "
            "file's order (what the figures read beyond figures.max_observed observed stars)"
        )
    data = {n: np.empty((rows.size, *h5[n].shape[1:]), h5[n].dtype) for n in names}
    for name in names:
        for i, values in iter_selected_rows(h5[name], rows):
            data[name][i : i + len(values)] = values
    return data


def context_map(ctx: Context, path: str | Path) -> TsneMap:
    """One map as the figures read it: every star, or, beyond ``figures.max_observed``
    observed stars, the training stars and the observed stars of the catalogue's
    subsample (:attr:`Context.observed_subsample`), checked against the catalogue's."""
    keep = ctx.observed_subsample
    m = read_map(path, keep)
    if keep is not None and m.source_id is not None:
        obs_sid = ctx.table["source_id"].to_numpy()[~ctx.in_training]
        if not np.array_equal(m.source_id[~m.in_training], obs_sid):
            raise ValueError(
                f"{path}: its observed stars are not the observed file's in that file's order"
            )
    return m


def _maps(ctx: Context) -> list[Path]:
    paths = [Path(p) for p in ctx.inputs.maps]
    if not paths:
        raise Skip("no t-SNE map files")
    return paths


def _subsample(n: int, seed: int, max_points: int | None = None) -> np.ndarray:
    """Sorted random rows (all of them when ``n`` <= ``max_points``, default
    :data:`MAX_POINTS`)."""
    max_points = MAX_POINTS if max_points is None else int(max_points)
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def _limits(xy: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """Axis limits holding all finite points, with a small margin."""
    ok = np.all(np.isfinite(xy), axis=1)
    if not ok.any():
        return (-1.0, 1.0), (-1.0, 1.0)
    lo, hi = xy[ok].min(axis=0), xy[ok].max(axis=0)
    pad = 0.03 * np.maximum(hi - lo, 1e-6)
    return (float(lo[0] - pad[0]), float(hi[0] + pad[0])), (
        float(lo[1] - pad[1]),
        float(hi[1] + pad[1]),
    )


def _threshold_text(m: TsneMap, value: bool = True) -> str:
    """``distance to the nearest training star <= 1.23 t-SNE units (the 0.99 quantile of
    the training stars' own such distances)``; without ``value``: ``<= the map's
    threshold (...)``."""
    which = "nearest" if m.neighbours == 1 else f"{m.neighbours}th nearest"
    if m.threshold_rule == "quantile" and np.isfinite(m.threshold_quantile):
        rule = f" (the {m.threshold_quantile:g} quantile of the training stars' own such distances)"
    elif m.threshold_rule == "median_multiple" and np.isfinite(m.threshold_factor):
        rule = f" ({m.threshold_factor:g} x the training stars' median such distance)"
    else:
        rule = f" ({m.threshold_rule})" if m.threshold_rule else ""
    limit = f"{m.threshold:.3g} t-SNE units" if value else "the map's threshold"
    return f"distance to the {which} training star <= {limit}{rule}"


def _marker_size(n_drawn: int) -> float:
    """Scatter marker area [pt^2] for ``n_drawn`` points in a panel."""
    return float(np.clip(2000.0 / max(n_drawn, 1), 0.3, 4.0))


def _legend(ax) -> None:
    """Legend with markers of a readable size whatever the scatter's."""
    leg = ax.legend(loc="upper right", fontsize=7)
    for handle in leg.legend_handles:
        handle.set_sizes([12.0])
        handle.set_alpha(1.0)


def _scatter(ax, xy: np.ndarray, rows: np.ndarray, colour: str, label: str, size: float) -> None:
    ax.scatter(
        xy[rows, 0],
        xy[rows, 1],
        s=size,
        c=colour,
        lw=0,
        alpha=0.6,
        rasterized=True,
        label=label,
    )


def _tsne_axes(ax, xlim, ylim) -> None:
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel("t-SNE X")
    ax.set_ylabel("t-SNE Y")


def colour_word(colour: str) -> str:
    """A colour in words for captions: ``tab:orange`` -> ``orange``."""
    return colour.split(":", 1)[-1]


def _density_bins(n: int) -> int:
    """Bins per axis of a density map of ``n`` stars (:data:`DENSITY_BINS`)."""
    return int(np.clip(np.sqrt(n) / 2, *DENSITY_BINS))


def _classes(m: TsneMap) -> dict[str, np.ndarray]:
    """The samples of a map as masks: ``training``, ``observed``, and the observed stars
    ``like`` / ``unlike`` the training sample in this map."""
    obs = ~m.in_training
    return {
        "training": m.in_training,
        "observed": obs,
        "like": obs & m.training_like,
        "unlike": obs & ~m.training_like,
    }


def _shown_text(n_drawn: int, n: int) -> str:
    """``a random 17% of the stars is drawn`` or ``every star is drawn``."""
    if n_drawn < n:
        return f"a random {n_drawn / n:.0%} of the stars is drawn"
    return "every star is drawn"


@figure(17)
def tsne_classification(ctx: Context) -> Iterator[Rendered]:
    """Fig. 17, one figure per map: a) density of all spectra (2-D histogram, log colour
    scale), b) the training and observed samples, c) the observed spectra training-like and
    d) training-unlike in this map (b-d: a random subsample of at most :data:`MAX_POINTS`
    stars).  Positions in t-SNE units."""
    seed = int(ctx.cfg.get("seed", 0))
    colour = {
        "training": st.SAMPLE_COLOUR["training"],
        "observed": st.SAMPLE_COLOUR["observed"],
        "like": st.SAMPLE_COLOUR["inside"],
        "unlike": st.SAMPLE_COLOUR["outside"],
    }
    for path in _maps(ctx):
        m = context_map(ctx, path)
        n = len(m.xy)
        masks = _classes(m)
        counts = {k: int(v.sum()) for k, v in masks.items()}
        rows = _subsample(n, seed)
        size = _marker_size(rows.size)
        xlim, ylim = _limits(m.xy)
        fig, axes = st.new_figure(2, 2, width=st.PAGE_WIDTH, height=6.9, sharex=True, sharey=True)
        (a, b), (c, d) = axes
        # a) every star, binned: a density map of the whole sample
        mesh = st.density(
            a,
            m.xy[:, 0],
            m.xy[:, 1],
            bins=_density_bins(n),
            range_=[list(xlim), list(ylim)],
        )
        fig.colorbar(mesh, ax=a, location="top", shrink=0.6, label="spectra per bin")
        a.set_title(f"a) perplexity {m.label}: all {m.kind} ({st.number(n)})")
        # b) observed first, training on top (regions with observed stars only show)
        for key in ("observed", "training"):
            _scatter(
                b,
                m.xy,
                rows[masks[key][rows]],
                colour[key],
                f"{key} ({st.stars(counts[key])})",
                size,
            )
        b.set_title(f"b) training and observed {m.kind}")
        # c), d) the observed stars of each class
        for ax, key, text, letter in (
            (c, "like", "training-like", "c"),
            (d, "unlike", "training-unlike", "d"),
        ):
            _scatter(
                ax,
                m.xy,
                rows[masks[key][rows]],
                colour[key],
                f"{text} ({st.stars(counts[key])})",
                size,
            )
            ax.set_title(f"{letter}) observed, {text}")
        for ax in (a, b, c, d):
            _tsne_axes(ax, xlim, ylim)
        for ax in (b, c, d):
            _legend(ax)
        for ax in (a, b):
            ax.set_xlabel("")
        for ax in (b, d):
            ax.set_ylabel("")
        yield Rendered(
            f"fig17_tsne_p{m.label}",
            fig,
            f"t-SNE map (perplexity {m.label}) of the {spectra_text(m.spectra)} of "
            f"{st.stars(n)}: a) density of all of them (spectra per bin, log colour scale); "
            f"b) the training ({st.stars(counts['training'])}) and observed "
            f"({st.stars(counts['observed'])}) samples in {colour_word(colour['training'])} "
            f"and {colour_word(colour['observed'])}; c) in {colour_word(colour['like'])}, the "
            f"observed stars classified training-like ({st.number(counts['like'])}) and d) in "
            f"{colour_word(colour['unlike'])}, those training-unlike "
            f"({st.number(counts['unlike'])}) in this map; "
            f"training-like: {_threshold_text(m)}; panels b-d: "
            f"{_shown_text(rows.size, n)}.",
            n,
        )


@figure(17.5)
def tsne_perplexities(ctx: Context) -> Iterator[Rendered]:
    paths = _maps(ctx)
    rows_spec = (
        ("all spectra", lambda m: np.ones(len(m.xy), bool)),
        ("training", lambda m: m.in_training),
        ("observed, training-like", lambda m: ~m.in_training & m.training_like),
        ("observed, training-unlike", lambda m: ~m.in_training & ~m.training_like),
    )
    ncols = len(paths)
    fig, axes = st.new_figure(
        len(rows_spec), ncols, width=min(st.PAGE_WIDTH, 1.9 * ncols + 0.9), height=7.6
    )
    n_stars, summary, rule_text, kinds = 0, [], "", []
    for j, path in enumerate(sorted(paths, key=lambda p: read_perplexity(p))):
        m = context_map(ctx, path)
        n_stars = max(n_stars, len(m.xy))
        if spectra_text(m.spectra) not in kinds:
            kinds.append(spectra_text(m.spectra))
        xlim, ylim = _limits(m.xy)
        rng = [list(xlim), list(ylim)]
        bins = _density_bins(len(m.xy))
        counts = []
        for i, (title, select) in enumerate(rows_spec):
            ax = axes[i, j]
            mask = select(m)
            counts.append(int(mask.sum()))
            st.density(ax, m.xy[mask, 0], m.xy[mask, 1], bins=bins, range_=rng)
            ax.set_xlim(*xlim)
            ax.set_ylim(*ylim)
            ax.set_xticks([])
            ax.set_yticks([])
            st.corner_text(ax, st.stars(counts[-1]), "lower left")
            if i == 0:
                ax.set_title(f"perplexity {m.label}")
            if j == 0:
                ax.set_ylabel(title, fontsize=7)
        summary.append(
            f"perplexity {m.label}: {st.number(counts[2])} training-like and "
            f"{st.number(counts[3])} training-unlike (threshold {m.threshold:.3g} t-SNE units)"
        )
        rule_text = _threshold_text(m, value=False)
    yield Rendered(
        "figA1_tsne_perplexities",
        fig,
        f"t-SNE maps of the {' and '.join(kinds)}"
        + (f", {st.stars(n_stars)}," if ")" in kinds[-1] else f" ({st.stars(n_stars)})")
        + " for each perplexity (columns): "
        "star density (log colour scale from 1 to each panel's maximum) of all spectra, of "
        "the training sample, and of the observed spectra classified training-like and "
        "training-unlike in that map (rows); "
        + "; ".join(summary)
        + f". Training-like: {rule_text}.",
        n_stars,
    )


def closest_perplexity(perplexities: Sequence[float], target: float = LABEL_MAP_PERPLEXITY) -> int:
    """Index of the perplexity closest to ``target`` (ties: the lower perplexity); NaN
    perplexities never match.  :class:`Skip` when none is finite."""
    p = np.asarray(perplexities, dtype=float)
    ok = np.flatnonzero(np.isfinite(p))
    if not ok.size:
        raise Skip("no t-SNE map has a perplexity attribute")
    return int(min(ok, key=lambda i: (abs(p[i] - target), p[i])))


def _label_rows(ctx: Context) -> list[str]:
    """The labels of Fig. A.2's rows: T_eff, log g and the metallicity (``m_h``, else
    ``fe_h``) that the catalogue has; :class:`Skip` with none of them."""
    metal = ctx.metallicity()
    names = [x for x in ("teff", "logg", metal) if x is not None and x in ctx.labels]
    if not names:
        raise Skip("the catalogue has none of the labels teff, logg, m_h (fe_h)")
    return names


def _caption_name(name: str) -> str:
    """A label in caption words: ``Teff``, ``log g``, ``[M/H]``."""
    return DIGIT_NAMES.get(name, name)


@figure(17.8)
def tsne_labels(ctx: Context) -> Iterator[Rendered]:
    """Fig. A.2: the map at perplexity :data:`LABEL_MAP_PERPLEXITY` (else the closest one)
    for the training stars (left) and the observed stars training-like (middle) and
    training-unlike (right) in that map, coloured by the CNN T_eff [K] (top), log g [dex]
    (centre) and [M/H] [dex] (bottom; [Fe/H] without [M/H]) of the catalogue, matched by
    ``source_id``; a random subsample of at most :data:`MAX_POINTS` stars is drawn."""
    paths = _maps(ctx)
    perplexities = [read_perplexity(p) for p in paths]
    m = context_map(ctx, paths[closest_perplexity(perplexities)])
    if m.source_id is None:
        raise Skip(f"{m.path.name} has no source_id (to find the stars' CNN labels)")
    names = _label_rows(ctx)
    rows_cat = pd.Index(ctx.table["source_id"].to_numpy()).get_indexer(m.source_id)
    matched = rows_cat >= 0
    if not matched.any():
        raise Skip(f"no star of {m.path.name} is in the catalogue (source_id)")
    values = {}
    for x in names:
        v = np.full(len(m.xy), np.nan)
        v[matched] = ctx.column(x)[rows_cat[matched]]
        values[x] = v
    masks = _classes(m)
    columns = (
        ("training", "training"),
        ("like", "observed, training-like"),
        ("unlike", "observed, training-unlike"),
    )
    counts = {k: int((masks[k] & matched).sum()) for k, _ in columns}
    n = len(m.xy)
    rows = _subsample(n, int(ctx.cfg.get("seed", 0)))
    size = _marker_size(rows.size)
    xlim, ylim = _limits(m.xy)
    fig, axes = st.new_figure(
        len(names),
        len(columns),
        width=st.PAGE_WIDTH,
        height=2.2 * len(names) + 0.4,  # whole pixels at 150 dpi
        sharex=True,
        sharey=True,
    )
    for i, x in enumerate(names):
        v = values[x]
        finite = v[np.isfinite(v)]
        vmin, vmax = np.percentile(finite, [1.0, 99.0]) if finite.size else (0.0, 1.0)
        sc = None
        for j, (key, title) in enumerate(columns):
            ax = axes[i, j]
            drawn = rows[masks[key][rows] & np.isfinite(v[rows])]
            sc = ax.scatter(
                m.xy[drawn, 0],
                m.xy[drawn, 1],
                c=v[drawn],
                s=size,
                cmap=st.CMAP["sequential"],
                vmin=float(vmin),
                vmax=float(vmax),
                lw=0,
                rasterized=True,
            )
            ax.set_xlim(*xlim)
            ax.set_ylim(*ylim)
            ax.set_xlabel("t-SNE X" if i == len(names) - 1 else "")
            ax.set_ylabel("t-SNE Y" if j == 0 else "")
            if i == 0:
                ax.set_title(f"{title} ({st.number(counts[key])})")
        fig.colorbar(sc, ax=axes[i, :], label=st.label_text(x, "CNN "), shrink=0.9)
    fallback = (
        ""
        if m.perplexity == LABEL_MAP_PERPLEXITY
        else f" No perplexity-{LABEL_MAP_PERPLEXITY:g} map (the paper's): the closest, "
        f"perplexity {m.label}, is shown (maps: "
        + ", ".join(f"{p:g}" for p in sorted(perplexities))
        + ")."
    )
    where = {3: ("top", "centre", "bottom"), 2: ("top", "bottom")}.get(len(names), ("",))
    words = [_caption_name(x) + (f" ({w})" if w else "") for x, w in zip(names, where, strict=True)]
    coloured = words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"
    metal = next((x for x in names if x not in ("teff", "logg")), None)
    note = metallicity_note(metal) if metal else " No [M/H] or [Fe/H] label: no metallicity row."
    unmatched = int((~matched).sum())
    yield Rendered(
        "figA2_tsne_labels",
        fig,
        f"t-SNE map (perplexity {m.label}) of the {spectra_text(m.spectra)} of the training "
        f"stars (left, {st.stars(counts['training'])}) and of the observed stars classified "
        f"training-like (middle, {st.stars(counts['like'])}) and training-unlike (right, "
        f"{st.stars(counts['unlike'])}) in this map, coloured by the CNN {coloured} of the "
        "catalogue (the training stars too are coloured by their CNN labels, not by their "
        "reference labels); colour scale of each row: the 1st to 99th percentile of that "
        f"label over the map; training-like: {_threshold_text(m)}; "
        f"{_shown_text(rows.size, n)}."
        + (f" {st.stars(unmatched)} of the map are not in the catalogue." if unmatched else "")
        + fallback
        + note,
        sum(counts.values()),
    )


def read_perplexity(path: str | Path) -> float:
    """The ``perplexity`` attribute of a map file (NaN without one)."""
    with h5py.File(path, "r") as h5:
        return float(h5.attrs.get("perplexity", np.nan))


FIGURES = [tsne_classification, tsne_perplexities, tsne_labels]
