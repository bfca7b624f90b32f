"""A local stand-in for the ESA Gaia archive (TAP + DataLink) and for a static file server.

Test helper, not a test module.  :class:`ArchiveServer` runs a
:class:`http.server.ThreadingHTTPServer` on ``127.0.0.1`` (a free port) in a daemon thread
and speaks enough of the archive protocols for the real ``astroquery.gaia.GaiaClass``
(astroquery 0.4.11) to work against it::

    with ArchiveServer(query_result=table, rvs=rvs, xp=xp) as server:
        gaia = GaiaClass(gaia_tap_server=server.url + "/", gaia_data_server=server.url + "/",
                         show_server_messages=False)
        gaia.launch_job_async("SELECT ...").get_results()    # -> ``table``
        gaia.load_data(ids, retrieval_type="RVS", ...)        # -> one VOTable per id
        server.queries, server.requests, server.datalink_batches("RVS")

What astroquery 0.4.11 sends and expects (read from its source, checked by
``tests/test_archive_server.py``):

* **Sync TAP** ``launch_job``: ``POST /tap-server/tap/sync`` (form: ``REQUEST=doQuery``,
  ``LANG=ADQL``, ``FORMAT=votable_gzip`` for ``GaiaClass``, ``tapclient``, ``QUERY``).  astroquery
  inserts ``TOP 2000`` into a query that has no ``TOP`` before sending it.  Expects 200 with
  the table (it tries ``gzip.decompress`` first, then plain); any other status raises
  ``requests.exceptions.HTTPError``.
* **Async TAP** ``launch_job_async``: ``POST /tap-server/tap/async`` (same form plus
  ``PHASE=RUN``) -> expects ``303`` with a ``Location`` whose last path element is the job
  id (any other status raises ``requests.exceptions.HTTPError(reason)``); then polls
  ``GET .../async/<id>/phase`` every 0.5 s while the answer is ``PENDING``/``QUEUED``/
  ``EXECUTING``, then ``GET .../async/<id>/results/result`` (following 302/303).  It never
  reads the UWS job document in this flow (served anyway at ``GET .../async/<id>``).
* **DataLink** ``load_data``: one ``POST /data-server/data`` (form: ``VALID_DATA``, ``ID``
  comma-joined, ``RELEASE``, ``DATA_STRUCTURE``, ``FORMAT``, ``RETRIEVAL_TYPE``,
  ``USE_ZIP_ALWAYS=true``); a non-200 status raises ``requests.exceptions.HTTPError``, a 200
  body is written to a temporary directory *in the current working directory* and opened with
  :class:`zipfile.ZipFile`.
* astroquery's :class:`http.client.HTTPConnection` has **no timeout** (it uses
  :func:`socket.getdefaulttimeout`, ``None`` by default); :func:`gaia_client` shows how to
  inject one.

Faults (:meth:`ArchiveServer.fail`) are queued per endpoint and consumed by the next
matching requests; what astroquery raises for each is listed in :data:`FAULT_KINDS`.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import gzip
import hashlib
import http.client
import io
import itertools
import socket
import threading
import time
import urllib.parse
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import EllipsisType
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
from astropy.io import votable
from astropy.io.votable.tree import Info
from astropy.table import MaskedColumn, Table

#: Paths of the archive services (astroquery's default contexts).
TAP_PREFIX = "/tap-server/tap"
DATALINK_PATH = "/data-server/data"
FILES_PREFIX = "/files/"

#: Endpoints that :meth:`ArchiveServer.fail` accepts.  ``"async"`` is the job-creation POST;
#: ``"async_phase"`` / ``"async_result"`` the phase polls and the result download.
ENDPOINTS = frozenset({"sync", "async", "async_phase", "async_result", "datalink", "files"})

#: Fault kinds, and what the real astroquery 0.4.11 raises for each (checked by the tests):
#:
#: * an HTTP status of :data:`STATUS_FAULTS` (``"500"``, ``"503"``, ``"429"``, ``"408"``,
#:   ``"404"``, ...): that status with a short VOTable error body.  astroquery raises
#:   ``requests.exceptions.HTTPError`` (an ``OSError``) everywhere, with the message
#:   ``"Error <status>: <text of the error VOTable>"``, except for the async job creation
#:   where it is only the reason phrase (``"Internal Server Error"``).  For DataLink and
#:   the async phase/result requests it also *prints* ``"<status> Error <status>: ..."`` to
#:   stdout.  429 and 503 answers carry ``Retry-After: 1`` unless :meth:`ArchiveServer.fail`
#:   says otherwise (astroquery ignores it; its errors do not carry the status either).
#: * ``"drop"``: status line and headers with the full ``Content-Length``, then only
#:   ``after_bytes`` (default half) of the body, then the connection is closed (FIN).  A
#:   response without a body is dropped before the status line.  TAP sync/async results:
#:   ``http.client.IncompleteRead`` (*not* an ``OSError``).  DataLink: astroquery reads with
#:   ``read(8192)``, which in Python 3.11 returns ``b""`` silently at EOF, so the short zip is
#:   written to disk and ``zipfile.BadZipFile`` arrives.  Job creation (no body):
#:   ``http.client.RemoteDisconnected`` (a ``ConnectionResetError``).
#: * ``"truncated_zip"`` (DataLink only): a complete 200 response whose body is a zip cut
#:   short (``after_bytes`` or half): ``zipfile.BadZipFile``.
#: * ``"slow"``: the handler sleeps ``delay`` seconds before answering normally.  With
#:   astroquery's default connections (no timeout) the call just takes that long; with a
#:   socket timeout below ``delay`` (see :func:`gaia_client`) ``TimeoutError`` arrives after
#:   the timeout.
#: * ``"job_error"`` (``"async"`` only): the job is created but ends in phase ``ERROR``;
#:   ``/results/result`` answers 400 and astroquery raises ``requests.exceptions.HTTPError``
#:   from the result download.
#:
#: Faults of the static files only (``"files"``), for resumed downloads:
#:
#: * ``"bad_range"``: a ``Range: bytes=<start>-`` request is answered 206 from byte
#:   ``after_bytes`` (default ``start // 2``) with a ``Content-Range`` saying so;
#: * ``"416"``: 416 with ``Content-Range: bytes */<size>``, whatever the range asked;
#:   ``"416_bare"``: the same without ``Content-Range``;
#: * ``"gzip"``: the answer it would be (206 or 200) with its body gzip-compressed and
#:   ``Content-Encoding: gzip`` (``Content-Range``, if any, left as it was).
STATUS_FAULTS = frozenset({"400", "404", "408", "429", "500", "502", "503", "504"})
FILE_FAULTS = frozenset({"bad_range", "416", "416_bare", "gzip"})
FAULT_KINDS = STATUS_FAULTS | FILE_FAULTS | {"drop", "truncated_zip", "slow", "job_error"}
#: Statuses whose fault answer carries ``Retry-After: 1`` unless told otherwise.
RETRY_AFTER_STATUSES = frozenset({429, 503})

#: RVS mean-spectrum grid of DR3 (nm): 846-870 nm in 0.01 nm steps.
RVS_WAVELENGTH_NM = np.round(846.0 + 0.01 * np.arange(2401), 2)
#: The source of the XP template shipped in astroquery's wheel.
XP_TEMPLATE_ZIP = "gaia/tests/data/gaia_dr3_source_id_5937083312263887616_dl_products_vot.zip"
XP_TEMPLATE_MEMBER = "XP_CONTINUOUS-Gaia DR3 5937083312263887616.xml"
#: DataLink product names served, keyed by ``RETRIEVAL_TYPE``.
PRODUCTS = ("RVS", "XP_CONTINUOUS")
#: The solution id given to the synthetic RVS products (any 64-bit value will do).
RVS_SOLUTION_ID = 375316653866487564

#: Per-band XP fields (``bp_<name>`` / ``rp_<name>``), all NULL for a missing band.
_XP_BAND_FIELDS = (
    "basis_function_id",
    "degrees_of_freedom",
    "n_parameters",
    "n_measurements",
    "n_rejected_measurements",
    "standard_deviation",
    "chi_squared",
    "coefficients",
    "coefficient_errors",
    "coefficient_correlations",
    "n_relevant_bases",
    "relative_shrinking",
)


@dataclass
class RequestRecord:
    """One request the server received.

    ``endpoint`` is one of :data:`ENDPOINTS` or ``"async_job"``, ``"async_error"``,
    ``"notification"``, ``"unknown"``.  ``fault`` is the fault kind applied (``None`` for a
    normal answer).  ``status`` is the status sent (for ``"drop"`` the one announced).
    ``release``, ``data_structure``, ``format``: the DataLink request's fields;
    ``accept_encoding``: the request's ``Accept-Encoding`` header; ``time``: when it
    arrived (:func:`time.monotonic`, s).
    """

    method: str
    path: str
    endpoint: str
    status: int = 0
    fault: str | None = None
    retrieval_type: str | None = None
    ids: tuple[int, ...] = ()
    query: str | None = None
    job_id: str | None = None
    range: str | None = None
    release: str | None = None
    data_structure: str | None = None
    format: str | None = None
    accept_encoding: str | None = None
    body_bytes: int = 0
    time: float = field(default_factory=time.monotonic)


@dataclass
class Fault:
    """A queued fault: consumed by the next request to ``endpoint``."""

    endpoint: str
    kind: str
    after_bytes: int | None = None
    delay: float = 3.0
    retry_after: str | None = None


@dataclass
class _Job:
    """State of one async TAP job."""

    job_id: str
    query: str
    fmt: str
    maxrec: int | None
    phase: str
    polls_left: int
    error: str | None = None


@dataclass
class _Response:
    """A response before faults are applied."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# VOTable products
