"""Tests of the fake Gaia archive (``archive_server``) with the real astroquery client.

They also pin down what astroquery 0.4.11 raises for each failure, which the archive client
must catch (see ``archive_server.FAULT_KINDS``):

=====================  ==================================================================
fault                  exception out of astroquery
=====================  ==================================================================
any status fault       ``requests.exceptions.HTTPError`` (an ``OSError``), text only
drop, TAP result       ``http.client.IncompleteRead`` (``HTTPException``, not ``OSError``)
drop, job creation     ``http.client.RemoteDisconnected`` (a ``ConnectionResetError``)
drop, DataLink         ``zipfile.BadZipFile`` (the short body is written, then unzipped)
truncated_zip          ``zipfile.BadZipFile``
job_error              ``requests.exceptions.HTTPError`` (from the result download)
slow, no timeout       nothing: the call just waits ``delay``
slow, socket timeout   ``TimeoutError`` after the timeout (see ``gaia_client``)
=====================  ==================================================================
"""

from __future__ import annotations

import gzip
import http.client
import socket
import threading
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import requests
from archive_fixtures import ArchiveFixture, make_archive_fixture, write_allstar
from archive_server import ArchiveServer, gaia_client, product_tables
from astropy.table import Table

DR3 = {"data_release": "Gaia DR3", "data_structure": "INDIVIDUAL", "format": "votable"}
QUERY = (
    "SELECT g.source_id, g.ra, g.dec FROM gaiadr3.gaia_source AS g "
    "LEFT JOIN gaiadr3.astrophysical_parameters AS ap USING (source_id) WHERE g.has_rvs = 'True'"
)
GAIA_SOURCE_COLUMNS = (
    "source_id ra dec has_rvs rvs_spec_sig_to_noise radial_velocity_error has_xp_continuous "
    "phot_g_mean_mag "
    "phot_bp_mean_mag phot_rp_mean_mag phot_g_mean_flux_over_error phot_bp_mean_flux_over_error "
    "phot_rp_mean_flux_over_error parallax parallax_error parallax_over_error ruwe "
    "non_single_star phot_variable_flag in_qso_candidates in_galaxy_candidates classlabel_espels"
).split()
ALLSTAR_COLUMNS = (
    "APOGEE_ID GAIAEDR3_SOURCE_ID SNR EXTRATARG ASPCAPFLAG ASPCAP_CHI2 TEFF TEFF_ERR LOGG "
    "LOGG_ERR M_H M_H_ERR ALPHA_M ALPHA_M_ERR FE_H FE_H_ERR FE_H_FLAG"
).split()


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory) -> ArchiveFixture:
    return make_archive_fixture(n=300, folder=tmp_path_factory.mktemp("archive_fixture"))


@pytest.fixture()
def server(fixture: ArchiveFixture):
    with fixture.server() as srv:
        yield srv


