"""The t-SNE classification of the spectra (Sect. 5.1): one map per perplexity (Fig. 17)
and every perplexity side by side (Fig. A.1).

A map file (:data:`gaiacnn.pipeline.MAP_DATASETS`) holds every star of both samples with
its position ``xy`` [t-SNE units], ``in_training`` and ``training_like``; attributes
``perplexity`` and ``threshold`` (the distance to the nearest training star below which an
observed star is training-like), and ``spectra``, the dataset embedded: ``rvs/flux`` (the
paper; also a map without the attribute), or, for a survey without RVS spectra,
``xp/sampled_flux`` or ``xp/coefficients`` (the captions and titles say which).  Maps may
hold a million stars: Fig. 17 scatters a random
subsample of at most :data:`MAX_POINTS` (rasterized), Fig. A.1 draws 2-D histograms.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from gaiacnn.figures import style as st
from gaiacnn.figures.context import Context, Skip
from gaiacnn.figures.render import Rendered, figure

#: At most this many points are scattered per panel (a random subsample, figures.seed).
MAX_POINTS = 200_000
#: Bins per axis of the density maps of Fig. A.1: sqrt(n)/2 within these bounds.
DENSITY_BINS = (30, 150)
#: The map's ``spectra`` attribute (the dataset embedded) in words; no attribute: RVS.
SPECTRA_TEXT = {
    "rvs/flux": "RVS spectra",
    "xp/sampled_flux": "XP spectra (sampled flux)",
    "xp/coefficients": "XP spectra (BP/RP coefficients)",
}
#: The dataset embedded by a map without a ``spectra`` attribute.
DEFAULT_SPECTRA = "rvs/flux"


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

    @property
    def kind(self) -> str:
        """What the map embeds, for titles: ``spectra`` (RVS) or ``XP spectra``."""
        return "XP spectra" if self.spectra.startswith("xp/") else "spectra"

    @property
    def label(self) -> str:
        """``30`` for perplexity 30, ``32.5`` for 32.5 (file-name safe)."""
        return f"{self.perplexity:g}"


def read_map(path: str | Path) -> TsneMap:
    """The positions, sample and class of every star of one map file."""
    path = Path(path)
    with h5py.File(path, "r") as h5:
        for name in ("xy", "in_training", "training_like"):
            if name not in h5:
                raise Skip(f"{path.name} has no dataset {name}")
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
            xy=np.asarray(h5["xy"][:], dtype=np.float32),
            in_training=np.asarray(h5["in_training"][:], dtype=bool),
            training_like=np.asarray(h5["training_like"][:], dtype=bool),
            spectra=spectra.decode() if isinstance(spectra, bytes) else str(spectra),
        )


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


@figure(17)
def tsne_classification(ctx: Context) -> Iterator[Rendered]:
    seed = int(ctx.cfg.get("seed", 0))
    for path in _maps(ctx):
        m = read_map(path)
        n = len(m.xy)
        obs = ~m.in_training
        like, unlike = obs & m.training_like, obs & ~m.training_like
        counts = {
            "training": int(m.in_training.sum()),
            "observed": int(obs.sum()),
            "like": int(like.sum()),
            "unlike": int(unlike.sum()),
        }
        rows = _subsample(n, seed)
        size = _marker_size(rows.size)
        xlim, ylim = _limits(m.xy)
        fig, axes = st.new_figure(1, 2, width=st.PAGE_WIDTH, height=3.5, sharex=True, sharey=True)
        left, right = axes[0]
        # Left: observed first, training on top (regions with observed stars only show).
        for name, mask in (("observed", obs), ("training", m.in_training)):
            _scatter(
                left,
                m.xy,
                rows[mask[rows]],
                st.SAMPLE_COLOUR[name],
                f"{name} ({st.stars(counts[name])})",
                size,
            )
        left.set_title(f"perplexity {m.label}: training and observed {m.kind}")
        # Right: the observed stars by class, the (rarer) training-unlike ones on top.
        for key, mask, colour, text in (
            ("like", like, st.SAMPLE_COLOUR["inside"], "training-like"),
            ("unlike", unlike, st.SAMPLE_COLOUR["outside"], "training-unlike"),
        ):
            _scatter(
                right, m.xy, rows[mask[rows]], colour, f"{text} ({st.stars(counts[key])})", size
            )
        right.set_title(f"observed {m.kind} by t-SNE class")
        for ax in (left, right):
            _tsne_axes(ax, xlim, ylim)
            _legend(ax)
        right.set_ylabel("")
        shown = (
            f"a random {rows.size / n:.0%} of the stars is drawn"
            if rows.size < n
            else "every star is drawn"
        )
        yield Rendered(
            f"fig17_tsne_p{m.label}",
            fig,
            f"t-SNE map (perplexity {m.label}) of the {spectra_text(m.spectra)} of "
            f"{st.stars(n)}: left, the "
            f"training ({st.stars(counts['training'])}) and observed "
            f"({st.stars(counts['observed'])}) samples; right, the observed stars classified "
            f"training-like ({st.number(counts['like'])}) or training-unlike "
            f"({st.number(counts['unlike'])}) in this map; training-like: "
            f"{_threshold_text(m)}; {shown}.",
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
        m = read_map(path)
        n_stars = max(n_stars, len(m.xy))
        if spectra_text(m.spectra) not in kinds:
            kinds.append(spectra_text(m.spectra))
        xlim, ylim = _limits(m.xy)
        rng = [list(xlim), list(ylim)]
        bins = int(np.clip(np.sqrt(len(m.xy)) / 2, *DENSITY_BINS))
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


def read_perplexity(path: str | Path) -> float:
    """The ``perplexity`` attribute of a map file (NaN without one)."""
    with h5py.File(path, "r") as h5:
        return float(h5.attrs.get("perplexity", np.nan))


FIGURES = [tsne_classification, tsne_perplexities]
