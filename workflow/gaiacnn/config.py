"""Configuration: JSON-Schema validation with defaults, and one-line error messages."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml


class ConfigError(ValueError):
    """An invalid configuration; the message is one line naming the key."""


def _extend_with_default(validator_class):
    """A validator that also fills ``default:`` values of the schema into the instance."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, subschema in properties.items():
                if "default" in subschema and prop not in instance:
                    instance[prop] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_DefaultFilling = _extend_with_default(jsonschema.Draft202012Validator)


#: The workflow's config/schema.yaml, where every default is stated once (the package is
#: installed editable from this checkout: ``pip install -e .``).
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"


def load_schema(path: str | os.PathLike) -> dict:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        parts.append(",".join(extra))
        return ".".join(parts)
    if error.validator == "required":
        return ".".join(parts)
    return ".".join(parts) or "<root>"


_SCALAR_TYPES = {"integer": int, "number": (int, float), "boolean": bool}


def _coerce_strings(instance: Any, schema: Mapping, root: Mapping | None = None) -> Any:
    """Turn strings into the scalar the schema asks for (``--config demo='{n_stars: 10}'``).

    Snakemake passes values nested inside ``--config`` as strings; a string that YAML
    reads as the expected integer, number or boolean is replaced by that value.
    Anything else is left for the validator to report.
    """
    root = schema if root is None else root
    ref = schema.get("$ref", "")
    if ref.startswith("#/$defs/"):
        schema = {**root["$defs"][ref.removeprefix("#/$defs/")], **schema}
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, value in instance.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                instance[key] = _coerce_strings(value, sub, root)
        return instance
    if isinstance(instance, list) and isinstance(schema.get("items"), dict):
        return [_coerce_strings(v, schema["items"], root) for v in instance]
    kind = schema.get("type", "")
    want = _SCALAR_TYPES.get(kind) if isinstance(kind, str) else None  # not [string, "null"]
    if isinstance(instance, str) and want is not None:
        try:
            parsed = yaml.safe_load(instance)
        except yaml.YAMLError:
            return instance
        if isinstance(parsed, want) and not (want is not bool and isinstance(parsed, bool)):
            return parsed
    return instance


def validate_config(config: MutableMapping[str, Any], schema: Mapping) -> MutableMapping[str, Any]:
    """Validate ``config`` in place against ``schema``, filling defaults.

    Raises :class:`ConfigError` with one line: ``config key '<a.b.c>': <problem>``.
    """
    _coerce_strings(config, schema)
    validator = _DefaultFilling(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        err = errors[0]
        key = _key_path(err)
        if err.validator == "additionalProperties":
            msg = f"config key '{key}' is unknown (not in config/schema.yaml)"
        else:
            msg = f"config key '{key}': {err.message}"
        raise ConfigError(" ".join(msg.split()))
    return config


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 (first 16 hex digits) of the canonical JSON of ``config``."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def schema_defaults(section: str, schema_path: str | os.PathLike = SCHEMA_PATH) -> dict:
    """The defaults that config/schema.yaml gives the configuration section ``section``
    (dotted, e.g. ``"model.arch"``): what a run gets for the keys it does not set."""
    if not os.path.isfile(schema_path):
        raise ConfigError(
            f"{schema_path}: not found; gaiacnn reads its defaults from the workflow's "
            "config/schema.yaml (install the package editable from the checkout)"
        )
    node: Any = validate_config({}, load_schema(schema_path))
    for key in section.split("."):
        node = node[key]
    return copy.deepcopy(node)
