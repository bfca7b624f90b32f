"""The network's architecture (Fig. 6, Sect. 3.1) as a flow chart drawn from a trained
ensemble member's Keras layer graph, so it follows the configuration (the RVS-only
variant, other filter counts, dropout): one box per layer with its name, type, size and
output shape per star; the input branches side by side (photometry left, RVS spectrum
centre, XP right, as in the paper, whichever the member has), joined at the concatenation,
then the fully connected head to the output labels.

Rows are placed by the longest path from each layer to the output, so every branch ends
just above the concatenation that joins it and no arrow crosses a box.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from gaiacnn.figures import style as st
from gaiacnn.figures.context import Context, Skip
from gaiacnn.figures.render import Rendered, figure

#: Column (x, in box widths) of each input branch: photometry left, RVS centre, XP right,
#: as in the paper's Fig. 6 (Sect. 3.1); layers fed by several inputs (the head) sit at 0.
BRANCH_COLUMN: dict[str, float] = {"phot": -1.0, "rvs": 0.0, "xp": 1.0}
HEAD_COLUMN = 0.0
#: The input branches in words (caption).
BRANCH_WORDS = {"phot": "photometry", "rvs": "RVS spectrum", "xp": "XP"}
#: Box size in data units (columns are 1 apart, rows 1 apart).
BOX_WIDTH, BOX_HEIGHT = 0.92, 0.66
#: Height of one row of boxes [in].
ROW_HEIGHT_IN = 0.36
#: Face colour of each layer type's box (others white).
KIND_COLOUR = {
    "InputLayer": "0.85",
    "Conv1D": "#a6cee3",
    "MaxPooling1D": "#d4e8f3",
    "Flatten": "0.95",
    "Dense": "#fdbf6f",
    "LeakyReLU": "#fee6c6",
    "Dropout": "0.95",
    "Concatenate": "#b2df8a",
}


@dataclass(frozen=True)
class Box:
    """One layer of the flow chart: its ``name``, Keras type ``kind``, box ``text``, output
    ``shape`` per star, the input ``branch`` it belongs to (None: fed by several inputs),
    its place (``column`` in box widths, ``row`` from the top) and its ``parents`` (names of
    the layers feeding it)."""

    name: str
    kind: str
    text: str
    shape: tuple[int | None, ...]
    branch: str | None
    column: float
    row: int
    parents: tuple[str, ...]


def _history_names(node) -> list[str]:
    """Names of the layers whose outputs a serialised ``inbound_nodes`` entry refers to."""
    if isinstance(node, Mapping):
        config = node.get("config")
        if isinstance(config, Mapping) and "keras_history" in config:
            return [str(config["keras_history"][0])]
        return [name for v in node.values() for name in _history_names(v)]
    if isinstance(node, list | tuple):
        return [name for v in node for name in _history_names(v)]
    return []


def layer_parents(model) -> dict[str, tuple[str, ...]]:
    """The layers feeding each layer of a functional Keras ``model``, by name, read from
    the model's serialised graph (``get_config()``, each layer's ``inbound_nodes``); input
    layers have none.  Insertion order: the model's (topological) layer order."""
    config = model.get_config()
    parents = {}
    for layer in config["layers"]:
        names = _history_names(layer.get("inbound_nodes", []))
        parents[str(layer["name"])] = tuple(dict.fromkeys(names))
    return {layer.name: parents.get(layer.name, ()) for layer in model.layers}


def output_shape(layer) -> tuple[int | None, ...]:
    """A layer's output shape per star (without the batch axis)."""
    return tuple(None if d is None else int(d) for d in layer.output.shape[1:])


def layer_text(layer) -> str:
    """The box text of a layer: its name, then type, size (filters, units, pool size, rate
    or slope), activation (when not linear) and output shape, e.g. ``rvs_conv1`` /
    ``Conv1D 32, relu, (2394, 32)``."""
    kind = type(layer).__name__
    cfg = layer.get_config()
    size = ""
    for key, fmt in (
        ("filters", "{}"),
        ("units", "{}"),
        ("pool_size", "{}"),
        ("rate", "rate {}"),
        ("negative_slope", "slope {:g}"),
    ):
        if key in cfg:
            value = cfg[key]
            if isinstance(value, list | tuple) and len(value) == 1:
                value = value[0]
            size = fmt.format(value)
            break
    parts = [f"{kind} {size}".strip()]
    activation = cfg.get("activation")
    if isinstance(activation, str) and activation != "linear":
        parts.append(activation)
    parts.append(str(output_shape(layer)))
    return f"{layer.name}\n{', '.join(parts)}"


def layout_boxes(model) -> list[Box]:
    """One :class:`Box` per layer of ``model``, in the model's layer order.

    Branch: the model input the layer depends on (its ancestors' input layer), None when
    it depends on several (the concatenation and the head).  Column:
    :data:`BRANCH_COLUMN` (inputs of other names to the right of them), :data:`HEAD_COLUMN`
    for the head.  Row: the longest path from the output minus the layer's own longest path
    to it (0 at the top), so branches end just above the layer that joins them."""
    parents = layer_parents(model)
    children: dict[str, list[str]] = {name: [] for name in parents}
    for name, ps in parents.items():
        for p in ps:
            children[p].append(name)
    inputs: dict[str, frozenset[str]] = {}
    for name, ps in parents.items():  # topological order
        inputs[name] = frozenset({name}) if not ps else frozenset().union(*(inputs[p] for p in ps))
    height: dict[str, int] = {}
    for name in reversed(list(parents)):
        height[name] = 1 + max((height[c] for c in children[name]), default=-1)
    top = max(height.values(), default=0)
    columns = dict(BRANCH_COLUMN)
    for t in model.inputs:
        name = t.name
        if name not in columns:
            columns[name] = max(columns.values()) + 1.0
    boxes = []
    for layer in model.layers:
        name = layer.name
        branch = next(iter(inputs[name])) if len(inputs[name]) == 1 else None
        column = HEAD_COLUMN if branch is None else columns.get(branch, HEAD_COLUMN)
        boxes.append(
            Box(
                name=name,
                kind=type(layer).__name__,
                text=layer_text(layer),
                shape=output_shape(layer),
                branch=branch,
                column=column,
                row=top - height[name],
                parents=parents[name],
            )
        )
    return boxes


