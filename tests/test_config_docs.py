"""config/README.md describes every configuration key (the catalogue convention)."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def leaf_keys(node: dict, path: tuple[str, ...] = ()) -> set[str]:
    """Dotted paths of the leaves of a nested mapping (lists are leaves)."""
    keys = set()
    for key, value in node.items():
        here = (*path, str(key))
        keys |= leaf_keys(value, here) if isinstance(value, dict) and value else {".".join(here)}
    return keys


def schema_keys(node: dict, path: tuple[str, ...] = ()) -> set[str]:
    """Dotted paths of the schema's leaf properties."""
    props = node.get("properties")
    if not props:
        return {".".join(path)} if path else set()
    keys = set()
    for key, sub in props.items():
        keys |= schema_keys(sub, (*path, key))
    return keys


def test_every_config_key_is_documented():
    doc = (REPO / "config" / "README.md").read_text()
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    keys = leaf_keys(config) | schema_keys(schema)
    assert len(keys) > 100
    missing = sorted(k for k in keys if f"`{k}`" not in doc)
    assert not missing, f"config/README.md lacks {missing}"
