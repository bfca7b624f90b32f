"""Data access for ``data.source: gaia_dr3`` (SPEC stages 1-2, Sect. 2.1-2.4).

* The selection table: one ADQL query of ``gaiadr3.gaia_source`` LEFT JOINed with
  ``gaiadr3.astrophysical_parameters`` (for ``classlabel_espels``), every RVS star with the
  columns the cuts of :mod:`gaiacnn.selection` read, run as an asynchronous TAP job
  (synchronous answers stop at 2 000 rows) and written as a FITS table.  The cuts run
  locally, with the same code as the demo, so the cut report counts every cut.
* RVS mean spectra and XP continuous coefficients of the selected stars through DataLink
  (``astroquery.gaia`` ``load_data``), in batches of at most 5 000 source ids (the
  archive's limit).  Each batch is written to the cache directory as it arrives (a
  ``.npz`` named after its ids), so an interrupted download resumes where it stopped and
  never fetches a batch twice.  Timeouts, dropped connections, broken zips and HTTP 5xx
  answers are retried with exponential back-off; the last failure stops with an error
  naming the batch.  The batches are then streamed into the *raw store* that
  :mod:`gaiacnn.arrays` reads (the layout the demo survey writes).
* The APOGEE DR17 allStar file: an HTTP download that resumes a partial file
  (``Range`` requests), verified against its SHA-1 before it is renamed into place.

Everything talks to servers named in the config (``data.gaia``, ``data.apogee``), so a
mirror, or the local test server of the test suite, is one config change away.

The rules' entry points: :func:`run_gaia_query`, :func:`run_apogee_download`,
:func:`run_gaia_spectra`.
"""

from __future__ import annotations

import contextlib
import hashlib
import http
import http.client
import io
import logging
import os
import re
import socket
import tempfile
import time
import urllib.error
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from gaiacnn import layout
from gaiacnn.constants import rvs_wavelength_nm
from gaiacnn.io import atomic_output, publish
from gaiacnn.layout import RVS_FLUX_DATASET, RVS_FLUX_ERROR_DATASET

log = logging.getLogger(__name__)

T = TypeVar("T")

#: DataLink retrieval types of the two products (ARCHIVE_NOTES; Sect. 2.1, 2.3).
RVS, XP = "RVS", "XP_CONTINUOUS"
RETRIEVAL_TYPES = (RVS, XP)
#: The archive refuses more source ids per DataLink call.
MAX_IDS_PER_REQUEST = 5000
#: Coefficients per XP band (Sect. 2.3; De Angeli et al. 2023).
N_XP_COEFFICIENTS = 55
#: Columns of the selection query taken from the astrophysical parameters table (LEFT JOIN);
#: the others (:data:`gaiacnn.selection.GAIA_COLUMNS`) come from gaia_source.
AP_COLUMNS = ("classlabel_espels",)


class ArchiveError(RuntimeError):
    """A request that failed for good (after its retries), or an answer we cannot use."""


