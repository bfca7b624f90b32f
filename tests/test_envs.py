"""The conda environments of the rules (envs/, one per group of rules, for `snakemake
--sdm conda`) pin what pyproject.toml pins, so that both routes install the same versions,
and each job imports only what its environment installs; the lock pins the whole tree."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from workflow_helpers import DATA_SOURCES, IMPORT_AUDIT, workflow_rules

REPO = Path(__file__).resolve().parents[1]


def normalised(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(requirements: list[str]) -> dict[str, str]:
    """``name==version`` lines as {normalised name: version}; other lines are refused."""
    out = {}
    for req in requirements:
        m = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==([\w.\-+]+)", req.split("#")[0].strip())
        assert m, f"not an exact pin: {req!r}"
        out[normalised(m[1])] = m[2]
    return out


def env_pins(env_file: Path) -> tuple[dict[str, str], list[str]]:
    """The pins of a conda environment's ``pip:`` list, and the extras of the package it
    installs (``-e ..[extra]``); its Python checked against pyproject.toml's."""
    env = yaml.safe_load(env_file.read_text())
    deps = env["dependencies"]
    conda_python = next(d for d in deps if isinstance(d, str) and d.startswith("python="))
    version = conda_python.split("=")[1]
    assert f"{version}.0" in SpecifierSet(PROJECT["requires-python"]), f"{env_file.name}: python"
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    package = [p for p in pip if p.startswith("-e ")]
    assert len(package) == 1, f"{env_file.name}: the gaiacnn package is not installed once"
    m = re.fullmatch(r"-e \.\.(?:\[([\w,]+)\])?", package[0])
    assert m, f"{env_file.name}: {package[0]!r} is not the repository's package"
    return pins([p for p in pip if not p.startswith("-e ")]), (m[1] or "").split(",")


PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def rules_by_script(config: dict) -> dict[str, tuple[str, Path]]:
    """Script file name -> (its rule, the rule's conda environment file), as Snakemake's API
    reads the rules under ``config``."""
    return {
        Path(rule.script).name: (rule.name, Path(rule.snakefile).parent / rule.conda_env)
        for rule in workflow_rules(config)
        if rule.script
    }


@pytest.fixture(scope="module")
def every_rule() -> dict[str, tuple[str, Path]]:
    """Every rule with a script, under each data source."""
    out = {}
    for data in DATA_SOURCES:
        out |= rules_by_script({"data": data})
    return out


def test_each_group_of_rules_has_its_environment_with_the_pins_of_pyproject(every_rule):
    """One environment per rules file (envs/<group>.yaml), pinning the package's core and
    the extras it installs at pyproject.toml's versions."""
    optional = PROJECT["optional-dependencies"]
    core = pins(PROJECT["dependencies"])
    for rule, env_file in every_rule.values():
        assert env_file.resolve().is_file(), f"rule {rule}: no environment {env_file}"
    envs = {env_file.resolve() for _, env_file in every_rule.values()}
    assert envs == set((REPO / "envs").glob("*.yaml")), "an environment no rule uses"
    for env_file in envs:
        have, extras = env_pins(env_file)
        wanted = dict(core)
        for extra in filter(None, extras):
            assert extra in optional, f"{env_file.name}: no extra {extra!r} in pyproject.toml"
            wanted |= pins(optional[extra])
        assert have == wanted, (
            f"{env_file.name} and pyproject.toml differ: "
            f"only in the env {sorted(set(have.items()) - set(wanted.items()))}, "
            f"only in pyproject {sorted(set(wanted.items()) - set(have.items()))}"
        )