@pytest.fixture()
def gaia(server: ArchiveServer):
    return gaia_client(server.url)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``load_data`` writes its temporary directory into the working directory."""
    monkeypatch.chdir(tmp_path)


def _sample_ids(fx: ArchiveFixture, n: int = 4) -> list[int]:
    """A few ordinary stars, two with NaN edges, the RP-only one and the no-XP one."""
    special = {fx.rp_only_id, fx.no_xp_id, *fx.nan_edge_ids[:2]}
    plain = [int(i) for i in fx.source_ids if int(i) not in special][:n]
    return [*plain, *fx.nan_edge_ids[:2], fx.rp_only_id, fx.no_xp_id]


def _assert_same_table(got: Table, expected: Table) -> None:
    assert got.colnames == expected.colnames
    assert len(got) == len(expected)
    for name in expected.colnames:
        want = expected[name]
        if want.dtype.kind in "US":
            filled = want.filled("") if hasattr(want, "filled") else want
            assert [str(v) for v in got[name]] == [str(v) for v in filled], name
        else:
            np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(want), err_msg=name)


# ---------------------------------------------------------------------------------------
# the fixture data
# ---------------------------------------------------------------------------------------


def test_fixture_looks_like_the_archive(fixture: ArchiveFixture) -> None:
    table = fixture.query_result
    assert set(GAIA_SOURCE_COLUMNS) <= set(table.colnames)
    assert table["source_id"].dtype == np.int64
    assert set(table["phot_variable_flag"]) <= {"VARIABLE", "NOT_AVAILABLE"}
    espels = table["classlabel_espels"]
    assert espels.mask.sum() > 0.9 * len(table)  # LEFT JOIN: most stars have no AP row
    assert len(fixture.rvs) == len(table)
    flux, flux_error = fixture.rvs[int(table["source_id"][0])]
    assert flux.shape == flux_error.shape == (2401,) and flux.dtype == np.float32
    assert fixture.wavelength[0] == 846.0 and fixture.wavelength[-1] == 870.0
    assert len(fixture.nan_edge_ids) > 0
    assert fixture.xp[fixture.rp_only_id][0] is None
    assert fixture.xp[fixture.rp_only_id][1].shape == (55,)
    assert fixture.no_xp_id not in fixture.xp
    row = table[table["source_id"] == fixture.no_xp_id]
    assert not row["has_xp_continuous"][0]

    allstar = Table.read(fixture.allstar, hdu=1)
    assert set(ALLSTAR_COLUMNS) <= set(allstar.colnames)
    for name in ("GAIAEDR3_SOURCE_ID", "ASPCAPFLAG"):  # FITS: big-endian int64
        assert allstar[name].dtype.kind == "i" and allstar[name].dtype.itemsize == 8
    gaia_ids = np.asarray(allstar["GAIAEDR3_SOURCE_ID"])
    matched = gaia_ids[np.isin(gaia_ids, fixture.source_ids)]
    assert matched.size > len(np.unique(matched))  # a Gaia id on several rows
    assert np.any(np.asarray(allstar["EXTRATARG"]) != 0)
    assert np.any((np.asarray(allstar["ASPCAPFLAG"]) & (1 << 23)) != 0)  # STAR_BAD


def test_write_allstar(tmp_path: Path) -> None:
    ids = [1001, 1002, 1003, 1004, 1005, 1006, 1007]
    write_allstar(tmp_path / "allStar.fits", ids, seed=3)
    table = Table.read(tmp_path / "allStar.fits", hdu=1)
    assert set(table.colnames) == set(ALLSTAR_COLUMNS)
    gaia = np.asarray(table["GAIAEDR3_SOURCE_ID"])
    assert gaia.dtype.str == ">i8" and list(gaia) == [*ids, ids[0], 0]
    flag = np.asarray(table["ASPCAPFLAG"])
    assert flag.dtype.str == ">i8"
    assert flag[1] & (1 << 23) and flag[2] & (1 << 7) and flag[5] & (1 << 11)
    assert table["EXTRATARG"][len(ids)] & (1 << 4)
    # astropy masks NaN floats when reading FITS (mask_invalid): fill to see the NaN
    assert np.isnan(table["TEFF"].filled(np.nan)[3]) and table["FE_H_FLAG"][4] == 1


# ---------------------------------------------------------------------------------------
# TAP
# ---------------------------------------------------------------------------------------


def test_async_query_returns_the_table(fixture, server, gaia) -> None:
    job = gaia.launch_job_async(QUERY)
    _assert_same_table(job.get_results(), fixture.query_result)
    assert server.queries == [QUERY]  # async queries are sent as written
    assert [r.endpoint for r in server.requests] == ["async", "async_phase", "async_result"]
    assert all(r.status in (200, 303) and r.fault is None for r in server.requests)


def test_async_query_waits_for_the_job(fixture) -> None:
    with fixture.server(executing_polls=1) as srv:
        start = time.monotonic()
        table = gaia_client(srv.url).launch_job_async(QUERY).get_results()
        assert time.monotonic() - start >= 0.5  # astroquery polls every 0.5 s
        assert len(table) == len(fixture.query_result)
        assert len(srv.requests_to("async_phase")) == 2


def test_sync_query_returns_the_table(fixture, server, gaia) -> None:
    table = gaia.launch_job("SELECT source_id, ra FROM gaiadr3.gaia_source").get_results()
    _assert_same_table(table, fixture.query_result)
    # astroquery inserts TOP 2000 into a sync query that has none
    assert server.queries == ["SELECT  TOP 2000 source_id, ra FROM gaiadr3.gaia_source"]


def test_sync_query_row_limit(fixture) -> None:
    with fixture.server(sync_row_limit=50) as srv:
        assert len(gaia_client(srv.url).launch_job(QUERY).get_results()) == 50


# ---------------------------------------------------------------------------------------
# DataLink
# ---------------------------------------------------------------------------------------


def test_load_data_rvs(fixture, server, gaia) -> None:
    ids = [*_sample_ids(fixture), 999]  # 999: no such source, simply absent
    files = gaia.load_data(ids, retrieval_type="RVS", **DR3)
    assert sorted(files) == sorted(f"RVS-Gaia DR3 {i}.xml" for i in ids if i != 999)
    for source_id, element in product_tables(files, "RVS"):
        assert element.get_field_by_id_or_name("source_id").value == source_id  # a PARAM
        table = element.to_table()
        assert table.colnames == ["wavelength", "flux", "flux_error"]
        assert [table[c].dtype for c in table.colnames] == [np.float64, np.float32, np.float32]
        assert str(table["wavelength"].unit) == "nm" and len(table) == 2401
        np.testing.assert_array_equal(table["wavelength"], fixture.wavelength)
        flux, flux_error = fixture.rvs[source_id]
        # NaN pixels arrive masked (null flag); .filled(nan) gives the archive's values back
        np.testing.assert_array_equal(table["flux"].filled(np.nan), flux)
        np.testing.assert_array_equal(table["flux_error"].filled(np.nan), flux_error)
        assert np.array_equal(np.asarray(table["flux"].mask), np.isnan(flux))
    assert any(np.isnan(fixture.rvs[i][0]).any() for i in ids if i in fixture.rvs)
    assert server.datalink_batches("RVS") == [tuple(ids)]
    assert list(Path.cwd().iterdir()) == []  # astroquery removed its temporary directory


def test_load_data_xp(fixture, server, gaia) -> None:
    ids = _sample_ids(fixture)
    files = gaia.load_data(ids, retrieval_type="XP_CONTINUOUS", **DR3)
    assert sorted(files) == sorted(
        f"XP_CONTINUOUS-Gaia DR3 {i}.xml" for i in ids if i != fixture.no_xp_id
    )
    for source_id, element in product_tables(files, "XP_CONTINUOUS"):
        table = element.to_table()
        assert len(table) == 1 and table["source_id"][0] == source_id  # a column here
        assert table["bp_coefficients"].dtype == object  # arraysize="*": one array per cell
        bp, rp = fixture.xp[source_id]
        np.testing.assert_array_equal(np.asarray(table["rp_coefficients"][0]), rp)
        assert np.asarray(table["rp_coefficients"][0]).dtype == np.float64
        if bp is None:
            assert table["bp_coefficients"].mask[0]  # null, an empty array behind the mask
            assert len(table["bp_coefficients"].data[0]) == 0
            assert table["bp_n_parameters"][0] == 0
            assert table["bp_chi_squared"].mask[0]
        else:
            np.testing.assert_array_equal(np.asarray(table["bp_coefficients"][0]), bp)
            assert table["bp_n_parameters"][0] == 55
            assert len(table["bp_coefficient_correlations"][0]) == 1485
    assert server.datalink_batches("XP_CONTINUOUS") == [tuple(ids)]
    assert server.datalink_batches("RVS") == []


def test_load_data_without_products_is_empty(server, gaia) -> None:
    """Ids without the product are absent from the zip; none at all: an empty dict."""
    assert gaia.load_data([1, 2], retrieval_type="XP_CONTINUOUS", **DR3) == {}
    assert server.datalink_batches("XP_CONTINUOUS") == [(1, 2)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retrieval_type": "RVS", "format": "csv"}, "FORMAT 'csv'"),
        ({"retrieval_type": "RVS", "data_structure": "RAW"}, "DATA_STRUCTURE 'RAW'"),
        ({"retrieval_type": "MCMC_MSC"}, "RETRIEVAL_TYPE 'MCMC_MSC'"),
    ],
)
def test_load_data_refuses_what_it_does_not_serve(fixture, server, gaia, kwargs, message) -> None:
    with pytest.raises(requests.exceptions.HTTPError, match=message):
        gaia.load_data(fixture.source_ids[:2].tolist(), **{**DR3, **kwargs})
    assert server.requests[-1].status == 400


def test_load_data_id_limit(fixture) -> None:
    with fixture.server(max_ids=3) as srv:
        gaia = gaia_client(srv.url)
        with pytest.raises(requests.exceptions.HTTPError, match="Too many source ids"):
            gaia.load_data(fixture.source_ids[:4].tolist(), retrieval_type="RVS", **DR3)
        assert (
            len(gaia.load_data(fixture.source_ids[:3].tolist(), retrieval_type="RVS", **DR3)) == 3
        )
        assert srv.datalink_batches("RVS") == [tuple(fixture.source_ids[:3].tolist())]


# ---------------------------------------------------------------------------------------
# faults: what astroquery raises
# ---------------------------------------------------------------------------------------


def _tap_call(gaia, endpoint: str):
    if endpoint == "sync":
        return lambda: gaia.launch_job(QUERY).get_results()
    return lambda: gaia.launch_job_async(QUERY).get_results()


@pytest.mark.parametrize(
    ("endpoint", "kind", "exception"),
    [
        ("sync", "500", requests.exceptions.HTTPError),
        ("sync", "503", requests.exceptions.HTTPError),
        ("sync", "drop", http.client.IncompleteRead),
        ("async", "500", requests.exceptions.HTTPError),
        ("async", "drop", http.client.RemoteDisconnected),
        ("async", "job_error", requests.exceptions.HTTPError),
        ("async_phase", "503", requests.exceptions.HTTPError),
        ("async_result", "500", requests.exceptions.HTTPError),
        ("async_result", "drop", http.client.IncompleteRead),
    ],
)
def test_tap_faults(fixture, server, gaia, capsys, endpoint, kind, exception) -> None:
    server.fail(endpoint, kind)
    call = _tap_call(gaia, "sync" if endpoint == "sync" else "async")
    with pytest.raises(exception) as info:
        call()
    assert type(info.value) is exception  # exactly this class, not a subclass
    assert [r.fault for r in server.requests].count(kind) == 1
    assert not server.pending_faults()
    if kind in ("500", "503") and endpoint in ("async_phase", "async_result"):
        assert f"{kind} Error {kind}" in capsys.readouterr().out  # astroquery prints it
    _assert_same_table(call(), fixture.query_result)  # the fault was consumed: a retry works


@pytest.mark.parametrize(
    ("kind", "exception"),
    [
        ("500", requests.exceptions.HTTPError),
        ("503", requests.exceptions.HTTPError),
        ("429", requests.exceptions.HTTPError),
        ("408", requests.exceptions.HTTPError),
        ("drop", zipfile.BadZipFile),
        ("truncated_zip", zipfile.BadZipFile),
    ],
)
def test_datalink_faults(fixture, server, gaia, capsys, kind, exception) -> None:
    ids = fixture.source_ids[:3].tolist()
    server.fail("datalink", kind)
    with pytest.raises(exception) as info:
        gaia.load_data(ids, retrieval_type="RVS", **DR3)
    assert type(info.value) is exception
    if kind.isdigit():
        assert f"{kind} Error {kind}" in capsys.readouterr().out  # astroquery prints it
        assert getattr(info.value, "response", None) is None  # no status but in the text
    assert list(Path.cwd().iterdir()) == []  # the temporary directory is gone even so
    assert server.datalink_batches("RVS") == []
    faulted = server.requests_to("datalink")[0]
    assert faulted.fault == kind and faulted.ids == tuple(ids)
    assert len(gaia.load_data(ids, retrieval_type="RVS", **DR3)) == 3
    assert server.datalink_batches("RVS") == [tuple(ids)]


def test_drop_sends_part_of_the_body(server, gaia) -> None:
    server.fail("datalink", "drop", after_bytes=1000)
    with pytest.raises(zipfile.BadZipFile):
        gaia.load_data([int(next(iter(server.rvs)))], retrieval_type="RVS", **DR3)
    assert server.requests[-1].body_bytes == 1000


def test_slow_without_timeout_just_waits(fixture, server, gaia) -> None:
    """astroquery's connections have no timeout: a slow archive is only slow."""
    server.fail("datalink", "slow", delay=0.6)
    start = time.monotonic()
    files = gaia.load_data(fixture.source_ids[:2].tolist(), retrieval_type="RVS", **DR3)
    assert time.monotonic() - start >= 0.6 and len(files) == 2
    assert server.datalink_batches("RVS") == []  # logged as a faulted request


