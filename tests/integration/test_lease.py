"""Leases that cannot be stolen: every lease write is conditional (If-Match on S3, an ETag condition on
Azure, an flock-guarded compare locally); a holder whose lease was taken over learns so at its next
renewal and stops; expiry is judged by the store's clock, whatever the clocks of holder and reader say."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from preprocess import lease as lease_module
from preprocess.lease import LeaseHeld, acquire
from preprocess.store import ArtifactStore, Conflict
from tests import samples
from tests.conftest import md5


@pytest.fixture(params=["local", "s3", "az"])
def store_url(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "store")
    if request.param == "s3":
        return f"s3://{request.getfixturevalue('s3_bucket')}/leased"
    return f"az://{request.getfixturevalue('az_container')}/leased"


def test_put_if_creates_once_and_replaces_only_the_version_it_names(store_url):
    store = ArtifactStore(store_url)
    path = f"{store.root}/leases/probe.json"
    first = store.put_if(path, b"one", None)
    with pytest.raises(FileExistsError):
        store.put_if(path, b"two", None)
    read = store.read_versioned(path)
    assert (read.data, read.tag) == (b"one", first)
    second = store.put_if(path, b"three", first)
    with pytest.raises(Conflict):  # a writer holding the old version is refused: it changed since
        store.put_if(path, b"four", first)
    assert store.read_versioned(path).data == b"three"
    store.fs.rm_file(path)
    with pytest.raises(Conflict):  # and so is one whose object is gone
        store.put_if(path, b"five", second)


def test_a_stale_holder_cannot_renew_over_the_run_that_took_its_lease(store_url):
    store = ArtifactStore(store_url)
    stalled = acquire(store, expiry=timedelta(milliseconds=200))  # never renewed in time
    taker = acquire(ArtifactStore(store_url), expiry=timedelta(hours=1), wait=10, poll=0.1)
    assert taker.taken_over is not None and taker.taken_over["run"] == stalled.run
    before = store.read_versioned(taker.path)
    assert stalled.renew() is False and stalled.lost
    assert store.read_versioned(taker.path).tag == before.tag  # the taker's lease is untouched
    stalled.release()  # a lost lease's release touches nothing either
    assert store.read_versioned(taker.path).tag == before.tag
    assert taker.renew() and not taker.lost
    with pytest.raises(LeaseHeld):
        acquire(store)
    taker.release()


def test_a_renewal_between_the_takers_read_and_its_claim_defeats_the_claim(store_url):
    store = ArtifactStore(store_url)
    held = acquire(store, expiry=timedelta(seconds=30))
    seen = store.read_versioned(held.path)  # a taker reads the lease (and judges it expired, say) ...
    assert held.renew()                     # ... the holder renews meanwhile ...
    with pytest.raises(Conflict):           # ... so the claim, conditional on what was read, fails
        store.put_if(held.path, b'{"taken_over_by": "thief"}', seen.tag)
    assert held.renew() and not held.lost
    held.release()


class _Clock:
    """The lease module's clock, moved by `skew` (datetime.now is all it reads)."""

    def __init__(self, monkeypatch, skew: timedelta) -> None:
        real = datetime

        class Skewed(datetime):
            @classmethod
            def now(cls, tz=None):  # type: ignore[override]
                return real.now(tz) + skew

        monkeypatch.setattr(lease_module, "datetime", Skewed)


def test_expiry_follows_the_stores_clock_not_the_holders_or_the_readers(store_url, monkeypatch):
    store = ArtifactStore(store_url)
    _Clock(monkeypatch, timedelta(days=-1))      # the holder's clock is a day slow:
    held = acquire(store, expiry=timedelta(seconds=3))
    body = json.loads(store.fs.cat_file(held.path))
    assert datetime.fromisoformat(body["expires"]) < datetime.now(UTC)  # by its own words, long expired
    _Clock(monkeypatch, timedelta(days=1))       # the reader's clock is a day fast
    with pytest.raises(LeaseHeld, match="by the store's clock"):
        acquire(store)                           # yet the lease is live: the store wrote it just now
    monkeypatch.setattr(lease_module, "datetime", datetime)
    taker = acquire(store, wait=20, poll=0.2)    # not renewed for 3 s of the store's time: taken over
    assert taker.taken_over is not None and taker.taken_over["run"] == held.run
    taker.release()


@pytest.mark.parametrize("profile", ["sync", "auto"])  # auto: these 16 small local files build in-process too
def test_a_reindex_that_lost_its_lease_stops_and_says_so(tmp_path, profile):
    store_dir = tmp_path / "store"
    rows = []
    for i in range(16):  # long enough that the run is still building when it is resumed
        sam = samples.sam(tmp_path / f"s{i}.sam", reads=20000, seed=i + 1)
        rows.append(f"s{i},{sam},SAM,{md5(sam)}\n")
    (tmp_path / "c.csv").write_text("id,access_url,format,md5\n" + "".join(rows))
    proc = subprocess.Popen([sys.executable, "-m", "preprocess", "reindex", "c.csv", "--store", str(store_dir),
                             "--cluster", profile, "--lease-expiry", "2s"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    deadline = time.monotonic() + 120
    while not list(store_dir.glob("leases/reindex.*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGSTOP)  # stalled (a long GC pause, a frozen VM): it cannot renew
    try:
        store = ArtifactStore(str(store_dir))
        taker = acquire(store, wait=60, poll=0.2)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err[-3000:]
    assert f"error: lost the reindex lease of {store_dir}" in err and f"run {taker.run} on host" in err
    assert "stopped so that two runs never work on the store at once" in err
    assert taker.taken_over is not None
    assert store.read_versioned(taker.path).tag == taker.tag  # the stopped run never wrote over the new lease
    assert taker.renew()
    taker.release()
