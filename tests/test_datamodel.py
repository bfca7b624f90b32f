"""docs/catalogue.md is the catalogue's data model generated from the code (gaiacnn
datamodel): the file equals what the command writes, its columns and types are those the
catalogue writer writes, and each limitation names figures the workflow draws."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
from astropy.table import Table
from golden_catalogue import LABELS
from test_catalogue_streaming import _aggregate_and_flag
from workflow_helpers import REPO

from gaiacnn import datamodel


def test_docs_catalogue_md_is_what_the_command_writes(tmp_path):
    out = tmp_path / "catalogue.md"
    proc = subprocess.run(
        [sys.executable, "-m", "gaiacnn.cli", "datamodel", "-o", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == (REPO / "docs" / "catalogue.md").read_text(), (
        "docs/catalogue.md differs from the code: run `gaiacnn datamodel -o docs/catalogue.md`"
    )


def test_the_data_model_lists_the_written_columns_with_their_types(tmp_path):
    """A catalogue with positions and withheld parallaxes (every optional column): the
    data model's columns, in its order, with its types."""
    table = Table.read(_aggregate_and_flag(tmp_path, 10**6)["catalogue"])
    assert table.colnames == datamodel.columns(LABELS)
    kinds = {"int64": "i", "bool": "b", "float32": "f"}
    for name in table.colnames:
        written = table[name].dtype
        documented = datamodel._type(name)
        if documented.startswith("string"):
            assert written.kind in "SU", name
        else:
            assert written.kind == kinds[documented], (name, written)
            assert written.itemsize == np.dtype(documented).itemsize, (name, written)


def test_each_limitation_names_figures_the_workflow_draws():
    documented = set(re.findall(r"^\| `(\w+)` \|", (REPO / "docs/figures.md").read_text(), re.M))
    for title, _, figures in datamodel.LIMITATIONS:
        assert figures, title
        assert set(figures) <= documented, (title, set(figures) - documented)
