"""Render every figure the data allows into one directory, with an index of captions.

Each figure module lists its figure functions in ``FIGURES``; a function takes a
:class:`~gaiacnn.figures.context.Context` and yields :class:`Rendered` figures, or raises
:class:`~gaiacnn.figures.context.Skip` when the data does not allow it.  The directory is
written beside the target and renamed onto it at the end
(:func:`gaiacnn.io.atomic_directory`), so a killed run leaves no half-rendered set under
the final name.

Each figure function the data did not allow also leaves ``not_drawn/<function>.txt`` (its
reason, one line), so that the Snakemake report can list it as one row
(:func:`report_labels`; the rule registers ``not_drawn/{name}.txt`` beside ``{name}.png``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from gaiacnn.figures import style
from gaiacnn.figures.context import Context, Inputs, Skip
from gaiacnn.io import atomic_directory

log = logging.getLogger(__name__)
logging.getLogger("fontTools").setLevel(logging.WARNING)  # font subsetting chatter (PDF)

#: The index written beside the figures: one entry per figure and per skipped function.
INDEX_FILE = "figures.json"
#: Folder of one ``<function>.txt`` per figure function the data did not allow (its reason).
NOT_DRAWN_DIR = "not_drawn"


@dataclass
class Rendered:
    """One figure: file stem (``fig07_residuals``), what it shows and how many stars."""

    name: str
    fig: Figure
    caption: str
    n_stars: int


FigureFunction = Callable[[Context], Iterable[Rendered]]


#: The figure modules (each lists its figure functions in ``FIGURES``).
MODULES = (
    "samples",
    "architecture",
    "accuracy",
    "spectra",
    "tsne_maps",
    "galaxy",
    "external",
    "rv",
)


def registry() -> list[FigureFunction]:
    """Every figure function, in the paper's figure order (the ``order`` of
    :func:`figure`)."""
    import importlib

    functions: list[FigureFunction] = []
    for name in MODULES:
        functions.extend(importlib.import_module(f"gaiacnn.figures.{name}").FIGURES)
    return sorted(functions, key=lambda f: getattr(f, "order", 999.0))


def figure(order: float) -> Callable[[FigureFunction], FigureFunction]:
    """Decorator: the figure's place in the paper's order (its figure number)."""

    def mark(fn: FigureFunction) -> FigureFunction:
        fn.order = float(order)  # type: ignore[attr-defined]
        return fn

    return mark


def render_all(
    ctx: Context,
    out_dir: str | os.PathLike,
    *,
    formats: Sequence[str] = ("png", "pdf"),
    functions: Sequence[FigureFunction] | None = None,
) -> dict:
    """Render ``functions`` (default: :func:`registry`) into ``out_dir`` (replaced), with
    :data:`INDEX_FILE`; returns the index: ``{"figures": [...], "skipped": [...]}``."""
    index: dict = {"figures": [], "skipped": []}
    # beyond figures.max_observed observed stars, every caption says which were read
    note = ctx.sample_note() if isinstance(ctx, Context) else ""
    with atomic_directory(out_dir) as tmp, style.style():
        for fn in functions if functions is not None else registry():
            t0 = time.perf_counter()
            try:
                for r in fn(ctx):
                    r.caption += note
                    files = style.save(r.fig, tmp, r.name, formats)
                    r.fig.clear()
                    index["figures"].append(
                        {
                            "name": r.name,
                            "caption": r.caption,
                            "n_stars": int(r.n_stars),
                            "files": [p.name for p in files],
                        }
                    )
                    log.info("%s: %s (%s)", r.name, r.caption, style.stars(r.n_stars))
            except Skip as why:
                index["skipped"].append({"function": fn.__name__, "reason": str(why)})
                log.info("skipped %s: %s", fn.__name__, why)
            log.info("%s took %.1f s", fn.__name__, time.perf_counter() - t0)
        (tmp / INDEX_FILE).write_text(json.dumps(index, indent=1), encoding="utf-8")
        write_not_drawn(tmp, index)
    return index


def read_index(out_dir: str | os.PathLike) -> dict:
    """The :data:`INDEX_FILE` of a rendered directory."""
    from gaiacnn.io import read_json

    return read_json(Path(out_dir) / INDEX_FILE, "a figures index", ["figures", "skipped"])


def not_drawn_line(entry: dict) -> str:
    """``<function>: not drawn: <reason>`` of a ``skipped`` entry of the index."""
    return f"{entry['function']}: not drawn: {entry['reason']}"


def write_not_drawn(out_dir: str | os.PathLike, index: dict) -> list[Path]:
    """One ``NOT_DRAWN_DIR/<function>.txt`` per ``skipped`` entry of ``index`` (its
    :func:`not_drawn_line`), under ``out_dir``; the paths written."""
    if not index["skipped"]:
        return []
    folder = Path(out_dir) / NOT_DRAWN_DIR
    folder.mkdir(exist_ok=True)
    paths = []
    for entry in index["skipped"]:
        path = folder / f"{entry['function']}.txt"
        path.write_text(not_drawn_line(entry) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def _report_text(text: str) -> str:
    # Snakemake fills {wildcards} into report labels: no braces in a label
    return str(text).replace("{", "(").replace("}", ")")


def report_labels(out_dir: str | os.PathLike, name: str) -> dict:
    """Report columns (``figure``, ``shows``, ``stars``) of entry ``name`` of a rendered
    directory: a figure of the index (its caption and star count), or a figure function the
    data did not allow (``shows``: ``not drawn: <reason>``, ``stars`` empty).  Empty
    columns before the directory is rendered."""
    index_path = Path(out_dir) / INDEX_FILE
    index = read_index(out_dir) if index_path.exists() else {"figures": [], "skipped": []}
    for item in index["figures"]:
        if item["name"] == name:
            return {
                "figure": name,
                "shows": _report_text(item["caption"]),
                "stars": item["n_stars"],
            }
    for item in index["skipped"]:
        if item["function"] == name:
            shows = _report_text(f"not drawn: {item['reason']}")
            return {"figure": name, "shows": shows, "stars": ""}
    return {"figure": name, "shows": "", "stars": ""}


def run_figures(inputs: Mapping, out_dir, *, figures_cfg: Mapping, snr_edges) -> None:
    """Rule ``figures``: every validation figure the data allows (SPEC stage 8) into
    ``out_dir``, with its index (figures.json)."""
    members = [Path(p).parent for p in _as_list(inputs.get("members"))]
    external = {
        k.removeprefix("external_"): Path(v) for k, v in inputs.items() if k.startswith("external_")
    }
    ctx = Context(
        Inputs(
            catalogue=Path(inputs["catalogue"]),
            training=Path(inputs["training"]) if inputs.get("training") else None,
            observed=Path(inputs["observed"]),
            uncertainty_model=Path(inputs["uncertainty_model"]),
            maps=[Path(p) for p in _as_list(inputs.get("maps"))],
            members=members,
            truth=Path(inputs["truth"]) if inputs.get("truth") else None,
            external=external,
        ),
        {**figures_cfg, "snr_edges": list(snr_edges)},
    )
    index = render_all(ctx, out_dir, formats=figures_cfg.get("formats", ("png", "pdf")))
    log.info(
        "%d figures written to %s; %d not drawn (%s)",
        len(index["figures"]),
        out_dir,
        len(index["skipped"]),
        "; ".join(f"{s['function']}: {s['reason']}" for s in index["skipped"]) or "none",
    )


def _as_list(value) -> list:
    """A Snakemake input entry (one path or a list of paths) as a list."""
    if value is None:
        return []
    return [value] if isinstance(value, str | os.PathLike) else list(value)
