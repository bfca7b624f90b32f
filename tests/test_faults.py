"""Faults of the whole workflow (issue 7): each either recovers or stops with one line naming
the file and the field, and leaves no partial output that Snakemake would take as done.

The workflow-level tests start from the tiny complete run (the session fixture ``demo_run``)
and run only the rules they need; user files are small copies of its arrays."""

from __future__ import annotations

import errno
import io
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits
from workflow_helpers import make_workdir, reuse_arrays, run_snakemake, snakemake_command

from gaiacnn.io import OutputWriteError, atomic_output

ARRAYS = ("results/arrays/training.h5", "results/arrays/observed.h5")


# --------------------------------------------------------------------------- helpers


def user_file(
    src: Path, dst: Path, n_rows: int = 40, edit: Callable[[dict], None] | None = None
) -> Path:
    """A user's file: the first ``n_rows`` stars of an arrays file of the tiny run, every
    dataset and attribute copied, then ``edit(columns)`` applied to the arrays."""
    columns, attrs = {}, {}

    def take(name, obj) -> None:
        if isinstance(obj, h5py.Dataset):
            columns[name], attrs[name] = obj[:n_rows], dict(obj.attrs)

    with h5py.File(src, "r") as h5:
        root = dict(h5.attrs)
        h5.visititems(take)
    if edit is not None:
        edit(columns)
    with h5py.File(dst, "w") as h5:
        h5.attrs.update(root)
        for name, values in columns.items():
            h5[name] = values
            h5[name].attrs.update(attrs[name])
    return dst


def files_workdir(
    root: Path, name: str, training: Path, observed: Path, cuts: str = "apply"
) -> Path:
    """The tiny test configuration with ``data.source: files`` (``data.files_cuts``)."""
    work = make_workdir(root, name)
    cfg = work / "config" / "config.yaml"
    cfg.write_text(
        cfg.read_text() + f"data:\n  source: files\n  files_cuts: {cuts}\n  files:\n"
        f"    training: {training}\n    observed: {observed}\n"
    )
    return work


