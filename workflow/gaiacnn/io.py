"""Crash-safe output: every file (or folder) the package writes goes through this module.

:func:`atomic_output` writes to a temporary file beside the target, ``.<name>.<random>.tmp``,
flushes it to the disk (``fsync``), renames it onto the target and flushes the directory,
so that a killed job never leaves a half-written file under the final name (which
Snakemake would otherwise take as done), and a crash of the machine just after the rename
does not lose the file.  :func:`atomic_outputs` does the same for several outputs at once
(all written first, then renamed together), :func:`atomic_directory` for a folder.

No temporary is left behind: an exception (``KeyboardInterrupt`` from SIGINT included)
removes it; SIGTERM and SIGHUP, whose default action would end the process without any
clean-up, remove every temporary of the process and then end it as the signal would
have (:func:`_on_signal`); and a ``SIGKILL``, which nothing can catch, leaves one that the
next write of the same target removes (:func:`sweep_stale`).

A write that fails for want of room (disk full, quota, file size limit) is reported as
:class:`OutputWriteError`: one line naming the target.

And reading results back as data only (:func:`read_npz`, :func:`open_h5`,
:func:`read_json`, :func:`read_tsv`): no file that is read can run code, and one that is
not what it should be is refused naming it (:class:`UnreadableResult`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

#: The suffix of every temporary (before a writer's own extension, e.g. ``.tmp.keras``).
TMP_SUFFIX = ".tmp"
#: Signals whose default action ends the process without unwinding the stack: their
#: handler removes the temporaries first.  (SIGINT raises KeyboardInterrupt, which the
#: writers' own clean-up handles; SIGKILL cannot be caught.)
CLEANUP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)

#: errno -> what the user is told; the same words as they appear in the C library's
#: messages, which is how HDF5 reports them inside h5py's (sometimes non-OSError) errors.
_NO_ROOM: dict[int, str] = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large",
}


class OutputWriteError(OSError):
    """An output that could not be written: no space left, over quota or over the file
    size limit.  The message is one line naming the target."""


def out_of_room(exc: BaseException | None) -> tuple[int, BaseException] | None:
    """``(errno, the exception that says so)`` if ``exc`` or an exception it was raised
    from or while handling ran out of room (disk full, quota, file size limit); else None.

    h5py raises OSError with the errno for a failed write, but a failure while closing the
    file comes as RuntimeError whose message carries HDF5's ``error message = 'File too
    large'`` only; and h5py's close error replaces the write error it followed."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        err = todo.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _NO_ROOM:
            return err.errno, err
        if isinstance(err, (OSError, RuntimeError)):
            text = str(err).lower()
            for code, words in _NO_ROOM.items():
                if words in text:
                    return code, err
        todo += [err.__cause__, err.__context__]
    return None


# --------------------------------------------------------------------------- temporaries

#: This process's temporaries not yet renamed into place (an ordered set).
_pending: dict[Path, None] = {}
#: signal number -> the handler :func:`_on_signal` replaced
_previous: dict[int, object] = {}


