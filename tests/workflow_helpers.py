"""Running the workflow from the tests: snakemake on a copy of the tiny test configuration
(tests/integration).  The complete tiny run itself is the session fixture ``demo_run`` in
tests/conftest.py, shared by tests/test_workflow.py and tests/test_faults.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


#: the folder, beside a run's working directory, where its jobs record their imports
IMPORT_AUDIT = "imports"


def audit_env(folder: Path) -> dict[str, str]:
    """The environment of a workflow run whose script jobs record, in ``folder``, the
    distributions their own code imports (tests/import_audit, checked by
    tests/test_envs.py)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join(filter(None, [str(REPO / "tests/import_audit"),
                                         os.environ.get("PYTHONPATH")]))  # fmt: skip
    return {**os.environ, "PYTHONPATH": path, "GAIACNN_IMPORT_AUDIT": str(folder)}


#: a ``data`` config per source: the archive rules exist only with gaia_dr3, the import
#: only with files (whose paths are not read when the rules are parsed)
DATA_SOURCES: tuple[dict, ...] = (
    {"source": "files", "files": {"training": "training.h5", "observed": "observed.h5"}},
    {"source": "gaia_dr3"},
    {"source": "demo"},
)


def workflow_rules(config: dict | None = None, overwrite_resources: dict | None = None) -> list:
    """The workflow's rules as Snakemake's API parses them, with ``config`` over
    config/config.yaml and ``overwrite_resources`` as a profile's ``set-resources``."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(overwrite_resources=overwrite_resources or {}),
            config_settings=ConfigSettings(config=config or {}),
            snakefile=REPO / "Snakefile",
            workdir=REPO,
        )
        return list(workflow._workflow.rules)


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    """The command line of snakemake on the repository's workflow in ``workdir``."""
    return [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]


def run_snakemake(workdir: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        snakemake_command(workdir, *args), capture_output=True, text=True, timeout=900, **kwargs
    )


def make_workdir(root: Path, name: str) -> Path:
    """A fresh working directory holding the tiny test configuration."""
    work = root / name
    shutil.copytree(REPO / "tests" / "integration", work)
    return work


def reuse_arrays(demo_run: Path, work: Path) -> None:
    """Start a new run from the first run's demo, samples and arrays (mtimes kept)."""
    for sub in ("demo", "samples", "arrays"):
        shutil.copytree(demo_run / "results" / sub, work / "results" / sub)


def default_signals() -> None:
    """A ``preexec_fn``: SIGINT and SIGHUP as a terminal gives them to a program.  A
    non-interactive shell ignores SIGINT in the commands it puts in the background, nohup
    ignores SIGHUP, and a child inherits what is ignored: a test that sends those signals
    would then test a process that cannot receive them."""
    import signal

    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