# --------------------------------------------------------------------------- retries
def _http_status(exc: BaseException) -> int | None:
    """The HTTP status of an error raised by astroquery, urllib or requests, if any."""
    for attr in ("status", "code", "status_code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    if isinstance(value, int):
        return value
    text = str(exc)
    match = re.search(r"\b(?:Error|HTTP|status)\D{0,12}([45]\d\d)\b", text)
    if match:
        return int(match.group(1))
    # astroquery raises some HTTP errors with the reason phrase only ("Service Unavailable")
    for status in http.HTTPStatus:
        if status >= 400 and text.strip() == status.phrase:
            return int(status)
    return None


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: timeouts, refused or dropped connections, a body
    cut short (a broken zip, an incomplete read) and HTTP 5xx; False for 4xx and for
    everything else (a bug is not retried)."""
    import requests

    if isinstance(exc, ArchiveError):
        return False
    status = _http_status(exc)
    if status is not None:
        return status >= 500
    return isinstance(
        exc,
        (
            TimeoutError,
            socket.timeout,
            ConnectionError,
            http.client.HTTPException,
            urllib.error.URLError,
            zipfile.BadZipFile,
            EOFError,
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ),
    )


def with_retries(
    call: Callable[[], T],
    *,
    what: str,
    retries: int,
    backoff_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``call()``, retried ``retries`` times on transient failures (:func:`is_transient`),
    waiting ``backoff_s`` seconds before the first retry and twice as long before each next
    one.  Raises :class:`ArchiveError` naming ``what`` after the last attempt, or at once on a
    failure that is not transient."""
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception as exc:
            if isinstance(exc, ArchiveError):
                raise
            kind = f"{type(exc).__name__}: {exc}".strip()
            if not is_transient(exc):
                raise ArchiveError(f"{what}: {kind}") from exc
            if attempt == retries:
                raise ArchiveError(
                    f"{what}: failed after {retries + 1} attempt(s), last: {kind}"
                ) from exc
            wait = backoff_s * 2**attempt
            log.warning("%s: %s; retry %d of %d in %.0f s", what, kind, attempt + 1, retries, wait)
            sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


# --------------------------------------------------------------------------- the client
@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """astroquery prints status lines (and, offline, "could not be retrieved") to stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """astroquery's TAP connections take no timeout argument; they use the default socket
    timeout, so an unanswered request fails after ``seconds`` instead of hanging."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def gaia_client(cfg: Mapping):
    """An ``astroquery.gaia.GaiaClass`` for the servers of ``data.gaia`` (``cfg``).
    Importing ``astroquery.gaia`` builds a default client that asks the ESA server for
    status messages: bounded by ``timeout_s`` so that a firewalled machine does not hang."""
    with _socket_timeout(min(float(cfg["timeout_s"]), 30.0)), _quiet_stdout():
        from astroquery.gaia import GaiaClass

        client = GaiaClass(
            gaia_tap_server=cfg["tap_server"],
            gaia_data_server=cfg["data_server"],
            show_server_messages=False,
        )
    return client


# --------------------------------------------------------------------------- selection query
def selection_query(cfg: Mapping, columns: Sequence[str]) -> str:
    """The ADQL of the selection table: ``columns`` of every RVS star of
    ``data.gaia.source_table`` (``AP_COLUMNS`` from ``ap_table``, LEFT JOIN: most stars have
    no row there), ``TOP max_rows`` if that is set."""
    top = f"TOP {int(cfg['max_rows'])} " if int(cfg.get("max_rows", 0)) > 0 else ""
    cols = ", ".join(f"ap.{c}" if c in AP_COLUMNS else f"gs.{c}" for c in columns)
    return (
        f"SELECT {top}{cols}\n"
        f"FROM {cfg['source_table']} AS gs\n"
        f"LEFT OUTER JOIN {cfg['ap_table']} AS ap ON ap.source_id = gs.source_id\n"
        "WHERE gs.has_rvs = 'True'"
    )


def _fill_masked(table) -> dict[str, np.ndarray]:
    """Columns of an astropy table as plain arrays: masked floats -> NaN, masked strings
    -> "" (a null ``classlabel_espels``), masked booleans -> False, masked integers -> -1."""
    out = {}
    for name in table.colnames:
        col = table[name]
        mask = np.asarray(getattr(col, "mask", np.zeros(len(col), bool)))
        values = np.asarray(getattr(col, "data", col))
        if values.dtype == object:  # VOTable strings of variable length
            values = np.array(["" if v is None else str(v) for v in values])
        if mask.any():
            kind = values.dtype.kind
            fill = {"f": np.nan, "U": "", "S": b"", "b": False}.get(kind, -1)
            values = values.astype(float) if kind in "iu" and fill is np.nan else values.copy()
            values[mask] = fill
        out[name] = values
    return out


def run_selection_query(
    client, adql: str, out_path: str | os.PathLike, *, cfg: Mapping, meta: Mapping | None = None
) -> int:
    """Run ``adql`` as an asynchronous TAP job (with retries) and write its result as a FITS
    table at ``out_path`` (atomically); returns the number of rows."""
    from gaiacnn.tables import write_fits_table

    def query():
        # astroquery's get_results() reads an async_<time>.vot of the working directory if
        # one is there: run it in an empty one
        with (
            tempfile.TemporaryDirectory(prefix="gaiacnn-tap-") as tmp,
            contextlib.chdir(tmp),
            _socket_timeout(float(cfg["timeout_s"])),
            _quiet_stdout(),
        ):
            job = client.launch_job_async(adql, dump_to_file=False, verbose=False)
            return job.get_results()

    table = with_retries(
        query,
        what=f"ADQL query on {cfg['tap_server']}",
        retries=int(cfg["retries"]),
        backoff_s=float(cfg["backoff_s"]),
    )
    if len(table) == 0:
        raise ArchiveError(f"ADQL query on {cfg['tap_server']} returned no rows:\n{adql}")
    units = {c: str(table[c].unit) for c in table.colnames if table[c].unit is not None}
    write_fits_table(
        _fill_masked(table),
        out_path,
        units=units,
        meta={"TAPSERV": cfg["tap_server"], **(meta or {})},
    )
    log.info("selection query: %d rows -> %s", len(table), out_path)
    return len(table)


# --------------------------------------------------------------------------- DataLink batches
def batches(ids: Iterable[int], size: int) -> list[np.ndarray]:
    """The unique ``ids``, sorted, in consecutive batches of at most ``size`` (<= 5 000)."""
    if not 1 <= size <= MAX_IDS_PER_REQUEST:
        raise ValueError(f"batch size {size} outside 1..{MAX_IDS_PER_REQUEST}")
    uniq = np.unique(np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, np.int64))
    return [uniq[i : i + size] for i in range(0, uniq.size, size)]


