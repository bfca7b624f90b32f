"""The configuration: schema validation, defaults equal to the paper's constants."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from gaiacnn import constants
from gaiacnn.config import ConfigError, config_hash, validate_config


def test_defaults_fill_an_empty_config_with_the_shipped_values(config, schema):
    filled = validate_config({}, schema)
    assert filled == config


def test_paper_constants_are_the_config_defaults(config):
    assert [tuple(w) for w in config["rvs"]["continuum_windows_nm"]] == list(
        constants.CONTINUUM_WINDOWS_NM
    )
    assert config["rvs"]["nan_fill_quantile"] == constants.NAN_FILL_QUANTILE
    assert config["selection"]["apogee"]["aspcapflag_bits"] == [
        constants.ASPCAPFLAG_STAR_WARN_BIT,
        constants.ASPCAPFLAG_STAR_BAD_BIT,
    ]
    assert config["selection"]["apogee"]["extratarg_duplicate_bit"] == (
        constants.EXTRATARG_DUPLICATE_BIT
    )
    assert {k: v[0] for k, v in constants.PAPER_LABELS.items()} == config["labels"]
    sel = config["selection"]
    # Sect. 2.2, 2.4, 2.5 thresholds.
    assert sel["gaia"]["min_flux_over_error"] == 500
    assert sel["apogee"]["max_aspcap_chi2"] == 25
    assert sel["apogee"]["min_snr"] == 70
    assert sel["apogee"]["max_error"] == {"teff": 100, "logg": 0.1, "alpha_m": 0.1}
    assert (
        sel["apogee"]["metal_poor_below"],
        sel["apogee"]["max_metal_err_metal_poor"],
        sel["apogee"]["max_metal_err"],
    ) == (-0.5, 0.2, 0.1)
    assert sel["training"] == {
        "min_rvs_snr": 30,
        "max_parallax_relative_error": 0.2,
        "max_ruwe": 1.4,
    }
    # the CLI's defaults (gaiacnn validate --sample training) are the workflow's
    assert sel["training"] == constants.training_cuts()


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda c: c["demo"].update(unknown_key=1), "demo.unknown_key"),
        (lambda c: c.update(typo={}), "typo"),
        (lambda c: c["selection"]["training"].update(max_ruwe=-1.0), "selection.training.max_ruwe"),
        (lambda c: c["demo"].update(n_stars="many"), "demo.n_stars"),
        (lambda c: c["data"].update(source="sdss"), "data.source"),
        (lambda c: c["rvs"].update(nan_fill_quantile=1.5), "rvs.nan_fill_quantile"),
        (
            lambda c: c["selection"]["apogee"].update(aspcapflag_bits=[64]),
            "selection.apogee.aspcapflag_bits.0",
        ),
        (lambda c: c["labels"].update(teff_err="TEFF_ERR"), "labels"),
    ],
)
def test_bad_config_names_the_key_in_one_line(config, schema, mutate, key):
    bad = copy.deepcopy(config)
    mutate(bad)
    with pytest.raises(ConfigError) as err:
        validate_config(bad, schema)
    message = str(err.value)
    assert f"'{key}'" in message
    assert "\n" not in message


def test_config_hash_changes_with_content(config):
    other = copy.deepcopy(config)
    other["demo"]["seed"] += 1
    assert config_hash(config) == config_hash(copy.deepcopy(config))
    assert config_hash(config) != config_hash(other)


def test_command_line_strings_become_numbers(config, schema):
    # snakemake --config demo='{n_stars: 500}' passes "500" as a string.
    cfg = copy.deepcopy(config)
    cfg["demo"]["n_stars"] = "500"
    cfg["selection"]["training"]["max_ruwe"] = "1.2"
    cfg["selection"]["gaia"]["exclude_variable"] = "false"
    validate_config(cfg, schema)
    assert cfg["demo"]["n_stars"] == 500
    assert cfg["selection"]["training"]["max_ruwe"] == 1.2
    assert cfg["selection"]["gaia"]["exclude_variable"] is False
    cfg["demo"]["n_stars"] = "lots"
    with pytest.raises(ConfigError, match=r"'demo\.n_stars': 'lots' is not of type 'integer'"):
        validate_config(cfg, schema)


def test_model_defaults_are_the_schemas(config):
    """The model's defaults are read from config/schema.yaml, stated nowhere else."""
    from gaiacnn import model

    assert model.DEFAULT_ARCH == config["model"]["arch"]
    assert model.DEFAULT_TRAINING == config["model"]["training"]
    src = Path(model.settings.__file__).read_text()
    assert "DEFAULT_TRAINING: dict[str, Any] = schema_defaults(" in src
    assert '"max_epochs"' not in src


def test_schema_defaults_refuse_a_missing_schema(tmp_path):
    from gaiacnn.config import schema_defaults

    with pytest.raises(ConfigError, match="not found"):
        schema_defaults("model.arch", tmp_path / "schema.yaml")


def _lookup(cfg: dict, path: str):
    for key in path.split("."):
        cfg = cfg[key]
    return cfg


def test_the_paper_preset_is_the_paper_key_by_key(schema):
    """Defaults + config/variants/paper.yaml, merged as snakemake merges --configfile, and
    validated: every value equals the paper's (tests/paper_values.py, with its section);
    every key the preset sets is in that table; and layered after the real-data file the
    preset still wins."""
    import yaml
    from conftest import REPO
    from paper_values import PAPER_VALUES, PRESET_NOT_STATED
    from snakemake.utils import update_config

    def load(name: str) -> dict:
        return yaml.safe_load((REPO / "config" / name).read_text())

    def leaves(d: dict, prefix: str = "") -> list[str]:
        out = []
        for k, v in d.items():
            path = f"{prefix}{k}"
            if isinstance(v, dict) and not path.endswith("max_error"):
                out += leaves(v, path + ".")
            else:
                out.append(path)
        return out

    preset = load("variants/paper.yaml")
    table = {key: (value, where) for key, value, where in PAPER_VALUES}
    assert all(where.startswith(("Sect.", "Table", "Fig.")) for _, where in table.values())
    assert sorted(leaves(preset)) == sorted([*table, *PRESET_NOT_STATED])
    assert _lookup(preset, "model.training.max_epochs") > 80
    for stack in (["config.yaml"], ["config.yaml", "gaia_dr3.yaml"]):
        cfg: dict = {}
        for name in [*stack, "variants/paper.yaml"]:
            update_config(cfg, load(name))
        cfg = validate_config(cfg, schema)
        for key, (value, where) in table.items():
            assert _lookup(cfg, key) == value, f"{key} ({where}) with {stack}"
    # the defaults are not the paper: the preset changes at least these
    defaults = validate_config(load("config.yaml"), schema)
    assert _lookup(defaults, "model.phot_input") != "magnitudes"
    assert _lookup(defaults, "uncertainty.snr_calibration_bins") > 0
