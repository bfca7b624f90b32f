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
        name = re.sub(r"[-_.]+", "-", m[1]).lower()
        assert name not in out, f"{name} twice"
        out[name] = (m[2], [])
    return out


def test_the_lock_pins_the_whole_tree_as_pyproject_pins_it():
    """requirements-lock.txt (`make lock`, installed by `make venv`) has every pin of
    pyproject.toml, the dev extra included, at the same version; every entry has a hash;
    TensorFlow's own dependencies (keras among them) are pinned too."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = pins(project["dependencies"] + project["optional-dependencies"]["dev"])
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
