"""What the CNN learns: RVS gradients (Fig. 9), XP correlations and gradients (10)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np

from gaiacnn import layout
from gaiacnn.figures import style as st
from gaiacnn.figures.context import (
    METALLICITY_LABELS,
    Context,
    Skip,
    metallicity_note,
    missing_input,
)
from gaiacnn.figures.render import Rendered, figure
from gaiacnn.figures.spectra.common import (
    CHUNK_ROWS,
    DEFAULT_RED_CLUMP,
    GROUP_LINESTYLES,
    XP_SAMPLED_DATASET,
    _derivative_text,
    _features,
    _group_text,
    read_rows,
)
from gaiacnn.layout import RVS_FLUX_DATASET


# ---------------------------------------------------------------------- gradients
def input_gradients(
    model,
    scalers,
    inputs: Mapping[str, np.ndarray],
    batch_size: int = 256,
    wrt: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Per-star gradients of the physical labels with respect to the model inputs.

    ``inputs``: model inputs by Keras input name (as :meth:`Scalers.inputs` gives them, n
    rows).  The network predicts y01 = (y - label_min) / (label_max - label_min), so
    dy/dx = dy01/dx * (label_max - label_min).  Returns, for each input in ``wrt`` (default:
    all), an array (n, n_labels, *input shape) float64 in label units per unit input (for
    ``"rvs"``: per unit normalised flux, trailing channel axis dropped; for ``"xp"`` and
    ``"phot"``: per unit of the min-max scaled input).  Batched in one traced function.
    """
    import tensorflow as tf

    names = [t.name for t in model.inputs]
    wrt = list(names if wrt is None else wrt)
    unknown = [k for k in wrt if k not in names]
    if unknown:
        raise KeyError(f"the model has no input {unknown} (it has {names})")
    n_labels = int(model.outputs[0].shape[-1])
    span = np.asarray(scalers.label_max, float) - np.asarray(scalers.label_min, float)
    span = np.where(span > 0, span, 1.0)  # as Scalers.unscale_labels
    if span.size != n_labels:
        raise ValueError(f"{span.size} labels in the scalers, {n_labels} model outputs")
    spec = {
        k: tf.TensorSpec((None, *t.shape[1:]), tf.float32)
        for k, t in zip(names, model.inputs, strict=True)
    }

    @tf.function(input_signature=[spec])
    def step(x):
        with tf.GradientTape(persistent=True) as tape:
            for k in wrt:
                tape.watch(x[k])
            y = tf.cast(model(x, training=False), tf.float32)
            totals = [tf.reduce_sum(y[:, j]) for j in range(n_labels)]
        out = {}
        for k in wrt:
            grads = [tape.gradient(s, x[k]) for s in totals]
            grads = [tf.zeros_like(x[k]) if g is None else g for g in grads]
            out[k] = tf.stack(grads, axis=1)
        del tape
        return out

    n = len(next(iter(inputs.values())))
    result: dict[str, np.ndarray] = {}
    for k, t in zip(names, model.inputs, strict=True):
        if k in wrt:
            shape = tuple(t.shape[1:])
            if len(shape) > 1 and shape[-1] == 1:
                shape = shape[:-1]  # the channel axis of a 1-D convolution input
            result[k] = np.empty((n, n_labels, *shape), dtype=np.float64)
    scale = span.reshape(1, n_labels)
    for s in range(0, n, batch_size):
        e = min(s + batch_size, n)
        batch = {k: tf.constant(np.asarray(inputs[k][s:e], dtype=np.float32)) for k in names}
        for k, g in step(batch).items():
            g = g.numpy().astype(np.float64).reshape(e - s, n_labels, -1)
            g *= scale[..., None]
            result[k][s:e] = g.reshape(result[k][s:e].shape)
    return result


def _red_clump_config(ctx: Context) -> dict:
    return {**DEFAULT_RED_CLUMP, **dict(ctx.cfg.get("red_clump", {}) or {})}