@pytest.mark.parametrize("endpoint", ["sync", "async_result", "datalink"])
def test_slow_with_a_socket_timeout(fixture, server, endpoint) -> None:
    """With a timeout injected (``gaia_client(timeout=...)``): ``TimeoutError`` after it."""
    gaia = gaia_client(server.url, timeout=0.3)
    server.fail(endpoint, "slow", delay=5.0)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        if endpoint == "datalink":
            gaia.load_data(fixture.source_ids[:2].tolist(), retrieval_type="RVS", **DR3)
        else:
            _tap_call(gaia, "sync" if endpoint == "sync" else "async")()
    assert time.monotonic() - start < 2.0
    assert len(gaia.load_data(fixture.source_ids[:2].tolist(), retrieval_type="RVS", **DR3)) == 2


def test_fail_rejects_unknown_faults(server) -> None:
    with pytest.raises(ValueError):
        server.fail("sync", "truncated_zip")
    with pytest.raises(ValueError):
        server.fail("tap", "500")
    with pytest.raises(ValueError):
        server.fail("datalink", "job_error")
    with pytest.raises(ValueError):
        server.fail("datalink", "bad_range")


# ---------------------------------------------------------------------------------------
# static files with ranges
# ---------------------------------------------------------------------------------------


def _get(url: str, headers: dict[str, str] | None = None, method: str = "GET"):
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, dict(response.headers), response.read()