def batch_path(cache_dir: str | os.PathLike, retrieval_type: str, ids: np.ndarray) -> Path:
    """Cache file of one batch: named after its product, first id, size and a hash of its
    ids, so a different star list never reuses a batch that does not match it."""
    digest = hashlib.sha1(np.ascontiguousarray(ids, np.int64).tobytes()).hexdigest()[:12]
    return Path(cache_dir) / retrieval_type / f"{int(ids[0])}_{ids.size}_{digest}.npz"


_ID_IN_NAME = re.compile(r"(\d+)\.\w+$")


def _source_id(name: str, table) -> int:
    """The source id of one DataLink product: its ``source_id`` PARAM or column, else the
    number at the end of its file name (``RVS-Gaia DR3 <id>.xml``)."""
    for param in getattr(table, "params", []):
        if param.name == "source_id":
            return int(param.value)
    fields = [f.name for f in getattr(table, "fields", [])]
    if "source_id" in fields:
        return int(np.asarray(table.array["source_id"])[0])
    match = _ID_IN_NAME.search(name)
    if not match:
        raise ArchiveError(f"DataLink product {name!r}: no source id")
    return int(match.group(1))


def parse_rvs(files: Mapping[str, list], wavelength_nm: np.ndarray) -> dict[str, np.ndarray]:
    """``load_data(..., retrieval_type="RVS", format="votable")`` -> ``source_id`` (n,),
    ``flux`` and ``flux_error`` (n, 2401) float32 on ``wavelength_nm`` (nm; NaN kept)."""
    ids, flux, err = [], [], []
    for name, tables in sorted(files.items()):
        if not tables:
            continue
        t = tables[0]
        arr = t.to_table()
        for col in ("wavelength", "flux", "flux_error"):
            if col not in arr.colnames:
                raise ArchiveError(f"RVS product {name!r}: no column {col}")
        wl = np.asarray(arr["wavelength"], float)
        if wl.shape != wavelength_nm.shape or not np.allclose(wl, wavelength_nm, atol=1e-4):
            raise ArchiveError(
                f"RVS product {name!r}: {wl.size} pixels on {wl.min():g}-{wl.max():g} nm, "
                f"expected {wavelength_nm.size} on {wavelength_nm[0]:g}-{wavelength_nm[-1]:g} nm"
            )
        ids.append(_source_id(name, t))
        flux.append(np.ma.filled(np.ma.asarray(arr["flux"], float), np.nan))
        err.append(np.ma.filled(np.ma.asarray(arr["flux_error"], float), np.nan))
    n_pix = wavelength_nm.size
    return {
        "source_id": np.asarray(ids, np.int64),
        "flux": np.asarray(flux, np.float32).reshape(-1, n_pix),
        "flux_error": np.asarray(err, np.float32).reshape(-1, n_pix),
    }


