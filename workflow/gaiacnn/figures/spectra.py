"""Figures of the spectra and of what the CNN learns from them (Sect. 3.5): example RVS
spectra of training stars (Fig. 2, Sect. 2.1), mean gradients of the labels with respect to
the RVS pixels for red-clump stars (Fig. 9),
XP coefficient-label correlations and XP gradients (Fig. 10), and mean observed RVS spectra
in sequences of T_eff, log g, [M/H] and [alpha/M] (Fig. 12, Sect. 4.1).

Spectra are read row-chunk by row-chunk (never a whole ``rvs/flux``), so memory does not grow
with the number of stars.

Each figure says which input it lacks when the survey has none: Figs. 2, 9 and 12 need RVS
spectra (and Fig. 9 ensemble members with an RVS branch), Fig. 10 XP data and members with
an XP branch; on members that read the XP sampled flux (``model.xp_input: sampled``) Fig. 10
is drawn on the sampled flux's wavelength grid.  Where the labels have no [M/H], [Fe/H]
stands in for it (example stars, red-clump groups, sequences), as the captions say.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
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
    missing_input,
)
from gaiacnn.figures.render import Rendered, figure

#: The XP sampled flux of the layout (SPEC stage 3): (N, K), attributes wavelength_nm (K,)
#: and flux_kind ("absolute" W m-2 nm-1, or "normalised").
XP_SAMPLED_DATASET = "xp/sampled_flux"

#: Rows read per block of a spectra file (a block of 4096 x 2401 float32 is ~39 MB).
CHUNK_ROWS = 4096
#: Fewest stars of a bin whose mean spectrum is drawn (Fig. 12).
MIN_STARS_PER_BIN = 5

#: Main RVS features the CNN learns from (Sect. 3.5.1; Boeche et al. 2011, Guiglion et al.
#: 2018, Contursi et al. 2021): (air wavelength [nm], species, feature they belong to).
RVS_FEATURES: tuple[tuple[float, str, str], ...] = (
    (849.80, "Ca II", "Ca II"),
    # the ~8520 Å blend, active in T_eff, log g and [M/H]
    (851.41, "Fe I", "Fe I+Ti I"),
    (851.51, "Fe I", "Fe I+Ti I"),
    (851.84, "Ti I", "Fe I+Ti I"),
    (852.11, "Ti I", "Fe I+Ti I"),
    # blue wing of Ca II 8542, active in every label
    (853.69, "Fe I", "Fe I+Ca I"),
    (853.92, "Ca I", "Fe I+Ca I"),
    (854.21, "Ca II", "Ca II"),
    (855.10, "Cr II", "Cr II"),  # T_eff and log g only
    (855.68, "Si I", "Si I"),
    # Fe I lines of 8570-8640 Å
    (858.23, "Fe I", "Fe I"),
    (861.18, "Fe I", "Fe I"),
    (862.16, "Fe I", "Fe I"),
    # the ~8650 Å blend, active in log g, [M/H] and [alpha/M]
    (864.85, "Si I", "Si I+V II+CN"),
    (864.94, "V II", "Si I+V II+CN"),
    (865.00, "CN", "Si I+V II+CN"),
    (866.21, "Ca II", "Ca II"),
    (868.30, "Ti I", "Ti I"),
    (868.86, "Fe I", "Fe I"),
)
#: Colour of each species' feature lines (Figs. 9 and 12).
SPECIES_COLOUR = {
    "Ca II": "tab:red",
    "Ca I": "tab:pink",
    "Fe I": "tab:blue",
    "Ti I": "tab:green",
    "Cr II": "tab:purple",
    "Si I": "tab:orange",
    "V II": "tab:brown",
    "CN": "tab:olive",
}
#: Defaults of ``figures.red_clump`` (Figs. 9-10): reference T_eff [K], log g [dex], [M/H]
#: centres and half width [dex], stars per group, ensemble members (0 = all).
DEFAULT_RED_CLUMP: dict = {
    "teff": (4500.0, 5100.0),
    "logg": (2.2, 2.8),
    "m_h": (0.0, -0.8),
    "m_h_half_width": 0.1,
    "max_stars": 300,
    "members": 4,
}
#: The Sun's nominal effective temperature [K] (IAU 2015 Resolution B3, Prša et al. 2016) and
#: surface gravity log g [dex, cgs] (log10 of the IAU nominal GM_sun / R_sun^2 = 4.438): the
#: centre of the solar-twin box of Fig. 2.
SOLAR_TEFF_K = 5772.0
SOLAR_LOGG = 4.44
#: Half widths of the solar-twin box of Fig. 2 (the paper gives none): T_eff ± 100 K [K],
#: log g ± 0.2 [dex].
SOLAR_TWIN_TEFF_HALF_WIDTH_K = 100.0
SOLAR_TWIN_LOGG_HALF_WIDTH = 0.2
#: Target reference [M/H] [dex] of the two stars of each panel of Fig. 2: the paper's red-clump
#: pair, "[M/H] = 0 (blue) and [M/H] = –0.87 dex (orange)" (Fig. 2); the paper does not give
#: its solar twins' metallicities, so the same two targets are used for them.
EXAMPLE_M_H: tuple[float, ...] = (0.0, -0.87)
#: Fig. 2 takes, of the ``EXAMPLE_NEAREST`` stars of a box nearest a target [M/H] and within
#: ``EXAMPLE_M_H_TOLERANCE`` [dex] of the nearest one's distance to it, the highest-S/N one.
EXAMPLE_NEAREST = 5
EXAMPLE_M_H_TOLERANCE = 0.1
#: Names of the colours C0-C3 the stars of a Fig. 2 panel are drawn in, for the caption.
_COLOUR_NAMES = ("blue", "orange", "green", "red")
#: Line styles (and their names) of the [M/H] groups of Fig. 9, in ``red_clump.m_h`` order.
GROUP_LINESTYLES = (("-", "solid"), ("--", "dashed"), (":", "dotted"), ("-.", "dash-dotted"))


@dataclass(frozen=True)
class ExamplePanel:
    """One panel of Fig. 2: training stars with reference ``teff`` [K] and ``logg`` [dex]
    within the (lo, hi) boxes (inclusive), one star per target metallicity ``m_h`` [dex]."""

    name: str
    teff: tuple[float, float]
    logg: tuple[float, float]
    m_h: tuple[float, ...] = EXAMPLE_M_H

    def box_text(self) -> str:
        """The box in words, e.g. ``4500 <= T_eff <= 5100 K, 2.2 <= log g <= 2.8``."""
        (t0, t1), (g0, g1) = self.teff, self.logg
        return f"{t0:g} <= T_eff <= {t1:g} K, {g0:g} <= log g <= {g1:g}"


@dataclass(frozen=True)
class ExampleChoice:
    """The stars chosen for one :class:`ExamplePanel`: ``rows`` (training-file rows, one per
    target [M/H], in target order) of the ``n_box`` stars in its box."""

    panel: ExamplePanel
    rows: tuple[int, ...]
    n_box: int


@dataclass(frozen=True)
class SpectraSequence:
    """One panel of Fig. 12: observed stars with CNN labels within ``cuts`` (lo <= x < hi),
    binned in ``label`` at ``edges`` (label units)."""

    panel: str
    label: str
    edges: tuple[float, ...]
    cuts: tuple[tuple[str, float, float], ...]
    what: str


#: The four sequences of Fig. 12 (Sect. 4.1), on the CNN labels of the observed stars.
SEQUENCES: tuple[SpectraSequence, ...] = (
    # (a) turn-off and dwarf stars at solar [M/H], T_eff in 250 K bins (paper: ~4900-6000 K)
    SpectraSequence(
        "a",
        "teff",
        (4750.0, 5000.0, 5250.0, 5500.0, 5750.0, 6000.0, 6250.0),
        (("logg", 3.8, 4.4), ("m_h", -0.1, 0.1)),
        "turn-off and dwarf stars, solar [M/H]",
    ),
    # (b) log g in 0.3 dex bins at T_eff 5000 +- 150 K, solar [M/H] (paper: 2.7-4.4 dex)
    SpectraSequence(
        "b",
        "logg",
        (2.4, 2.7, 3.0, 3.3, 3.6, 3.9, 4.2, 4.5),
        (("teff", 4850.0, 5150.0), ("m_h", -0.1, 0.1)),
        "T_eff = 5000 ± 150 K, solar [M/H]",
    ),
    # (c) [M/H] in 0.25 dex bins for cool giants (paper: -1.5 to solar)
    SpectraSequence(
        "c",
        "m_h",
        (-1.5, -1.25, -1.0, -0.75, -0.5, -0.25, 0.0, 0.25),
        (("teff", 4400.0, 4800.0), ("logg", 1.5, 2.5)),
        "cool giants",
    ),
    # (d) [alpha/M] in 0.05 dex bins for cool dwarfs at slightly sub-solar [M/H], where both
    # alpha-poor and alpha-rich stars are common (paper: solar to +0.26)
    SpectraSequence(
        "d",
        "alpha_m",
        (-0.05, 0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3),
        (("teff", 4600.0, 5200.0), ("logg", 4.2, 4.7), ("m_h", -0.5, -0.1)),
        "cool dwarfs, -0.5 <= [M/H] < -0.1",
    ),
)


# ---------------------------------------------------------------------- reading rows
def iter_selected_rows(
    ds: h5py.Dataset, rows: np.ndarray, chunk_rows: int = CHUNK_ROWS
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(i, values)``: the values of ``ds`` at ``rows[i:i + len(values)]``, block by
    block of ``chunk_rows`` file rows.  ``rows``: sorted unique indices.  A dense block is
    read as one slab, a sparse one by point selection; memory ~ ``chunk_rows`` rows."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size and (np.any(np.diff(rows) <= 0) or rows[0] < 0 or rows[-1] >= ds.shape[0]):
        raise ValueError("rows must be sorted, unique and within the dataset")
    n = ds.shape[0]
    for block in np.unique(rows // chunk_rows):
        start = int(block) * chunk_rows
        stop = min(start + chunk_rows, n)
        lo, hi = np.searchsorted(rows, [start, stop])
        sel = rows[lo:hi]
        if 8 * sel.size >= stop - start:  # dense: one contiguous read
            yield int(lo), ds[start:stop][sel - start]
        else:
            yield int(lo), ds[sel]


def read_rows(
    path: str | os.PathLike, names: Sequence[str], rows: np.ndarray, chunk_rows: int = CHUNK_ROWS
) -> dict[str, np.ndarray]:
    """Datasets ``names`` of an arrays file at sorted unique ``rows`` (in that order),
    streamed; :class:`Skip` if one is absent."""
    rows = np.asarray(rows, dtype=np.int64)
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as h5:
        for name in names:
            if name not in h5:
                raise Skip(f"{Path(path).name} has no dataset {name}")
            ds = h5[name]
            res = np.empty((rows.size, *ds.shape[1:]), dtype=ds.dtype)
            for i, values in iter_selected_rows(ds, rows, chunk_rows):
                res[i : i + len(values)] = values
            out[name] = res
    return out


def member_inputs(
    path: str | os.PathLike, scalers, rows: np.ndarray, chunk_rows: int = CHUNK_ROWS
) -> dict[str, np.ndarray]:
    """Model inputs (:meth:`gaiacnn.model.Scalers.inputs`, float32) of the sorted unique
    ``rows`` of arrays file ``path``, through a member's ``scalers``."""
    return scalers.inputs(read_rows(path, scalers.datasets(), rows, chunk_rows))


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