# --------------------------------------------------------------------------------------


#: BINARY2 encodings of the VOTable datatypes used here (big-endian).
_BINARY_DTYPES = {
    "boolean": "u1",
    "unsignedByte": "u1",
    "short": ">i2",
    "int": ">i4",
    "long": ">i8",
    "float": ">f4",
    "double": ">f8",
}
_VOTABLE_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xsi:schemaLocation="http://www.ivoa.net/xml/VOTable/v1.3 '
    'http://www.ivoa.net/xml/VOTable/v1.3" '
    'xmlns:spec="http://www.ivoa.net/xml/SpectrumModel/v1.01">\n'
)


def _stream(raw: bytes) -> bytes:
    """A base64 BINARY2 ``STREAM`` body (76-character lines)."""
    return base64.encodebytes(raw)


def rvs_votable_bytes(
    source_id: int,
    flux: np.ndarray,
    flux_error: np.ndarray,
    *,
    wavelength: np.ndarray | None = None,
) -> bytes:
    """The DR3 DataLink RVS mean spectrum of one source (``RVS-Gaia DR3 <id>.xml``).

    A BINARY2 VOTable with FIELDs ``wavelength`` (double, nm), ``flux`` and ``flux_error``
    (float; NaN, with the null flag set, where missing) and PARAMs ``source_id`` and
    ``solution_id`` (long).  Written with numpy (astropy's writer takes ~0.15 s a spectrum).
    """
    wl = RVS_WAVELENGTH_NM if wavelength is None else np.asarray(wavelength, dtype=np.float64)
    flux = np.asarray(flux, dtype=np.float32)
    flux_error = np.asarray(flux_error, dtype=np.float32)
    if flux.shape != wl.shape or flux_error.shape != wl.shape:
        raise ValueError(f"RVS spectrum of {source_id}: expected {wl.size} pixels")
    rows = np.zeros(
        wl.size,
        dtype=[("nulls", "u1"), ("wavelength", ">f8"), ("flux", ">f4"), ("flux_error", ">f4")],
    )
    rows["nulls"] = np.where(np.isnan(flux), 0x40, 0) | np.where(np.isnan(flux_error), 0x20, 0)
    rows["wavelength"] = wl
    rows["flux"] = flux
    rows["flux_error"] = flux_error
    head = (
        _VOTABLE_HEAD + '<RESOURCE type="results" utype="spec:Spectrum">\n<TABLE>\n'
        f'<PARAM datatype="long" name="source_id" ucd="meta.id;meta.main" value="{int(source_id)}">'
        "<DESCRIPTION>Unique source identifier (unique within a particular Data Release)"
        "</DESCRIPTION></PARAM>\n"
        f'<PARAM datatype="long" name="solution_id" ucd="meta.version" value="{RVS_SOLUTION_ID}">'
        "<DESCRIPTION>Solution Identifier</DESCRIPTION></PARAM>\n"
        '<FIELD datatype="double" name="wavelength" ucd="em.wl" unit="nm">'
        "<DESCRIPTION>Wavelength</DESCRIPTION></FIELD>\n"
        '<FIELD datatype="float" name="flux" ucd="phot.flux;em.wl">'
        "<DESCRIPTION>Normalised mean RVS spectrum flux</DESCRIPTION></FIELD>\n"
        '<FIELD datatype="float" name="flux_error" ucd="stat.error;phot.flux;em.wl">'
        "<DESCRIPTION>Uncertainty of the normalised flux</DESCRIPTION></FIELD>\n"
        "<DATA>\n<BINARY2>\n<STREAM encoding='base64'>\n"
    )
    tail = "</STREAM>\n</BINARY2>\n</DATA>\n</TABLE>\n</RESOURCE>\n</VOTABLE>\n"
    return head.encode() + _stream(rows.tobytes()) + tail.encode()