def test_files_whole_range_and_head(fixture, server) -> None:
    data = fixture.allstar.read_bytes()
    url = server.file_url("allStar.fits")
    status, headers, body = _get(url)
    assert status == 200 and body == data and int(headers["Content-Length"]) == len(data)
    assert headers["Accept-Ranges"] == "bytes"
    status, headers, body = _get(url, {"Range": "bytes=1000-"})
    assert status == 206 and body == data[1000:]
    assert headers["Content-Range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    status, headers, body = _get(url, {"Range": "bytes=10-19"})
    assert status == 206 and body == data[10:20]
    status, headers, body = _get(url, {"Range": "bytes=0-", "If-Range": '"stale"'})
    assert status == 200 and body == data  # If-Range mismatch: the whole file
    status, headers, body = _get(url, method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) == len(data)
    with pytest.raises(urllib.error.HTTPError) as info:
        _get(url, {"Range": f"bytes={len(data)}-"})
    assert info.value.code == 416
    with pytest.raises(urllib.error.HTTPError) as info:
        _get(server.file_url("nope"))
    assert info.value.code == 404
    assert [r.range for r in server.requests_to("files")][1:3] == ["bytes=1000-", "bytes=10-19"]


def test_files_bytes_and_faults(server) -> None:
    data = bytes(range(256)) * 40
    url = server.url + server.add_file("blob.bin", data)
    server.fail("files", "drop", after_bytes=3000)
    with pytest.raises(http.client.IncompleteRead):  # urllib: read() of a short body
        _get(url)
    server.fail("files", "drop", after_bytes=3000)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):  # requests: same fault
        requests.get(url, timeout=5).raise_for_status()
    status, _, tail = _get(url, {"Range": "bytes=3000-"})  # resume
    assert status == 206 and tail == data[3000:]
    server.fail("files", "503")
    assert requests.get(url, timeout=5).status_code == 503
    assert requests.get(url, timeout=5).content == data