# ---------------------------------------------------------------------- mean spectra
def mean_spectra(
    path: str | os.PathLike,
    bin_ids: Sequence[np.ndarray],
    n_bins: Sequence[int],
    chunk_rows: int = CHUNK_ROWS,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Mean ``rvs/flux`` per bin of each binning of the file's rows, streamed.

    ``bin_ids[s]``: (N,) int, the bin of each file row in binning ``s`` (-1: none);
    ``n_bins[s]``: its number of bins.  Returns per binning ``(mean (n_bins, P), stars
    (n_bins,))``; the mean of a pixel is over its finite values (NaN for an empty bin)."""
    bin_ids = [np.asarray(b, dtype=np.int64) for b in bin_ids]
    used = np.zeros(len(bin_ids[0]) if bin_ids else 0, bool)
    for b in bin_ids:
        used |= b >= 0
    rows = np.flatnonzero(used)
    with h5py.File(path, "r") as h5:
        if "rvs/flux" not in h5:
            raise Skip(f"{Path(path).name} has no dataset rvs/flux")
        ds = h5["rvs/flux"]
        p = ds.shape[1]
        sums = [np.zeros((k, p)) for k in n_bins]
        finite = [np.zeros((k, p)) for k in n_bins]
        for i, flux in iter_selected_rows(ds, rows, chunk_rows):
            flux = np.asarray(flux, dtype=np.float32)
            ok = np.isfinite(flux)
            flux = np.where(ok, flux, 0.0).astype(np.float32)
            ok = ok.astype(np.float32)
            sel = rows[i : i + len(flux)]
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


# ---------------------------------------------------------------------- drawing helpers
def _features(ax, annotate: bool = False, only: Sequence[str] | None = None) -> None:
    """Vertical lines at :data:`RVS_FEATURES` (each feature named on top when ``annotate``;
    ``only``: the features to draw)."""
    runs: list[tuple[str, list[float]]] = []  # neighbouring lines of one feature, one name
    for wl, species, feature in RVS_FEATURES:
        if only is not None and feature not in only:
            continue
        ax.axvline(wl, color=SPECIES_COLOUR[species], lw=0.6, alpha=0.5, zorder=0)
        if runs and runs[-1][0] == feature and wl - runs[-1][1][-1] < 1.0:
            runs[-1][1].append(wl)
        else:
            runs.append((feature, [wl]))
    if annotate:
        trans = ax.get_xaxis_transform()
        for feature, wls in runs:
            ax.text(
                float(np.mean(wls)),
                1.02,
                feature,
                transform=trans,
                rotation=90,
                ha="center",
                va="bottom",
                fontsize=5,
            )


def _derivative_text(name: str, wrt: str) -> str:
    unit = label_unit(name)
    return rf"$\partial${st.label_name(name)}/$\partial {wrt}$" + (f" [{unit}]" if unit else "")


def _group_text(centre: float, half_width: float, metal: str | None = "m_h") -> str:
    if metal is None or not np.isfinite(centre):
        return "any metallicity"
    return f"{st.label_name(metal)} = {centre:+.1f} ± {half_width:g}"


# ---------------------------------------------------------------------- figures
@figure(2)
def example_spectra(ctx: Context) -> Iterator[Rendered]:
    """Fig. 2: normalised RVS flux against wavelength [nm] of a red-clump star and of a
    solar twin of the training sample, each at the reference [M/H] nearest 0 and -0.87 dex
    (:func:`example_stars`; [Fe/H] stands in without ``labels/m_h``)."""
    ctx.require("rvs/flux")
    names = [layout.label_dataset(x) for x in ("teff", "logg")]
    missing = [x for x in names if not ctx.has(x)]
    if missing:
        raise Skip(f"the training file has no {', '.join(missing)}")
    metal = red_clump_metallicity(ctx)
    if metal is None:
        raise Skip("the training file has no labels/m_h or labels/fe_h to choose stars by")
    metal_ds = layout.label_dataset(metal)
    cols = ctx.read_arrays("training", ["source_id", *names, metal_ds])
    has_snr = ctx.has("rvs/snr")
    snr = ctx.read_arrays("training", ["rvs/snr"])["rvs/snr"] if has_snr else None
    teff, logg, mh = (cols[x].astype(float) for x in (*names, metal_ds))
    snr_f = np.full(teff.shape, np.nan) if snr is None else snr.astype(float)
    chosen = example_stars(teff, logg, mh, snr, example_panels(ctx))
    rows = np.unique([r for c in chosen for r in c.rows])
    flux = read_rows(ctx.inputs.training, ["rvs/flux"], rows)["rvs/flux"]
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


@figure(9)
def rvs_gradients(ctx: Context) -> Iterator[Rendered]:
    rc = _red_clump_config(ctx)
    _member_paths(ctx)
    ctx.require("rvs/flux")
    member_scalers(ctx, "rvs")
    metal = red_clump_metallicity(ctx)
    groups = [(c, g) for c, g in red_clump_groups(ctx) if g.size]
    if not groups:
        raise Skip("no red-clump star in the training sample")
    labels, grads, n_members = mean_gradients(ctx, [g for _, g in groups], "rvs")
    wl = ctx.wavelength_nm()
    ref = int(np.argmin([abs(c) for c, _ in groups]))
    flux = read_rows(ctx.inputs.training, ["rvs/flux"], groups[ref][1])["rvs/flux"]
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
    ctx.require("rvs/flux", "observed")
    path = ctx.arrays_file("observed")
    cat = ctx.catalogue_rows("observed")
    have = cat >= 0
    use = np.zeros(cat.size, bool)
    use[have] = ctx.inside[cat[have]]
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
    results = mean_spectra(path, bins, [len(s.edges) - 1 for s in sequences])
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


FIGURES = [example_spectra, rvs_gradients, xp_gradients, mean_spectra_sequences]
