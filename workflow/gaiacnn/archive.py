"""Data access for ``data.source: gaia_dr3`` (SPEC stages 1-2, Sect. 2.1-2.4).

* The selection table: one ADQL query of ``gaiadr3.gaia_source`` LEFT JOINed with
  ``gaiadr3.astrophysical_parameters`` (for ``classlabel_espels``), every RVS star with the
  columns the cuts of :mod:`gaiacnn.selection` read, run as an asynchronous TAP job
  (synchronous answers stop at 2 000 rows) and written as a FITS table.  The cuts run
  locally, with the same code as the demo, so the cut report counts every cut.
* RVS mean spectra and XP continuous coefficients of the selected stars through DataLink
  (``astroquery.gaia`` ``load_data``), in batches of at most 5 000 source ids (the
  archive's limit).  Each batch is written to the cache directory as it arrives (a
  ``.npz`` named after a hash of the server, release, data structure, format, product and
  ids: :class:`DataLinkQuery`), so an interrupted download resumes where it stopped, never
  fetches a batch twice and never takes a batch of another request for this one.  The
  batches are then streamed into the *raw store* that :mod:`gaiacnn.arrays` reads (the
  layout the demo survey writes).
* The APOGEE DR17 allStar file: an HTTP download that resumes a partial file
  (``Range`` requests), verified against its size and SHA-1 before it is renamed into
  place (:func:`gaiacnn.transfer.download_file`).

Every request is retried by :class:`gaiacnn.transfer.RetryPolicy` (``retries``,
``backoff_s``, ``retry_total_s`` of the config section): HTTP 408, 429, 500, 502, 503, 504
and dropped, refused or timed-out connections, with exponential back-off, jitter and the
server's ``Retry-After``; the last failure, or any other 4xx at once, stops with an error
naming the request.

Everything talks to servers named in the config (``data.gaia``, ``data.apogee``), so a
mirror, or the local test server of the test suite, is one config change away.

The rules' entry points: :func:`run_gaia_query`, :func:`run_apogee_download`,
:func:`run_gaia_spectra`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import os
import re
import socket
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import requests

from gaiacnn import layout
from gaiacnn.constants import rvs_wavelength_nm
from gaiacnn.io import atomic_output, read_tsv
from gaiacnn.layout import RVS_FLUX_DATASET, RVS_FLUX_ERROR_DATASET
from gaiacnn.transfer import (
    AnswerLog,
    ArchiveError,
    RetryPolicy,
    astroquery_conn,
    download_file,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: DataLink retrieval types of the two products (ARCHIVE_NOTES; Sect. 2.1, 2.3).
RVS, XP = "RVS", "XP_CONTINUOUS"
RETRIEVAL_TYPES = (RVS, XP)
#: The archive refuses more source ids per DataLink call.
MAX_IDS_PER_REQUEST = 5000
#: The DataLink FORMAT asked for: the parsers read VOTables (ARCHIVE_NOTES: ``ecsv`` is
#: broken in astroquery 0.4.11, ``csv`` gives the arrays as strings).
DATALINK_FORMAT = "votable"
#: Coefficients per XP band (Sect. 2.3; De Angeli et al. 2023).
N_XP_COEFFICIENTS = 55
#: Columns of the selection query taken from the astrophysical parameters table (LEFT JOIN);
#: the others (:data:`gaiacnn.selection.GAIA_COLUMNS`) come from gaia_source.
AP_COLUMNS = ("classlabel_espels",)


# --------------------------------------------------------------------------- the client
@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """astroquery prints status lines (and, offline, "could not be retrieved") to stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """The default socket timeout [s] for a while: ``import astroquery.gaia`` opens a
    connection with no timeout of its own (our clients' connections have one)."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


@dataclass(frozen=True)
class GaiaArchive:
    """astroquery's ``GaiaClass`` (``gaia``) on the servers of ``data.gaia``, the log of
    the answers its connections received (``answers``: statuses and ``Retry-After``, which
    astroquery's errors do not carry) and the DataLink server's URL (``data_server``)."""

    gaia: Any
    answers: AnswerLog
    data_server: str

    def call(
        self,
        fn: Callable[[], T],
        *,
        what: str,
        policy: RetryPolicy,
        sleep: Callable[[float], None] = time.sleep,
    ) -> T:
        """``fn()`` (a call of ``gaia``), retried by ``policy``; an HTTP error astroquery
        raises becomes :class:`gaiacnn.transfer.HTTPStatusError` with the answer's status."""

        def attempt() -> T:
            self.answers.clear()
            try:
                with _quiet_stdout():
                    return fn()
            except requests.exceptions.HTTPError as exc:
                error = self.answers.status_error(exc)
                if error is None:
                    raise
                raise error from exc

        return policy.call(attempt, what=what, sleep=sleep)


def gaia_client(cfg: Mapping) -> GaiaArchive:
    """astroquery's ``GaiaClass`` for the servers of ``data.gaia`` (``cfg``), with
    connections that time out after ``timeout_s`` of silence and record their answers
    (:func:`gaiacnn.transfer.astroquery_conn`).  Importing ``astroquery.gaia`` builds a
    default client that asks the ESA server for status messages: bounded by ``timeout_s``
    (30 s at most) so that a firewalled machine does not hang."""
    timeout_s = float(cfg["timeout_s"])
    with _socket_timeout(min(timeout_s, 30.0)), _quiet_stdout():
        from astroquery.gaia import GaiaClass
        from astroquery.utils.tap.core import TapPlus

    answers = AnswerLog()
    data = TapPlus(
        url=cfg["data_server"],
        server_context="data-server",
        tap_context="tap",
        upload_context="Upload",
        table_edit_context="TableTool",
        data_context="data",
        datalink_context="datalink",
        connhandler=astroquery_conn(
            cfg["data_server"], "data-server", timeout_s=timeout_s, answers=answers
        ),
        use_names_over_ids=GaiaClass.USE_NAMES_OVER_IDS,
    )
    client = GaiaClass(
        tap_plus_conn_handler=astroquery_conn(
            cfg["tap_server"], "tap-server", timeout_s=timeout_s, answers=answers
        ),
        datalink_handler=data,
        gaia_tap_server=cfg["tap_server"],
        gaia_data_server=cfg["data_server"],
        show_server_messages=False,
    )
    return GaiaArchive(client, answers, str(cfg["data_server"]))


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
    client: GaiaArchive,
    adql: str,
    out_path: str | os.PathLike,
    *,
    cfg: Mapping,
    meta: Mapping | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Run ``adql`` as an asynchronous TAP job (retried as ``cfg`` says) and write its
    result as a FITS table at ``out_path`` (atomically); returns the number of rows."""
    from gaiacnn.tables import write_fits_table

    def query():
        # astroquery's get_results() reads an async_<time>.vot of the working directory if
        # one is there: run it in an empty one
        with tempfile.TemporaryDirectory(prefix="gaiacnn-tap-") as tmp, contextlib.chdir(tmp):
            job = client.gaia.launch_job_async(adql, dump_to_file=False, verbose=False)
            return job.get_results()

    table = client.call(
        query,
        what=f"ADQL query on {cfg['tap_server']}",
        policy=RetryPolicy.from_config(cfg),
        sleep=sleep,
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


@dataclass(frozen=True)
class DataLinkQuery:
    """What decides a DataLink answer besides the product and the ids: the server (its base
    URL, without a trailing slash), ``RELEASE``, ``DATA_STRUCTURE`` and ``FORMAT``.  All of
    them are part of each batch's cache key (:func:`batch_path`)."""

    server: str
    release: str
    data_structure: str
    format: str = DATALINK_FORMAT

    @classmethod
    def of(cls, client: GaiaArchive, cfg: Mapping) -> DataLinkQuery:
        """The query ``client`` sends with the ``release`` and ``data_structure`` of
        ``data.gaia`` (``cfg``)."""
        return cls(client.data_server.rstrip("/"), str(cfg["release"]), str(cfg["data_structure"]))

    def key(self, retrieval_type: str, ids: np.ndarray) -> str:
        """SHA-1 (hex) of this query, ``retrieval_type`` and ``ids`` (int64, in order)."""
        fields = {**dataclasses.asdict(self), "retrieval_type": retrieval_type}
        digest = hashlib.sha1(json.dumps(fields, sort_keys=True).encode())
        digest.update(np.ascontiguousarray(ids, "<i8").tobytes())
        return digest.hexdigest()


def batch_path(
    cache_dir: str | os.PathLike, query: DataLinkQuery, retrieval_type: str, ids: np.ndarray
) -> Path:
    """Cache file of one batch: ``<product>/<first id>_<n ids>_<key>.npz``, ``key`` hashing
    the server, release, data structure, format, product and ids
    (:meth:`DataLinkQuery.key`), so that a change of any of them never reuses a batch."""
    key = query.key(retrieval_type, ids)[:20]
    return Path(cache_dir) / retrieval_type / f"{int(ids[0])}_{ids.size}_{key}.npz"


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


def fetch_batch(
    client: GaiaArchive, query: DataLinkQuery, retrieval_type: str, ids: np.ndarray
) -> dict:
    """One DataLink request (``load_data``) for ``ids`` and its parsed arrays.  astroquery
    unpacks the answer into a temporary directory under the working directory: it runs in
    a fresh temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="gaiacnn-datalink-") as tmp, contextlib.chdir(tmp):
        files = client.gaia.load_data(
            ids=[int(i) for i in ids],
            data_release=query.release,
            data_structure=query.data_structure,
            retrieval_type=retrieval_type,
            format=query.format,
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
    client: GaiaArchive,
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
    there (for the same server, release, data structure, format and ids:
    :func:`batch_path`) are not fetched again.  A batch that fails after its retries
    (``cfg``: ``retries``, ``backoff_s``, ``retry_total_s``) stops the download with
    :class:`ArchiveError` (the batches before it stay in the cache)."""
    from tqdm.auto import tqdm

    query = DataLinkQuery.of(client, cfg)
    policy = RetryPolicy.from_config(cfg)
    groups = batches(ids, int(cfg["batch_size"]))
    n_ids = sum(g.size for g in groups)
    fetched = cached = 0
    for rtype in retrieval_types:
        todo = [g for g in groups if not batch_path(cache_dir, query, rtype, g).is_file()]
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
            data = client.call(
                lambda g=group, r=rtype: fetch_batch(client, query, r, g),
                what=what,
                policy=policy,
                sleep=sleep,
            )
            unknown = np.setdiff1d(data["source_id"], group)
            if unknown.size:
                raise ArchiveError(f"{what}: the answer holds {unknown.size} stars not asked for")
            path = batch_path(cache_dir, query, rtype, group)
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(path) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, requested=group, key=query.key(rtype, group), **data)
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
    cache_dir,
    query: DataLinkQuery,
    rtype: str,
    group: np.ndarray,
    keys: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """The arrays ``keys`` (all if None) of one cached batch, checked to be for ``group``
    and ``query``."""
    path = batch_path(cache_dir, query, rtype, group)
    if not path.is_file():
        raise ArchiveError(f"{path}: batch not downloaded")
    try:
        with np.load(path) as npz:
            wanted = npz.files if keys is None else ["requested", "key", *keys]
            data = {k: npz[k] for k in wanted}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        msg = f"{path}: unreadable cached batch ({exc}); delete it to refetch"
        raise ArchiveError(msg) from None
    if not np.array_equal(data.get("requested"), group) or str(data["key"]) != query.key(
        rtype, group
    ):
        raise ArchiveError(f"{path}: cached batch is for another request; delete it to refetch")
    return data


