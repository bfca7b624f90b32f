"""The real data path (gaiacnn.archive) with the real astroquery client against a local
server on 127.0.0.1 that speaks the Gaia TAP and DataLink protocols (tests/archive_server.py),
serving the demo survey's stars: the selection query, the batched, cached, resumable
download of RVS spectra and XP coefficients, the raw store, and the allStar download."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from archive_fixtures import make_archive_fixture
from test_envs import check_job_imports, rules_by_script
from workflow_helpers import IMPORT_AUDIT, audit_env

from gaiacnn import archive
from gaiacnn.config import load_schema, validate_config
from gaiacnn.tables import read_fits_columns
from gaiacnn.transfer import RetryPolicy, sha1_of

REPO = Path(__file__).resolve().parents[1]
BATCH = 25
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    return make_archive_fixture(n=150, folder=tmp_path_factory.mktemp("archive_fixture"))


@pytest.fixture
def server(fixture):
    with fixture.server() as srv:
        yield srv


def gaia_cfg(server, **overrides) -> dict:
    """The ``data.gaia`` defaults of the schema, pointed at ``server``, quick to give up."""
    cfg = validate_config({}, load_schema(REPO / "config" / "schema.yaml"))["data"]["gaia"]
    cfg = {**cfg, "tap_server": server.url + "/", "data_server": server.url + "/"}
    return {
        **cfg,
        "batch_size": BATCH,
        "retries": 2,
        "backoff_s": 0.0,
        "timeout_s": 5.0,
        **overrides,
    }


def rvs_ids(fixture) -> np.ndarray:
    return np.sort(np.fromiter(fixture.rvs, np.int64))


def n_batches(ids) -> int:
    return -(-len(ids) // BATCH)


def assert_raw_store_holds_the_fixture(path: Path, fixture, ids: np.ndarray) -> None:
    with h5py.File(path, "r") as h5:
        np.testing.assert_array_equal(h5["source_id"][:], ids)
        np.testing.assert_allclose(h5["rvs/flux"].attrs["wavelength_nm"], fixture.wavelength)
        flux, err = h5["rvs/flux"][:], h5["rvs/flux_error"][:]
        bp, rp = h5["xp/bp_coefficients"][:], h5["xp/rp_coefficients"][:]
        # the coefficients' errors [e-/s] come through as the archive serves them
        bp_err, rp_err = h5["xp/bp_coefficient_errors"][:], h5["xp/rp_coefficient_errors"][:]
    for k, sid in enumerate(ids):
        f, e = fixture.rvs[int(sid)]
        np.testing.assert_array_equal(flux[k], np.asarray(f, np.float32))  # NaN where NaN
        np.testing.assert_array_equal(err[k], np.asarray(e, np.float32))
        if int(sid) in fixture.xp:
            pairs = zip(fixture.xp[int(sid)], fixture.xp_errors[int(sid)], strict=True)
            for (c, ce), got, got_err in zip(pairs, (bp, rp), (bp_err, rp_err), strict=True):
                if c is None:
                    assert np.isnan(got[k]).all() and np.isnan(got_err[k]).all()  # RP only
                else:
                    np.testing.assert_array_equal(got[k], np.asarray(c, np.float32))
                    np.testing.assert_array_equal(got_err[k], np.asarray(ce, np.float32))
                    assert (got_err[k] > 0).all()
        else:
            for got in (bp, rp, bp_err, rp_err):
                assert np.isnan(got[k]).all()


# --------------------------------------------------------------------------- query


def test_selection_query_asks_for_every_rvs_star_with_the_cut_columns(server, fixture, tmp_path):
    from gaiacnn.selection import GAIA_COLUMNS

    cfg = gaia_cfg(server)
    adql = archive.selection_query(cfg, GAIA_COLUMNS)
    assert "LEFT OUTER JOIN gaiadr3.astrophysical_parameters AS ap" in adql
    assert "ap.classlabel_espels" in adql and "gs.parallax_error" in adql
    assert adql.rstrip().endswith("WHERE gs.has_rvs = 'True'") and "TOP" not in adql
    assert archive.selection_query({**cfg, "max_rows": 500}, ["source_id"]).startswith(
        "SELECT TOP 500 gs.source_id"
    )
    server.fail("async", "503")  # one refusal, then the job runs
    out = tmp_path / "gaia_source.fits"
    n = archive.run_selection_query(archive.gaia_client(cfg), adql, out, cfg=cfg)
    assert n == len(fixture.query_result)
    assert server.queries[-1] == adql
    table = read_fits_columns(out, GAIA_COLUMNS)
    np.testing.assert_array_equal(table["source_id"], fixture.source_ids)
    np.testing.assert_allclose(
        table["parallax"], np.asarray(fixture.query_result["parallax"], float), equal_nan=True
    )
    espels = [
        "" if v is np.ma.masked else str(v) for v in fixture.query_result["classlabel_espels"]
    ]
    assert list(table["classlabel_espels"]) == espels  # null -> "", as the cuts read it
    # radial_velocity_error [km/s] (Fig. C.1) arrives; its null -> NaN
    assert "gs.radial_velocity_error" in adql
    rv_error = fixture.query_result["radial_velocity_error"]
    np.testing.assert_array_equal(
        table["radial_velocity_error"], np.asarray(rv_error.filled(np.nan), np.float32)
    )
    null = table["source_id"].to_numpy() == fixture.no_rv_error_id
    assert null.sum() == 1 and np.isnan(table["radial_velocity_error"][null]).all()
    assert np.isfinite(table["radial_velocity_error"][~null]).all()


def test_query_gives_up_with_a_message_after_its_retries(server, tmp_path):
    cfg = gaia_cfg(server, retries=1)
    server.fail("async", "500", times=2)
    out = tmp_path / "gaia_source.fits"
    with pytest.raises(archive.ArchiveError, match=r"failed after 2 attempt\(s\)"):
        archive.run_selection_query(archive.gaia_client(cfg), "SELECT 1", out, cfg=cfg)
    assert not out.exists()


# --------------------------------------------------------------------------- DataLink


def test_batches_are_sorted_unique_and_at_most_5000():
    parts = archive.batches([5, 3, 3, 9, 1], 2)
    assert [p.tolist() for p in parts] == [[1, 3], [5, 9]]
    with pytest.raises(ValueError, match=r"outside 1\.\.5000"):
        archive.batches([1], 5001)
    query = archive.DataLinkQuery("http://archive", "Gaia DR3", "INDIVIDUAL")
    a, b = (archive.batch_path("c", query, "RVS", p) for p in parts)
    assert a != b and a.parent.name == "RVS"


def test_download_in_batches_then_raw_store_equals_the_fixture(server, fixture, tmp_path):
    ids = rvs_ids(fixture)
    cfg = gaia_cfg(server)
    cache = tmp_path / "cache"
    client = archive.gaia_client(cfg)
    report = archive.download_products(client, ids, cache, cfg, progress=False)
    n = n_batches(ids)
    assert report == archive.DownloadReport(n_batches=2 * n, fetched=2 * n, cached=0)
    for rtype in archive.RETRIEVAL_TYPES:
        served = server.datalink_batches(rtype)
        assert len(served) == n and max(len(b) for b in served) <= BATCH
        assert sorted(i for b in served for i in b) == ids.tolist()
    out = tmp_path / "rvs_xp.h5"
    query = archive.DataLinkQuery.of(client, cfg)
    counts = archive.write_raw_store(ids, cache, out, query=query, batch_size=BATCH)
    no_xp = sum(int(i) not in fixture.xp for i in ids)  # fixture.no_xp_id among them
    assert no_xp >= 1
    assert counts == {"requested": ids.size, "rvs": ids.size, "no_xp": no_xp, "no_rvs": 0}
    assert_raw_store_holds_the_fixture(out, fixture, ids)
    # a second run finds every batch in the cache and asks the server for nothing
    server.clear_log()
    report = archive.download_products(archive.gaia_client(cfg), ids, cache, cfg, progress=False)
    assert report.fetched == 0 and report.cached == 2 * n
    assert server.requests_to("datalink") == []


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("500", {}),
        ("503", {}),
        ("408", {}),
        ("429", {"retry_after": None}),
        ("504", {}),
        ("drop", {"after_bytes": 3000}),
        ("truncated_zip", {}),
    ],
)
def test_a_failed_batch_is_retried_and_nothing_is_fetched_twice(
    server, fixture, tmp_path, kind, options
):
    ids = rvs_ids(fixture)[: 2 * BATCH]
    cfg = gaia_cfg(server)
    server.fail("datalink", kind, **options)
    cache = tmp_path / "cache"
    client = archive.gaia_client(cfg)
    archive.download_products(client, ids, cache, cfg, retrieval_types=["RVS"], progress=False)
    served = server.datalink_batches("RVS")
    assert len(served) == len(set(served)) == n_batches(ids)  # each batch once, no repeat
    assert sum(r.fault == kind for r in server.requests_to("datalink")) == 1
    out = tmp_path / "rvs_xp.h5"
    archive.download_products(
        client, ids, cache, cfg, retrieval_types=["XP_CONTINUOUS"], progress=False
    )
    query = archive.DataLinkQuery.of(client, cfg)
    archive.write_raw_store(ids, cache, out, query=query, batch_size=BATCH)
    assert_raw_store_holds_the_fixture(out, fixture, ids)


def test_an_unanswered_request_times_out_and_is_retried(server, fixture, tmp_path, caplog):
    ids = rvs_ids(fixture)[:BATCH]
    cfg = gaia_cfg(server, timeout_s=0.5)
    server.fail("datalink", "slow", delay=30.0)
    archive.download_products(
        archive.gaia_client(cfg), ids, tmp_path, cfg, retrieval_types=["RVS"], progress=False
    )
    # the held-back request was given up after timeout_s and sent again
    assert [r.fault for r in server.requests_to("datalink")] == ["slow", None]
    assert "TimeoutError" in caplog.text and len(server.datalink_batches("RVS")) == 1


def test_a_failure_after_the_last_retry_names_the_batch_and_keeps_the_others(
    server, fixture, tmp_path
):
    ids = rvs_ids(fixture)[: 3 * BATCH]
    cfg = gaia_cfg(server, retries=1)
    client = archive.gaia_client(cfg)
    # the first batch goes through; the second fails twice (its two attempts)
    archive.download_products(client, ids[:BATCH], tmp_path, cfg, retrieval_types=["RVS"])
    server.fail("datalink", "500", times=2)
    waits: list[float] = []
    with pytest.raises(archive.ArchiveError, match=r"DataLink RVS batch of 25 stars .*2 attempt"):
        archive.download_products(
            client, ids, tmp_path, cfg, retrieval_types=["RVS"], progress=False, sleep=waits.append
        )
    assert waits == [0.0]
    assert len(list((tmp_path / "RVS").glob("*.npz"))) == 1


def test_four_hundred_is_not_retried(server, fixture, tmp_path):
    server.max_ids = 10  # the archive refuses a batch over its limit
    cfg = gaia_cfg(server)
    with pytest.raises(
        archive.ArchiveError, match=r"HTTP 400 Bad Request: .*Too many source ids.*not retried"
    ):
        archive.download_products(
            archive.gaia_client(cfg), rvs_ids(fixture)[:BATCH], tmp_path, cfg, progress=False
        )
    assert len(server.requests_to("datalink")) == 1


def test_other_four_hundreds_are_not_retried_either(server, fixture, tmp_path):
    cfg = gaia_cfg(server)
    client = archive.gaia_client(cfg)
    server.fail("datalink", "404")
    ids = rvs_ids(fixture)[:BATCH]
    with pytest.raises(archive.ArchiveError, match=r"RVS batch .*: HTTP 404 Not Found"):
        archive.download_products(client, ids, tmp_path, cfg, progress=False)
    server.fail("async", "404")
    with pytest.raises(archive.ArchiveError, match=r"ADQL query .*: HTTP 404 Not Found"):
        archive.run_selection_query(client, "SELECT 1", tmp_path / "q.fits", cfg=cfg)
    assert [r.fault for r in server.requests] == ["404", "404"]  # one request each


def test_the_archive_s_retry_after_is_waited(server, fixture, tmp_path, caplog):
    """astroquery's errors carry no status: it is read from the answer its connection
    received, with Retry-After (1 s here, more than the back-off of 0)."""
    cfg = gaia_cfg(server)
    client = archive.gaia_client(cfg)
    server.fail("datalink", "429")
    server.fail("async", "503")
    waits: list[float] = []
    archive.download_products(
        client, rvs_ids(fixture)[:BATCH], tmp_path, cfg, progress=False, sleep=waits.append
    )
    archive.run_selection_query(
        client, "SELECT 1", tmp_path / "q.fits", cfg=cfg, sleep=waits.append
    )
    assert waits == [1.0, 1.0]
    assert "HTTP 429 Too Many Requests" in caplog.text and "retry 1 of 2 in 1.0 s" in caplog.text
    assert "HTTP 503 Service Unavailable" in caplog.text


def test_the_total_time_bound_stops_retrying_a_batch(server, fixture, tmp_path):
    cfg = gaia_cfg(server, retries=5, retry_total_s=0.5)
    server.fail("datalink", "503", times=6)  # Retry-After: 1, past the bound
    start = time.monotonic()
    with pytest.raises(archive.ArchiveError, match=r"batch .*bound of 0.5 s \(retry_total_s\)"):
        archive.download_products(
            archive.gaia_client(cfg), rvs_ids(fixture)[:BATCH], tmp_path, cfg, progress=False
        )
    assert time.monotonic() - start < 1.0 and len(server.requests_to("datalink")) == 1
    assert not list(tmp_path.rglob("*.npz"))


# --------------------------------------------------------------------------- the cache key


@pytest.mark.parametrize(
    "change",
    [
        {"release": "Gaia FPR"},
        {"data_structure": "DATAMODEL_STANDARD"},
        {"data_server": "another server"},
        {"retrieval_type": "XP_CONTINUOUS"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_a_batch_is_reused_only_for_the_same_request(fixture, tmp_path, change):
    """Changing the release, the data structure, the server or the product fetches every
    batch again (and the old batches stay for the old request); the format is part of the
    key too (it is no setting: always votable)."""
    served = {"releases": ("Gaia DR3", "Gaia FPR")}
    served["data_structures"] = ("INDIVIDUAL", "DATAMODEL_STANDARD")
    ids = rvs_ids(fixture)[: 2 * BATCH]
    cache = tmp_path / "cache"
    with fixture.server(**served) as first, fixture.server(**served) as second:
        cfg = gaia_cfg(first)
        archive.download_products(
            archive.gaia_client(cfg), ids, cache, cfg, retrieval_types=["RVS"], progress=False
        )
        new, rtype = dict(cfg), "RVS"
        if "data_server" in change:
            new["data_server"] = second.url + "/"
        elif "retrieval_type" in change:
            rtype = change["retrieval_type"]
        else:
            new.update(change)
        first.clear_log()
        report = archive.download_products(
            archive.gaia_client(new), ids, cache, new, retrieval_types=[rtype], progress=False
        )
        assert report.fetched == n_batches(ids) and report.cached == 0
        asked = first.requests_to("datalink") + second.requests_to("datalink")
        assert len(asked) == n_batches(ids)
        request = asked[0]
        assert (request.retrieval_type, request.release, request.data_structure) == (
            rtype,
            new["release"],
            new["data_structure"],
        )
        assert (request in second.requests) == ("data_server" in change)
        # the first request's batches are still there, and still used for it alone
        first.clear_log()
        report = archive.download_products(
            archive.gaia_client(cfg), ids, cache, cfg, retrieval_types=["RVS"], progress=False
        )
        assert report.cached == n_batches(ids) and first.requests_to("datalink") == []
    query = archive.DataLinkQuery("http://archive", "Gaia DR3", "INDIVIDUAL")
    group = ids[:BATCH]
    paths = {
        archive.batch_path(cache, q, "RVS", group)
        for q in (query, archive.DataLinkQuery("http://archive", "Gaia DR3", "INDIVIDUAL", "csv"))
    }
    assert len(paths) == 2


def test_a_batch_of_another_request_is_refused(server, fixture, tmp_path):
    ids = rvs_ids(fixture)[:BATCH]
    cfg = gaia_cfg(server)
    client = archive.gaia_client(cfg)
    archive.download_products(client, ids, tmp_path, cfg, progress=False)
    query = archive.DataLinkQuery.of(client, cfg)
    other = archive.DataLinkQuery(query.server, "Gaia FPR", query.data_structure)
    with pytest.raises(archive.ArchiveError, match="batch not downloaded"):
        archive.write_raw_store(ids, tmp_path, tmp_path / "x.h5", query=other, batch_size=BATCH)
    # a file renamed into another request's place is caught by the key stored inside it
    for rtype in archive.RETRIEVAL_TYPES:
        target = archive.batch_path(tmp_path, other, rtype, ids)
        target.parent.mkdir(parents=True, exist_ok=True)
        archive.batch_path(tmp_path, query, rtype, ids).rename(target)
    with pytest.raises(archive.ArchiveError, match="cached batch is for another request"):
        archive.write_raw_store(ids, tmp_path, tmp_path / "x.h5", query=other, batch_size=BATCH)


KILLED_RUN = """
import sys
sys.path.insert(0, {workflow!r})
from gaiacnn import archive
import numpy as np
cfg = {cfg!r}
ids = np.array({ids!r}, dtype=np.int64)
archive.download_products(archive.gaia_client(cfg), ids, {cache!r}, cfg, progress=False)
"""


def test_a_killed_download_resumes_with_the_missing_batches_only(server, fixture, tmp_path):
    """SIGKILL the download while batch k + 1 is on the wire (the server holds its answer),
    then run it again: exactly n - k batches are fetched, and the store is complete."""
    ids = rvs_ids(fixture)
    n = n_batches(ids)
    cfg = gaia_cfg(server, timeout_s=60.0)
    cache = tmp_path / "cache"
    k = 3
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            KILLED_RUN.format(
                workflow=str(REPO / "workflow"), cfg=cfg, ids=ids.tolist(), cache=str(cache)
            ),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # the killed run's DataLink temporary folder (archive.fetch_batch) stays in tmp_path
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    try:
        deadline = time.monotonic() + 60
        while len(server.datalink_batches("RVS")) < k:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.02)
        # batch k is answered; the client parses it (seconds) before asking for batch k + 1,
        # whose answer the server now holds back until the run is killed
        server.fail("datalink", "slow", delay=60.0)
        while len(list((cache / "RVS").glob("*.npz"))) < k:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(list((cache / "RVS").glob("*.npz"))) == k
    assert not list(cache.rglob("*.tmp*"))  # no half-written batch left behind
    server.clear_log()
    client = archive.gaia_client(cfg)
    report = archive.download_products(client, ids, cache, cfg, progress=False)
    assert len(server.datalink_batches("RVS")) == n - k
    assert len(server.datalink_batches("XP_CONTINUOUS")) == n
    assert report.fetched == 2 * n - k and report.cached == k
    out = tmp_path / "rvs_xp.h5"
    query = archive.DataLinkQuery.of(client, cfg)
    archive.write_raw_store(ids, cache, out, query=query, batch_size=BATCH)
    assert_raw_store_holds_the_fixture(out, fixture, ids)


# --------------------------------------------------------------------------- allStar


def test_allstar_download_resumes_and_is_verified(server, fixture, tmp_path):
    url = server.file_url("allStar.fits")
    sha1 = sha1_of(fixture.allstar)
    size = fixture.allstar.stat().st_size
    out = tmp_path / "allStar.fits"
    server.fail("files", "drop", after_bytes=size // 3)
    with pytest.raises(archive.ArchiveError, match=r"download of .*1 attempt"):
        archive.download_file(
            url, out, sha1=sha1, policy=RetryPolicy(retries=0), chunk=4096, progress=False
        )
    part = out.with_name(out.name + ".part")
    kept = part.stat().st_size  # what arrived, up to the last whole 4 kB block
    assert not out.exists() and size // 3 - 4096 < kept <= size // 3
    server.clear_log()
    fast = RetryPolicy(backoff_s=0.0)
    assert archive.download_file(url, out, sha1=sha1, policy=fast, progress=False) == size
    assert out.read_bytes() == fixture.allstar.read_bytes() and not part.exists()
    (request,) = server.requests_to("files")
    assert request.range == f"bytes={kept}-"  # the rest only


def test_allstar_with_the_wrong_checksum_is_removed(server, tmp_path):
    out = tmp_path / "allStar.fits"
    with pytest.raises(archive.ArchiveError, match="does not match the configured"):
        archive.download_file(
            server.file_url("allStar.fits"),
            out,
            sha1="0" * 40,
            policy=RetryPolicy(backoff_s=0.0),
            progress=False,
        )
    assert not out.exists() and not out.with_name(out.name + ".part").exists()


def test_a_local_mirror_file_url(fixture, tmp_path):
    out = tmp_path / "allStar.fits"
    archive.download_file(
        f"file://{fixture.allstar}", out, sha1=sha1_of(fixture.allstar), progress=False
    )
    assert out.read_bytes() == fixture.allstar.read_bytes()


# --------------------------------------------------------------------------- the workflow


@pytest.mark.slow
def test_gaia_dr3_source_runs_from_query_to_arrays(fixture, tmp_path):
    """``data.source: gaia_dr3`` end to end through Snakemake against the local server: the
    query, the allStar download, the cuts, the DataLink batches and the HDF5 arrays, which
    hold the fixture's spectra (NaN pixels filled as for every source) and labels."""
    import yaml

    from gaiacnn.layout import validate
    from gaiacnn.spectra import fill_nan_pixels
    from gaiacnn.tables import read_fits_columns

    work = tmp_path / "run"
    (work / "config").mkdir(parents=True)
    with fixture.server() as server:
        cfg = yaml.safe_load((REPO / "tests/integration/config/config.yaml").read_text())
        cfg["data"] = {
            "source": "gaia_dr3",
            "gaia": {**gaia_cfg(server), "cache_dir": str(tmp_path / "cache")},
            "apogee": {
                "url": server.file_url("allStar.fits"),
                "sha1": sha1_of(fixture.allstar),
                "backoff_s": 0.0,
            },
        }
        server.fail("datalink", "500")  # one failed batch on the way
        (work / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
        targets = ("results/arrays/training.h5", "results/arrays/observed.h5")
        proc = subprocess.run(
            [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(work), "-c2", *targets],
            capture_output=True,
            text=True,
            timeout=900,
            env=audit_env(tmp_path / IMPORT_AUDIT),  # what the archive jobs import
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert "ADQL" in (work / "results/logs/gaia_query.log").read_text()
        served = server.datalink_batches("RVS")
        assert len(served) == len(set(served))  # no batch twice, the failed one retried
    allstar = read_fits_columns(fixture.allstar, ["GAIAEDR3_SOURCE_ID", "TEFF", "M_H"])
    allstar = allstar.drop_duplicates("GAIAEDR3_SOURCE_ID").set_index("GAIAEDR3_SOURCE_ID")
    rv_error = dict(
        zip(
            fixture.source_ids.tolist(),
            np.asarray(fixture.query_result["radial_velocity_error"].filled(np.nan), np.float32),
            strict=True,
        )
    )
    n_rows, in_arrays = 0, set()
    for sample in ("training", "observed"):
        path = work / "results/arrays" / f"{sample}.h5"
        n_rows += validate(path).n_rows
        with h5py.File(path) as h5:
            sid = h5["source_id"][:]
            flux, bp, rp = (
                h5["rvs/flux"][:],
                h5["xp/bp_coefficients"][:],
                h5["xp/rp_coefficients"][:],
            )
            bp_err, rp_err = h5["xp/bp_coefficient_errors"][:], h5["xp/rp_coefficient_errors"][:]
            assert h5["xp/bp_coefficient_errors"].attrs["unit"] == "e-/s"
            wl = h5["rvs/flux"].attrs["wavelength_nm"]
            raw = np.stack([fixture.rvs[int(i)][0] for i in sid])
            np.testing.assert_array_equal(flux, fill_nan_pixels(raw, wl)[0].astype(np.float32))
            for k, i in enumerate(sid):
                b, r = fixture.xp[int(i)]  # every star of the arrays has both XP bands
                np.testing.assert_array_equal(rp[k], np.asarray(r, np.float32))
                np.testing.assert_array_equal(bp[k], np.asarray(b, np.float32))
                be, re_ = fixture.xp_errors[int(i)]
                np.testing.assert_array_equal(bp_err[k], np.asarray(be, np.float32))
                np.testing.assert_array_equal(rp_err[k], np.asarray(re_, np.float32))
            # Gaia DR3 radial_velocity_error [km/s] of every star, NaN where the archive's
            # is null (Fig. C.1)
            ds = h5["rvs/radial_velocity_error"]
            assert ds.attrs["unit"] == "km/s"
            np.testing.assert_array_equal(ds[:], [rv_error[int(i)] for i in sid])
            if sample == "training":
                ref = allstar.loc[sid]
                np.testing.assert_allclose(h5["labels/teff"][:], ref["TEFF"], rtol=1e-6)
                np.testing.assert_allclose(h5["labels/m_h"][:], ref["M_H"], rtol=1e-5, atol=1e-6)
        in_arrays |= {int(i) for i in sid}
    assert fixture.no_xp_id not in in_arrays  # has_xp_continuous false: cut
    assert fixture.rp_only_id not in in_arrays  # no BP band: left out of the arrays
    report = (work / "results/samples/cut_report.tsv").read_text()
    assert "has_xp_continuous" in report and n_rows > 0
    # the archive jobs import only what envs/archive.yaml installs (tests/test_envs.py)
    checked = check_job_imports(tmp_path / IMPORT_AUDIT, rules_by_script(cfg))
    assert {"gaia_query.py", "apogee_download.py", "gaia_spectra.py"} <= set(checked)
