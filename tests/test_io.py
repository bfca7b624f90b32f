"""Crash-safe outputs (gaiacnn.io, issue 27): no temporary survives a signal, a killed
write's temporary is swept at the next write of its target, each output is flushed to the
disk before its rename and its directory after, and no module of the package writes an
output any other way."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from workflow_helpers import default_signals

from gaiacnn import io

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "workflow" / "gaiacnn"

#: A writer, started as ``python -c WRITER <kind> <target> <ready>``: it opens ``<kind>`` of
#: output on ``<target>``, writes part of it, writes the temporary's path to ``<ready>``
#: and sleeps in the middle of the write until a signal comes.
WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from gaiacnn import io, layout

    kind, target, ready = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])

    def wait(*tmps):
        ready.write_text(" ".join(str(t) for t in tmps))
        time.sleep(120)

    if kind == "file":
        with io.atomic_output(target) as tmp, open(tmp, "wb") as fh:
            fh.write(b"x" * 100_000)
            fh.flush()
            wait(tmp)
    elif kind == "several":
        second = target.with_name("second.json")
        with io.atomic_outputs(target, second) as (a, b):
            a.write_bytes(b"a" * 1000)
            b.write_bytes(b"b" * 1000)
            wait(a, b)
    elif kind == "hdf5":
        cols = {"source_id": ((), np.int64, {}), "x": ((50,), np.float32, {})}
        with layout.ArraysWriter(target, 100, cols, chunk_rows=10) as w:
            w.append({"source_id": np.arange(50), "x": np.ones((50, 50), "f4")})
            wait(*target.parent.glob(f".{target.name}.*.tmp"))
    elif kind == "directory":
        with io.atomic_directory(target) as tmp:
            (tmp / "a.png").write_bytes(b"png")
            (tmp / "sub").mkdir()
            (tmp / "sub" / "b.txt").write_text("b")
            wait(tmp)
    """
)


def start_writer(kind: str, target: Path, ready: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow")}
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, kind, str(target), str(ready)],
        env=env,
        preexec_fn=default_signals,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_ready(proc: subprocess.Popen, ready: Path) -> list[Path]:
    """The writer's temporaries, once it is in the middle of its write."""
    deadline = time.monotonic() + 60
    while not (ready.exists() and ready.read_text()):
        if proc.poll() is not None:
            pytest.fail(f"the writer ended before its write: {proc.communicate()[1][-3000:]}")
        assert time.monotonic() < deadline, "the writer never started its write"
        time.sleep(0.02)
    return [Path(p) for p in ready.read_text().split()]


