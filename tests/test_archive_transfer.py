"""Retries and resumed downloads (gaiacnn.transfer) with the real `requests` client against
the local archive server (tests/archive_server.py), faults injected at the server: each case
ends in the right file or in one clear error, never in a corrupt file under the final name
or a part file that a later run would take for a good beginning."""

from __future__ import annotations

import errno
import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import pytest
from archive_server import ArchiveServer

from gaiacnn.transfer import (
    ArchiveError,
    HTTPStatusError,
    RetryPolicy,
    content_range,
    download_file,
    is_retryable,
    parse_retry_after,
    sha1_of,
)

#: Retries without waiting (only a server's Retry-After makes a wait).
FAST = RetryPolicy(retries=3, backoff_s=0.0, total_s=30.0)
DATA = np.random.default_rng(27).integers(0, 256, 300_000, dtype=np.uint8).tobytes()


@pytest.fixture
def server():
    with ArchiveServer(files={"allStar.fits": DATA}) as srv:
        yield srv


@pytest.fixture
def url(server) -> str:
    return server.file_url("allStar.fits")


def part_of(out: Path) -> Path:
    return out.with_name(out.name + ".part")


def download(url: str, out: Path, policy: RetryPolicy = FAST, **kwargs) -> int:
    kwargs = {"sha1": sha1_of_bytes(DATA), "progress": False, **kwargs}
    return download_file(url, out, policy=policy, **kwargs)