class Started:
    """Workflow runs started at once, each in its own process group; a run's result is
    waited for when a test first asks for it."""

    def __init__(self) -> None:
        self.procs: dict[str, tuple[subprocess.Popen, Path]] = {}
        self.results: dict[str, subprocess.CompletedProcess] = {}

    def start(self, name: str, work: Path, *args: str, **kwargs) -> None:
        proc = subprocess.Popen(
            snakemake_command(work, *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            **kwargs,
        )
        self.procs[name] = (proc, work)

    def __getitem__(self, name: str) -> tuple[subprocess.CompletedProcess, Path]:
        proc, work = self.procs[name]
        if name not in self.results:
            out, err = proc.communicate(timeout=900)
            self.results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        return self.results[name], work

    def stop(self) -> None:
        for proc, _ in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()


def last_line(log: Path) -> str:
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def assert_one_line_error(log: Path, *names: str) -> str:
    """The rule's log ends with one ``ERROR <message>`` line, no traceback, naming ``names``."""
    text = log.read_text()
    line = last_line(log)
    assert re.match(r"^\S+ \S+ ERROR ", line), text[-3000:]
    assert "Traceback" not in text and text.count(" ERROR ") == 1, text[-3000:]
    for name in names:
        assert name in line, (name, line)
    return line


def assert_nothing_left(work: Path, *outputs: str) -> None:
    """No output under its final name, no temporary file of atomic_output anywhere."""
    for rel in outputs:
        assert not (work / rel).exists(), rel
    assert not list((work / "results").rglob(".*.tmp*"))


# --------------------------------------------------------------------------- unit level


def run_python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def limit_file_size(nbytes: int) -> Callable[[], None]:
    """A ``preexec_fn``: files the process writes stop at ``nbytes`` (EFBIG: CPython ignores
    SIGXFSZ), as a full disk would stop them."""

    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return preexec


def test_a_full_disk_names_the_target_and_leaves_no_file(tmp_path):
    """Text (write_text_atomic), then HDF5 (ArraysWriter: the rows fit h5py's chunk cache,
    so it is the close that fails) over the file size limit: OutputWriteError naming the
    target, nothing under the target's name, no temporary file; uncaught, as in a rule's
    script, one ERROR line and exit status 1."""
    proc = run_python(
        f"""
        import numpy as np
        from gaiacnn import io, layout, logs
        try:
            io.write_text_atomic({str(tmp_path / "big.txt")!r}, "x" * 300_000)
        except io.OutputWriteError as exc:
            print(exc.errno, exc)
        logs.setup_logging()
        cols = {{"source_id": ((), np.int64, {{}}), "x": ((2000,), np.float32, {{}})}}
        with layout.ArraysWriter({str(tmp_path / "big.h5")!r}, 40, cols) as w:
            w.append({{"source_id": np.arange(40), "x": np.ones((40, 2000), "f4")}})
        """,
        preexec_fn=limit_file_size(100_000),
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith(f"27 {tmp_path / 'big.txt'}: could not write (file too large): ")
    assert re.fullmatch(
        rf"\S+ \S+ ERROR {re.escape(str(tmp_path / 'big.h5'))}: could not write "
        r"\(file too large\): [^\n]*\n",
        proc.stderr,
    ), proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), "no space left on device"),
        (OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)), "disk quota exceeded"),
        (OSError(errno.EFBIG, os.strerror(errno.EFBIG)), "file too large"),
        # h5py, failing to close: a RuntimeError with HDF5's words, on top of the write error
        (
            RuntimeError(
                "Can't decrement id ref count (error message = 'No space left on device')"
            ),
            "no space left on device",
        ),
    ],
)
def test_out_of_room_is_one_line_naming_the_target(tmp_path, error, reason):
    target = tmp_path / "sub" / "out.h5"
    with pytest.raises(OutputWriteError) as info, atomic_output(target) as tmp:
        tmp.write_bytes(b"partial")
        raise error
    assert str(info.value).startswith(f"{target}: could not write ({reason}): ")
    assert "\n" not in str(info.value) and info.value.__cause__ is error
    assert list(target.parent.iterdir()) == []
    with pytest.raises(KeyError), atomic_output(target):  # any other error: as it is
        raise KeyError("x")


def test_project_errors_end_the_log_with_one_line(tmp_path):
    """setup_logging's excepthook: the project's errors are one ERROR line and exit status 1;
    any other error keeps its traceback."""
    ours = run_python(
        """
        from gaiacnn import layout, logs
        logs.setup_logging()
        raise layout.LayoutError("mine.h5", "rvs/flux", "row 3 (source_id 7) has no finite pixel")
        """
    )
    assert ours.returncode == 1
    assert re.fullmatch(
        r"\S+ \S+ ERROR mine.h5: rvs/flux: row 3 \(source_id 7\) has no finite pixel\n",
        ours.stderr,
    ), ours.stderr
    other = run_python(
        """
        from gaiacnn import logs
        logs.setup_logging()
        raise KeyError("a bug")
        """
    )
    assert other.returncode == 1
    assert "Traceback" in other.stderr and other.stderr.rstrip().endswith("KeyError: 'a bug'")


# --------------------------------------------------------------------------- workflow level


def keras_weights(model_file: Path) -> dict[str, np.ndarray]:
    """Every weight array of a saved Keras model (read from its zip, without TensorFlow)."""
    weights: dict[str, np.ndarray] = {}
    with (
        zipfile.ZipFile(model_file) as zf,
        h5py.File(io.BytesIO(zf.read("model.weights.h5"))) as h5,
    ):
        h5.visititems(
            lambda name, obj: (
                weights.update({name: obj[()]}) if isinstance(obj, h5py.Dataset) else None
            )
        )
    return weights