@pytest.mark.parametrize("kind", ["file", "several", "hdf5", "directory"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_during_a_write_leaves_no_temporary_and_no_target(tmp_path, kind, signum):
    """SIGTERM and SIGHUP (the handler removes the temporaries, then the process dies of the
    signal), SIGINT (KeyboardInterrupt unwinds through the writer): nothing is left."""
    out = tmp_path / "out"
    out.mkdir()
    target = out / ("target" if kind == "directory" else "target.h5")
    proc = start_writer(kind, target, tmp_path / "ready")
    tmps = wait_ready(proc, tmp_path / "ready")
    assert all(t.exists() and t.parent == out for t in tmps), tmps
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signum, err[-3000:]  # died of the signal, as without the handler
    assert sorted(out.iterdir()) == [], sorted(out.iterdir())


def test_a_killed_writes_temporary_is_swept_at_the_next_write(tmp_path):
    """SIGKILL cannot be caught: the temporary stays (and never under the target's name);
    the next write of the same target removes it, and only its own temporaries."""
    out = tmp_path / "out"
    out.mkdir()
    target = out / "labels.fits"
    other = out / ".labels.fits.gz.abcd1234.tmp"  # a temporary of another target
    other.write_text("not ours")
    proc = start_writer("file", target, tmp_path / "ready")
    (tmp,) = wait_ready(proc, tmp_path / "ready")
    proc.kill()
    proc.communicate(timeout=60)
    assert sorted(out.iterdir()) == sorted([tmp, other])
    assert tmp.name.startswith(".labels.fits.") and tmp.name.endswith(".tmp")
    io.write_text_atomic(target, "done")
    assert sorted(out.iterdir()) == sorted([target, other])
    assert target.read_text() == "done"


def test_each_output_is_flushed_before_its_rename_and_its_directory_after(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    fsync, replace = os.fsync, os.replace

    def record_fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def record_replace(src, dst):
        events.append(("replace", f"{src} -> {dst}"))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", record_fsync)
    monkeypatch.setattr(os, "replace", record_replace)
    a, b = tmp_path / "a.h5", tmp_path / "b.tsv"
    with io.atomic_outputs(a, b) as (ta, tb):
        ta.write_bytes(b"a")
        tb.write_bytes(b"b")
    assert events == [
        ("fsync", str(ta)),
        ("fsync", str(tb)),
        ("replace", f"{ta} -> {a}"),
        ("replace", f"{tb} -> {b}"),
        ("fsync", str(tmp_path)),
    ]
    events.clear()
    with io.atomic_directory(tmp_path / "figures") as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "f.png").write_bytes(b"png")
    assert events == [
        ("fsync", str(tmp / "sub" / "f.png")),
        ("fsync", str(tmp / "sub")),
        ("fsync", str(tmp)),
        ("replace", f"{tmp} -> {tmp_path / 'figures'}"),
        ("fsync", str(tmp_path)),
    ]
    assert (tmp_path / "figures" / "sub" / "f.png").read_bytes() == b"png"


def test_a_directory_replaces_the_old_one_whole_or_not_at_all(tmp_path):
    target = tmp_path / "figures"
    with io.atomic_directory(target) as tmp:
        (tmp / "old.png").write_bytes(b"1")
    assert oct(target.stat().st_mode & 0o777) == oct(0o777 & ~current_umask())
    with pytest.raises(KeyError), io.atomic_directory(target) as tmp:
        (tmp / "new.png").write_bytes(b"2")
        raise KeyError("a figure failed")
    assert [p.name for p in tmp_path.iterdir()] == ["figures"]
    assert [p.name for p in target.iterdir()] == ["old.png"]
    with io.atomic_directory(target) as tmp:
        (tmp / "new.png").write_bytes(b"2")
    assert [p.name for p in tmp_path.iterdir()] == ["figures"]
    assert [p.name for p in target.iterdir()] == ["new.png"]


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_several_outputs_are_all_left_untouched_on_an_error(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    with pytest.raises(io.OutputWriteError) as info, io.atomic_outputs(a, b) as (ta, tb):
        ta.write_text("new a")
        tb.write_text("new b")
        raise OSError(28, "No space left on device")
    assert str(info.value).startswith(f"{b}: could not write (no space left on device)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    assert a.read_text() == "old a"


# --------------------------------------------------------------------------- one helper

#: Calls that write a file, and the index of the argument that names it (None: the object
#: the method is called on, a Path).
WRITES = {
    "open": 0,
    "File": 0,
    "savez": 0,
    "savez_compressed": 0,
    "save": 0,
    "to_csv": 0,
    "writeto": 0,
    "savefig": 0,
    "write_text": None,
    "write_bytes": None,
}
#: Writes that are no workflow output, or that write into a temporary of gaiacnn.io under
#: another name: (file, function, call) -> why.
NOT_OUTPUTS = {
    ("job.py", "redirect_log", "open"): "the job's log (Snakemake's log:, not an output)",
    ("transfer.py", "_fetch_once", "open"): "the download's .part, resumed by the next attempt",
    ("transfer.py", "_copy_resuming", "open"): "the same for a file:// mirror",
    ("render.py", "render_all", "save"): "style.save(fig, tmp, ...) into atomic_directory's",
    ("style.py", "save", "savefig"): "into the folder render_all got from atomic_directory",
    ("render.py", "write_not_drawn", "write_text"): "the same folder",
    ("catalogue.py", "_data_bytes", "writeto"): "a chunk of the table into memory (BytesIO)",
}
#: Low-level calls that only gaiacnn/io.py makes.
FORBIDDEN = {
    "os.replace",
    "os.rename",
    "os.renames",
    "shutil.move",
    "shutil.rmtree",
    "tempfile.mkstemp",
    "tempfile.mkdtemp",
    "tempfile.mktemp",
    "tempfile.NamedTemporaryFile",
}


def write_mode(call: ast.Call, name: str) -> bool:
    """Whether ``call`` (``open``, ``h5py.File``) may open for writing: a mode that is not
    a constant counts if any constant in it writes."""
    if name not in ("open", "File"):
        return True
    modes = [*call.args[1:2], *(k.value for k in call.keywords if k.arg == "mode")]
    return any(
        isinstance(c, ast.Constant) and set(str(c.value)) & set("wax+")
        for mode in modes
        for c in ast.walk(mode)
    )


def test_every_output_is_written_through_gaiacnn_io():
    """No module but io.py renames files or makes temporaries; every call that writes a file
    writes to a name that atomic_output(s)/atomic_directory gave (``tmp...``, or ``fh``
    of ``open(tmp, "wb") as fh``), or is one of :data:`NOT_OUTPUTS`."""
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "io.py":
            continue
        tree = ast.parse(path.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            where = f"{path.relative_to(PACKAGE)}:{node.lineno}: {ast.unparse(node)[:80]}"
            if ast.unparse(func) in FORBIDDEN or getattr(func, "id", "") in FORBIDDEN:
                problems.append(where)
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name not in WRITES or not write_mode(node, name):
                continue
            index = WRITES[name]
            if index is None:
                written = func.value if isinstance(func, ast.Attribute) else None
            else:
                written = node.args[index] if len(node.args) > index else None
            text = ast.unparse(written) if written is not None else ""
            if text.startswith("tmp") or text == "fh":
                continue
            function = node
            while function in parents and not isinstance(function, ast.FunctionDef):
                function = parents[function]
            if (path.name, getattr(function, "name", ""), name) not in NOT_OUTPUTS:
                problems.append(where)
    assert problems == [], "\n".join(problems)