def test_files_status_faults_carry_retry_after(server) -> None:
    url = server.url + server.add_file("blob.bin", b"x" * 100)
    server.fail("files", "429")
    server.fail("files", "503", retry_after=None)
    server.fail("files", "408", retry_after="Wed, 21 Oct 2015 07:28:00 GMT")
    server.fail("files", "404")
    answers = [requests.get(url, timeout=5) for _ in range(5)]
    assert [a.status_code for a in answers] == [429, 503, 408, 404, 200]
    assert [a.headers.get("Retry-After") for a in answers[:4]] == [
        "1",
        None,
        "Wed, 21 Oct 2015 07:28:00 GMT",
        None,
    ]
    assert [r.fault for r in server.requests_to("files")] == ["429", "503", "408", "404", None]


def test_files_range_faults(server) -> None:
    data = bytes(range(256)) * 40
    url = server.url + server.add_file("blob.bin", data)
    identity = {"Accept-Encoding": "identity"}
    server.fail("files", "bad_range")
    answer = requests.get(url, headers={"Range": "bytes=3000-", **identity}, timeout=5)
    assert answer.status_code == 206 and answer.content == data[1500:]
    assert answer.headers["Content-Range"] == f"bytes 1500-{len(data) - 1}/{len(data)}"
    server.fail("files", "416")
    answer = requests.get(url, headers={"Range": "bytes=3000-"}, timeout=5)
    assert answer.status_code == 416 and answer.headers["Content-Range"] == f"bytes */{len(data)}"
    server.fail("files", "416_bare")
    answer = requests.get(url, headers={"Range": "bytes=3000-"}, timeout=5)
    assert answer.status_code == 416 and "Content-Range" not in answer.headers
    server.fail("files", "gzip")
    answer = requests.get(url, headers={"Range": "bytes=3000-", **identity}, stream=True, timeout=5)
    assert answer.status_code == 206 and answer.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(answer.raw.read(decode_content=False)) == data[3000:]
    assert [r.accept_encoding for r in server.requests_to("files")] == [
        "identity",
        *["gzip, deflate"] * 2,
        "identity",
    ]