def write_raw_store(
    ids: Iterable[int],
    cache_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    query: DataLinkQuery,
    batch_size: int,
    provenance: Mapping[str, object] | None = None,
) -> dict[str, int]:
    """Stream the cached batches of ``ids`` into the raw store (the layout the demo survey
    writes: ``source_id``, ``rvs/flux`` [normalised] with ``wavelength_nm``,
    ``rvs/flux_error``, ``xp/bp_coefficients``, ``xp/rp_coefficients`` and their
    ``xp/*_coefficient_errors``), stars in source-id order.  Stars without an RVS spectrum
    in the archive are left out (counted); a star without XP coefficients keeps NaN ones.
    ``query``: the DataLink query the batches were fetched with (their cache key).
    Returns counts for the log."""
    wl = rvs_wavelength_nm()
    groups = batches(ids, batch_size)
    n_rvs = 0
    for g in groups:
        n_rvs += _cached(cache_dir, query, RVS, g, keys=["source_id"])["source_id"].size  # ids only
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
            rvs, xp = _cached(cache_dir, query, RVS, g), _cached(cache_dir, query, XP, g)
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


# --------------------------------------------------------------------------- the rules
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
        policy=RetryPolicy.from_config(apogee_cfg),
        timeout_s=float(apogee_cfg["timeout_s"]),
    )
    log.info("%s: %.1f MB%s", out_path, size / 1e6, ", SHA-1 verified" * bool(apogee_cfg["sha1"]))


