"""A job killed between its outputs (issue 27): the real ``demo_survey`` rule, which writes
four outputs (truth.h5, then rvs_xp.h5, gaia_source.fits, allStar.fits), is stopped right
after it has published the first, by SIGKILL, SIGINT (Ctrl-C) or SIGTERM sent to Snakemake
and its job; the next run makes all four again, and nothing of the killed run is used.

What Snakemake 9 does with such a job:

* SIGKILL: the job stays marked incomplete (``.snakemake/incomplete``) with its published
  output, and the working directory locked; the next run stops with
  ``IncompleteFilesException`` (``--rerun-incomplete``), and with that flag on
  ``LockException`` (``--unlock``); after both the job runs again, first deleting the
  output of the killed run;
* SIGINT: the same, but the lock is released;
* SIGTERM: the job dies of it, Snakemake deletes its published output as that of a failed
  job ("Removing output files of failed job") and clears the marks; the next run simply
  runs it.

The pause comes from a ``sitecustomize`` module put on the job's ``PYTHONPATH``: after the
rename of the first output it writes a sentinel and sleeps (the package has no test hook).
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from workflow_helpers import default_signals, make_workdir, run_snakemake, snakemake_command

#: demo_survey's outputs, in the order the rule publishes them.
DEMO = (
    "results/demo/truth.h5",
    "results/demo/rvs_xp.h5",
    "results/demo/gaia_source.fits",
    "results/demo/allStar.fits",
)

PAUSE_HOOK = '''\
"""tests/test_killed_jobs.py: the job sleeps right after it has renamed
$GAIACNN_TEST_PAUSE_AFTER into place, once $GAIACNN_TEST_PAUSED is written."""
import os
import time

_AFTER = os.environ.get("GAIACNN_TEST_PAUSE_AFTER")
if _AFTER:
    _replace = os.replace

    def _replace_then_pause(src, dst, *args, **kwargs):
        _replace(src, dst, *args, **kwargs)
        if os.path.abspath(dst) == _AFTER:
            open(os.environ["GAIACNN_TEST_PAUSED"], "w").close()
            time.sleep(600)

    os.replace = _replace_then_pause
'''


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def temporaries(work: Path) -> list[str]:
    return sorted(str(p.relative_to(work)) for p in (work / "results").rglob(".*.tmp*"))


def marks(work: Path, kind: str) -> list[Path]:
    folder = work / ".snakemake" / kind
    return sorted(folder.iterdir()) if folder.is_dir() else []


@pytest.mark.slow
@pytest.mark.parametrize("signame", ["SIGKILL", "SIGINT", "SIGTERM"])
def test_a_job_killed_between_its_outputs_runs_again_whole(tmp_path, signame):
    work = make_workdir(tmp_path, "killed")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(PAUSE_HOOK)
    first, paused = work / DEMO[0], tmp_path / "paused"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])),
        "GAIACNN_TEST_PAUSE_AFTER": str(first),
        "GAIACNN_TEST_PAUSED": str(paused),
    }
    proc = subprocess.Popen(
        snakemake_command(work, "--cores", "1", *DEMO),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: snakemake and its job
        preexec_fn=default_signals,
    )
    try:
        deadline = time.monotonic() + 300
        while not paused.exists():
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the job never published its first output"
            time.sleep(0.05)
        os.killpg(proc.pid, getattr(signal, signame))
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()

    # ------------------------------------------------------------ what the kill leaves
    published = sha256(first) if first.exists() else None
    published_at = first.stat().st_mtime_ns if first.exists() else 0
    assert not any((work / rel).exists() for rel in DEMO[1:]), "published after the kill"
    if signame == "SIGTERM":
        # the job died of SIGTERM, its temporaries removed; Snakemake removed what it had
        # published, as the output of a failed job, and cleared its marks
        assert "Removing output files of failed job demo_survey" in err, err[-3000:]
        assert not first.exists() and temporaries(work) == []
        assert marks(work, "incomplete") == [] and marks(work, "locks") == []
    else:
        assert published is not None  # the first output, complete, under its name
        assert marks(work, "incomplete")  # ... but Snakemake has the job as incomplete
        if signame == "SIGKILL":
            # nothing could remove rvs_xp.h5's finished temporary; the lock stays
            left = temporaries(work)
            assert len(left) == 1, left
            assert re.fullmatch(r"results/demo/\.rvs_xp\.h5\.[a-z0-9_]{8}\.tmp", left[0])
            assert marks(work, "locks")
        else:  # SIGINT: KeyboardInterrupt unwound the writers; Snakemake released the lock
            assert temporaries(work) == [] and marks(work, "locks") == []

        # the same command again: refused, and the message says what to do
        again = run_snakemake(work, "--cores", "1", *DEMO)
        assert again.returncode != 0
        assert "IncompleteFilesException" in again.stderr, again.stderr[-3000:]
        assert "--rerun-incomplete" in again.stderr and DEMO[0] in again.stderr
        assert first.stat().st_mtime_ns == published_at  # untouched
        if signame == "SIGKILL":
            locked = run_snakemake(work, "--cores", "1", "--rerun-incomplete", *DEMO)
            assert locked.returncode != 0 and "LockException" in locked.stderr
            assert "--unlock" in locked.stderr
            unlock = run_snakemake(work, "--unlock")
            assert unlock.returncode == 0, unlock.stderr[-3000:]

    # ------------------------------------------------------------ the run after
    rerun = run_snakemake(work, "--cores", "1", "--rerun-incomplete", *DEMO)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", rerun.stderr.split("Job stats:")[1], re.M))
    assert jobs.get("demo_survey") == "1", rerun.stderr[-3000:]
    for rel in DEMO:  # all four made by this run: nothing of the killed one is kept
        assert (work / rel).stat().st_mtime_ns > published_at, rel
    if published is not None:  # the same bytes as the killed run had published
        assert sha256(first) == published
    assert temporaries(work) == []
    assert marks(work, "incomplete") == [] and marks(work, "locks") == []