@pytest.fixture(scope="module")
def short_runs(demo_run, tmp_path_factory) -> Iterator[Started]:
    """The module's short workflow runs, started together, and running while the member of
    the first test trains (each is mostly Snakemake's start):

    * ``a``: user files ``truncated.h5`` (training: the first half of its bytes) and
      ``all_nan.h5`` (observed: row 7 all NaN), ``--keep-going``, ``data.files_cuts:
      refuse``;
    * ``b``: ``duplicated.h5`` (training: row 12 has row 3's source id) and ``negative.h5``
      (observed: parallax -0.25 mas at row 21), ``--keep-going``, ``data.files_cuts:
      refuse``;
    * ``full_disk``: a valid user file imported under a file size limit of a third of it;
    * ``config0``, ``config1``: an out-of-range key each (:data:`BAD_CONFIG`).

    The user files are the first 40 stars of the tiny run's arrays."""
    root = tmp_path_factory.mktemp("short")
    src = demo_run / "results" / "arrays"

    truncated = user_file(src / "training.h5", root / "truncated.h5")
    with open(truncated, "r+b") as fh:
        fh.truncate(truncated.stat().st_size // 2)

    def nan_row(cols):
        cols["rvs/flux"][7] = np.nan

    def duplicate(cols):
        cols["source_id"][12] = cols["source_id"][3]

    def negative_parallax(cols):
        cols["astrometry/parallax"][21] = -0.25

    all_nan = user_file(src / "observed.h5", root / "all_nan.h5", edit=nan_row)
    duplicated = user_file(src / "training.h5", root / "duplicated.h5", edit=duplicate)
    negative = user_file(src / "observed.h5", root / "negative.h5", edit=negative_parallax)
    valid = user_file(src / "observed.h5", root / "valid.h5")

    works = {
        # data.files_cuts: refuse, so that the all-NaN spectrum and the parallax <= 0 refuse
        # their files (the default cuts those stars: tests/test_workflow.py)
        "a": files_workdir(root, "a", training=truncated, observed=all_nan, cuts="refuse"),
        "b": files_workdir(root, "b", training=duplicated, observed=negative, cuts="refuse"),
        "full_disk": files_workdir(root, "full_disk", training=valid, observed=valid),
        **{f"config{i}": make_workdir(root, f"config{i}") for i in range(len(BAD_CONFIG))},
    }
    runs = Started()
    runs.start("a", works["a"], "--cores", "2", "--keep-going", *ARRAYS)
    runs.start("b", works["b"], "--cores", "2", "--keep-going", *ARRAYS)
    limit = limit_file_size(valid.stat().st_size // 3)
    runs.start("full_disk", works["full_disk"], "--cores", "1", ARRAYS[1], preexec_fn=limit)
    for i, cfg in enumerate(BAD_CONFIG):
        runs.start(f"config{i}", works[f"config{i}"], "--cores", "1", "--config", cfg)
    yield runs
    runs.stop()


#: ``--config`` values out of range, and the line each must give.
BAD_CONFIG = {
    "prediction={shard_rows: 0}": "Configuration error: config key 'prediction.shard_rows': 0 "
    "is less than the minimum of 1",
    "tsne={perplexities: [-5]}": "Configuration error: config key 'tsne.perplexities.0': -5 is "
    "less than or equal to the minimum of 0",
}
#: Per refused file: its run, its sample, the file's name, the row of the bad star (or None).
REFUSED = {
    "truncated": ("a", "training", "truncated.h5", None),
    "all_nan": ("a", "observed", "all_nan.h5", 7),
    "duplicated": ("b", "training", "duplicated.h5", 3),
    "negative": ("b", "observed", "negative.h5", 21),
}


@pytest.mark.slow
def test_a_member_killed_mid_training_resumes_to_the_same_catalogue(demo_run, tmp_path, short_runs):
    """SIGKILL snakemake and its jobs while member split0_seed0 trains: nothing under the
    member's names and no temporary file is left, Snakemake has the job as incomplete; after
    ``--unlock`` (the killed snakemake's lock stays), ``--rerun-incomplete`` trains that
    member again (same weights, bit for bit: same config, deterministic training), predicts
    with it and aggregates: the catalogue's labels table equals the complete run's, column by
    column.  The other member is taken from the complete run, so that only the killed one
    and what follows from it run.  It asks for ``short_runs`` only to have them run
    meanwhile."""
    work = make_workdir(tmp_path, "killed")
    reuse_arrays(demo_run, work)
    ensemble = Path("results/ensemble")
    for rel in (
        ensemble / "members/split0_seed1",
        *(ensemble / f"predictions/{s}/split0_seed1" for s in ("training", "observed")),
    ):
        shutil.copytree(demo_run / rel, work / rel)
    for sample in ("training", "observed"):
        rel = ensemble / f"predictions/{sample}/split0_seed1.h5"
        shutil.copy2(demo_run / rel, work / rel)
    rel = "results/ensemble/members/split0_seed0"
    target, member = "results/ensemble/labels.fits", work / rel
    log = work / "results/logs/train_member_split0_seed0.log"

    proc = subprocess.Popen(
        snakemake_command(work, "--cores", "2", target),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: snakemake and its jobs
    )
    try:
        deadline = time.monotonic() + 600
        while not log.exists():  # the job has started
            assert proc.poll() is None, "snakemake ended before the member started"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # TensorFlow's first line in the log comes when the member's input pipeline is
        # built, as fit() starts (or kill 15 s on, should a TensorFlow stay quiet)
        started = time.monotonic()
        while log.stat().st_size == 0 and time.monotonic() - started < 15:
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(60)
    assert not (member / "model.keras").exists(), "the member finished before the kill"
    assert not member.exists() or not any(member.iterdir())
    assert_nothing_left(work, target)
    assert any((work / ".snakemake/incomplete").iterdir())  # Snakemake knows the job died
    assert any((work / ".snakemake/locks").iterdir())

    unlock = run_snakemake(work, "--unlock")
    assert unlock.returncode == 0, unlock.stderr[-4000:]
    proc = run_snakemake(work, "--rerun-incomplete", "--cores", "2", target)
    assert proc.returncode == 0, proc.stderr[-4000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stderr.split("Job stats:")[1], re.M))
    assert jobs["train_member"] == "1" and jobs["aggregate_ensemble"] == "1"
    assert not any((work / ".snakemake/incomplete").iterdir())
    new, old = keras_weights(member / "model.keras"), keras_weights(demo_run / rel / "model.keras")
    assert new.keys() == old.keys() and len(new) > 10
    for name in old:
        np.testing.assert_array_equal(new[name], old[name], err_msg=name)
    with fits.open(work / target) as a, fits.open(demo_run / target) as b:
        assert a[1].columns.names == b[1].columns.names and len(a[1].data) > 0
        for name in b[1].columns.names:
            np.testing.assert_array_equal(a[1].data[name], b[1].data[name], err_msg=name)


def refused(short_runs, demo_run, case: str) -> tuple[Path, Path, int | None]:
    """Check what every refused file leaves (a failed run, Snakemake's summary pointing to
    the rule's log, no output, no temporary file); return the log, the file, the star."""
    run, sample, name, row = REFUSED[case]
    proc, work = short_runs[run]
    assert proc.returncode != 0
    log = f"results/logs/import_arrays_{sample}.log"
    summary = proc.stdout + proc.stderr
    assert "Error in rule import_arrays" in summary and log in summary
    assert_nothing_left(work, f"results/arrays/{sample}.h5")
    star = None
    if row is not None:
        with h5py.File(demo_run / "results" / "arrays" / f"{sample}.h5") as h5:
            star = int(h5["source_id"][row])
    return work / log, work.parent / name, star


@pytest.mark.slow
def test_a_truncated_file_is_refused_naming_it(short_runs, demo_run):
    log, path, _ = refused(short_runs, demo_run, "truncated")
    line = assert_one_line_error(log, f"{path}: not a readable HDF5 file (truncated or not HDF5)")
    assert "truncated file" in line  # HDF5's own words follow


@pytest.mark.slow
def test_an_all_nan_spectrum_is_refused_naming_the_star(short_runs, demo_run):
    log, path, star = refused(short_runs, demo_run, "all_nan")
    assert_one_line_error(log, f"{path}: rvs/flux: row 7 (source_id {star}) has no finite pixel")


@pytest.mark.slow
def test_duplicated_source_ids_are_refused_naming_one(short_runs, demo_run):
    log, path, star = refused(short_runs, demo_run, "duplicated")
    assert_one_line_error(log, f"{path}: source_id: 1 duplicated source ids (e.g. {star})")


@pytest.mark.slow
def test_a_negative_parallax_is_refused_naming_the_star(short_runs, demo_run):
    """The arrays stage refuses parallax <= 0 (the paper's cut removes such stars)."""
    log, path, star = refused(short_runs, demo_run, "negative")
    assert_one_line_error(
        log, f"{path}: astrometry/parallax: parallax <= 0 at row 21 (source_id {star})"
    )


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BAD_CONFIG)))
def test_an_out_of_range_config_key_stops_before_any_job(short_runs, index):
    proc, work = short_runs[f"config{index}"]
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert errors == [list(BAD_CONFIG.values())[index]], proc.stderr[-3000:]
    assert not (work / "results").exists() and "rule " not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_a_full_disk_stops_the_rule_naming_the_output(short_runs):
    """import_arrays under a file size limit lower than its output (as a full disk): one
    line naming results/arrays/observed.h5, which is not there, nor any temporary file."""
    proc, work = short_runs["full_disk"]
    assert proc.returncode != 0
    assert "Error in rule import_arrays" in proc.stdout + proc.stderr
    assert_nothing_left(work, ARRAYS[1])
    assert_one_line_error(
        work / "results/logs/import_arrays_observed.log",
        f"ERROR {ARRAYS[1]}: could not write (file too large): ",
    )


