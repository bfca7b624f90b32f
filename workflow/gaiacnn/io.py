"""Atomic output: write to a temporary file beside the target, then rename.

A killed job therefore never leaves a half-written file under the final name,
which Snakemake would otherwise take as done.  A write that fails for want of room (disk
full, quota, file size limit) is reported as :class:`OutputWriteError`: one line naming
the target.

And reading results back as data only (:func:`read_npz`, :func:`open_h5`,
:func:`read_json`, :func:`read_tsv`): no file that is read can run code, and one that is
not what it should be is refused naming it (:class:`UnreadableResult`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

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


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched; an
    exception that says the disk (quota, file size limit) is full is raised again as
    :class:`OutputWriteError` naming ``path``.  The parent directory is created if missing.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        found = None if isinstance(exc, OutputWriteError) else out_of_room(exc)
        if found is None:
            raise
        code, cause = found
        original = " ".join(str(cause).split())  # HDF5's messages hold a newline
        err = OutputWriteError(f"{target}: could not write ({_NO_ROOM[code]}): {original}")
        err.errno = code  # (not .filename: str() would then drop the message)
        raise err from exc


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
