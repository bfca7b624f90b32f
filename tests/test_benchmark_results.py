"""benchmarks/results.csv's writer and reader (benchmarks/results.py)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import results


def test_rows_append_and_the_table_keeps_the_newest_of_each_figure(tmp_path):
    path = tmp_path / "results.csv"
    old = {"date": "2026-01-01T00:00:00+00:00", "commit": "aaaaaaa", "cores": 2, "cpu": "X"}
    assert results.append("b", {"n": 1}, [("rate", 100.0, "stars/s")], path, measured=old) == 1
    results.append("b", {"n": 1}, [("rate", 250.0, "stars/s"), ("wall", 2.5, "s")], path)
    results.append("b", {"n": 2}, [("rate", 7.0, "stars/s")], path)
    results.append("c", {}, [("rate", 1.0, "x")], path)
    # the same measurement under another load, on another machine: newer, so it counts
    results.append(
        "c", {"loadavg_1min_at_start": 1.5, "machine.cpu": "Y"}, [("rate", 2.0, "x")], path
    )
    rows = results.read(path)
    assert [r["value"] for r in rows] == ["100", "250", "2.5", "7", "1", "2"]
    assert [r["value"] for r in results.latest(rows, ["c"])] == ["2"]
    assert rows[0]["commit"] == "aaaaaaa" and rows[1]["cores"] == str(results.cores())
    newest = results.latest(rows, ["b"])
    assert [(r["parameters"], r["figure"], r["value"]) for r in newest] == [
        ('{"n": 1}', "rate", "250"),
        ('{"n": 1}', "wall", "2.5"),
        ('{"n": 2}', "rate", "7"),
    ]
    assert [r["figure"] for r in results.latest(rows, ["b"], ["wall"])] == ["wall"]
    text = results.table(newest)
    where = f"{results.cpu_model()}, {results.cores()} cores, {rows[1]['commit']}"
    assert f"| **b** (n 1; {where}) | | |\n| rate | 250 | stars/s |\n| wall | 2.5 | s |" in text
    assert "commit" in text.splitlines()[-1]
    with open(path, newline="") as fh:
        assert next(csv.reader(fh)) == list(results.COLUMNS)


def test_nested_results_flatten_into_figures_and_parameters():
    params, figures = results.flatten(
        {"n_stars": 10, "mode": "joint", "p": {"30": {"joint_s": 1.5, "rss_mib": 9}}, "a": [1, 2]}
    )
    assert params == {"mode": "joint"}
    assert figures == [
        ("n_stars", 10.0, ""),
        ("p.30.joint_s", 1.5, "s"),
        ("p.30.rss_mib", 9.0, "MiB"),
        ("a.0", 1.0, ""),
        ("a.1", 2.0, ""),
    ]


def test_a_file_with_other_columns_is_refused(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="columns"):
        results.read(path)


def test_a_benchmark_records_its_arguments_and_nested_results(tmp_path):
    from argparse import Namespace

    path = tmp_path / "results.csv"
    doc = {"machine": {"cpu": "X"}, "schedules": [{"best_val_loss": 0.5, "wall_s": 60.0}]}
    results.record("b", Namespace(n_stars=10, json=None, no_record=True), doc, path)
    assert not path.exists()
    results.record("b", Namespace(n_stars=10, json=None, no_record=False), doc, path)
    rows = results.read(path)
    assert [(r["figure"], r["value"], r["unit"]) for r in rows] == [
        ("schedules.0.best_val_loss", "0.5", ""),
        ("schedules.0.wall_s", "60", "s"),
    ]
    assert rows[0]["parameters"] == '{"machine.cpu": "X", "n_stars": 10}'