#: What :func:`run_gaia_spectra` reads the stars from.
SAMPLE_TABLE = "a sample table (rule select_samples)"


def run_gaia_spectra(sample_paths: Sequence, gaia_cfg: Mapping, out_path, provenance) -> None:
    """Rule ``gaia_spectra`` (data.source: gaia_dr3): the RVS spectra and XP coefficients of
    every star of the samples through DataLink, batch by batch into the cache (resumable),
    then streamed into the raw store that ``build_arrays`` reads."""
    ids = np.unique(
        np.concatenate(
            [read_tsv(p, SAMPLE_TABLE, ["source_id"], only=True)["source_id"] for p in sample_paths]
        ).astype(np.int64)
    )
    log.info("DataLink: %d stars in batches of %d", ids.size, int(gaia_cfg["batch_size"]))
    client = gaia_client(gaia_cfg)
    # logs the batches fetched now and those found in the cache
    download_products(client, ids, gaia_cfg["cache_dir"], gaia_cfg)
    counts = write_raw_store(
        ids,
        gaia_cfg["cache_dir"],
        out_path,
        query=DataLinkQuery.of(client, gaia_cfg),
        batch_size=int(gaia_cfg["batch_size"]),
        provenance=provenance,
    )
    log.info(
        "raw store: %(rvs)d of %(requested)d stars with an RVS spectrum (%(no_rvs)d without, "
        "left out), %(no_xp)d without XP coefficients",
        counts,
    )
