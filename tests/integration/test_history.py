"""The run history is a hash chain: `history --verify` names the first record edited, removed or
inserted, and two runs appending at once both land in one chain. On the local disk, S3 (moto) and
Azure Blob (Azurite)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from preprocess.runs import digest, list_records, record_name, verify_chain, write_record
from preprocess.store import ArtifactStore
from tests import samples
from tests.conftest import md5


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "preprocess", *args], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ), timeout=240)


@pytest.fixture(params=["local", "s3", "az"])
def store_url(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "store")
    if request.param == "s3":
        return f"s3://{request.getfixturevalue('s3_bucket')}/history"
    return f"az://{request.getfixturevalue('az_container')}/history"


def append(store: ArtifactStore, count: int, writer: str = "w") -> None:
    for i in range(count):
        write_record(store, {"run": f"{writer}{i}", "command": "batch", "started": f"2026-12-06T10:00:{i:02d}+00:00",
                             "finished": f"2026-12-06T10:00:{i:02d}+00:00", "host": writer,
                             "counts": {"built": i}})


def runs(store: ArtifactStore, seq: int) -> str:
    return f"{store.root}/runs/{record_name(seq)}"


def read(store: ArtifactStore, seq: int) -> dict:
    return json.loads(store.fs.cat_file(runs(store, seq)))


def write(store: ArtifactStore, seq: int, record: dict) -> None:
    store.fs.pipe_file(runs(store, seq), json.dumps(record).encode())


def with_own_digest(record: dict) -> dict:
    """What a careful forger writes: the record's own sha256 recomputed over its new content."""
    body = {k: v for k, v in record.items() if k != "sha256"}
    return {**body, "sha256": digest(body)}


def verify(store_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return cli("history", "--store", store_url, "--verify", cwd=tmp_path)


def test_a_batch_appends_a_record_that_history_lists_and_verifies(tmp_path):
    store_dir = tmp_path / "store"
    bed = samples.bed(tmp_path / "b.bed", records=50)
    (tmp_path / "c.csv").write_text(f"id,access_url,format,md5\nb,{bed},BED,{md5(bed)}\n")
    for _ in range(2):
        assert cli("batch", "c.csv", "--store", str(store_dir), "--cluster", "sync", cwd=tmp_path).returncode == 0
    listed = cli("history", "--store", str(store_dir), cwd=tmp_path)
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split()[0] == "1" and "batch" in lines[0] and "1 built" in lines[0]
    assert lines[1].split()[0] == "2" and "1 cached" in lines[1] and lines[-1].startswith("2 run(s)")
    whole = verify(str(store_dir), tmp_path)
    assert whole.returncode == 0 and whole.stdout.startswith("chain whole: 2 record(s)")
    last = cli("history", "--store", str(store_dir), "--last", "1", "--json", "-", "--verify", cwd=tmp_path)
    data = json.loads(last.stdout)
    assert [r["seq"] for r in data["runs"]] == [2] and data["verify"]["ok"] is True
    first = read(ArtifactStore(str(store_dir)), 1)
    assert data["runs"][0]["previous"] == digest(first)  # the second record names the first's bytes


def test_an_edited_record_is_named(store_url, tmp_path):
    store = ArtifactStore(store_url)
    append(store, 4)
    second = read(store, 2)
    write(store, 2, {**second, "counts": {"built": 99}})  # the digest it carries no longer fits
    broken = verify(store_url, tmp_path)
    assert broken.returncode == 1
    assert "runs/000000000002.json was edited: its bytes do not match the sha256 it carries" in broken.stderr
    write(store, 2, with_own_digest({**second, "counts": {"built": 99}}))  # digest redone: the next record tells
    broken = verify(store_url, tmp_path)
    assert broken.returncode == 1
    assert "runs/000000000002.json was edited: runs/000000000003.json carries another sha256" in broken.stderr
    write(store, 2, second)
    assert verify(store_url, tmp_path).returncode == 0


def test_a_removed_record_is_named(store_url, tmp_path):
    store = ArtifactStore(store_url)
    append(store, 4)
    store.fs.rm_file(runs(store, 2))
    broken = verify(store_url, tmp_path)
    assert broken.returncode == 1
    assert "runs/000000000002.json was removed: runs/000000000003.json follows runs/000000000001.json" in broken.stderr
    store.fs.rm_file(runs(store, 1))  # the first record too: nothing precedes the third now
    assert "runs/000000000001.json, runs/000000000002.json were removed" in verify(store_url, tmp_path).stderr


def test_an_inserted_record_is_named(store_url, tmp_path):
    store = ArtifactStore(store_url)
    append(store, 3)
    originals = [read(store, seq) for seq in (1, 2, 3)]
    # A forged run slipped in as record 2: the later records move up one, the forgery links to record 1.
    forged = with_own_digest({**originals[1], "run": "forged", "seq": 2, "previous": digest(originals[0])})
    write(store, 4, originals[2])
    write(store, 3, originals[1])
    write(store, 2, forged)
    broken = verify(store_url, tmp_path)
    assert broken.returncode == 1
    assert "runs/000000000002.json was inserted: runs/000000000003.json links past it" in broken.stderr
    for seq, record in zip((1, 2, 3), originals, strict=True):
        write(store, seq, record)
    store.fs.rm_file(runs(store, 4))
    assert verify(store_url, tmp_path).returncode == 0
    # A record beside the chain, under a name of its own, is no record of it.
    store.fs.pipe_file(f"{store.root}/runs/000000000002-extra.json", json.dumps(originals[1]).encode())
    broken = verify(store_url, tmp_path)
    assert broken.returncode == 1 and "runs/000000000002-extra.json was inserted" in broken.stderr


def test_two_writers_racing_both_land_in_one_chain(store_url):
    barrier = threading.Barrier(2)

    def writer(name: str) -> None:
        store = ArtifactStore(store_url)  # each its own connection, as two processes would have
        barrier.wait()
        append(store, 5, writer=name)

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store = ArtifactStore(store_url)
    records = list_records(store)
    assert sorted(r["run"] for r in records) == sorted(f"{w}{i}" for w in "ab" for i in range(5))  # none lost
    assert [r["seq"] for r in records] == list(range(1, 11))
    check = verify_chain(store)
    assert check.ok and check.records == 10, check.problem


def test_records_from_before_the_chain_are_listed_first_and_not_covered(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"))
    old = {"run": "old", "command": "batch", "started": "2026-01-01T00:00:00+00:00", "host": "h"}
    store.fs.makedirs(f"{store.root}/runs", exist_ok=True)
    store.fs.pipe_file(f"{store.root}/runs/20260101T000000Z-0123456789ab.json", json.dumps(old).encode())
    append(store, 2)
    assert [r["run"] for r in list_records(store)] == ["old", "w0", "w1"]
    check = verify_chain(store)
    assert check.ok and check.records == 2 and check.before_chain == 1
    late = {**old, "run": "late", "started": "2027-01-01T00:00:00+00:00"}  # an old-style name, dated after the chain
    store.fs.pipe_file(f"{store.root}/runs/20270101T000000Z-0123456789ab.json", json.dumps(late).encode())
    check = verify_chain(store)
    assert not check.ok and "20270101T000000Z-0123456789ab.json was inserted: it is dated after" in str(check.problem)