def installed_closure(names: set[str]) -> set[str]:
    """``names`` (normalised distribution names) and everything they require, as installed
    here (requirements behind an extra or a marker that does not hold are left out)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    todo, seen = list(names), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(normalised(req.name))
    return seen


def check_job_imports(audit: Path, every_rule: dict[str, tuple[str, Path]]) -> list[str]:
    """Each job recorded by tests/import_audit (a workflow run with
    ``workflow_helpers.audit_env``) against its rule's environment: the distributions that
    the job's own code imported must be installed by that environment (its pins and what
    they require).  ``snakemake`` is Snakemake's own script preamble (it reaches it through
    its own search path).  Returns the scripts checked."""
    records = sorted(audit.glob("*.json"))
    assert records, f"no job recorded its imports in {audit}"
    checked = []
    for path in records:
        record = json.loads(path.read_text())
        rule, env_file = every_rule[record["script"]]
        have, _ = env_pins(env_file.resolve())
        allowed = installed_closure(set(have)) | {"gaiacnn", "snakemake"}
        imported = {normalised(d) for d in record["distributions"]}
        missing = sorted(imported - allowed)
        assert not missing, (
            f"rule {rule} ({record['script']}) imports {missing}, which "
            f"{env_file.name} does not install"
        )
        checked.append(record["script"])
    return sorted(set(checked))


@pytest.mark.slow
def test_each_demo_job_imports_only_what_its_environment_installs(demo_run, every_rule):
    checked = check_job_imports(demo_run.parent / IMPORT_AUDIT, every_rule)
    # every group of the demo's rules took part (the archive's: tests/test_archive.py)
    assert {"demo_survey.py", "select_samples.py", "build_arrays.py", "train_member.py",
            "aggregate_ensemble.py", "tsne_joint.py", "flag_catalogue.py",
            "figures.py"} <= set(checked)  # fmt: skip


LOCK = REPO / "requirements-lock.txt"


def read_lock(text: str) -> dict[str, tuple[str, list[str]]]:
    """requirements-lock.txt as {normalised name: (version, sha256 hashes)}; any line that is
    not ``name==version \\``, a ``--hash=sha256:`` line or a comment is refused."""
    out: dict[str, tuple[str, list[str]]] = {}
    name = None
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        if m := re.fullmatch(r"--hash=sha256:([0-9a-f]{64})( \\)?", line):
            assert name is not None, f"a hash before any requirement: {line!r}"
            out[name][1].append(m[1])
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([\w.\-+!]+) \\", line)
        assert m, f"not an exact pin followed by its hashes: {line!r}"
        name = normalised(m[1])
        assert name not in out, f"{name} twice"
        out[name] = (m[2], [])
    return out


def test_the_lock_pins_the_whole_tree_as_pyproject_pins_it():
    """requirements-lock.txt (`make lock`, installed by `make venv`) has every pin of
    pyproject.toml, the dev extra included, at the same version; every entry has a hash;
    TensorFlow's own dependencies (keras among them) are pinned too."""
    optional = PROJECT["optional-dependencies"]
    wanted = pins(
        PROJECT["dependencies"]
        + [p for name, extra in optional.items() if name != "all" for p in extra]
    )
    lock = read_lock(LOCK.read_text())
    have = {name: version for name, (version, _) in lock.items()}
    differ = {n: (v, have.get(n)) for n, v in wanted.items() if have.get(n) != v}
    assert differ == {}, f"pyproject.toml pin -> lock (run `make lock`): {differ}"
    assert [n for n, (_, hashes) in lock.items() if not hashes] == []
    for name in ("keras", "absl-py", "ml-dtypes", "protobuf", "setuptools", "wheel"):
        assert name in lock, f"{name} is not in the lock"
    assert len(lock) > len(wanted) + 50  # the transitive tree, not only the direct pins
    assert "#    make lock" in LOCK.read_text()  # how it is regenerated


def test_the_venv_is_built_from_the_lock():
    """`make venv`: the lock with --require-hashes --no-deps, then the package without
    dependencies; the venv is rebuilt when the lock or pyproject.toml changes."""
    makefile = (REPO / "Makefile").read_text()
    assert "LOCK := requirements-lock.txt" in makefile
    assert re.search(r"STAMP := .*pyproject\.toml \$\(LOCK\)", makefile)
    assert re.search(r"install .*--require-hashes --no-deps -r \$\(LOCK\)", makefile)
    assert re.search(r"install .*--no-deps .*-e \.$", makefile, re.M)
    assert "-e '.[dev]'" not in makefile