def red_clump_metallicity(ctx: Context) -> str | None:
    """The reference label the red-clump groups are selected by: ``m_h``, else ``fe_h``
    (whichever the training file has), else None (one group of any metallicity)."""
    return next((x for x in METALLICITY_LABELS if ctx.has(layout.label_dataset(x))), None)


def _metal_note(metal: str | None) -> str:
    """Caption note on the label the red-clump groups were selected by."""
    if metal is None:
        return (
            " The training file has no labels/m_h or labels/fe_h: one group of red-clump "
            "stars of any metallicity."
        )
    return metallicity_note(metal)


def red_clump_groups(ctx: Context) -> list[tuple[float, np.ndarray]]:
    """``(m_h centre, sorted training-file rows)`` of each red-clump group (Figs. 9-10):
    reference T_eff, log g within ``red_clump.teff``/``.logg`` and [M/H] within
    ``centre ± m_h_half_width``; at most ``max_stars`` drawn per group (seeded).  Without
    ``labels/m_h``, [Fe/H] (:func:`red_clump_metallicity`) stands in for [M/H]; without
    either, one group ``(nan, rows)`` of red-clump stars of any metallicity."""
    rc = _red_clump_config(ctx)
    names = [layout.label_dataset(x) for x in ("teff", "logg")]
    missing = [x for x in names if not ctx.has(x)]
    if missing:
        raise Skip(f"the training file has no {', '.join(missing)}")
    metal = red_clump_metallicity(ctx)
    with h5py.File(ctx.inputs.training, "r") as h5:
        teff, logg = (h5[x][:].astype(float) for x in names)
        mh = h5[layout.label_dataset(metal)][:].astype(float) if metal else np.zeros_like(teff)
    t0, t1 = (float(v) for v in rc["teff"])
    g0, g1 = (float(v) for v in rc["logg"])
    hw = float(rc["m_h_half_width"])
    with np.errstate(invalid="ignore"):
        rc_mask = (teff >= t0) & (teff <= t1) & (logg >= g0) & (logg <= g1)
    rng = np.random.default_rng(int(ctx.cfg.get("seed", 0)))
    groups = []
    for centre in [float(c) for c in rc["m_h"]] if metal else [np.nan]:
        with np.errstate(invalid="ignore"):
            near = np.abs(mh - centre) <= hw if metal else np.ones(teff.shape, bool)
            idx = np.flatnonzero(rc_mask & near)
        if idx.size > int(rc["max_stars"]):
            idx = rng.choice(idx, int(rc["max_stars"]), replace=False)
        groups.append((centre, np.sort(idx)))
    return groups


def _member_paths(ctx: Context) -> list[Path]:
    members = [Path(p) for p in ctx.inputs.members]
    k = int(_red_clump_config(ctx)["members"])
    members = members[:k] if k > 0 else members
    if not members:
        raise Skip("no ensemble member to take gradients of")
    return members


#: The gradient figure of each branch, in the reasons of skipped figures.
BRANCH_TEXT = {"rvs": "RVS", "xp": "XP", "phot": "photometry"}


def member_scalers(ctx: Context, branch: str) -> list:
    """The :class:`gaiacnn.model.Scalers` (the input contract) of each member whose
    gradients the figures take, read without loading the networks; :class:`Skip` when a
    member cannot be read or was trained without ``branch`` (then it has no such
    gradients)."""
    from gaiacnn.model import SCALERS_FILE, Scalers

    out = []
    for path in _member_paths(ctx):
        f = path / SCALERS_FILE
        if not f.is_file():
            raise Skip(f"{path}: member directory lacks {SCALERS_FILE} (was it trained?)")
        try:
            scalers = Scalers.from_json(f.read_text(encoding="utf-8"))
        except (ValueError, KeyError) as err:
            raise Skip(f"{path}: {err}") from err
        if branch not in scalers.branches:
            raise Skip(
                f"ensemble member {path.name} was trained without the {branch} branch (its "
                f"branches: {', '.join(scalers.branches)}): no {BRANCH_TEXT[branch]} gradients"
            )
        out.append(scalers)
    return out