def _band_array(row, column: str, name: str) -> np.ndarray:
    """One band's 55 values of ``column`` (``bp_coefficients``, ``rp_coefficient_errors``,
    ...), NaN when the band is missing (a source with RP only)."""
    value = row[column]
    if value is None or value is np.ma.masked or np.ma.getmask(value) is True:
        return np.full(N_XP_COEFFICIENTS, np.nan)
    arr = np.ma.filled(np.ma.asarray(value, float), np.nan).ravel()
    if arr.size == 0:
        return np.full(N_XP_COEFFICIENTS, np.nan)
    if arr.size != N_XP_COEFFICIENTS:
        raise ArchiveError(
            f"XP product {name!r}: {arr.size} values of {column}, expected {N_XP_COEFFICIENTS}"
        )
    return arr


#: The per-band columns of the DR3 XP_CONTINUOUS product read (ARCHIVE_NOTES), as
#: ``<band>_<suffix>``: the coefficients and their 1 sigma errors [e-/s].
XP_COLUMNS = ("coefficients", "coefficient_errors")


def parse_xp(files: Mapping[str, list]) -> dict[str, np.ndarray]:
    """``load_data(..., retrieval_type="XP_CONTINUOUS", format="votable")`` -> ``source_id``
    (n,), ``bp_coefficients``, ``rp_coefficients``, ``bp_coefficient_errors`` and
    ``rp_coefficient_errors`` (n, 55) float64 (NaN for a missing band)."""
    names = [f"{band}_{suffix}" for suffix in XP_COLUMNS for band in ("bp", "rp")]
    ids: list[int] = []
    values: dict[str, list] = {c: [] for c in names}
    for name, tables in sorted(files.items()):
        for t in tables:
            arr = t.array
            for col in ("source_id", *names):
                if col not in arr.dtype.names:
                    raise ArchiveError(f"XP product {name!r}: no column {col}")
            for row in arr:
                ids.append(int(row["source_id"]))
                for col in names:
                    values[col].append(_band_array(row, col, name))
    k = N_XP_COEFFICIENTS
    return {
        "source_id": np.asarray(ids, np.int64),
        **{c: np.asarray(v, float).reshape(-1, k) for c, v in values.items()},
    }


def fetch_batch(client, ids: np.ndarray, retrieval_type: str, cfg: Mapping) -> dict:
    """One DataLink request (``load_data``) for ``ids`` and its parsed arrays.  astroquery
    unpacks the answer into a temporary directory under the working directory: it runs in
    a fresh temporary directory, removed afterwards."""
    with (
        tempfile.TemporaryDirectory(prefix="gaiacnn-datalink-") as tmp,
        contextlib.chdir(tmp),
        _socket_timeout(float(cfg["timeout_s"])),
        _quiet_stdout(),
    ):
        files = client.load_data(
            ids=[int(i) for i in ids],
            data_release=cfg["release"],
            data_structure=cfg["data_structure"],
            retrieval_type=retrieval_type,
            format="votable",
        )
    if retrieval_type == RVS:
        return parse_rvs(files, rvs_wavelength_nm())
    return parse_xp(files)


