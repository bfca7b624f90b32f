"""HTTP for the archive rules: one retry policy for every request, astroquery's connections
with a timeout and a record of their answers, and resumable, verified file downloads.

* :class:`RetryPolicy` retries a whole request with `tenacity` on HTTP 408, 429, 500, 502,
  503, 504 and on dropped, refused or timed-out connections (:func:`is_retryable`), never on
  another 4xx.  The wait before retry *k* is ``backoff_s * 2**(k-1)`` plus a random
  0..``backoff_s`` (jitter), and at least the server's ``Retry-After``; no retry starts
  once the next one would begin more than ``total_s`` after the first attempt.  Each retry
  is logged (the status or error, the wait).
* astroquery 0.4.11 (``GaiaClass``, ``TapPlus``) sends its requests through its own
  ``TapConn`` over :mod:`http.client`, not through a `requests` session, so there is no
  session to mount an ``HTTPAdapter`` (urllib3 ``Retry``) on.  Its public hooks are the
  ``TapConn`` and its ``ConnectionHandler``: :func:`astroquery_conn` builds one whose
  connections time out and record each answer's status and ``Retry-After``
  (:class:`AnswerLog`), which astroquery's exceptions do not carry.
* :func:`download_file` fetches a file with `requests` into ``<file>.part``, resuming it
  with ``Range`` only when the answer proves it continues at the right byte, and checks
  size and SHA-1 before the file is renamed into place.

Retries wrap whole attempts (not urllib3's ``Retry`` on the transport): a connection that
drops in the middle of a body must be resumed from the part file's size, and an astroquery
call (an async job, a zip) fails in ways a transport-level retry cannot see.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import logging
import os
import re
import time
import urllib.parse
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal, TypeVar

import requests
import tenacity

from gaiacnn.io import publish

log = logging.getLogger(__name__)

T = TypeVar("T")

#: HTTP statuses worth a retry (request timeout, too many requests, server errors that
#: pass); every other 4xx or 5xx is final.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class ArchiveError(RuntimeError):
    """A request that failed for good (after its retries), or an answer we cannot use."""


class HTTPStatusError(Exception):
    """An answer with an error status: ``status``, its reason phrase, the server's
    ``Retry-After`` [s] (None if absent) and the text of the answer or of the client's
    error (``detail``)."""

    def __init__(
        self, status: int, reason: str = "", retry_after_s: float | None = None, detail: str = ""
    ) -> None:
        self.status = int(status)
        self.reason = reason or _phrase(status)
        self.retry_after_s = retry_after_s
        self.detail = detail
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"HTTP {self.status} {self.reason}".rstrip()
        return f"{text}: {self.detail}" if self.detail and self.detail != self.reason else text


class DroppedConnection(ConnectionError):
    """An answer that ended before the size it announced (the connection was dropped)."""


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now (>= 0): delay-seconds or an HTTP-date; None if
    absent or unreadable.  ``now``: the current time (s since the epoch; default: now)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def is_retryable(exc: BaseException) -> bool:
    """True for failures worth a retry: an HTTP status of :data:`RETRY_STATUSES`, a
    refused, reset, dropped or timed-out connection, a body cut short (an incomplete read,
    a broken zip).  False for any other HTTP status and for everything else (a bug, a full
    disk, :class:`ArchiveError`)."""
    if isinstance(exc, HTTPStatusError):
        return exc.status in RETRY_STATUSES
    if isinstance(exc, ArchiveError):
        return False
    return isinstance(
        exc,
        (
            TimeoutError,
            ConnectionError,  # refused, reset, aborted; DroppedConnection; RemoteDisconnected
            http.client.IncompleteRead,
            http.client.BadStatusLine,
            zipfile.BadZipFile,  # astroquery writes a dropped DataLink body, then unzips it
            EOFError,
            requests.exceptions.ConnectionError,  # includes read timeouts while streaming
            requests.exceptions.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ),
    )


def describe(exc: BaseException) -> str:
    """One line for the log: ``HTTP <status> <reason>[: detail]`` or ``<Type>: <message>``."""
    if isinstance(exc, HTTPStatusError):
        return " ".join(str(exc).split())
    return " ".join(f"{type(exc).__name__}: {exc}".split()).rstrip(":")


# --------------------------------------------------------------------------- the policy
@dataclass(frozen=True)
class RetryPolicy:
    """How a request is retried (see the module docstring).

    ``retries``: retries after the first attempt; ``backoff_s``: the first wait [s], doubled
    at each next retry, plus up to as much again at random; ``total_s``: no retry (nor its
    wait) starts that would begin more than this many seconds after the first attempt began.
    A running attempt is never cut short (``timeout_s`` bounds its silences)."""

    retries: int = 5
    backoff_s: float = 10.0
    total_s: float = 1800.0

    @classmethod
    def from_config(cls, cfg: Any) -> RetryPolicy:
        """From a config section with ``retries``, ``backoff_s`` and ``retry_total_s``."""
        return cls(int(cfg["retries"]), float(cfg["backoff_s"]), float(cfg["retry_total_s"]))

    def call(
        self, fn: Callable[[], T], *, what: str, sleep: Callable[[float], None] = time.sleep
    ) -> T:
        """``fn()``, retried on :func:`is_retryable` failures.  Raises
        :class:`ArchiveError` naming ``what`` when it gives up, or at once for an HTTP status
        that is not retried (or any `requests` error that is not); other exceptions (an
        :class:`ArchiveError` of ``fn``, a bug) pass unchanged."""
        by_attempts = tenacity.stop_after_attempt(self.retries + 1)
        by_time = tenacity.stop_before_delay(self.total_s)
        backoff = tenacity.wait_exponential_jitter(
            multiplier=self.backoff_s, jitter=self.backoff_s, max=self.total_s
        )
        stopped: list[str] = []

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            retry_after = exc.retry_after_s if isinstance(exc, HTTPStatusError) else None
            return max(backoff(state), retry_after or 0.0)

        def stop(state: tenacity.RetryCallState) -> bool:
            if by_attempts(state):
                stopped.append(f"failed after {state.attempt_number} attempt(s)")
            elif by_time(state):
                stopped.append(
                    f"failed after {state.attempt_number} attempt(s) in "
                    f"{state.seconds_since_start or 0:.1f} s: the next wait of "
                    f"{state.upcoming_sleep:.1f} s would pass the bound of {self.total_s:g} s "
                    "(retry_total_s)"
                )
            return bool(stopped)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "%s: %s; retry %d of %d in %.1f s",
                what,
                describe(exc) if exc else "?",
                state.attempt_number,
                self.retries,
                state.upcoming_sleep,
            )

        retrying = tenacity.Retrying(
            stop=stop,
            wait=wait,
            retry=tenacity.retry_if_exception(is_retryable),
            before_sleep=before_sleep,
            sleep=sleep,
            reraise=True,
        )
        try:
            return retrying(fn)
        except Exception as exc:
            if is_retryable(exc):
                why = stopped[-1] if stopped else "failed"
                raise ArchiveError(f"{what}: {why}, last: {describe(exc)}") from exc
            if isinstance(exc, HTTPStatusError):
                raise ArchiveError(
                    f"{what}: {describe(exc)} (not retried: only HTTP "
                    f"{', '.join(map(str, sorted(RETRY_STATUSES)))} are)"
                ) from exc
            if isinstance(exc, requests.exceptions.RequestException):
                raise ArchiveError(f"{what}: {describe(exc)}") from exc
            raise


# --------------------------------------------------------------------------- astroquery
@dataclass(frozen=True)
class Answer:
    """Status line and ``Retry-After`` [s] of one HTTP answer."""

    status: int
    reason: str
    retry_after_s: float | None


class AnswerLog:
    """The last answer the connections of :func:`astroquery_conn` received."""

    def __init__(self) -> None:
        self.last: Answer | None = None

    def clear(self) -> None:
        """Forget the last answer (before a new call)."""
        self.last = None

    def status_error(self, exc: BaseException) -> HTTPStatusError | None:
        """astroquery raises ``requests.exceptions.HTTPError`` with a text only, right after
        the answer it refuses: that answer's status as :class:`HTTPStatusError` (None if the
        last answer was no error, so the exception is about something else)."""
        answer = self.last
        if answer is None or answer.status < 400:
            return None
        detail = " ".join(str(exc).split())
        return HTTPStatusError(answer.status, answer.reason, answer.retry_after_s, detail)


def astroquery_conn(url: str, server_context: str, *, timeout_s: float, answers: AnswerLog):
    """An astroquery ``TapConn`` for the server at ``url`` (``http(s)://host[:port]/``) and
    ``server_context`` (``tap-server``, ``data-server``), with the contexts ``GaiaClass``
    uses, whose connections time out after ``timeout_s`` seconds of silence (connect and
    each read) and record every answer in ``answers``."""
    import astroquery.utils.tap.conn.tapconn as tapconn

    parts = urllib.parse.urlsplit(url)
    https = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if https else 80)

    def record(response: http.client.HTTPResponse) -> None:
        retry_after = parse_retry_after(response.getheader("Retry-After"))
        answers.last = Answer(response.status, response.reason, retry_after)

    class Recording(http.client.HTTPConnection):
        def getresponse(self) -> http.client.HTTPResponse:
            response = super().getresponse()
            record(response)
            return response

    class RecordingSecure(http.client.HTTPSConnection):
        def getresponse(self) -> http.client.HTTPResponse:
            response = super().getresponse()
            record(response)
            return response

    class Handler(tapconn.ConnectionHandler):
        """astroquery's connection factory, with a timeout and a record of the answers."""

        def get_connection(self, *, ishttps=False, cookie=None, verbose=False):
            if ishttps or cookie is not None:
                return self.get_connection_secure(verbose)
            return Recording(host, port, timeout=timeout_s)

        def get_connection_secure(self, verbose):
            return RecordingSecure(host, port, timeout=timeout_s)

    return tapconn.TapConn(
        https,
        host,
        server_context=server_context,
        tap_context="tap",
        upload_context="Upload",
        table_edit_context="TableTool",
        data_context="data",
        datalink_context="datalink",
        port=port,
        sslport=port,
        connhandler=Handler(host, port, port),
    )


# --------------------------------------------------------------------------- file download
def sha1_of(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """SHA-1 hex digest of a file, read in ``chunk``-byte blocks."""
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*$", re.IGNORECASE)


def content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """``(first, last, full)`` [bytes] of a ``Content-Range`` (``bytes 100-199/1000``,
    ``bytes */1000``); None for what it does not say or when it is absent or malformed."""
    match = _CONTENT_RANGE.match(value or "")
    if not match:
        return None, None, None
    first, last, full = match.groups()
    return (
        None if first is None else int(first),
        None if last is None else int(last),
        None if full == "*" else int(full),
    )


def _encoded(resp: requests.Response) -> bool:
    """True when the body is content-encoded (gzip, ...): its bytes are not the file's."""
    return resp.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity")


def _full_size_by_head(session: requests.Session, url: str, timeout_s: float) -> int | None:
    """The file's size [bytes] from a HEAD request, None if the server does not say."""
    try:
        head = session.head(url, timeout=timeout_s, allow_redirects=True)
    except requests.exceptions.RequestException as exc:
        log.warning("%s: HEAD failed (%s)", url, describe(exc))
        return None
    length = head.headers.get("Content-Length")
    if head.status_code != 200 or _encoded(head) or length is None or not length.isdigit():
        return None
    return int(length)


def _raise_for_status(resp: requests.Response) -> None:
    if resp.status_code >= 400:
        raise HTTPStatusError(
            resp.status_code,
            resp.reason or "",
            parse_retry_after(resp.headers.get("Retry-After")),
        )


def _resume_or_restart(
    session: requests.Session, url: str, resp: requests.Response, start: int, timeout_s: float
) -> tuple[Literal["complete", "append", "whole", "restart", "status"], int | None]:
    """What the answer to ``Range: bytes=<start>-`` allows: ``("complete", full)`` (a 416
    and the part file already has the server's full size), ``("append", full)`` (a 206
    that starts at ``start``), ``("whole", None)`` (a 200: the whole file, from byte 0),
    ``("restart", None)`` (anything that does not prove the part file continues: ask again
    without ``Range``) or ``("status", None)`` (an error status, for the caller)."""
    status = resp.status_code
    if status == 416:
        full = content_range(resp.headers.get("Content-Range"))[2]
        if full is None:
            full = _full_size_by_head(session, url, timeout_s)
        if full == start:
            return "complete", full
        log.warning(
            "%s: HTTP 416 for bytes %d- but the file has %s bytes: starting over",
            url,
            start,
            "an unknown number of" if full is None else full,
        )
        return "restart", None
    if status == 206:
        first, _, full = content_range(resp.headers.get("Content-Range"))
        if _encoded(resp):
            log.warning(
                "%s: a Content-Encoding %s answer to a range request cannot be appended: "
                "starting over without Range",
                url,
                resp.headers.get("Content-Encoding"),
            )
            return "restart", None
        if first != start:
            log.warning(
                "%s: asked for bytes %d-, got Content-Range %r: starting over",
                url,
                start,
                resp.headers.get("Content-Range"),
            )
            return "restart", None
        return "append", full
    if status == 200:
        log.warning("%s: the server ignored Range: downloading from the start", url)
        return "whole", None
    return "status", None


def _fetch_once(
    session: requests.Session,
    url: str,
    part: Path,
    *,
    timeout_s: float,
    chunk: int,
    progress: bool,
) -> int | None:
    """One attempt: continue ``part`` (or start it), and return the file's full size in
    bytes as the server announced it (None if it did not).  Raises
    :class:`DroppedConnection` when the answer ends early (the bytes stay in ``part``),
    :class:`HTTPStatusError` for an error status."""
    from tqdm.auto import tqdm

    start = _size(part)
    headers = {"Range": f"bytes={start}-"} if start else {}
    resp = session.get(url, headers=headers, stream=True, timeout=timeout_s)
    try:
        full: int | None = None
        if start:
            verdict, full = _resume_or_restart(session, url, resp, start, timeout_s)
            if verdict == "complete":
                return full
            if verdict == "restart":
                resp.close()
                part.unlink(missing_ok=True)  # its bytes are not known to match the file
                start = 0
                resp = session.get(url, stream=True, timeout=timeout_s)
            elif verdict == "whole":
                start = 0
        _raise_for_status(resp)
        if resp.status_code != (206 if start else 200):
            raise ArchiveError(f"{url}: unexpected HTTP {resp.status_code} {resp.reason}")
        if start == 0 and not _encoded(resp):
            length = resp.headers.get("Content-Length")
            full = int(length) if length is not None and length.isdigit() else None
        with (
            open(part, "ab" if start else "wb") as fh,
            tqdm(
                total=full,
                initial=start,
                unit="B",
                unit_scale=True,
                desc=part.name.removesuffix(".part"),
                disable=not progress,
            ) as bar,
        ):
            for block in resp.iter_content(chunk):  # decodes a gzip answer to a full request
                fh.write(block)
                bar.update(len(block))
    finally:
        resp.close()
    got = _size(part)
    if full is not None and got < full:
        raise DroppedConnection(f"the answer stopped at byte {got} of {full}")
    return full


def download_file(
    url: str,
    out_path: str | os.PathLike,
    *,
    sha1: str = "",
    policy: RetryPolicy | None = None,
    timeout_s: float = 600.0,
    chunk: int = 1 << 16,
    progress: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Download ``url`` to ``out_path`` and return its size [bytes].

    The bytes go to ``<out_path>.part``.  A later attempt (a retry of ``policy``, or a
    later call after a killed job) asks for the rest with ``Range`` and appends only a 206
    whose ``Content-Range`` starts at the part's size; a 416 ends the download only when
    the part already has the server's full size (``Content-Range: bytes */N``, else a
    HEAD); any other answer starts over from byte 0.  ``Accept-Encoding: identity`` is
    asked for, and a content-encoded answer to a range request starts over.  Once complete,
    the size must equal the server's and the SHA-1 ``sha1`` (if given): on a mismatch the
    part is removed and :class:`ArchiveError` names expected and actual values; otherwise
    the file is renamed into place.  ``file://`` URLs (a local mirror) are copied the same
    way.  ``timeout_s``: seconds of silence before an attempt fails; ``chunk``: bytes per
    write (a dropped connection loses at most the block being read)."""
    policy = policy or RetryPolicy()
    out = Path(out_path)
    part = out.with_name(out.name + ".part")
    out.parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("file://"):
        full: int | None = _copy_resuming(Path(url[len("file://") :]), part, chunk)
    else:
        with requests.Session() as session:
            session.headers["Accept-Encoding"] = "identity"
            full = policy.call(
                lambda: _fetch_once(
                    session, url, part, timeout_s=timeout_s, chunk=chunk, progress=progress
                ),
                what=f"download of {url}",
                sleep=sleep,
            )
    size = _size(part)
    if full is not None and size != full:
        part.unlink(missing_ok=True)
        raise ArchiveError(
            f"{url}: {size} bytes downloaded, the server announced {full}; the partial "
            "download was removed, run again to fetch it anew"
        )
    if sha1:
        got = sha1_of(part)
        if got != sha1.lower():
            part.unlink()
            raise ArchiveError(
                f"{url}: SHA-1 {got} of the {size} bytes downloaded does not match the "
                f"configured {sha1.lower()}; the download was removed (a changed file on the "
                "server, or data.apogee.sha1 is wrong)"
            )
    publish(part, out)  # fsync, rename, fsync the directory
    return size


def _copy_resuming(src: Path, part: Path, chunk: int) -> int:
    """Copy ``src`` to ``part``, continuing a shorter ``part`` (restarting a longer one);
    returns the size of ``src`` [bytes]."""
    if not src.is_file():
        raise ArchiveError(f"file://{src}: no such file")
    full = src.stat().st_size
    start = _size(part)
    if start > full:
        part.unlink()
        start = 0
    with open(src, "rb") as fin, open(part, "ab" if start else "wb") as fout:
        fin.seek(start)
        while block := fin.read(chunk):
            fout.write(block)
    return full
