"""Atomic output: write to a temporary file beside the target, then rename.

A killed job therefore never leaves a half-written file under the final name,
which Snakemake would otherwise take as done.  A write that fails for want of room (disk
full, quota, file size limit) is reported as :class:`OutputWriteError`: one line naming
the target.
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