def test_datalink_releases_and_structures_served(fixture) -> None:
    ids = fixture.source_ids[:2].tolist()
    with fixture.server(releases=("Gaia DR3", "Gaia FPR")) as srv:
        gaia = gaia_client(srv.url)
        assert (
            len(gaia.load_data(ids, retrieval_type="RVS", **{**DR3, "data_release": "Gaia FPR"}))
            == 2
        )
        with pytest.raises(requests.exceptions.HTTPError, match="RELEASE 'Gaia DR4'"):
            gaia.load_data(ids, retrieval_type="RVS", **{**DR3, "data_release": "Gaia DR4"})
        (first, second) = srv.requests_to("datalink")
        assert (first.release, first.data_structure, first.format) == (
            "Gaia FPR",
            "INDIVIDUAL",
            "votable",
        )
        assert second.status == 400


# ---------------------------------------------------------------------------------------
# life cycle
# ---------------------------------------------------------------------------------------


def test_shutdown_leaves_no_thread_and_frees_the_port(fixture) -> None:
    before = set(threading.enumerate())
    srv = fixture.server().start()
    port = srv.port
    assert srv.url == f"http://127.0.0.1:{port}"
    srv.fail("sync", "slow", delay=30.0)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            _get(srv.url + "/tap-server/tap/sync")
        except Exception as err:
            errors.append(err)

    client = threading.Thread(target=call)
    client.start()
    time.sleep(0.3)  # the handler is asleep in the "slow" fault
    start = time.monotonic()
    srv.close()
    assert time.monotonic() - start < 2.0  # the sleeping handler was woken and joined
    client.join(5)
    assert errors and isinstance(errors[0], urllib.error.HTTPError)  # 400: no QUERY
    assert set(threading.enumerate()) <= before
    with pytest.raises(ConnectionRefusedError):  # nobody listens any more
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with socket.socket() as sock:  # and the port can be bound again (as a new server would)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