# --------------------------------------------------------------------------- the fault table

#: Every bad input and fault the workflow meets, as the README's fault table shows it: the
#: case, what the user sees, what is kept, and the test that checks it (``file::function``
#: under tests/).  No case leaves a partial output that a rerun would take as done.
FAULTS: tuple[tuple[str, str, str, str], ...] = (
    (
        "a truncated or non-HDF5 user file",
        "`ERROR <file>: not a readable HDF5 file (truncated or not HDF5): …` in the import log",
        "your file; no arrays file",
        "test_faults.py::test_a_truncated_file_is_refused_naming_it",
    ),
    (
        "a required dataset missing, or of the wrong shape, dtype or attributes",
        "`ERROR <file>: <dataset>: <what is wrong>`",
        "your file; no arrays file",
        "test_layout.py::test_broken_file_is_refused_naming_dataset",
    ),
    (
        "a spectrum with no finite pixel (`data.files_cuts: refuse`; `apply` cuts and counts it)",
        "`ERROR <file>: rvs/flux: row <i> (source_id <id>) has no finite pixel`",
        "your file; no arrays file",
        "test_faults.py::test_an_all_nan_spectrum_is_refused_naming_the_star",
    ),
    (
        "a spectrum with some NaN pixels",
        "nothing: the pixels get the continuum windows' third quartile",
        "the star",
        "test_spectra.py::test_nan_pixels_get_the_q3_of_the_windows_only",
    ),
    (
        "duplicated `source_id`s",
        "`ERROR <file>: source_id: <n> duplicated source ids (e.g. <id>)`",
        "your file; no arrays file",
        "test_faults.py::test_duplicated_source_ids_are_refused_naming_one",
    ),
    (
        "a parallax ≤ 0 (`data.files_cuts: refuse`; `apply` cuts and counts it)",
        "`ERROR <file>: astrometry/parallax: parallax <= 0 at row <i> (source_id <id>)`",
        "your file; no arrays file",
        "test_faults.py::test_a_negative_parallax_is_refused_naming_the_star",
    ),
    (
        "a label that is ±inf, or a label error ≤ 0",
        "`ERROR <file>: labels/<name>: <n> rows with values that are +-inf …` and a source_id",
        "your file; no arrays file",
        "test_layout.py::test_bad_label_values_are_refused_with_count_and_id",
    ),
    (
        "a non-finite photometry, parallax or XP input",
        "`ERROR <file>: <dataset>: … (source_id <id>)`",
        "no member",
        "test_model.py::test_non_finite_input_named",
    ),
    (
        "an XP first coefficient of 0 (the XP scale)",
        "`ERROR <file>: xp/bp_coefficients: <n> rows with first coefficient 0 …` and a source_id",
        "no member",
        "test_model.py::test_xp_first_coefficient_zero_refused_naming_the_star",
    ),
    (
        "a `model.labels` entry the training file lacks",
        "an error naming `labels/<name>` and the labels the file has",
        "no member",
        "test_model.py::test_unknown_label_lists_what_file_has",
    ),
    (
        "a `model.branches` entry the file cannot feed",
        "an error naming the missing dataset and its branch",
        "no member",
        "test_model.py::test_missing_branch_data",
    ),
    (
        "an observed file on another wavelength grid than the members'",
        "`ERROR <file>: rvs/flux: wavelength grid … differs from the grid the model was "
        "trained on`",
        "no prediction",
        "test_model.py::test_prediction_refuses_another_grid_naming_both",
    ),
    (
        "an observed file with another XP form or flux kind than the members'",
        "an error naming what the members were trained on",
        "no prediction",
        "test_model.py::test_prediction_refuses_another_xp_form_or_flux_kind",
    ),
    (
        "an observed file without an input the members were trained on",
        "an error naming the dataset and its branch",
        "no prediction",
        "test_model.py::test_prediction_needs_the_models_inputs",
    ),
    (
        "a member outside the configured ensemble (`split9_seed0`)",
        "`ensemble member split9_seed0 does not exist …` before any job",
        "everything",
        "test_workflow.py::test_unknown_member_is_refused_before_any_job",
    ),
    (
        "a configuration value out of range",
        "`Configuration error: config key '<key>': …` before any job",
        "everything (no `results/`)",
        "test_faults.py::test_an_out_of_range_config_key_stops_before_any_job",
    ),
    (
        "a full disk, quota or file size limit",
        "`ERROR <output>: could not write (no space left on device): …`",
        "no output, no temporary",
        "test_faults.py::test_a_full_disk_stops_the_rule_naming_the_output",
    ),
    (
        "a result under `results/` damaged or replaced (a pickle included)",
        "`ERROR <file>: not <what it should be> (<why>)`; nothing in it runs",
        "the other results",
        "test_planted_files.py::test_a_planted_file_is_refused_and_runs_nothing",
    ),
    (
        "the archive answers 429 with Retry-After",
        "`WARNING …: HTTP 429 …; retry 1 of 5 in <s> s`, then the answer",
        "every batch",
        "test_archive_transfer.py::test_429_waits_the_retry_after_and_logs_it",
    ),
    (
        "the archive answers 408, 500, 502, 503 or 504, then succeeds",
        "a WARNING per retry, then the answer",
        "every batch",
        "test_archive_transfer.py::test_a_retried_status_then_success",
    ),
    (
        "the archive answers another 4xx",
        "`ERROR …: HTTP 404 Not Found: … (not retried …)`",
        "the batches fetched so far",
        "test_archive_transfer.py::test_other_statuses_fail_at_once",
    ),
    (
        "the archive stays down past `retry_total_s`",
        "`ERROR …: … would pass the bound of … s (retry_total_s)`",
        "the batches fetched so far",
        "test_archive_transfer.py::test_the_total_time_bound_stops_a_growing_back_off",
    ),
    (
        "a connection dropped in the middle of a download",
        "a WARNING, then the download goes on from its last byte",
        "the bytes so far (`.part`)",
        "test_archive_transfer.py::test_a_connection_dropped_mid_body_is_resumed",
    ),
    (
        "a resumed download answered at the wrong byte (206, wrong Content-Range)",
        "`WARNING …: … starting over`",
        "the file, downloaded anew",
        "test_archive_transfer.py::test_a_206_at_the_wrong_byte_starts_over",
    ),
    (
        "a 416 while the local part is short",
        "the download starts over",
        "the file, downloaded anew",
        "test_archive_transfer.py::test_a_416_with_a_short_part_starts_over",
    ),
    (
        "a gzip-encoded answer to a range request",
        "`WARNING …: … starting over`",
        "the file, downloaded anew",
        "test_archive_transfer.py::test_a_gzip_answer_to_a_range_request_starts_over",
    ),
    (
        "the allStar file does not match `data.apogee.sha1`",
        "`ERROR <url>: SHA-1 … does not match the configured …; the download was removed`",
        "nothing of it",
        "test_archive_transfer.py::test_a_sha1_mismatch_removes_the_download",
    ),
    (
        "a cached DataLink batch of another request",
        "never used: `batch not downloaded`, or `cached batch is for another request`",
        "the batches of this request",
        "test_archive.py::test_a_batch_of_another_request_is_refused",
    ),
    (
        "the DataLink download killed",
        "the rerun fetches only the missing batches",
        "every finished batch",
        "test_archive.py::test_a_killed_download_resumes_with_the_missing_batches_only",
    ),
    (
        "a member's training killed (`SIGKILL`, lost node)",
        "nothing more; `--unlock`, then `--rerun-incomplete`",
        "the other members; the same catalogue after the rerun",
        "test_faults.py::test_a_member_killed_mid_training_resumes_to_the_same_catalogue",
    ),
    (
        "a job killed between two of its outputs (`SIGKILL`, Ctrl-C, `SIGTERM`)",
        "Snakemake's message; the rerun makes every output again",
        "the finished jobs",
        "test_killed_jobs.py::test_a_job_killed_between_its_outputs_runs_again_whole",
    ),
    (
        "`SIGTERM`, `SIGHUP` or Ctrl-C in the middle of a write",
        "the job ends as the signal says",
        "no output, no temporary",
        "test_io.py::test_a_signal_during_a_write_leaves_no_temporary_and_no_target",
    ),
)


def fault_table() -> str:
    """The README's fault table, made from :data:`FAULTS`."""
    rows = ["| case | what you see | what is kept | test (`tests/`) |", "|---|---|---|---|"]
    rows += [f"| {case} | {see} | {kept} | `{test}` |" for case, see, kept, test in FAULTS]
    return "\n".join(rows) + "\n"


def test_the_readme_shows_the_fault_table_and_each_case_has_its_test():
    """The README holds :func:`fault_table` (regenerate it with ``.venv/bin/python
    tests/test_faults.py``), at least 25 cases, and every case names a test function that
    exists in its file."""
    import ast

    tests = Path(__file__).parent
    assert len(FAULTS) >= 25
    for *_, test in FAULTS:
        file, name = test.split("::")
        tree = ast.parse((tests / file).read_text())
        functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert name in functions, test
    assert fault_table() in (tests.parent / "README.md").read_text()


if __name__ == "__main__":
    print(fault_table(), end="")
