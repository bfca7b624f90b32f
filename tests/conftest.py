"""Shared fixtures: the repository paths, the validated default configuration and the
complete tiny workflow run."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from workflow_helpers import IMPORT_AUDIT, audit_env, make_workdir, run_snakemake

from gaiacnn.config import load_schema, validate_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def schema() -> dict:
    return load_schema(REPO / "config" / "schema.yaml")


@pytest.fixture()
def config(schema) -> dict:
    """A fresh, validated copy of config/config.yaml."""
    with open(REPO / "config" / "config.yaml", encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh)
    return validate_config(copy.deepcopy(cfg), schema)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """The tiny test configuration (tests/integration) run to the end, once per session;
    tests read it, or copy from it (``workflow_helpers.reuse_arrays``), and never change it."""
    work = make_workdir(tmp_path_factory.mktemp("e2e"), "run1")
    # its jobs record what they import (tests/test_envs.py), beside the working directory
    proc = run_snakemake(work, "--cores", "2", env=audit_env(work.parent / IMPORT_AUDIT))
    assert proc.returncode == 0, proc.stderr[-4000:]
    (work / "stdout.txt").write_text(proc.stdout)
    return work