@dataclass(frozen=True)
class DownloadReport:
    """What :func:`download_products` did: batches in all, fetched now, found in the cache."""

    n_batches: int
    fetched: int
    cached: int


def download_products(
    client,
    ids: Iterable[int],
    cache_dir: str | os.PathLike,
    cfg: Mapping,
    *,
    retrieval_types: Sequence[str] = RETRIEVAL_TYPES,
    progress: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> DownloadReport:
    """Fetch every product of ``retrieval_types`` for ``ids`` in batches of
    ``cfg["batch_size"]``, each written to ``cache_dir`` as it arrives; batches already
    there are not fetched again.  A batch that fails after its retries stops the download
    with :class:`ArchiveError` (the batches before it stay in the cache)."""
    from tqdm.auto import tqdm

    groups = batches(ids, int(cfg["batch_size"]))
    n_ids = sum(g.size for g in groups)
    fetched = cached = 0
    for rtype in retrieval_types:
        todo = [g for g in groups if not batch_path(cache_dir, rtype, g).is_file()]
        cached += len(groups) - len(todo)
        bar = tqdm(
            total=n_ids,
            initial=n_ids - sum(g.size for g in todo),
            desc=f"Gaia DataLink {rtype}",
            unit="stars",
            disable=not progress,
        )
        for group in todo:
            what = (
                f"DataLink {rtype} batch of {group.size} stars ({int(group[0])}..{int(group[-1])})"
            )
            data = with_retries(
                lambda g=group, r=rtype: fetch_batch(client, g, r, cfg),
                what=what,
                retries=int(cfg["retries"]),
                backoff_s=float(cfg["backoff_s"]),
                sleep=sleep,
            )
            unknown = np.setdiff1d(data["source_id"], group)
            if unknown.size:
                raise ArchiveError(f"{what}: the answer holds {unknown.size} stars not asked for")
            path = batch_path(cache_dir, rtype, group)
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(path) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, requested=group, **data)
            fetched += 1
            bar.update(group.size)
        bar.close()
    log.info(
        "DataLink: %d batches of %s, %d fetched now, %d from the cache",
        len(groups) * len(retrieval_types),
        "+".join(retrieval_types),
        fetched,
        cached,
    )
    return DownloadReport(len(groups) * len(retrieval_types), fetched, cached)