def sha1_of_bytes(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def assert_done(out: Path) -> None:
    """The right file under the final name, no part file left."""
    assert out.read_bytes() == DATA
    assert not part_of(out).exists()


def assert_nothing_left(out: Path) -> None:
    assert not out.exists() and not part_of(out).exists()


# --------------------------------------------------------------------------- retried statuses


def test_429_waits_the_retry_after_and_logs_it(server, url, tmp_path, caplog):
    caplog.set_level(logging.WARNING, "gaiacnn.transfer")
    server.fail("files", "429")  # Retry-After: 1
    out = tmp_path / "allStar.fits"
    assert download(url, out) == len(DATA)
    assert_done(out)
    first, second = server.requests_to("files")
    assert (first.status, first.fault, second.status) == (429, "429", 200)
    assert second.time - first.time >= 1.0  # the server's Retry-After, really waited
    assert "HTTP 429 Too Many Requests; retry 1 of 3 in 1.0 s" in caplog.text


@pytest.mark.parametrize("status", ["408", "500", "502", "503", "504"])
def test_a_retried_status_then_success(server, url, tmp_path, caplog, status):
    caplog.set_level(logging.WARNING, "gaiacnn.transfer")
    server.fail("files", status, retry_after=None)
    waits: list[float] = []
    out = tmp_path / "allStar.fits"
    download(url, out, sleep=waits.append)
    assert_done(out)
    assert [r.status for r in server.requests_to("files")] == [int(status), 200]
    assert waits == [0.0] and f"HTTP {status} " in caplog.text


@pytest.mark.parametrize("status", ["400", "404", "missing"])
def test_other_statuses_fail_at_once(server, url, tmp_path, status):
    if status == "missing":  # the server's own 404
        url, status = server.url + "/files/nothing.fits", "404"
    else:
        server.fail("files", status)
    out = tmp_path / "allStar.fits"
    with pytest.raises(ArchiveError, match=rf"download of .*: HTTP {status} .*\(not retried"):
        download(url, out)
    assert len(server.requests_to("files")) == 1
    assert_nothing_left(out)


def test_the_total_time_bound_stops_a_long_retry_after(server, url, tmp_path):
    server.fail("files", "503", times=5)  # Retry-After: 1, more than the bound
    out = tmp_path / "allStar.fits"
    start = time.monotonic()
    with pytest.raises(
        ArchiveError, match=r"after 1 attempt\(s\).*bound of 0.5 s \(retry_total_s\)"
    ):
        download(url, out, RetryPolicy(retries=5, backoff_s=0.0, total_s=0.5))
    assert time.monotonic() - start < 1.0  # did not wait for it
    assert len(server.requests_to("files")) == 1
    assert_nothing_left(out)


def test_the_total_time_bound_stops_a_growing_back_off(server, url, tmp_path):
    server.fail("files", "500", times=50)
    out = tmp_path / "allStar.fits"
    start = time.monotonic()
    with pytest.raises(ArchiveError) as info:
        download(url, out, RetryPolicy(retries=50, backoff_s=0.05, total_s=0.6))
    assert "retry_total_s" in str(info.value) and "last: HTTP 500" in str(info.value)
    # waits of 0.05-0.1, 0.1-0.15, 0.2-0.25, 0.4-0.45 s: 3 to 5 attempts fit in 0.6 s
    assert 3 <= len(server.requests_to("files")) <= 5
    assert time.monotonic() - start < 0.6 + 1.0
    assert_nothing_left(out)


# --------------------------------------------------------------------------- resuming


def test_a_connection_dropped_mid_body_is_resumed(server, url, tmp_path, caplog):
    caplog.set_level(logging.WARNING, "gaiacnn.transfer")
    server.fail("files", "drop", after_bytes=100_000)
    out = tmp_path / "allStar.fits"
    download(url, out, chunk=4096)
    assert_done(out)
    first, second = server.requests_to("files")
    assert first.range is None and second.range is not None
    resumed_at = int(second.range.removeprefix("bytes=").removesuffix("-"))
    assert 100_000 - 4096 < resumed_at <= 100_000  # only the rest was asked for
    assert second.status == 206 and "ChunkedEncodingError" in caplog.text


def test_every_request_asks_for_identity_encoding(server, url, tmp_path):
    server.fail("files", "drop", after_bytes=50_000)
    download(url, tmp_path / "allStar.fits")
    assert [r.accept_encoding for r in server.requests_to("files")] == ["identity"] * 2


def test_a_206_at_the_wrong_byte_starts_over(server, url, tmp_path, caplog):
    out = tmp_path / "allStar.fits"
    part_of(out).write_bytes(DATA[:120_000])
    server.fail("files", "bad_range")  # answers bytes 60000- instead of 120000-
    download(url, out)
    assert_done(out)
    assert [r.range for r in server.requests_to("files")] == ["bytes=120000-", None]
    assert "got Content-Range 'bytes 60000-299999/300000': starting over" in caplog.text


def test_a_416_with_a_short_part_starts_over(server, url, tmp_path):
    out = tmp_path / "allStar.fits"
    part_of(out).write_bytes(DATA[:120_000])
    server.fail("files", "416")  # Content-Range: bytes */300000
    download(url, out)
    assert_done(out)
    assert [r.range for r in server.requests_to("files")] == ["bytes=120000-", None]


def test_a_416_without_a_size_asks_head(server, url, tmp_path):
    out = tmp_path / "allStar.fits"
    part_of(out).write_bytes(DATA[:120_000])
    server.fail("files", "416_bare")
    download(url, out)
    assert_done(out)
    assert [r.method for r in server.requests_to("files")] == ["GET", "HEAD", "GET"]


@pytest.mark.parametrize("fault", [None, "416_bare"])
def test_a_416_on_a_complete_part_is_the_end(server, url, tmp_path, fault):
    out = tmp_path / "allStar.fits"
    part_of(out).write_bytes(DATA)
    if fault:
        server.fail("files", fault)
    assert download(url, out) == len(DATA)
    assert_done(out)
    assert server.requests_to("files")[0].status == 416  # nothing fetched again


def test_a_part_longer_than_the_file_starts_over(server, url, tmp_path):
    out = tmp_path / "allStar.fits"
    part_of(out).write_bytes(DATA + b"stale tail")
    download(url, out)
    assert_done(out)
    assert [r.status for r in server.requests_to("files")] == [416, 200]


@pytest.mark.parametrize("times", [1, 2])
def test_a_gzip_answer_to_a_range_request_starts_over(server, url, tmp_path, caplog, times):
    """The range answer is gzip-encoded: start over without Range; if that answer is
    gzip-encoded too, its decoded bytes are the file (checked by the SHA-1)."""
    out = tmp_path / "allStar.fits"
    part_of(out).write_bytes(DATA[:120_000])
    server.fail("files", "gzip", times=times)
    download(url, out)
    assert_done(out)
    assert [r.range for r in server.requests_to("files")] == ["bytes=120000-", None]
    assert "Content-Encoding gzip answer to a range request" in caplog.text


def test_a_sha1_mismatch_removes_the_download(server, url, tmp_path):
    out = tmp_path / "allStar.fits"
    corrupt = bytearray(DATA)
    corrupt[1000] ^= 0xFF
    part_of(out).write_bytes(bytes(corrupt))  # full size, one byte wrong: a 416 says done
    with pytest.raises(ArchiveError) as info:
        download(url, out)
    message = str(info.value)
    assert f"SHA-1 {sha1_of_bytes(bytes(corrupt))}" in message
    assert f"configured {sha1_of_bytes(DATA)}" in message
    assert_nothing_left(out)
    download(url, out)  # the next run starts from zero
    assert_done(out)


def test_a_file_url_is_copied_resumed_and_checked(tmp_path):
    src = tmp_path / "mirror.fits"
    src.write_bytes(DATA)
    out = tmp_path / "allStar.fits"
    part_of(out).write_bytes(DATA[:1000])
    download(f"file://{src}", out)
    assert_done(out)
    part_of(out).write_bytes(b"junk")
    with pytest.raises(ArchiveError, match="does not match the configured"):
        download(f"file://{src}", out, sha1="0" * 40)
    assert not part_of(out).exists()
    assert sha1_of(out) == sha1_of_bytes(DATA)  # the earlier download is left alone


# --------------------------------------------------------------------------- the policy


def test_back_off_doubles_with_jitter_and_yields_to_retry_after():
    waits: list[float] = []
    failures = iter([ConnectionResetError("reset")] * 4 + [HTTPStatusError(503, "", 7.0)])

    def flaky() -> str:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return "ok"

    policy = RetryPolicy(retries=5, backoff_s=1.0, total_s=1000.0)
    assert policy.call(flaky, what="test", sleep=waits.append) == "ok"
    for k, wait in enumerate(waits[:4]):
        assert 2**k <= wait <= 2**k + 1.0  # backoff_s * 2^k + up to backoff_s of jitter
    assert len({w - int(w) for w in waits[:4]}) > 1  # jittered, not fixed
    assert 16.0 <= waits[4] <= 17.0  # Retry-After 7 s is less than the back-off: back-off


def test_retry_after_longer_than_the_back_off_is_waited():
    waits: list[float] = []
    failures = iter([HTTPStatusError(429, "", 7.0)])

    def call() -> int:
        if (failure := next(failures, None)) is not None:
            raise failure
        return 1

    RetryPolicy(retries=1, backoff_s=0.5, total_s=100.0).call(call, what="t", sleep=waits.append)
    assert waits == [7.0]


def test_a_bug_or_a_full_disk_is_not_retried_nor_hidden():
    for exc in (ValueError("bug"), OSError(errno.ENOSPC, "No space left on device")):
        calls = []

        def failing(exc=exc, calls=calls):
            calls.append(1)
            raise exc

        with pytest.raises(type(exc)):
            FAST.call(failing, what="t")
        assert len(calls) == 1


def test_what_is_retryable():
    assert all(is_retryable(HTTPStatusError(s)) for s in (408, 429, 500, 502, 503, 504))
    assert not any(is_retryable(HTTPStatusError(s)) for s in (400, 401, 403, 404, 413, 416, 501))
    assert is_retryable(ConnectionResetError()) and is_retryable(TimeoutError())
    assert not is_retryable(ArchiveError("checked, final"))
    assert not is_retryable(OSError(errno.ENOSPC, "full"))


def test_parse_retry_after_and_content_range():
    assert parse_retry_after("120") == 120.0 and parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = 1_445_412_480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now=now) == 0.0  # past: now
    assert content_range("bytes 100-199/1000") == (100, 199, 1000)
    assert content_range("bytes */1000") == (None, None, 1000)
    assert content_range("bytes 100-199/*") == (100, 199, None)
    assert content_range(None) == content_range("items 1-2/3") == (None, None, None)
