"""Shared fixtures: the repository paths and the validated default configuration."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

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
