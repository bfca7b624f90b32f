"""The conda environments of the rules (envs/, for `snakemake --sdm conda`) pin what
pyproject.toml pins, so that both routes install the same versions."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[1]


def pins(requirements: list[str]) -> dict[str, str]:
    """``name==version`` lines as {normalised name: version}; other lines are refused."""
    out = {}
    for req in requirements:
        m = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==([\w.\-+]+)", req.split("#")[0].strip())
        assert m, f"not an exact pin: {req!r}"
        out[re.sub(r"[-_.]+", "-", m[1]).lower()] = m[2]
    return out


def test_every_rule_environment_exists_and_pins_what_pyproject_pins():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = pins(project["dependencies"])
    python = project["requires-python"]
    used = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        used |= set(re.findall(r'conda:\s*\n\s*"([^"]+)"', smk.read_text()))
    assert used, "no rule declares a conda environment"
    for rel in used:
        env_file = (REPO / "workflow" / "rules" / rel).resolve()
        assert env_file.is_file(), f"{rel}: no such environment file"
        env = yaml.safe_load(env_file.read_text())
        deps = env["dependencies"]
        conda_python = next(d for d in deps if isinstance(d, str) and d.startswith("python="))
        version = conda_python.split("=")[1]
        assert f"{version}.0" in SpecifierSet(python), f"{env_file.name}: python {version}"
        pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
        assert "-e .." in pip, f"{env_file.name}: the gaiacnn package is not installed"
        have = pins([p for p in pip if not p.startswith("-e")])
        assert have == wanted, (
            f"{env_file.name} and pyproject.toml differ: "
            f"only in the env {sorted(set(have.items()) - set(wanted.items()))}, "
            f"only in pyproject {sorted(set(wanted.items()) - set(have.items()))}"
        )