def _temporary_pattern(target: Path) -> re.Pattern:
    # what tempfile.mkstemp/mkdtemp(prefix=".<name>.", suffix=".tmp<ext>") make: 8 characters
    # of [a-z0-9_] between; a longer name (a temporary of ``<name>.<more>``) does not match
    return re.compile(
        rf"\.{re.escape(target.name)}\.[a-z0-9_]{{8}}{re.escape(TMP_SUFFIX)}(\.[A-Za-z0-9]+)?"
    )


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def sweep_stale(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of ``path`` that an earlier, killed write (SIGKILL, a lost
    node) left beside it; the paths removed.  Every write calls it first.  Snakemake runs
    one job per output at a time, so no other process is writing ``path`` meanwhile."""
    target = Path(path)
    if not target.parent.is_dir():
        return []
    pattern = _temporary_pattern(target)
    stale = [
        p
        for p in target.parent.iterdir()
        if p.name.startswith(f".{target.name}.") and pattern.fullmatch(p.name)
    ]
    for p in stale:
        if p not in _pending:  # never one of this process's own writes
            _remove(p)
            log.info("removed %s, left by an interrupted write", p)
    return [p for p in stale if p not in _pending]


def _on_signal(signum: int, frame) -> None:
    """SIGTERM, SIGHUP: remove every pending temporary, then do what the signal did before
    (the default: end the process, killed by that signal)."""
    for tmp in list(_pending):
        _remove(tmp)
    _pending.clear()
    previous = _previous.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _track(tmp: Path) -> None:
    """Register a new temporary for :func:`_on_signal` (handlers installed on first use, from
    the main thread only; a signal the process ignores stays ignored)."""
    if not _previous and threading.current_thread() is threading.main_thread():
        for signum in CLEANUP_SIGNALS:
            current = signal.getsignal(signum)
            if current in (signal.SIG_IGN, None) or current is _on_signal:
                continue
            _previous[signum] = current
            signal.signal(signum, _on_signal)
    _pending[tmp] = None


def _new_temporary(target: Path, ext: str = "", *, directory: bool = False) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(target)
    kwargs = {"prefix": f".{target.name}.", "suffix": TMP_SUFFIX + ext, "dir": target.parent}
    if directory:
        tmp = Path(tempfile.mkdtemp(**kwargs))
    else:
        fd, name = tempfile.mkstemp(**kwargs)
        os.close(fd)
        tmp = Path(name)
    _track(tmp)
    return tmp


# --------------------------------------------------------------------------- durability


def _fsync(path: Path, *, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError as exc:
        # some file systems cannot flush a directory; a file's error (EIO, ENOSPC) counts
        if not directory or exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _usual_permissions(path: Path, *, directory: bool = False) -> None:
    # mkstemp makes 0600, mkdtemp 0700: give what open() and mkdir() would
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if directory else 0o666) & ~umask)


def _flush_tree(root: Path) -> None:
    """fsync every file and folder under ``root``, the deepest first, then ``root``."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            _fsync(Path(dirpath) / name)
        for name in dirnames:
            _fsync(Path(dirpath) / name, directory=True)
    _fsync(root, directory=True)


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Move the finished file ``tmp`` onto ``path`` durably: fsync ``tmp``, rename it (an
    atomic replace, on the same file system), fsync the directory, so that after a crash
    of the machine the target holds either its old content or all of the new."""
    tmp, target = Path(tmp), Path(path)
    _fsync(tmp)
    os.replace(tmp, target)
    _pending.pop(tmp, None)
    _fsync(target.parent, directory=True)


def _as_write_error(exc: BaseException, target: Path) -> OutputWriteError | None:
    found = None if isinstance(exc, OutputWriteError) else out_of_room(exc)
    if found is None:
        return None
    code, cause = found
    original = " ".join(str(cause).split())  # HDF5's messages hold a newline
    err = OutputWriteError(f"{target}: could not write ({_NO_ROOM[code]}): {original}")
    err.errno = code  # (not .filename: str() would then drop the message)
    return err


# --------------------------------------------------------------------------- writers


@contextlib.contextmanager
def atomic_outputs(*paths: str | os.PathLike, ext: str = "") -> Iterator[list[Path]]:
    """Yield one temporary path per target, each in its target's directory; when the block
    ends without an exception, flush each to the disk and rename them onto ``paths``, one
    right after the other (a rule's outputs: written in full first, then published
    together).  ``ext``: an extension the temporaries end with (``.keras``: Keras saves
    only to such a name).

    On any exception the temporaries are removed and ``paths`` are left untouched; an
    exception that says the disk (quota, file size limit) is full is raised again as
    :class:`OutputWriteError` naming the target.  Parent directories are created if
    missing; temporaries of these targets that a killed write left are removed first."""
    targets = [Path(p) for p in paths]
    temporaries: list[Path] = []
    current = None
    try:
        for target in targets:
            temporaries.append(_new_temporary(target, ext))
        yield list(temporaries)
        for tmp, target in zip(temporaries, targets, strict=True):
            current = target
            _usual_permissions(tmp)
            _fsync(tmp)
        for tmp, target in zip(temporaries, targets, strict=True):
            current = target
            os.replace(tmp, target)
            _pending.pop(tmp, None)
        for parent in dict.fromkeys(t.parent for t in targets):
            _fsync(parent, directory=True)
    except BaseException as exc:
        if current is None and targets:
            current = _failed_target(exc, temporaries, targets)
        for tmp in temporaries:
            tmp.unlink(missing_ok=True)
            _pending.pop(tmp, None)
        err = _as_write_error(exc, current)
        if err is None:
            raise
        raise err from exc


def _failed_target(exc: BaseException, temporaries: list[Path], targets: list[Path]) -> Path:
    """The target whose write raised ``exc`` inside an :func:`atomic_outputs` block: the one
    whose temporary the error names, else the one written last (the newest temporary)."""
    if len(temporaries) < len(targets):  # making the temporaries
        return targets[len(temporaries)]
    text = " ".join(str(e) for e in (exc, exc.__cause__, exc.__context__) if e is not None)
    for tmp, target in zip(temporaries, targets, strict=False):
        if tmp.name in text or tmp.name == Path(str(getattr(exc, "filename", "") or "")).name:
            return target
    written = [(tmp.stat().st_mtime_ns, i) for i, tmp in enumerate(temporaries) if tmp.exists()]
    return targets[max(written)[1]] if written else targets[-1]


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, ext: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it onto ``path`` on success
    (after an ``fsync``; the directory is flushed after the rename).  As
    :func:`atomic_outputs` for one target."""
    with atomic_outputs(path, ext=ext) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty temporary folder beside ``path``; when the block ends without an
    exception, flush everything in it to the disk and rename it onto ``path`` (a folder
    already there is moved aside first, then removed).  On any exception the temporary
    folder is removed and ``path`` is left untouched.  As :func:`atomic_output`, for a
    rule whose output is a ``directory()``."""
    target = Path(path)
    tmp = _new_temporary(target, directory=True)
    old = None
    try:
        yield tmp
        _usual_permissions(tmp, directory=True)
        _flush_tree(tmp)
        if target.exists():
            old = _new_temporary(target, directory=True)
            os.replace(target, old)  # onto the empty folder ``old``
        os.replace(tmp, target)
        _pending.pop(tmp, None)
        _fsync(target.parent, directory=True)
    except BaseException as exc:
        _remove(tmp)
        _pending.pop(tmp, None)
        if old is not None and not target.exists():  # moved aside, the new one not in place
            os.replace(old, target)
            _pending.pop(old, None)
            old = None
        err = _as_write_error(exc, target)
        if err is None:
            raise
        raise err from exc
    finally:
        if old is not None:
            _remove(old)
            _pending.pop(old, None)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_npz(path: str | os.PathLike, what: str, error: type[Exception] = ValueError) -> dict:
    """Every array of the ``.npz`` archive ``path`` that the workflow wrote, read with
    numpy's defaults, which refuse object arrays and serialised Python objects: reading it
    runs no code.  Anything else (another kind of file, a single ``.npy`` array, object
    arrays) is refused as ``error``, its message naming ``path`` and ``what`` it should be."""
    import zipfile

    import numpy as np

    def refuse(why: str) -> Exception:
        return error(f"{path}: not {what} ({why})")

    try:
        loaded = np.load(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise refuse(str(exc)) from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise refuse("a single array, not an .npz archive of arrays")
    with loaded:
        try:
            return {k: loaded[k] for k in loaded.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise refuse(str(exc)) from None


class UnreadableResult(OSError, ValueError):
    """A file the workflow reads that is not what it should be (not HDF5, not JSON of the
    expected keys, not the expected table): refused, the message naming the file.  Both an
    ``OSError`` (what h5py raises for a file that is not HDF5) and a ``ValueError`` (what
    the JSON and table readers raise), so that callers handling those handle it."""


def open_h5(path: str | os.PathLike):
    """``h5py.File(path, "r")``, a file that is not HDF5 refused with
    :class:`UnreadableResult` naming it."""
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise UnreadableResult(f"{path}: not a readable HDF5 file: {exc}") from None


def read_json(path: str | os.PathLike, what: str, keys=()) -> dict:
    """The JSON object in ``path`` (plain data: JSON builds no objects), holding ``keys``;
    anything else refused with :class:`UnreadableResult` naming it and ``what`` it should be."""
    import json

    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnreadableResult(f"{path}: not {what} (not JSON: {exc})") from None
    missing = [k for k in keys if not isinstance(doc, dict) or k not in doc]
    if missing:
        raise UnreadableResult(f"{path}: not {what} (no {', '.join(map(repr, missing))})")
    return doc


def read_tsv(path: str | os.PathLike, what: str, columns=(), *, only: bool = False):
    """The tab-separated table in ``path`` (pandas), holding ``columns`` (only those when
    ``only``); anything else refused with :class:`UnreadableResult` naming it and ``what``
    it should be."""
    import pandas as pd

    try:
        table = pd.read_csv(path, sep="\t", usecols=list(columns) if only else None)
    except (UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        raise UnreadableResult(f"{path}: not {what} ({exc})") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise UnreadableResult(f"{path}: not {what} (no column {', '.join(missing)})")
    return table