def _cached(
    cache_dir, rtype: str, group: np.ndarray, keys: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """The arrays ``keys`` (all if None) of one cached batch, checked to be for ``group``."""
    path = batch_path(cache_dir, rtype, group)
    if not path.is_file():
        raise ArchiveError(f"{path}: batch not downloaded")
    try:
        with np.load(path) as npz:
            wanted = npz.files if keys is None else ["requested", *keys]
            data = {k: npz[k] for k in wanted}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        msg = f"{path}: unreadable cached batch ({exc}); delete it to refetch"
        raise ArchiveError(msg) from None
    if not np.array_equal(data.get("requested"), group):
        raise ArchiveError(f"{path}: cached batch is for other stars; delete it to refetch")
    return data


def write_raw_store(
    ids: Iterable[int],
    cache_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    batch_size: int,
    provenance: Mapping[str, object] | None = None,
) -> dict[str, int]:
    """Stream the cached batches of ``ids`` into the raw store (the layout the demo survey
    writes: ``source_id``, ``rvs/flux`` [normalised] with ``wavelength_nm``,
    ``rvs/flux_error``, ``xp/bp_coefficients``, ``xp/rp_coefficients`` and their
    ``xp/*_coefficient_errors``), stars in source-id order.  Stars without an RVS spectrum
    in the archive are left out (counted); a star without XP coefficients keeps NaN ones.
    Returns counts for the log."""
    wl = rvs_wavelength_nm()
    groups = batches(ids, batch_size)
    n_rvs = 0
    for g in groups:
        n_rvs += _cached(cache_dir, RVS, g, keys=["source_id"])["source_id"].size  # ids only
    cols = {
        "source_id": ((), np.int64, {}),
        RVS_FLUX_DATASET: ((wl.size,), np.float32, {"wavelength_nm": wl}),
        RVS_FLUX_ERROR_DATASET: ((wl.size,), np.float32, {}),
        "xp/bp_coefficients": ((N_XP_COEFFICIENTS,), np.float32, {}),
        "xp/rp_coefficients": ((N_XP_COEFFICIENTS,), np.float32, {}),
        **{e: ((N_XP_COEFFICIENTS,), np.float32, {}) for e in layout.XP_ERROR_DATASETS},
    }
    attrs = {"sample": "raw", **(provenance or {})}
    counts = {"requested": int(sum(g.size for g in groups)), "rvs": n_rvs, "no_xp": 0}
    with layout.ArraysWriter(out_path, n_rvs, cols, attrs=attrs) as writer:
        for g in groups:
            rvs, xp = _cached(cache_dir, RVS, g), _cached(cache_dir, XP, g)
            order = np.argsort(rvs["source_id"])
            sid = rvs["source_id"][order]
            at = {int(s): i for i, s in enumerate(xp["source_id"])}
            pos = np.array([at.get(int(s), -1) for s in sid], int)
            has = pos >= 0
            block = {"source_id": sid, RVS_FLUX_DATASET: rvs["flux"][order]}
            block[RVS_FLUX_ERROR_DATASET] = rvs["flux_error"][order]
            for band in ("bp", "rp"):
                for suffix in XP_COLUMNS:
                    values = np.full((sid.size, N_XP_COEFFICIENTS), np.nan, np.float32)
                    key = f"{band}_{suffix}"
                    if key in xp:  # batches cached before the errors were kept have none
                        values[has] = xp[key][pos[has]]
                    block[f"xp/{key}"] = values
            counts["no_xp"] += int((~has).sum())
            writer.append(block)
    counts["no_rvs"] = counts["requested"] - n_rvs
    return counts


# --------------------------------------------------------------------------- file download
def sha1_of(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """SHA-1 hex digest of a file, read in ``chunk``-byte blocks."""
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def download_file(
    url: str,
    out_path: str | os.PathLike,
    *,
    sha1: str = "",
    retries: int = 5,
    backoff_s: float = 10.0,
    timeout_s: float = 600.0,
    chunk: int = 1 << 16,
    progress: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Download ``url`` to ``out_path``: the bytes go to ``<out_path>.part``, which a later
    call continues (HTTP ``Range``) after a dropped connection or a killed job; once the
    answer is complete its SHA-1 is checked against ``sha1`` (if given) and the file is
    renamed into place (:func:`gaiacnn.io.publish`: flushed to the disk first).  The
    ``.part`` file is the one temporary a killed job leaves on purpose: the next attempt
    continues it.  A mismatch removes the partial file and raises.  ``file://`` URLs
    (a local mirror) are copied the same way.  ``chunk``: bytes per write (a dropped
    connection loses at most the block being read).  Returns the size in bytes."""
    import requests
    from tqdm.auto import tqdm

    out = Path(out_path)
    part = out.with_name(out.name + ".part")
    out.parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("file://"):
        src = Path(url[len("file://") :])
        if not src.is_file():
            raise ArchiveError(f"{url}: no such file")
        _copy_resuming(src, part, chunk)
    else:

        def attempt() -> None:
            start = part.stat().st_size if part.exists() else 0
            headers = {"Range": f"bytes={start}-"} if start else {}
            with requests.get(url, headers=headers, stream=True, timeout=timeout_s) as resp:
                if resp.status_code == 416:  # nothing left to send: the part is complete
                    return
                resp.raise_for_status()
                if start and resp.status_code != 206:  # the server ignored Range: restart
                    log.warning("%s: no resume support, downloading from the start", url)
                    start = 0
                total = resp.headers.get("Content-Length")
                total = start + int(total) if total is not None else None
                with (
                    open(part, "ab" if start else "wb") as fh,
                    tqdm(
                        total=total,
                        initial=start,
                        unit="B",
                        unit_scale=True,
                        desc=out.name,
                        disable=not progress,
                    ) as bar,
                ):
                    for block in resp.iter_content(chunk):
                        fh.write(block)
                        bar.update(len(block))
                if total is not None and part.stat().st_size != total:
                    raise http.client.IncompleteRead(b"", total - part.stat().st_size)

        with_retries(
            attempt, what=f"download of {url}", retries=retries, backoff_s=backoff_s, sleep=sleep
        )
    if sha1:
        got = sha1_of(part)
        if got != sha1.lower():
            part.unlink()
            raise ArchiveError(
                f"{url}: SHA-1 {got} does not match the configured {sha1}; the download was "
                "removed (a changed file on the server, or data.apogee.sha1 is wrong)"
            )
    size = part.stat().st_size
    publish(part, out)  # fsync, rename, fsync the directory
    return size


def _copy_resuming(src: Path, part: Path, chunk: int) -> None:
    start = part.stat().st_size if part.exists() else 0
    with open(src, "rb") as fin, open(part, "ab") as fout:
        fin.seek(start)
        while block := fin.read(chunk):
            fout.write(block)


def run_gaia_query(gaia_cfg: Mapping, out_path) -> None:
    """Rule ``gaia_query`` (data.source: gaia_dr3): the selection table of every RVS star
    from the Gaia archive (an asynchronous ADQL job), as FITS."""
    from gaiacnn.selection import GAIA_COLUMNS

    adql = selection_query(gaia_cfg, GAIA_COLUMNS)
    log.info("ADQL on %s:\n%s", gaia_cfg["tap_server"], adql)
    run_selection_query(gaia_client(gaia_cfg), adql, out_path, cfg=gaia_cfg)


def run_apogee_download(apogee_cfg: Mapping, out_path) -> None:
    """Rule ``apogee_download`` (data.source: gaia_dr3): the APOGEE DR17 allStar file,
    resumed where an earlier attempt stopped and checked against its SHA-1."""
    size = download_file(
        apogee_cfg["url"],
        out_path,
        sha1=apogee_cfg["sha1"],
        retries=int(apogee_cfg["retries"]),
        backoff_s=float(apogee_cfg["backoff_s"]),
        timeout_s=float(apogee_cfg["timeout_s"]),
    )
    log.info("%s: %.1f MB%s", out_path, size / 1e6, ", SHA-1 verified" * bool(apogee_cfg["sha1"]))


def run_gaia_spectra(sample_paths: Sequence, gaia_cfg: Mapping, out_path, provenance) -> None:
    """Rule ``gaia_spectra`` (data.source: gaia_dr3): the RVS spectra and XP coefficients of
    every star of the samples through DataLink, batch by batch into the cache (resumable),
    then streamed into the raw store that ``build_arrays`` reads."""
    ids = np.unique(
        np.concatenate(
            [pd.read_csv(p, sep="\t", usecols=["source_id"])["source_id"] for p in sample_paths]
        ).astype(np.int64)
    )
    log.info("DataLink: %d stars in batches of %d", ids.size, int(gaia_cfg["batch_size"]))
    # logs the batches fetched now and those found in the cache
    download_products(gaia_client(gaia_cfg), ids, gaia_cfg["cache_dir"], gaia_cfg)
    counts = write_raw_store(
        ids,
        gaia_cfg["cache_dir"],
        out_path,
        batch_size=int(gaia_cfg["batch_size"]),
        provenance=provenance,
    )
    log.info(
        "raw store: %(rvs)d of %(requested)d stars with an RVS spectrum (%(no_rvs)d without, "
        "left out), %(no_xp)d without XP coefficients",
        counts,
    )
