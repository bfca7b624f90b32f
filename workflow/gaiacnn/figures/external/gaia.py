"""Comparisons with Gaia DR3 GSP-Spec and GSP-Phot (Figs. 7 right, 20, 20.5)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from gaiacnn.constants import label_unit
from gaiacnn.figures import style as st
from gaiacnn.figures.context import Context, Skip
from gaiacnn.figures.external.drawing import (
    _cnn_pairs,
    _difference_figure,
    _limits,
    _Pair,
    _points,
    _residual_limits,
)
from gaiacnn.figures.external.tables import (
    GSP_PHOT_LABELS,
    GSP_SPEC_LABELS,
    Match,
    _add_reference,
    _bs,
    _value,
    bias_sigma,
    gsp_spec_minus_reference,
    matched,
)
from gaiacnn.figures.render import Rendered, figure


# ---------------------------------------------------------------------------- figures
@figure(7.5)
def gsp_spec_reference(ctx: Context) -> Iterator[Rendered]:
    """Fig. 7 right: GSP-Spec - reference (e.g. APOGEE) against the reference labels."""
    m, have = gsp_spec_minus_reference(ctx)
    pairs = [
        _Pair(
            x,
            x,
            f"ext_{x}",
            f"ref_{x}",
            st.label_text(x, "reference "),
            f"GSP-Spec $-$ reference [{label_unit(x)}]",
        )
        for x in have
    ]
    yield _difference_figure(
        ctx,
        m,
        pairs,
        "fig07_gsp_spec_reference",
        "GSP-Spec minus reference (input, e.g. APOGEE DR17) labels against the reference "
        "labels (Fig. 7 right)",
    )


@figure(20)
def gsp_spec(ctx: Context) -> Iterator[Rendered]:
    """CNN - GSP-Spec against GSP-Spec for T_eff, log g, [M/H], [alpha/M]: not a figure of
    the paper (which compares GSP-Spec with APOGEE, Fig. 7 right and Fig. 16), the
    GSP-Spec companion of Fig. 20."""
    m = matched(ctx, "gsp_spec")
    pairs = _cnn_pairs(ctx, "gsp_spec", GSP_SPEC_LABELS)
    if not pairs:
        raise Skip("the catalogue has none of teff, logg, m_h, alpha_m")
    yield _difference_figure(
        ctx, m, pairs, "fig20_gsp_spec", "CNN minus GSP-Spec labels against GSP-Spec"
    )


#: The three columns of Fig. 20 (Sect. 6.1): (title, test, ref, x-axis name): ``test - ref``
#: against ``ref``, ``cnn``/``ref``/``ext`` standing for the CNN, the reference (e.g.
#: APOGEE) and the GSP-Phot value of a label.
GSP_PHOT_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("CNN - reference", "cnn", "ref", "reference"),
    ("GSP-Phot - reference", "ext", "ref", "reference"),
    ("CNN - GSP-Phot", "cnn", "ext", "GSP-Phot"),
)


def gsp_phot_sample(ctx: Context, m: Match, labels: Sequence[str]) -> np.ndarray:
    """Rows of ``m.frame`` (GSP-Phot joined, ``ref_<label>`` added) in Fig. 20: observed
    stars inside the training limits whose CNN, reference and GSP-Phot values are all
    finite for every label of ``labels`` (the paper's 33 120 stars, Sect. 6.1)."""
    f = m.frame
    keep = f["inside"].to_numpy(bool).copy()
    for x in labels:
        for who in ("cnn", "ref", "ext"):
            keep &= np.isfinite(f[f"{who}_{x}"].to_numpy(float))
    return keep


@figure(20.5)
def gsp_phot(ctx: Context) -> Iterator[Rendered]:
    """Fig. 20 (Sect. 6.1): CNN - reference (e.g. APOGEE, left column), GSP-Phot -
    reference (middle) and CNN - GSP-Phot (right) for T_eff, log g, [M/H] (rows), each
    against the second of the pair, for the observed stars inside the training limits
    that have all three values (:func:`gsp_phot_sample`)."""
    m = matched(ctx, "gsp_phot")
    labels = [x for x in GSP_PHOT_LABELS if x in ctx.labels]
    if not labels:
        raise Skip("the catalogue has none of teff, logg, m_h")
    have = _add_reference(ctx, m.frame, labels)
    labels = [x for x in labels if x in have]
    if not labels:
        raise Skip("no GSP-Phot star matched to the catalogue has a reference label")
    keep = gsp_phot_sample(ctx, m, labels)
    f = m.frame[keep]
    n = len(f)
    if n == 0:
        raise Skip(
            f"none of the {len(m.frame)} stars matched to {m.path.name} is an observed star "
            f"inside the training limits with a reference, CNN and GSP-Phot "
            f"{', '.join(labels)}"
        )
    fig, axes = st.new_figure(
        len(labels), len(GSP_PHOT_COLUMNS), width=st.PAGE_WIDTH, height=1.9 * len(labels) + 0.3
    )
    colour = st.SAMPLE_COLOUR["inside"]
    parts: dict[str, list[str]] = {title: [] for title, *_ in GSP_PHOT_COLUMNS}
    for i, x in enumerate(labels):
        values = {who: f[f"{who}_{x}"].to_numpy(float) for who in ("cnn", "ref", "ext")}
        xlim = _limits(np.concatenate([values["ref"], values["ext"]]))
        ylim = _residual_limits(
            np.concatenate([values[t] - values[r] for _, t, r, _ in GSP_PHOT_COLUMNS]), room=0.35
        )
        for j, (title, test, ref, x_name) in enumerate(GSP_PHOT_COLUMNS):
            ax = axes[i, j]
            d = values[test] - values[ref]
            _points(ax, values[ref], d, colour, xlim, ylim)
            ax.axhline(0.0, color="k", ls="--", lw=0.8)
            stats = bias_sigma(d)
            b, sd, _ = stats
            st.corner_text(ax, f"b = {_value(b, x)}\nσ = {_value(sd, x, False)}", "lower left")
            if i == 0:
                ax.set_title(f"{title.replace(' - ', ' $-$ ')}, {st.stars(n)}", fontsize=7)
            ax.set_xlim(*xlim)
            ax.set_ylim(*ylim)
            ax.set_xlabel(st.label_text(x, f"{x_name} "))
            ax.set_ylabel(f"{title.replace(' - ', ' $-$ ')} [{label_unit(x)}]", fontsize=7)
            parts[title].append(f"{x} {_bs(stats, x, 'sigma')}")
    n_training = int(m.frame["in_training"].sum())
    n_outside = int((~m.frame["in_training"] & ~m.frame["inside"]).sum())
    n_lacking = len(m.frame) - n - n_training - n_outside
    caption = (
        "CNN minus reference (input, e.g. APOGEE DR17) labels (left column), GSP-Phot minus "
        "reference (middle) and CNN minus GSP-Phot (right), each against the second of the "
        f"pair, for {', '.join(labels)} (rows) of {st.stars(n)} of the observed sample inside "
        "the training limits with a finite reference, CNN and GSP-Phot value of every label "
        f"(Fig. 20, Sect. 6.1); {len(m.frame)} stars of {m.path.name} ({m.n_table} in the "
        f"table) are in the catalogue: {n_training} of the training sample, {n_outside} "
        f"observed outside the training limits and {n_lacking} lacking a value left out; "
        "dashed line: no difference; b, sigma: mean and standard deviation of the "
        "difference. " + " | ".join(f"{t}: " + "; ".join(v) for t, v in parts.items())
    )
    yield Rendered("fig20_gsp_phot", fig, caption + ctx.flag_note(), n)