def mean_gradients(
    ctx: Context, groups: Sequence[np.ndarray], branch: str
) -> tuple[list[str], list[np.ndarray], int]:
    """Mean gradients with respect to input ``branch`` of each group of training rows,
    averaged over the stars and then over the members: ``(labels, [(n_labels, *shape) per
    group; None for an empty group], n_members)``, in :func:`input_gradients` units."""
    from gaiacnn.model import MemberError, load_member

    members = _member_paths(ctx)
    union = np.unique(np.concatenate([np.asarray(g, np.int64) for g in groups]))
    if union.size == 0:
        raise Skip("no red-clump star in the training sample")
    pos = [np.searchsorted(union, g) for g in groups]
    sums: list[np.ndarray | None] = [None] * len(groups)
    labels: list[str] | None = None
    raw: dict[tuple[str, ...], dict[str, np.ndarray]] = {}
    for path in members:
        try:
            model, scalers = load_member(path)
        except MemberError as err:
            raise Skip(str(err)) from err
        if branch not in [t.name for t in model.inputs]:
            raise Skip(
                f"ensemble member {path.name} was trained without the {branch} branch: no "
                f"{BRANCH_TEXT.get(branch, branch)} gradients"
            )
        if labels is None:
            labels = list(scalers.labels)
        elif list(scalers.labels) != labels:
            raise Skip("the ensemble members predict different labels")
        key = tuple(scalers.datasets())
        if key not in raw:  # members of one ensemble share their datasets: read once
            raw[key] = read_rows(ctx.inputs.training, key, union)
        x = scalers.inputs(raw[key])
        for t in model.inputs:
            if tuple(x[t.name].shape[1:]) != tuple(t.shape[1:]):
                raise Skip(
                    f"the model's {t.name} input has shape {tuple(t.shape[1:])}, the "
                    f"training file gives {tuple(x[t.name].shape[1:])}"
                )
        grads = input_gradients(model, scalers, x, wrt=[branch])[branch]
        for i, p in enumerate(pos):
            if p.size:
                m = grads[p].mean(axis=0)
                sums[i] = m if sums[i] is None else sums[i] + m
    means = [None if s is None else s / len(members) for s in sums]
    return labels or [], means, len(members)


