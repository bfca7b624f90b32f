"""The Snakemake job a workflow script runs for: a typed view of the ``snakemake`` object
that the ``script:`` directive injects into the script's module globals, and the log
redirection every script starts with.

A script is then::

    from gaiacnn import job, selection

    j = job.start()
    selection.run_file_cut_report(j.input, j.output[0])
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Job:
    """What a rule gives its script: Snakemake's named lists (``input.training`` or
    ``input[0]``), the job's thread count and its log files."""

    input: Any
    output: Any
    params: Any
    wildcards: Any
    threads: int
    log: Sequence[str]
    resources: Any

    def kwargs(self, *leave_out: str, **extra: Any) -> dict[str, Any]:
        """The named ``params`` as keyword arguments (each rule names its params after the
        keywords of the function its script calls), less ``leave_out`` (params that only
        check the job), plus ``extra``."""
        named = {k: v for k, v in self.params.items() if k not in leave_out}
        return {**named, **extra}


def current() -> Job:
    """The running script's job: the ``snakemake`` object Snakemake's ``script:`` directive
    defines in the executed file (run as ``__main__``)."""
    smk = getattr(sys.modules["__main__"], "snakemake", None)
    if smk is None:
        raise RuntimeError("no Snakemake job: gaiacnn.job.current() runs in a rule's script")
    return Job(
        input=smk.input,
        output=smk.output,
        params=smk.params,
        wildcards=smk.wildcards,
        threads=int(smk.threads),
        log=smk.log,
        resources=smk.resources,
    )


def redirect_log(
    log_path, *, c_level: bool = True, stdout: bool = False, setup_logging: bool = True
) -> None:
    """``sys.stderr`` to the job's log file; with ``c_level`` file descriptor 2 too
    (messages of C libraries: TensorFlow, HDF5); with ``stdout`` also ``sys.stdout`` (Keras
    prints its epoch lines there); with ``setup_logging`` then the package's log
    (:func:`gaiacnn.logs.setup_logging`)."""
    sys.stderr = open(log_path, "w")  # the job's stderr until it ends
    if c_level:
        os.dup2(sys.stderr.fileno(), 2)
    if stdout:
        sys.stdout = sys.stderr
    if setup_logging:
        from gaiacnn.logs import setup_logging as setup

        setup()


def start(*, c_level: bool = True, stdout: bool = False, setup_logging: bool = True) -> Job:
    """The current job, its log redirected (:func:`redirect_log`): a script's first line."""
    j = current()
    redirect_log(j.log[0], c_level=c_level, stdout=stdout, setup_logging=setup_logging)
    return j