@dataclass(frozen=True)
class _XPTemplate:
    """The DR3 XP_CONTINUOUS file split around its BINARY2 stream, with its one row."""

    head: bytes
    tail: bytes
    fields: tuple[tuple[str, str, bool], ...]  # name, datatype, variable-length
    values: dict[str, Any]


@functools.cache
def _xp_template() -> _XPTemplate:
    import astroquery

    path = Path(astroquery.__file__).parent / XP_TEMPLATE_ZIP
    with zipfile.ZipFile(path) as zf:
        text = zf.read(XP_TEMPLATE_MEMBER)
    opening = text.index(b"<STREAM")
    opening = text.index(b">", opening) + 1
    closing = text.index(b"</STREAM>")
    element = votable.parse(io.BytesIO(text)).get_first_table()
    fields = tuple((f.name, f.datatype, f.arraysize == "*") for f in element.fields)
    row = element.array[0]
    values = {name: np.ma.getdata(row[name]) for name, _, _ in fields}
    return _XPTemplate(text[:opening] + b"\n", b"\n" + text[closing:], fields, values)


def _binary2_row(
    fields: Sequence[tuple[str, str, bool]], values: Mapping[str, Any], nulls: set[str]
) -> bytes:
    """One BINARY2 row: the null-flag bytes, then each field (arrays with an int32 length)."""
    flags = bytearray((len(fields) + 7) // 8)
    parts: list[bytes] = []
    for i, (name, datatype, variable) in enumerate(fields):
        dtype = _BINARY_DTYPES[datatype]
        null = name in nulls
        if null:
            flags[i // 8] |= 0x80 >> (i % 8)
        if variable:
            arr = np.asarray([] if null else values[name], dtype=dtype).ravel()
            parts.append(np.asarray(arr.size, dtype=">i4").tobytes() + arr.tobytes())
        else:
            filler = np.nan if datatype in ("float", "double") else 0
            parts.append(np.asarray(filler if null else values[name], dtype=dtype).tobytes())
    return bytes(flags) + b"".join(parts)


def xp_votable_bytes(
    source_id: int,
    bp: np.ndarray | None,
    rp: np.ndarray | None,
    errors: tuple[np.ndarray | None, np.ndarray | None] | None = None,
) -> bytes:
    """The DR3 DataLink XP_CONTINUOUS product of one source (``XP_CONTINUOUS-Gaia DR3 <id>.xml``).

    The real DR3 file in astroquery's wheel is the template: its XML header is kept
    verbatim (same FIELDs, datatypes and ``arraysize="*"``) and its BINARY2 row re-encoded
    with ``source_id``, ``bp_coefficients`` and ``rp_coefficients`` replaced, and
    ``bp_coefficient_errors`` and ``rp_coefficient_errors`` when ``errors`` gives them (the
    other values are the template's).  A missing band (``None``, as BP of DR3
    5405570973190252288) is written as the archive's NULLs: null (empty) coefficient, error
    and correlation arrays, null scalars, and ``<band>_n_parameters`` 0.

    (Re-writing with astropy would need care: astropy reads ``float`` variable-length arrays
    back as float64 and writes a cell in the cell's own dtype, so a parse/write round trip
    gives a corrupt stream that reads back as a table with no row, silently.)
    """
    template = _xp_template()
    values = dict(template.values)
    values["source_id"] = int(source_id)
    nulls: set[str] = set()
    for band, coefficients in (("bp", bp), ("rp", rp)):
        if coefficients is None:
            nulls |= {f"{band}_{name}" for name in _XP_BAND_FIELDS}
            nulls.discard(f"{band}_n_parameters")
            values[f"{band}_n_parameters"] = 0
        else:
            values[f"{band}_coefficients"] = np.asarray(coefficients, dtype=np.float64)
            values[f"{band}_n_parameters"] = np.size(coefficients)
            err = None if errors is None else errors[0 if band == "bp" else 1]
            if err is not None:
                values[f"{band}_coefficient_errors"] = np.asarray(err, dtype=np.float64)
    row = _binary2_row(template.fields, values, nulls)
    return template.head + _stream(row) + template.tail


def _serialise_table(table: Table, fmt: str) -> tuple[bytes, dict[str, str]]:
    """A query result in a TAP ``FORMAT``: body and headers, as the archive sends them."""
    fmt = fmt.lower()
    if fmt in ("votable", "votable_gzip", "votable_plain"):
        out = Table(table, copy=True, masked=False)
        for name in out.colnames:
            col = out[name]
            if col.dtype.kind in "US":
                values = col.filled("") if isinstance(col, MaskedColumn) else col
                out[name] = np.char.encode(np.asarray(values, dtype=str), "ascii")
        vot = votable.from_table(out)
        for fld in vot.get_first_table().fields:
            if fld.datatype == "char":
                fld.arraysize = "*"  # the archive's varchar columns
        vot.resources[0].type = "results"
        vot.resources[0].infos.append(Info(name="QUERY_STATUS", value="OK"))
        buf = io.BytesIO()
        vot.to_xml(buf, tabledata_format="tabledata" if fmt == "votable_plain" else "binary2")
        body = buf.getvalue()
        headers = {"Content-Type": "application/x-votable+xml"}
        if fmt == "votable_gzip":
            body = gzip.compress(body, mtime=0)
            headers["Content-Encoding"] = "gzip"
        return body, headers
    if fmt in ("csv", "ecsv"):
        buf = io.StringIO()
        table.write(buf, format="ascii.csv" if fmt == "csv" else "ascii.ecsv")
        body = buf.getvalue().encode()
        if fmt == "ecsv":
            body = gzip.compress(body, mtime=0)
        return body, {"Content-Type": "text/csv" if fmt == "csv" else "text/plain"}
    raise ValueError(f"FORMAT {fmt!r} is not served by the test archive")


def _error_votable(message: str) -> bytes:
    """A TAP error document; astroquery extracts ``message`` from its QUERY_STATUS INFO."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">\n'
        '<RESOURCE type="results">\n'
        f'<INFO name="QUERY_STATUS" value="ERROR">{escape(message)}</INFO>\n'
        "</RESOURCE>\n</VOTABLE>\n"
    ).encode()


def _error(status: int, message: str, retry_after: str | None = None) -> _Response:
    headers = {"Content-Type": "application/x-votable+xml"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return _Response(status, _error_votable(message), headers)


# --------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    """Handler threads are joined by ``server_close`` (``block_on_close``).  They are not
    daemons: socketserver tracks, and so joins, only non-daemon handler threads, and a
    daemon handler still finishing under load outlived ``close`` (the woken "slow" fault
    ends them promptly)."""

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, archive: ArchiveServer) -> None:
        self.archive = archive
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Keep handler errors (a client that went away) off stderr; keep them for debugging."""
        import sys

        self.archive.errors.append(repr(sys.exc_info()[1]))


class _Handler(BaseHTTPRequestHandler):
    """Routes to :class:`ArchiveServer`; one request per connection (HTTP/1.0)."""

    server: _HTTPServer
    protocol_version = "HTTP/1.0"
    timeout = 10  # socket timeout of the handler side: no thread outlives a silent client

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the access log."""

    def do_GET(self) -> None:
        self.server.archive._handle(self, "GET")

    def do_HEAD(self) -> None:
        self.server.archive._handle(self, "HEAD")

    def do_POST(self) -> None:
        self.server.archive._handle(self, "POST")

    def read_body(self) -> bytes:
        """The request body (``Content-Length`` bytes)."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send(self, response: _Response, *, method: str, cut: int | None = None) -> None:
        """Write ``response``; with ``cut``, only that many body bytes, then close."""
        try:
            if cut is not None and not response.body:
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.send_response(response.status)
            for key, value in response.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(response.body if cut is None else response.body[:cut])
            self.wfile.flush()
            if cut is not None:
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
        except OSError:
            # The client went away (e.g. it timed out on a "slow" fault).
            self.close_connection = True


def _form(body: bytes, query: str) -> dict[str, str]:
    """Form fields of a POST body and/or query string (last value wins; keys as sent)."""
    fields: dict[str, str] = {}
    for source in (query, body.decode("utf-8", errors="replace")):
        for key, value in urllib.parse.parse_qsl(source, keep_blank_values=True):
            fields[key] = value
    return fields


def _get(fields: Mapping[str, str], key: str, default: str | None = None) -> str | None:
    """A form field, case-insensitively (TAP parameter names are case-insensitive)."""
    for k, v in fields.items():
        if k.upper() == key.upper():
            return v
    return default


# --------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------


class ArchiveServer:
    """A fake ESA Gaia archive + file server on ``127.0.0.1`` for tests.

    Parameters
    ----------
    query_result
        The table answered to every TAP query (the server does not evaluate ADQL).
    rvs
        ``{source_id: (flux[2401], flux_error[2401])}``: sources with an RVS product.
    xp
        ``{source_id: (bp[55] or None, rp[55] or None)}``: sources with XP_CONTINUOUS.
    max_ids
        Most source ids in one DataLink request (the archive's 5 000); more -> 400.
    sync_row_limit
        Rows returned at most by a sync query (the archive's 2 000).
    executing_polls
        How many phase polls of each async job answer ``EXECUTING`` before ``COMPLETED``
        (astroquery sleeps 0.5 s between polls).
    files
        Initial static files, ``{name: path or bytes}`` (see :meth:`add_file`).
    wavelength
        RVS wavelength grid (nm); the DR3 grid by default.
    releases, data_structures
        DataLink ``RELEASE`` and ``DATA_STRUCTURE`` values served (others -> 400); the
        products are the same for all.
    """

    def __init__(
        self,
        query_result: Table | None = None,
        rvs: Mapping[int, tuple[np.ndarray, np.ndarray]] | None = None,
        xp: Mapping[int, tuple[np.ndarray | None, np.ndarray | None]] | None = None,
        *,
        xp_errors: Mapping[int, tuple[np.ndarray | None, np.ndarray | None]] | None = None,
        max_ids: int = 5000,
        sync_row_limit: int = 2000,
        executing_polls: int = 0,
        files: Mapping[str, str | Path | bytes] | None = None,
        wavelength: np.ndarray | None = None,
        releases: Sequence[str] = ("Gaia DR3",),
        data_structures: Sequence[str] = ("INDIVIDUAL",),
    ) -> None:
        self.query_result = query_result if query_result is not None else Table()
        self.rvs = {int(k): v for k, v in (rvs or {}).items()}
        self.xp = {int(k): v for k, v in (xp or {}).items()}
        self.xp_errors = {int(k): v for k, v in (xp_errors or {}).items()}
        self.max_ids = max_ids
        self.sync_row_limit = sync_row_limit
        self.executing_polls = executing_polls
        self.wavelength = wavelength
        self.releases = tuple(releases)
        self.data_structures = tuple(s.upper() for s in data_structures)
        self.requests: list[RequestRecord] = []
        self.queries: list[str] = []
        self.errors: list[str] = []
        self._files: dict[str, Path | bytes] = {}
        self._faults: list[Fault] = []
        self._jobs: dict[str, _Job] = {}
        self._products: dict[tuple[str, int], bytes] = {}
        self._results: dict[tuple[str, int | None], tuple[bytes, dict[str, str]]] = {}
        self._job_ids = itertools.count(int(time.time() * 1000))
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        for name, content in (files or {}).items():
            self.add_file(name, content)

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> ArchiveServer:
        """Bind a free port and serve in a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError("server already started")
        self._stop.clear()
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"ArchiveServer:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, wake sleeping ("slow") handlers, join every thread, free the port."""
        if self._httpd is None:
            return
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()  # joins the handler threads (block_on_close)
        if self._thread is not None:
            self._thread.join()
        self._httpd = None
        self._thread = None

    def __enter__(self) -> ArchiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The bound port."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    def file_url(self, name: str) -> str:
        """URL of a file registered with :meth:`add_file`."""
        return f"{self.url}{FILES_PREFIX}{urllib.parse.quote(name)}"

    # -- configuration --------------------------------------------------------------------

    def add_file(self, name: str, content: str | Path | bytes) -> str:
        """Serve ``content`` (a path, read at each request, or bytes) at ``/files/<name>``."""
        with self._lock:
            self._files[name] = content if isinstance(content, bytes) else Path(content)
        return f"{FILES_PREFIX}{name}"

    def fail(
        self,
        endpoint: str,
        kind: str,
        times: int = 1,
        *,
        after_bytes: int | None = None,
        delay: float = 3.0,
        retry_after: str | float | EllipsisType | None = ...,
    ) -> None:
        """Queue ``times`` faults of ``kind`` for the next requests to ``endpoint``.

        See :data:`ENDPOINTS` and :data:`FAULT_KINDS` (which also lists what astroquery
        raises for each).  ``after_bytes``: body bytes sent by ``"drop"`` / kept by
        ``"truncated_zip"`` (default half) / first byte sent by ``"bad_range"``; ``delay``:
        seconds slept by ``"slow"``; ``retry_after``: the ``Retry-After`` header of a status
        fault (``None``: none; default ``"1"`` for 429 and 503, none for the others).
        """
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint {endpoint!r} not in {sorted(ENDPOINTS)}")
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind {kind!r} not in {sorted(FAULT_KINDS)}")
        if kind == "truncated_zip" and endpoint != "datalink":
            raise ValueError("'truncated_zip' applies to the datalink endpoint only")
        if kind == "job_error" and endpoint != "async":
            raise ValueError("'job_error' applies to the async endpoint only")
        if kind in FILE_FAULTS and endpoint != "files":
            raise ValueError(f"{kind!r} applies to the files endpoint only")
        if retry_after is ...:
            retry_after = (
                "1" if kind in STATUS_FAULTS and int(kind) in RETRY_AFTER_STATUSES else None
            )
        header = None if retry_after is None else str(retry_after)
        with self._lock:
            for _ in range(times):
                self._faults.append(Fault(endpoint, kind, after_bytes, delay, header))

    def pending_faults(self) -> list[Fault]:
        """Faults not yet consumed."""
        with self._lock:
            return list(self._faults)

    def clear_log(self) -> None:
        """Forget recorded requests and queries (faults and jobs stay)."""
        with self._lock:
            self.requests.clear()
            self.queries.clear()

    # -- inspection -----------------------------------------------------------------------

    def requests_to(self, endpoint: str) -> list[RequestRecord]:
        """Recorded requests to one endpoint."""
        with self._lock:
            return [r for r in self.requests if r.endpoint == endpoint]

    def datalink_batches(self, retrieval_type: str) -> list[tuple[int, ...]]:
        """Id tuples of the DataLink requests of ``retrieval_type`` served successfully."""
        with self._lock:
            return [
                r.ids
                for r in self.requests
                if r.endpoint == "datalink"
                and r.retrieval_type == retrieval_type
                and r.status == HTTPStatus.OK
                and r.fault is None
            ]

    # -- request handling -----------------------------------------------------------------

    def _take_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.endpoint == endpoint:
                    return self._faults.pop(i)
        return None

    def _handle(self, handler: _Handler, method: str) -> None:
        parsed = urllib.parse.urlsplit(handler.path)
        path = urllib.parse.unquote(parsed.path)
        body = handler.read_body() if method == "POST" else b""
        record = RequestRecord(method=method, path=path, endpoint=self._endpoint(method, path))
        fault = self._take_fault(record.endpoint) if record.endpoint in ENDPOINTS else None
        # A failing job is created normally (303) and ends in phase ERROR later.
        job_fault = fault is not None and fault.kind == "job_error"
        if fault is not None:
            record.fault = fault.kind
        with self._lock:
            self.requests.append(record)
        self._describe(record, method, path, body, parsed.query, handler)
        if fault is not None and fault.kind in STATUS_FAULTS:
            status = int(fault.kind)
            response = _error(status, f"Test archive: injected HTTP {status}", fault.retry_after)
        elif fault is not None and fault.kind in FILE_FAULTS:
            response = self._file(path[len(FILES_PREFIX) :], handler, fault)
        else:
            response = self._route(record, method, path, body, parsed.query, handler, job_fault)
        record.status = response.status
        cut: int | None = None
        if fault is not None and fault.kind == "slow":
            self._stop.wait(fault.delay)
        elif fault is not None and fault.kind == "drop":
            cut = fault.after_bytes if fault.after_bytes is not None else len(response.body) // 2
        elif fault is not None and fault.kind == "truncated_zip":
            keep = fault.after_bytes if fault.after_bytes is not None else len(response.body) // 2
            response.body = response.body[:keep]
        record.body_bytes = len(response.body) if cut is None else min(cut, len(response.body))
        handler.send(response, method=method, cut=cut)

    @staticmethod
    def _endpoint(method: str, path: str) -> str:
        if path == f"{TAP_PREFIX}/sync":
            return "sync"
        if path == f"{TAP_PREFIX}/async":
            return "async" if method == "POST" else "async_list"
        if path.startswith(f"{TAP_PREFIX}/async/"):
            rest = path[len(f"{TAP_PREFIX}/async/") :].split("/")
            if len(rest) == 1:
                return "async_job"
            if rest[1:] == ["phase"]:
                return "async_phase"
            if rest[1:] == ["results", "result"]:
                return "async_result"
            if rest[1:] == ["error"]:
                return "async_error"
            return "unknown"
        if path == f"{TAP_PREFIX}/notification":
            return "notification"
        if path == DATALINK_PATH:
            return "datalink"
        if path.startswith(FILES_PREFIX):
            return "files"
        return "unknown"

    def _describe(
        self,
        record: RequestRecord,
        method: str,
        path: str,
        body: bytes,
        query: str,
        handler: _Handler,
    ) -> None:
        """Fill the record's request details (query, retrieval type and ids, range, job)."""
        fields = _form(body, query)
        if record.endpoint in ("sync", "async"):
            record.query = _get(fields, "QUERY")
            if record.query is not None:
                with self._lock:
                    self.queries.append(record.query)
        elif record.endpoint == "datalink":
            record.retrieval_type = _get(fields, "RETRIEVAL_TYPE")
            record.release = _get(fields, "RELEASE")
            record.data_structure = _get(fields, "DATA_STRUCTURE")
            record.format = _get(fields, "FORMAT")
            with contextlib.suppress(ValueError):
                record.ids = self._parse_ids(_get(fields, "ID") or "")
        elif record.endpoint == "files":
            record.range = handler.headers.get("Range")
            record.accept_encoding = handler.headers.get("Accept-Encoding")
        elif record.endpoint.startswith("async_"):
            record.job_id = path[len(f"{TAP_PREFIX}/async/") :].split("/")[0]

    def _route(
        self,
        record: RequestRecord,
        method: str,
        path: str,
        body: bytes,
        query: str,
        handler: _Handler,
        job_fault: bool,
    ) -> _Response:
        fields = _form(body, query)
        endpoint = record.endpoint
        try:
            if endpoint == "sync":
                return self._sync(fields)
            if endpoint == "async":
                return self._async_create(record, fields, job_fault)
            if endpoint in ("async_job", "async_phase", "async_result", "async_error"):
                return self._async_job(record, method, fields)
            if endpoint == "notification":
                return _Response(HTTPStatus.OK, b"", {"Content-Type": "text/plain"})
            if endpoint == "datalink" and method == "POST":
                return self._datalink(record, fields)
            if endpoint == "files" and method in ("GET", "HEAD"):
                return self._file(path[len(FILES_PREFIX) :], handler)
        except _BadRequest as err:
            return _error(err.status, str(err))
        return _error(HTTPStatus.NOT_FOUND, f"Test archive: no resource {method} {path}")

    # -- TAP --------------------------------------------------------------------------------

    def _result(self, fmt: str, rows: int | None) -> tuple[bytes, dict[str, str]]:
        key = (fmt.lower(), rows)
        with self._lock:
            cached = self._results.get(key)
        if cached is None:
            table = self.query_result if rows is None else self.query_result[:rows]
            try:
                cached = _serialise_table(table, fmt)
            except ValueError as err:
                raise _BadRequest(str(err)) from err
            with self._lock:
                self._results[key] = cached
        return cached

    @staticmethod
    def _maxrec(fields: Mapping[str, str]) -> int | None:
        value = _get(fields, "MAXREC")
        if value is None or value == "":
            return None
        try:
            return int(value)
        except ValueError as err:
            raise _BadRequest(f"MAXREC {value!r} is not an integer") from err

    def _check_query(self, fields: Mapping[str, str]) -> str:
        query = _get(fields, "QUERY")
        if not query:
            raise _BadRequest("Missing QUERY")
        lang = _get(fields, "LANG", "ADQL") or "ADQL"
        if lang.upper() != "ADQL":
            raise _BadRequest(f"LANG {lang!r} not supported")
        return query

    def _sync(self, fields: Mapping[str, str]) -> _Response:
        self._check_query(fields)
        maxrec = self._maxrec(fields)
        limit = self.sync_row_limit if maxrec is None else min(maxrec, self.sync_row_limit)
        rows = None if limit >= len(self.query_result) else limit
        body, headers = self._result(_get(fields, "FORMAT", "votable") or "votable", rows)
        return _Response(HTTPStatus.OK, body, dict(headers))

    def _async_create(
        self, record: RequestRecord, fields: Mapping[str, str], job_fault: bool
    ) -> _Response:
        query = self._check_query(fields)
        fmt = _get(fields, "FORMAT", "votable") or "votable"
        self._result(fmt, None)  # reject an unknown FORMAT now, as the archive does
        job_id = f"{next(self._job_ids)}O"
        run = (_get(fields, "PHASE") or "").upper() == "RUN"
        job = _Job(
            job_id=job_id,
            query=query,
            fmt=fmt,
            maxrec=self._maxrec(fields),
            phase="QUEUED" if run else "PENDING",
            polls_left=self.executing_polls,
            error="Test archive: injected job error" if job_fault else None,
        )
        with self._lock:
            self._jobs[job_id] = job
        record.job_id = job_id
        return _Response(
            HTTPStatus.SEE_OTHER,
            b"",
            {"Location": f"{self.url}{TAP_PREFIX}/async/{job_id}"},
        )

    def _advance(self, job: _Job) -> None:
        """Move a started job along: EXECUTING for ``executing_polls`` polls, then done."""
        if job.phase in ("QUEUED", "EXECUTING"):
            if job.polls_left > 0:
                job.polls_left -= 1
                job.phase = "EXECUTING"
            else:
                job.phase = "ERROR" if job.error else "COMPLETED"

    def _async_job(
        self, record: RequestRecord, method: str, fields: Mapping[str, str]
    ) -> _Response:
        with self._lock:
            job = self._jobs.get(record.job_id or "")
        if job is None:
            raise _BadRequest(f"Job {record.job_id} not found", HTTPStatus.NOT_FOUND)
        job_url = f"{self.url}{TAP_PREFIX}/async/{job.job_id}"
        if method == "POST" and record.endpoint in ("async_job", "async_phase"):
            phase = (_get(fields, "PHASE") or "").upper()
            action = (_get(fields, "ACTION") or "").upper()
            with self._lock:
                if phase == "RUN" and job.phase == "PENDING":
                    job.phase = "QUEUED"
                elif phase == "ABORT":
                    job.phase = "ABORTED"
                elif action == "DELETE":
                    self._jobs.pop(job.job_id, None)
            return _Response(HTTPStatus.SEE_OTHER, b"", {"Location": job_url})
        if record.endpoint == "async_phase":
            with self._lock:
                self._advance(job)
                phase = job.phase
            return _Response(HTTPStatus.OK, phase.encode(), {"Content-Type": "text/plain"})
        if record.endpoint == "async_result":
            if job.phase == "ERROR":
                return _error(HTTPStatus.BAD_REQUEST, job.error or "job failed")
            if job.phase != "COMPLETED":
                raise _BadRequest(f"Job {job.job_id} is {job.phase}: no result yet")
            body, headers = self._result(job.fmt, job.maxrec)
            return _Response(HTTPStatus.OK, body, dict(headers))
        if record.endpoint == "async_error":
            return _Response(
                HTTPStatus.OK, _error_votable(job.error or ""), {"Content-Type": "text/xml"}
            )
        return _Response(
            HTTPStatus.OK, self._job_document(job, job_url), {"Content-Type": "text/xml"}
        )

    def _job_document(self, job: _Job, job_url: str) -> bytes:
        """A UWS 1.0 job document (astroquery's ``load_async_job`` parses it)."""
        rows = (
            len(self.query_result)
            if job.maxrec is None
            else min(job.maxrec, len(self.query_result))
        )
        result = (
            f'<uws:result id="result" xlink:href="{escape(job_url)}/results/result" rows="{rows}"/>'
            if job.phase == "COMPLETED"
            else ""
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<uws:job xmlns:uws="http://www.ivoa.net/xml/UWS/v1.0" '
            'xmlns:xlink="http://www.w3.org/1999/xlink">\n'
            f"<uws:jobId>{job.job_id}</uws:jobId>\n<uws:runId/>\n"
            "<uws:ownerId>anonymous</uws:ownerId>\n"
            f"<uws:phase>{job.phase}</uws:phase>\n<uws:quote>-1</uws:quote>\n"
            "<uws:parameters>\n"
            f'<uws:parameter id="query">{escape(job.query)}</uws:parameter>\n'
            f'<uws:parameter id="format">{escape(job.fmt)}</uws:parameter>\n'
            "</uws:parameters>\n"
            f"<uws:results>{result}</uws:results>\n</uws:job>\n"
        ).encode()

    # -- DataLink ---------------------------------------------------------------------------

    @staticmethod
    def _parse_ids(text: str) -> tuple[int, ...]:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        try:
            return tuple(int(p) for p in parts)
        except ValueError as err:
            raise _BadRequest(f"Invalid ID list: {err}") from err

    def _product(self, retrieval_type: str, source_id: int) -> bytes | None:
        key = (retrieval_type, source_id)
        with self._lock:
            cached = self._products.get(key)
        if cached is not None:
            return cached
        if retrieval_type == "RVS":
            if source_id not in self.rvs:
                return None
            flux, flux_error = self.rvs[source_id]
            data = rvs_votable_bytes(source_id, flux, flux_error, wavelength=self.wavelength)
        else:
            if source_id not in self.xp:
                return None
            bp, rp = self.xp[source_id]
            data = xp_votable_bytes(source_id, bp, rp, self.xp_errors.get(source_id))
        with self._lock:
            self._products[key] = data
        return data

    def _datalink(self, record: RequestRecord, fields: Mapping[str, str]) -> _Response:
        retrieval_type = (_get(fields, "RETRIEVAL_TYPE") or "").upper()
        fmt = (_get(fields, "FORMAT") or "").lower()
        structure = (_get(fields, "DATA_STRUCTURE") or "").upper()
        release = _get(fields, "RELEASE")
        if retrieval_type not in PRODUCTS:
            raise _BadRequest(
                f"RETRIEVAL_TYPE {retrieval_type!r} not served by the test archive "
                f"(only {', '.join(PRODUCTS)})"
            )
        if fmt != "votable":
            raise _BadRequest(f"FORMAT {fmt!r} not served by the test archive (only votable)")
        if structure not in self.data_structures:
            raise _BadRequest(
                f"DATA_STRUCTURE {structure!r} not served by the test archive "
                f"(only {', '.join(self.data_structures)})"
            )
        if release is not None and release not in self.releases:
            raise _BadRequest(f"RELEASE {release!r} not served by the test archive")
        ids = self._parse_ids(_get(fields, "ID") or "")
        record.ids = ids
        if not ids:
            raise _BadRequest("Missing ID")
        if len(ids) > self.max_ids:
            raise _BadRequest(
                f"Too many source ids: {len(ids)} requested, the maximum is {self.max_ids}"
            )
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for source_id in dict.fromkeys(ids):
                data = self._product(retrieval_type, source_id)
                if data is not None:
                    zf.writestr(f"{retrieval_type}-Gaia DR3 {source_id}.xml", data)
        return _Response(
            HTTPStatus.OK,
            buf.getvalue(),
            {
                "Content-Type": "application/zip",
                "Content-Disposition": 'attachment;filename="datalink.zip"',
            },
        )

    # -- static files -----------------------------------------------------------------------

    def _file(self, name: str, handler: _Handler, fault: Fault | None = None) -> _Response:
        """A static file, whole or the range asked, or its answer under a file ``fault``."""
        with self._lock:
            content = self._files.get(name)
        if content is None:
            return _error(HTTPStatus.NOT_FOUND, f"No file {name!r}")
        data = content if isinstance(content, bytes) else content.read_bytes()
        size = len(data)
        etag = '"' + hashlib.sha1(data).hexdigest() + '"'
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "ETag": etag,
        }
        kind = None if fault is None else fault.kind
        range_header = handler.headers.get("Range")
        if_range = handler.headers.get("If-Range")
        if kind in ("416", "416_bare"):
            if kind == "416":
                headers["Content-Range"] = f"bytes */{size}"
            return _Response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, b"", headers)
        response = _Response(HTTPStatus.OK, data, headers)
        if range_header and (if_range is None or if_range == etag):
            span = _parse_range(range_header, size)
            if span is None:
                headers["Content-Range"] = f"bytes */{size}"
                return _Response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, b"", headers)
            start, end = span
            if kind == "bad_range":
                start = start // 2 if fault.after_bytes is None else fault.after_bytes
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            response = _Response(HTTPStatus.PARTIAL_CONTENT, data[start : end + 1], headers)
        if kind == "gzip":
            response.body = gzip.compress(response.body, mtime=0)
            headers["Content-Encoding"] = "gzip"
        return response