def count_parameters(model) -> tuple[int, int]:
    """(all, trainable) parameters of ``model``."""
    trainable = int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))
    return int(model.count_params()), trainable


def draw(boxes: Sequence[Box], labels: Sequence[str]) -> Figure:
    """The flow chart of ``boxes`` (:func:`layout_boxes`), ending in one box naming the
    output ``labels``; a page-wide figure, 0.36 in per row."""
    rows = max(b.row for b in boxes) + 2  # + the output labels
    columns = [b.column for b in boxes]
    x0, x1 = min(min(columns), -1.0) - 0.5, max(max(columns), 1.0) + 0.5
    fig, axes = st.new_figure(width=st.PAGE_WIDTH, height=ROW_HEIGHT_IN * rows + 0.3)
    ax = axes[0, 0]
    ax.set_xlim(x0, x1)
    ax.set_ylim(-rows + 0.5, 0.5)
    ax.set_axis_off()
    where = {b.name: (b.column, -float(b.row)) for b in boxes}

    def box(x: float, y: float, text: str, colour: str) -> None:
        ax.add_patch(
            FancyBboxPatch(
                (x - BOX_WIDTH / 2, y - BOX_HEIGHT / 2),
                BOX_WIDTH,
                BOX_HEIGHT,
                boxstyle="round,pad=0,rounding_size=0.08",
                facecolor=colour,
                edgecolor="0.3",
                lw=0.5,
                mutation_aspect=0.5,
            )
        )
        ax.text(x, y, text, ha="center", va="center", fontsize=6, linespacing=1.15)

    def arrow(a: tuple[float, float], b: tuple[float, float]) -> None:
        ax.annotate(
            "",
            xy=(b[0], b[1] + BOX_HEIGHT / 2),
            xytext=(a[0], a[1] - BOX_HEIGHT / 2),
            arrowprops={
                "arrowstyle": "-|>",
                "lw": 0.6,
                "color": "0.3",
                "shrinkA": 0,
                "shrinkB": 0,
            },
        )

    for b in boxes:
        box(*where[b.name], b.text, KIND_COLOUR.get(b.kind, "white"))
        for p in b.parents:
            arrow(where[p], where[b.name])
    ends = [b for b in boxes if not any(b.name in c.parents for c in boxes)]
    for end in ends:
        x, y = where[end.name]
        out = (x, y - 1.0)
        box(*out, "outputs\n" + ", ".join(st.label_name(x) for x in labels), "white")
        arrow(where[end.name], out)
    for branch, x in BRANCH_COLUMN.items():
        if any(b.branch == branch for b in boxes):
            first = min(b.row for b in boxes if b.branch == branch)
            ax.text(x, -first + 0.55, BRANCH_WORDS[branch], ha="center", va="bottom", fontsize=7)
    return fig


def _input_words(model) -> str:
    """The model's inputs in words, left to right as drawn."""
    order = sorted(model.inputs, key=lambda t: BRANCH_COLUMN.get(t.name, 9.0))
    side = {-1.0: "left", 0.0: "centre", 1.0: "right"}
    words = []
    for t in order:
        what = BRANCH_WORDS.get(t.name, t.name)
        shape = tuple(int(d) for d in t.shape[1:])
        place = side.get(BRANCH_COLUMN.get(t.name, 9.0), "")
        words.append(f"{what} {shape}" + (f" ({place})" if place else ""))
    return ", ".join(words)


@figure(6)
def architecture(ctx: Context) -> Iterator[Rendered]:
    """Fig. 6: the flow chart of the first ensemble member's network (:func:`layout_boxes`,
    :func:`draw`), loaded in Keras' safe mode (:func:`gaiacnn.model.load_member`); no stars
    (``n_stars`` 0)."""
    from gaiacnn.model import MemberError, load_member

    members = [Path(p) for p in ctx.inputs.members]
    if not members:
        raise Skip("no ensemble member to draw the architecture of")
    path = members[0]
    try:
        model, scalers = load_member(path)
    except (MemberError, ValueError) as err:
        raise Skip(str(err)) from err
    boxes = layout_boxes(model)
    labels = list(scalers.labels)
    fig = draw(boxes, labels)
    total, trainable = count_parameters(model)
    joined = any(b.kind == "Concatenate" for b in boxes)
    n_in = len(model.inputs)
    flow = (
        f"The {n_in} input branches, {_input_words(model)}, are joined at the concatenation "
        "and passed through the fully connected head"
        if joined and n_in > 1
        else f"One input, {_input_words(model)}, passed through its layers"
    )
    yield Rendered(
        "fig06_architecture",
        fig,
        "Flow chart of the hybrid CNN (Sect. 3.1), drawn from the Keras layer graph of "
        f"ensemble member {path.name}: one box per layer (name; type with its filters, units, "
        "pool size or slope, activation where not linear, and output shape per star). "
        f"{flow} to the {len(labels)} output labels "
        f"({', '.join(labels)}). "
        f"{st.number(total)} parameters ({st.number(trainable)} trainable); no stars shown.",
        0,
    )


FIGURES = [architecture]