# ---------------------------------------------------------------------- XP correlations
def xp_label_correlation(
    path: str | os.PathLike,
    labels: Sequence[str],
    chunk_rows: int = CHUNK_ROWS,
    *,
    xp_input: str = "coefficients",
    flux_kind: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of each reference label with each normalised XP coefficient
    (:func:`gaiacnn.spectra.normalise_xp`: BP/BP[0] then RP/RP[0]) over the stars of ``path``
    with both finite, streamed in row chunks: ``(corr (n_labels, 2M), n stars per label)``;
    NaN for a constant coefficient (e.g. BP[0]/BP[0]).

    ``xp_input`` "sampled": with each sample of ``xp/sampled_flux`` instead, normalised as
    the model reads it (``flux_kind`` "absolute": each spectrum over its mean flux;
    "normalised": as stored), ``corr`` (n_labels, K)."""
    from gaiacnn.spectra import xp_features

    datasets = layout.xp_datasets(xp_input)

    def features(block):
        return xp_features(block, xp_input, flux_kind)

    names = [*datasets, *(layout.label_dataset(x) for x in labels)]
    n = np.zeros(len(labels))
    sx = sxx = sxy = sy = syy = None
    shift_x = shift_y = None
    for _, block in layout.iter_rows(path, names, chunk_rows):
        q = features(block)
        y = np.stack([block[layout.label_dataset(x)].astype(float) for x in labels], axis=1)
        ok_q = np.all(np.isfinite(q), axis=1)
        if shift_x is None:  # shifts against cancellation in the sums of squares
            shift_x = np.nanmean(q[ok_q], axis=0) if ok_q.any() else np.zeros(q.shape[1])
            shift_y = np.nan_to_num(np.nanmedian(y, axis=0)) if np.isfinite(y).any() else 0.0
            k = q.shape[1]
            sx, sxx, sxy = (np.zeros((len(labels), k)) for _ in range(3))
            sy, syy = np.zeros(len(labels)), np.zeros(len(labels))
        q = q - shift_x
        y = y - shift_y
        for j in range(len(labels)):
            m = ok_q & np.isfinite(y[:, j])
            qm, ym = q[m], y[m, j]
            n[j] += m.sum()
            sx[j] += qm.sum(axis=0)
            sxx[j] += (qm * qm).sum(axis=0)
            sy[j] += ym.sum()
            syy[j] += (ym * ym).sum()
            sxy[j] += ym @ qm
    if sx is None:
        raise Skip(f"{Path(path).name} holds no rows")
    with np.errstate(invalid="ignore", divide="ignore"):
        nn = n[:, None]
        cov = sxy - sx * sy[:, None] / nn
        vx = sxx - sx**2 / nn
        vy = (syy - sy**2 / n)[:, None]
        corr = cov / np.sqrt(vx * vy)
        corr = np.where((vx > 1e-12 * np.abs(sxx) + 1e-300) & (vy > 0) & (nn > 2), corr, np.nan)
    return np.clip(corr, -1.0, 1.0), n.astype(int)


@figure(9)
def rvs_gradients(ctx: Context) -> Iterator[Rendered]:
    rc = _red_clump_config(ctx)
    _member_paths(ctx)
    ctx.require(RVS_FLUX_DATASET)
    member_scalers(ctx, "rvs")
    metal = red_clump_metallicity(ctx)
    groups = [(c, g) for c, g in red_clump_groups(ctx) if g.size]
    if not groups:
        raise Skip("no red-clump star in the training sample")
    labels, grads, n_members = mean_gradients(ctx, [g for _, g in groups], "rvs")
    wl = ctx.wavelength_nm()
    ref = int(np.argmin([abs(c) for c, _ in groups]))
    flux = read_rows(ctx.inputs.training, [RVS_FLUX_DATASET], groups[ref][1])[RVS_FLUX_DATASET]
    mean_flux = np.nanmean(flux.astype(float), axis=0)
    hw = float(rc["m_h_half_width"])

    fig, axes = st.new_figure(
        1 + len(labels),
        1,
        width=st.PAGE_WIDTH,
        height=(6 + 5 * len(labels)) / 5,
        sharex=True,  # 1.2 + n in
    )
    ax = axes[0, 0]
    ax.plot(wl, mean_flux, color="k", lw=0.7)
    _features(ax, annotate=True)
    ax.set_ylabel("normalised flux")
    st.corner_text(
        ax,
        f"{_group_text(groups[ref][0], hw, metal)}: {st.stars(groups[ref][1].size)}",
        "lower left",
    )
    for j, name in enumerate(labels):
        ax = axes[1 + j, 0]
        _features(ax)
        ax.axhline(0.0, color="0.6", lw=0.5)
        for i, ((centre, rows), g) in enumerate(zip(groups, grads, strict=True)):
            ax.plot(
                wl,
                g[j],
                color="k" if i == 0 else "0.45",
                lw=0.6,
                ls=GROUP_LINESTYLES[i % len(GROUP_LINESTYLES)][0],
                label=f"{_group_text(centre, hw, metal)} ({st.stars(rows.size)})",
            )
        ax.set_ylabel(_derivative_text(name, "f"), fontsize=7)
    axes[1, 0].legend(fontsize=6, loc="upper right")
    axes[-1, 0].set_xlabel(r"wavelength $\lambda$ [nm]")
    axes[-1, 0].set_xlim(wl[0], wl[-1])
    n = int(sum(g.size for _, g in groups))
    t0, t1 = (float(v) for v in rc["teff"])
    g0, g1 = (float(v) for v in rc["logg"])
    parts = ", ".join(
        f"{_group_text(c, hw, metal)} ({GROUP_LINESTYLES[i % 4][1]}, {st.stars(g.size)})"
        for i, (c, g) in enumerate(groups)
    )
    yield Rendered(
        "fig09_rvs_gradients",
        fig,
        "RVS sensitivity maps: mean gradients of the CNN labels with respect to the RVS pixels "
        "(label unit per unit normalised flux), averaged over "
        f"{n_members} ensemble member{'s' if n_members != 1 else ''} and the red-clump training "
        f"stars ({t0:g} <= reference T_eff <= {t1:g} K, {g0:g} <= log g <= {g1:g}) of {parts}; "
        f"top: their mean spectrum at {_group_text(groups[ref][0], hw, metal)}. Vertical "
        f"lines: main RVS features (Sect. 3.5.1); {st.stars(n)} in all." + _metal_note(metal),
        n,
    )


def _xp_form(ctx: Context) -> tuple[str, str | None]:
    """(XP input form the members read: "coefficients" or "sampled", its flux_kind);
    :class:`Skip` when the arrays have no XP data, a member has no XP branch, the members
    read different forms or the arrays lack the form they read."""
    _member_paths(ctx)
    ctx.arrays_file("training")  # the gradients are the training stars'
    has_coefficients = ctx.has(*layout.XP_COEFFICIENT_DATASETS)
    has_sampled = ctx.has(XP_SAMPLED_DATASET)
    if not (has_coefficients or has_sampled):
        raise missing_input("xp")
    scalers = member_scalers(ctx, "xp")
    forms = {(getattr(sc, "xp_input", None) or "coefficients") for sc in scalers}
    if len(forms) > 1:
        raise Skip(f"the ensemble members read different XP inputs ({', '.join(sorted(forms))})")
    form = forms.pop()
    if form == "sampled":
        if not has_sampled:
            raise missing_input(XP_SAMPLED_DATASET, "the members read the XP sampled flux")
        return form, getattr(scalers[0], "xp_flux_kind", None) or "absolute"
    if not has_coefficients:
        raise missing_input("xp/coefficients", "the members read XP coefficients")
    return form, None


@figure(10)
def xp_gradients(ctx: Context) -> Iterator[Rendered]:
    form, flux_kind = _xp_form(ctx)
    metal = red_clump_metallicity(ctx)
    groups = red_clump_groups(ctx)
    first = next(((c, g) for c, g in groups if g.size), None)
    if first is None:
        raise Skip("no red-clump star in the training sample")
    labels, grads, n_members = mean_gradients(ctx, [first[1]], "xp")
    grad = grads[0]  # (n_labels, 2M) or (n_labels, K)
    corr, n_corr = xp_label_correlation(
        ctx.inputs.training, labels, xp_input=form, flux_kind=flux_kind
    )
    hw = float(_red_clump_config(ctx)["m_h_half_width"])
    members = f"{n_members} ensemble member{'s' if n_members != 1 else ''}"
    stars = f"{st.number(first[1].size)} red-clump training stars at"
    group = f"{_group_text(first[0], hw, metal)}.{_metal_note(metal)}"
    n = int(n_corr.max()) if n_corr.size else 0
    if form == "sampled":
        yield _xp_sampled_figure(ctx, labels, grad, corr, flux_kind, n, members, stars, group)
        return
    m = corr.shape[1] // 2

    ratios = [0.35 * len(labels) + 0.3, *([1.0] * len(labels))]
    fig, axes = st.new_figure(
        1 + len(labels),
        2,
        width=st.PAGE_WIDTH,
        height=(6 + 6 * len(labels)) / 5,  # 1.2 + 1.2 n in, whole pixels
        sharex="col",
        gridspec_kw={"height_ratios": ratios},
    )
    im = None
    for col, (band, sl) in enumerate((("BP", slice(0, m)), ("RP", slice(m, 2 * m)))):
        ax = axes[0, col]
        im = ax.imshow(
            corr[:, sl],
            cmap=st.CMAP["diverging"],
            vmin=-1,
            vmax=1,
            aspect="auto",
            interpolation="nearest",
            extent=(-0.5, m - 0.5, len(labels) - 0.5, -0.5),
        )
        ax.set_yticks(range(len(labels)), [st.label_name(x) for x in labels])
        ax.set_title(f"{band} coefficients (normalised by the first)")
        for j, name in enumerate(labels):
            a = axes[1 + j, col]
            a.axhline(0.0, color="0.6", lw=0.5)
            a.plot(np.arange(m), grad[j, sl], "o-", ms=1.5, lw=0.7, color=f"C{j}")
            if col == 0:
                a.set_ylabel(_derivative_text(name, r"\tilde{x}"), fontsize=7)
        axes[-1, col].set_xlabel(f"{band} coefficient index")
        axes[-1, col].set_xlim(-0.5, m - 0.5)
    fig.colorbar(im, ax=axes[0, :], label="Pearson correlation", shrink=0.9)
    yield Rendered(
        "fig10_xp_gradients",
        fig,
        "XP sensitivity maps. Top: Pearson correlation between the reference labels and the "
        f"normalised XP coefficients (BP/BP[0], RP/RP[0]) of the training sample "
        f"({st.stars(n)}). Below: mean gradient of each CNN label with respect to the XP "
        "input x~ (the normalised coefficient min-max scaled to [0, 1] over the training "
        f"range, so in label units per training range), averaged over {members} and the "
        f"{stars} {group}",
        n,
    )


def _xp_sampled_figure(
    ctx: Context,
    labels: Sequence[str],
    grad: np.ndarray,
    corr: np.ndarray,
    flux_kind: str | None,
    n: int,
    members: str,
    stars: str,
    group: str,
) -> Rendered:
    """Fig. 10 on the XP sampled flux: correlations and gradients against wavelength."""
    with h5py.File(ctx.inputs.training, "r") as h5:
        wl = np.asarray(h5[XP_SAMPLED_DATASET].attrs["wavelength_nm"], dtype=float)
    if wl.size != corr.shape[1] or wl.size != grad.shape[1]:
        raise Skip(
            f"the members' XP input has {grad.shape[1]} samples, the training file's "
            f"{XP_SAMPLED_DATASET} {wl.size}"
        )
    half = np.diff(wl) / 2 if wl.size > 1 else np.array([0.5])
    edges = np.r_[wl[0] - half[0], wl[:-1] + half, wl[-1] + half[-1]]
    normalised = (
        "each spectrum divided by its mean flux"
        if flux_kind == "absolute"
        else "as normalised by the survey"
    )
    ratios = [0.35 * len(labels) + 0.3, *([1.0] * len(labels))]
    fig, axes = st.new_figure(
        1 + len(labels),
        1,
        width=st.PAGE_WIDTH,
        height=(6 + 6 * len(labels)) / 5,
        sharex="col",
        gridspec_kw={"height_ratios": ratios},
    )
    ax = axes[0, 0]
    im = ax.pcolormesh(
        edges,
        np.arange(len(labels) + 1) - 0.5,
        corr,
        cmap=st.CMAP["diverging"],
        vmin=-1,
        vmax=1,
        rasterized=True,
    )
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_yticks(range(len(labels)), [st.label_name(x) for x in labels])
    ax.set_title(f"XP sampled flux ({normalised})")
    for j, name in enumerate(labels):
        a = axes[1 + j, 0]
        a.axhline(0.0, color="0.6", lw=0.5)
        a.plot(wl, grad[j], "o-", ms=1.5, lw=0.7, color=f"C{j}")
        a.set_ylabel(_derivative_text(name, r"\tilde{f}"), fontsize=7)
    axes[-1, 0].set_xlabel(r"wavelength $\lambda$ [nm]")
    axes[-1, 0].set_xlim(edges[0], edges[-1])
    fig.colorbar(im, ax=axes[0, :], label="Pearson correlation", shrink=0.9)
    return Rendered(
        "fig10_xp_gradients",
        fig,
        f"XP sensitivity maps on the XP sampled flux the members read ({wl.size} samples, "
        f"{wl[0]:g}-{wl[-1]:g} nm). Top: "
        "Pearson correlation between the reference labels and the sampled flux "
        f"({normalised}) of the training sample ({st.stars(n)}). Below: mean gradient of "
        "each CNN label with respect to the XP input f~ (that flux min-max scaled to [0, 1] "
        "over the training range, so in label units per training range), averaged over "
        f"{members} and the {stars} {group}",
        n,
    )