class _BadRequest(Exception):
    """A request the test archive refuses (answered with ``status`` and the message)."""

    def __init__(self, message: str, status: int = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (inclusive) of a single ``bytes=`` range; ``None`` if unsatisfiable.

    Multiple ranges are answered with the first one only (enough for resumable downloads).
    """
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    first = spec.split(",")[0].strip()
    start_text, _, end_text = first.partition("-")
    try:
        if start_text == "":  # suffix range: the last N bytes
            n = int(end_text)
            return (max(size - n, 0), size - 1) if n > 0 and size > 0 else None
        start = int(start_text)
        end = int(end_text) if end_text else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return None
    return start, min(end, size - 1)


# --------------------------------------------------------------------------------------
# astroquery clients
# --------------------------------------------------------------------------------------


def import_gaia_class(timeout: float = 5.0) -> type:
    """``astroquery.gaia.GaiaClass``, imported without hanging or printing.

    ``import astroquery.gaia`` builds a default client that asks ``gea.esac.esa.int`` for
    status messages with no timeout (offline it prints "Status messages could not be
    retrieved" and carries on; DNS fails fast here, ~2 s for the whole import).  The
    socket default timeout is lowered during the import, so a network that silently drops
    packets costs ``timeout`` seconds, not the OS connect timeout, and stdout is muted.
    """
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from astroquery.gaia import GaiaClass
    finally:
        socket.setdefaulttimeout(previous)
    return GaiaClass


def gaia_client(base_url: str, *, timeout: float | None = None) -> Any:
    """A real ``GaiaClass`` on ``base_url`` (``http://host:port``), optionally with a timeout.

    ``GaiaClass``/``TapPlus`` take no timeout: their ``ConnectionHandler`` opens
    ``http.client.HTTPConnection(host, port)``, i.e. :func:`socket.getdefaulttimeout`.  The
    public hooks are ``tap_plus_conn_handler`` (a ``TapConn``) and ``datalink_handler`` (a
    ``TapPlus``); here both get a ``TapConn`` whose connection handler passes ``timeout``,
    which then bounds the connect and *each* socket read (not the whole transfer).
    """
    gaia_class = import_gaia_class()
    if timeout is None:
        return gaia_class(
            gaia_tap_server=base_url + "/",
            gaia_data_server=base_url + "/",
            show_server_messages=False,
        )
    from astroquery.utils.tap.conn.tapconn import ConnectionHandler, TapConn
    from astroquery.utils.tap.core import TapPlus

    parsed = urllib.parse.urlsplit(base_url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80

    class TimeoutConnectionHandler(ConnectionHandler):
        """``ConnectionHandler`` whose connections time out."""

        def get_connection(
            self, *, ishttps: bool = False, cookie: str | None = None, verbose: bool = False
        ) -> http.client.HTTPConnection:
            if ishttps or cookie is not None:
                return self.get_connection_secure(verbose)
            return http.client.HTTPConnection(host, port, timeout=timeout)

        def get_connection_secure(self, verbose: bool) -> http.client.HTTPConnection:
            return http.client.HTTPSConnection(host, port, timeout=timeout)

    def conn(server_context: str) -> Any:
        return TapConn(
            False,
            host,
            server_context=server_context,
            tap_context="tap",
            upload_context="Upload",
            table_edit_context="TableTool",
            data_context="data",
            datalink_context="datalink",
            port=port,
            connhandler=TimeoutConnectionHandler(host, port, port),
        )

    data = TapPlus(
        url=base_url + "/",
        server_context="data-server",
        tap_context="tap",
        upload_context="Upload",
        table_edit_context="TableTool",
        data_context="data",
        datalink_context="datalink",
        connhandler=conn("data-server"),
        use_names_over_ids=True,
    )
    return gaia_class(
        tap_plus_conn_handler=conn("tap-server"),
        datalink_handler=data,
        gaia_tap_server=base_url + "/",
        gaia_data_server=base_url + "/",
        show_server_messages=False,
    )


def product_tables(
    files: Mapping[str, Sequence[Any]], retrieval_type: str
) -> Iterator[tuple[int, Any]]:
    """``(source_id, TableElement)`` pairs of a ``load_data`` answer, from the file names."""
    prefix = f"{retrieval_type}-Gaia DR3 "
    for key, tables in files.items():
        if key.startswith(prefix) and key.endswith(".xml"):
            yield int(key[len(prefix) : -len(".xml")]), tables[0]


def ids_in(batches: Iterable[tuple[int, ...]]) -> list[int]:
    """All ids of a list of DataLink batches, in order."""
    return [i for batch in batches for i in batch]
