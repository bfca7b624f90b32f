"""Where a product comes from: the package's version and git commit, the date, and the
SHA-256 of its input files (the catalogue's header, a bundle's ``bundle.json``)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
from pathlib import Path


def sha256_file(path: str | os.PathLike, block: int = 1 << 20) -> str:
    """The SHA-256 of a file, hex, read a block at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(block), b""):
            h.update(chunk)
    return h.hexdigest()


def git_commit() -> str:
    """The package's git commit (short, ``+dirty`` with changes), or ``unknown``."""
    here = str(Path(__file__).resolve().parent)
    out = []
    for args in (["rev-parse", "--short", "HEAD"], ["status", "--porcelain", "-uno"]):
        try:
            run = subprocess.run(["git", "-C", here, *args], capture_output=True, text=True)
        except OSError:
            return "unknown"
        if run.returncode != 0:
            return "unknown"
        out.append(run.stdout.strip())
    return out[0] + ("+dirty" if out[1] else "")


def today() -> str:
    """The UTC date, ``YYYY-MM-DD`` (FITS ``DATE``), or that of ``SOURCE_DATE_EPOCH``
    (seconds since 1970) where set, for reproducible files."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    now = dt.datetime.fromtimestamp(int(epoch), dt.UTC) if epoch else dt.datetime.now(dt.UTC)
    return now.date().isoformat()


def stamp(inputs: dict[str, str | os.PathLike]) -> dict:
    """The provenance attributes of a product made from the files ``inputs`` (name ->
    path): package version, commit, date and each input's SHA-256."""
    from gaiacnn import __version__

    return {
        "gaiacnn_version": __version__,
        "commit": git_commit(),
        "date": today(),
        "inputs_sha256": {k: sha256_file(v) for k, v in inputs.items()},
    }
