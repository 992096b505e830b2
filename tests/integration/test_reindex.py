"""reindex: only what is stale is built; a lease keeps runs apart; an interrupted run is finished by the next.
Also status, run records, batch --retry-failed and gc by catalogue, on the local store and S3 (moto)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from preprocess import registry
from preprocess.catalog import read_catalog
from preprocess.config import load_settings
from preprocess.lease import LeaseHeld, acquire
from preprocess.reindex import reindex
from preprocess.runs import list_records
from preprocess.status import status
from preprocess.store import ArtifactStore
from tests import samples
from tests.conftest import md5

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "preprocess", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=240)


def catalogue(tmp_path: Path, rows: list[tuple[str, Path, str, str]]) -> Path:
    path = tmp_path / "catalogue.csv"
    path.write_text("id,access_url,format,md5\n" + "".join(f"{i},{p},{f},{m}\n" for i, p, f, m in rows))
    return path


def three_rows(tmp_path: Path) -> Path:
    """A SAM and a VCF with md5, a BED without (hashed on the client)."""
    sam = samples.sam(tmp_path / "a.sam", reads=300)
    vcf = samples.vcf(tmp_path / "v.vcf", records=200)
    bed = samples.bed(tmp_path / "b.bed", records=150)
    return catalogue(tmp_path, [("a", sam, "SAM", md5(sam)), ("v", vcf, "VCF", md5(vcf)), ("b", bed, "BED", "")])


def settings_for(url: str, tmp_path: Path):
    return load_settings(**{"store.url": url, "cluster.profile": "sync", "scratch": str(tmp_path)})


def actions(report) -> dict[str, tuple[str, str]]:
    return {r.id: (r.action, r.status) for r in report.results}


def sha256(store: ArtifactStore, key: str, name: str) -> str:
    return hashlib.sha256(store.fs.cat_file(store.path(key, name))).hexdigest()


@pytest.fixture(params=["local", "s3", "az"])
def store_url(request, tmp_path) -> str:
    """Each backend: leases rest on its exclusive create (a link locally, If-None-Match on S3, Azure's own)."""
    if request.param == "local":
        return str(tmp_path / "store")
    if request.param == "s3":
        return f"s3://{request.getfixturevalue('s3_bucket')}/catalogue"
    return f"az://{request.getfixturevalue('az_container')}/catalogue"


@pytest.mark.parametrize("plan_from", ["keys", "shards"])
def test_reindex_builds_only_what_is_stale(store_url, plan_from, tmp_path):
    settings = settings_for(store_url, tmp_path)
    store = ArtifactStore(store_url)
    manifest = three_rows(tmp_path)
    run = lambda **kw: reindex(read_catalog(manifest), settings=settings, plan_from=plan_from, **kw)  # noqa: E731

    first = run()
    assert actions(first) == {"a": ("build", "built"), "v": ("build", "built"), "b": ("build", "built")}
    assert [r.hashed for r in first.results] == [False, False, True]
    assert actions(run()) == {"a": ("ok", "cached"), "v": ("ok", "cached"), "b": ("ok", "cached")}
    keys = {r.id: r.key for r in first.results}

    # a changed md5: only that row is built, under a new key
    old_md5 = md5(tmp_path / "a.sam")
    samples.sam(tmp_path / "a.sam", reads=300, seed=9)
    manifest.write_text(manifest.read_text().replace(old_md5, md5(tmp_path / "a.sam")))
    changed = run()
    assert actions(changed) == {"a": ("build", "built"), "v": ("ok", "cached"), "b": ("ok", "cached")}
    assert changed.results[0].key != keys["a"]

    # a missing artifact: found from the listing, rebuilt in place under the same key
    vcf = store.lookup(keys["v"])
    assert vcf is not None
    store.fs.rm_file(store.path(keys["v"], vcf.artifact("index").name))
    missing = run(dry_run=True)
    assert actions(missing)["v"] == ("missing", "pending") and "gone" in (missing.results[1].reason or "")
    assert not store.fs.exists(store.path(keys["v"], vcf.artifact("index").name))  # a dry run changes nothing
    assert actions(run())["v"] == ("missing", "built")
    assert sha256(store, keys["v"], vcf.artifact("index").name) == vcf.artifact("index").sha256

    # a corrupt artifact (same size, other bytes): only --verify sees it, and rebuilds it
    bed = store.lookup(keys["b"])
    assert bed is not None
    data = bed.artifact("data")
    store.fs.pipe_file(store.path(keys["b"], data.name), b"\0" * data.size)
    assert actions(run())["b"] == ("ok", "cached")
    verified = run(verify=True)
    assert actions(verified) == {"a": ("ok", "cached"), "v": ("ok", "cached"), "b": ("corrupt", "built")}
    assert sha256(store, keys["b"], data.name) == data.sha256
    assert actions(run(verify=True))["b"] == ("ok", "cached")


def test_a_bumped_pipeline_version_rebuilds_its_rows_and_gc_finds_the_superseded_key(tmp_path, monkeypatch):
    store_dir = tmp_path / "store"
    settings = settings_for(str(store_dir), tmp_path)
    manifest = three_rows(tmp_path)
    before = reindex(read_catalog(manifest), settings=settings)
    old_vcf = before.results[1].key
    real = registry.pipeline_for

    def bumped(fmt: str):
        found = real(fmt)
        return dataclasses.replace(found, version="999") if found.name == "vcf" else found  # type: ignore[type-var]

    monkeypatch.setattr(registry, "pipeline_for", bumped)
    state = {r.id: r for r in status(read_catalog(manifest), settings=settings).rows or []}
    assert state["a"].state == "current" and state["v"].state == "stale"
    assert state["v"].why and f"vcf/{real('VCF').version} -> vcf/999" in state["v"].why
    after = reindex(read_catalog(manifest), settings=settings)
    assert actions(after) == {"a": ("ok", "cached"), "v": ("build", "built"), "b": ("ok", "cached")}
    assert after.results[1].key != old_vcf and after.results[1].pipeline == "vcf/999"

    from preprocess.gc import superseded

    store = ArtifactStore(str(store_dir))
    young = superseded(store, read_catalog(manifest), settings, timedelta(hours=1))
    assert young.superseded == []  # just written: a running batch could be committing it
    listed = superseded(store, read_catalog(manifest), settings, timedelta(seconds=-60))
    assert listed.superseded == [old_vcf] and store.lookup(old_vcf) is not None  # the default removes nothing
    superseded(store, read_catalog(manifest), settings, timedelta(seconds=-60), delete=True)
    assert store.lookup(old_vcf) is None and not os.path.exists(store.key_dir(old_vcf))
    assert all(store.lookup(r.key) is not None for r in after.results if r.key)
    assert list_records(store) and os.path.isdir(store_dir / "runs")  # gc leaves the history alone


def test_gc_command_with_catalogues_lists_then_deletes(tmp_path):
    store_dir = tmp_path / "store"
    manifest = three_rows(tmp_path)
    assert cli("batch", str(manifest), "--store", str(store_dir), "--cluster", "sync", cwd=tmp_path).returncode == 0
    samples.sam(tmp_path / "a.sam", reads=300, seed=9)  # row a changes: its first key is superseded
    only_sam = catalogue(tmp_path, [("a", tmp_path / "a.sam", "SAM", md5(tmp_path / "a.sam"))])
    assert cli("batch", str(only_sam), "--store", str(store_dir), "--cluster", "sync", cwd=tmp_path).returncode == 0
    dry = cli("gc", str(only_sam), "--store", str(store_dir), "--older-than", "0s", cwd=tmp_path)
    assert dry.returncode == 0 and "would remove superseded key" in dry.stdout, dry.stdout
    assert "superseded: 1 key(s)" in dry.stdout and "orphans (no row names them): 2 key(s)" in dry.stdout
    assert "nothing removed: give --delete to remove" in dry.stdout
    assert len(list((store_dir / "v1").glob("*/*/manifest.json"))) == 4
    held = acquire(ArtifactStore(str(store_dir)))  # a reindex running meanwhile: its lease is no debris
    done = cli("gc", str(only_sam), "--store", str(store_dir), "--older-than", "0s", "--delete", cwd=tmp_path)
    assert done.returncode == 0 and "removed superseded key" in done.stdout
    assert os.path.exists(held.path)
    held.release()
    assert len(list((store_dir / "v1").glob("*/*/manifest.json"))) == 3  # v and b: orphans, kept
    assert list((store_dir / "runs").glob("*.json")) and (store_dir / "runs").is_dir()
    remote = catalogue(tmp_path, [("r", "s3://elsewhere/r.sam", "SAM", "")])
    refused = cli("gc", str(remote), "--store", str(store_dir), "--delete", cwd=tmp_path)
    assert refused.returncode == 2 and "r (no md5, not a local file)" in refused.stderr


def test_status_and_reindex_give_one_reason_for_a_removed_key(tmp_path):
    """A key folder removed after a batch: both say so, neither claims the pipeline moved."""
    store_dir = tmp_path / "store"
    manifest = three_rows(tmp_path)
    assert cli("batch", str(manifest), "--store", str(store_dir), "--cluster", "sync", cwd=tmp_path).returncode == 0
    store = ArtifactStore(str(store_dir))
    key = next(r for r in reindex(read_catalog(manifest), settings=settings_for(str(store_dir), tmp_path),
                                  dry_run=True).results if r.id == "a").key
    assert key is not None
    store.fs.rm(store.key_dir(key), recursive=True)
    plan = cli("reindex", str(manifest), "--store", str(store_dir), "--dry-run", cwd=tmp_path)
    shown = cli("status", str(manifest), "--store", str(store_dir), cwd=tmp_path)
    assert plan.returncode == 0 and shown.returncode == 0, (plan.stderr, shown.stderr)
    reason = next(line for line in plan.stdout.splitlines() if line.startswith("a "))
    row = next(line for line in shown.stdout.splitlines() if line.strip().startswith("a "))
    why = row.split("stale", 1)[1].strip()
    assert "removed from the store since" in why and "pipeline" not in why, shown.stdout
    assert reason.endswith(why), (reason, row)
    state = status(read_catalog(manifest), settings=settings_for(str(store_dir), tmp_path))
    assert {r.id: r.state for r in state.rows or []} == {"a": "stale", "v": "current", "b": "current"}


def test_a_held_lease_makes_a_second_run_exit_or_wait(tmp_path):
    store_dir = tmp_path / "store"
    manifest = three_rows(tmp_path)
    store = ArtifactStore(str(store_dir))
    held = acquire(store)
    busy = cli("reindex", str(manifest), "--store", str(store_dir), "--cluster", "sync", cwd=tmp_path)
    assert busy.returncode == 3
    assert f"run {held.run} on host" in busy.stderr and "renewed until" in busy.stderr
    assert not (store_dir / "v1").exists()  # nothing was built
    waiting = subprocess.Popen([sys.executable, "-m", "preprocess", "reindex", str(manifest), "--store",
                                str(store_dir), "--workers", "1", "--wait", "120", "--json", "-"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert waiting.stderr is not None
    told = waiting.stderr.readline()  # it says it waits, and for whom
    assert f"waiting up to 120s: another reindex of {store_dir} is running: run {held.run}" in told
    held.release()
    out, err = waiting.communicate(timeout=240)
    assert waiting.returncode == 0, err
    assert json.loads(out)["counts"]["status"]["built"] == 3


def test_two_overlapping_runs_build_each_key_once(tmp_path):
    store_dir = tmp_path / "store"
    rows = []
    for i in range(6):
        sam = samples.sam(tmp_path / f"s{i}.sam", reads=3000, seed=i + 1)
        rows.append((f"s{i}", sam, "SAM", md5(sam)))
    manifest = catalogue(tmp_path, rows)
    argv = [sys.executable, "-m", "preprocess", "reindex", str(manifest), "--store", str(store_dir), "--cluster",
            "sync", "--wait", "200", "--json", "-"]
    runs = [subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    reports = []
    for proc in runs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        reports.append(json.loads(out))
    built = [r["key"] for report in reports for r in report["results"] if r["status"] == "built"]
    assert sorted(built) == sorted({r["key"] for r in reports[0]["results"]})  # every key built, none twice
    leases = sorted((r["lease"] for r in list_records(ArtifactStore(str(store_dir)))), key=lambda x: x["acquired"])
    assert len(leases) == 2 and leases[0]["released"] <= leases[1]["acquired"]  # one after the other


def test_an_expired_lease_is_taken_over(store_url):
    store = ArtifactStore(store_url)
    dead = acquire(store, expiry=timedelta(milliseconds=200))  # never renewed: its holder died
    live = acquire(ArtifactStore(store_url), expiry=timedelta(hours=1), wait=5, poll=0.1)
    assert live.taken_over is not None and live.taken_over["run"] == dead.run
    assert live.generation == dead.generation + 1
    with pytest.raises(LeaseHeld, match="expiry|renewed until"):
        acquire(store)
    dead.renew()
    assert dead.lost  # the stalled holder learns it lost the lease instead of overwriting the new one
    live.release()
    again = acquire(store)
    assert again.taken_over is None
    again.release()


def test_of_two_runs_racing_for_a_free_lease_exactly_one_gets_it(store_url):
    got, refused = [], []
    barrier = threading.Barrier(4)

    def take() -> None:
        barrier.wait()
        try:
            got.append(acquire(ArtifactStore(store_url)))
        except LeaseHeld:
            refused.append(True)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 1 and len(refused) == 3
    got[0].release()


def test_an_interrupted_reindex_is_finished_by_the_next(tmp_path):
    store_dir = tmp_path / "store"
    rows = []
    for i in range(16):  # enough that the run cannot finish between its first commit and the kill
        sam = samples.sam(tmp_path / f"s{i}.sam", reads=20000, seed=i + 1)
        rows.append((f"s{i}", sam, "SAM", md5(sam)))
    manifest = catalogue(tmp_path, rows)
    proc = subprocess.Popen([sys.executable, "-m", "preprocess", "reindex", str(manifest), "--store", str(store_dir),
                             "--cluster", "sync", "--lease-expiry", "2s"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 200
    while not list(store_dir.glob("v1/*/*/manifest.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # mid-run: later keys half uploaded or not started
    proc.wait()
    store = ArtifactStore(str(store_dir))
    committed = set(store.keys())
    assert 1 <= len(committed) < 16
    for key in committed:  # consistent: every manifest's artifacts whole
        found = store.lookup(key)
        assert found is not None
        assert all(sha256(store, key, a.name) == a.sha256 for a in found.artifacts)
    assert list(store_dir.glob("leases/*.json"))  # the dead run's lease is still there
    settings = settings_for(str(store_dir), tmp_path)
    finish = reindex(read_catalog(manifest), settings=settings, wait=30)
    assert finish.lease and finish.lease["taken_over"] is not None
    assert {r.key for r in finish.results if r.action == "ok"} == committed
    assert all(r.status == "built" for r in finish.results if r.key not in committed)
    final = reindex(read_catalog(manifest), settings=settings, verify=True)
    assert all(r.action == "ok" for r in final.results) and len(set(store.keys())) == 16


def test_status_on_an_empty_and_a_full_store(tmp_path):
    empty = cli("status", "--store", str(tmp_path / "empty"), "--json", cwd=tmp_path)
    assert empty.returncode == 0, empty.stderr
    nothing = json.loads(empty.stdout)
    assert nothing["keys"] == {} and nothing["bytes"] == 0 and nothing["runs"] == [] and nothing["failures"] == []

    store_dir = tmp_path / "store"
    manifest = three_rows(tmp_path)
    bam = samples.bam(tmp_path / "ok.bam", reads=100)
    (tmp_path / "broken.bam").write_bytes(bam.read_bytes()[:300])
    manifest.write_text(manifest.read_text() + "x,broken.bam,BAM,\n")
    batch = cli("batch", str(manifest), "--store", str(store_dir), "--cluster", "sync", cwd=tmp_path)
    assert batch.returncode == 1
    full = json.loads(cli("status", "--store", str(store_dir), "--json", cwd=tmp_path).stdout)
    assert full["keys"] == {"bam": 1, "bed": 1, "vcf": 1}
    assert full["bytes"] == sum(p.stat().st_size for p in (store_dir / "v1").rglob("*") if p.is_file())
    assert [(r["command"], r["counts"]) for r in full["runs"]] == [
        ("batch", {"built": 3, "cached": 0, "passthrough": 0, "failed": 1})]
    assert [(f["id"], f["error"]["class"]) for f in full["failures"]] == [("x", "InputError")]
    rows = cli("status", str(manifest), "--store", str(store_dir), cwd=tmp_path)
    assert rows.returncode == 0 and "3 key(s) (1 bam, 1 bed, 1 vcf)" in rows.stdout
    assert "x: InputError" in rows.stdout and "rows: 3 current, 1 failing" in rows.stdout


def test_run_records_say_what_happened_and_hold_no_secret(s3_bucket, tmp_path):
    sam = samples.sam(tmp_path / "a.sam", reads=200)
    manifest = catalogue(tmp_path, [("a", sam, "SAM", md5(sam)),
                                    ("signed", "https://127.0.0.1:9/x.bam?sig=TOPSECRETSIG", "BAM", "0" * 32)])
    url = f"s3://{s3_bucket}/p"
    secret_env = {"DASK_PREPROCESS__STORE__STORAGE_OPTIONS":
                  '{"key": "testing-key-id", "secret": "testing-secret-key"}',
                  "DASK_PREPROCESS__SOURCE__ATTEMPTS": "1"}
    for command in ("batch", "reindex"):
        out = cli(command, str(manifest), "--store", url, "--cluster", "sync", cwd=tmp_path, env=secret_env)
        assert out.returncode == 1, out.stderr  # the signed URL points nowhere
    store = ArtifactStore(url)
    records = list_records(store)
    assert [r["command"] for r in records] == ["batch", "reindex"]
    for record in records:
        text = json.dumps(record)
        assert "testing-secret-key" not in text and "TOPSECRETSIG" not in text and "testing-key-id" not in text
        assert record["options"]["storage_options"] == ["key", "secret"]
        assert record["host"] and record["versions"]["preprocess"] and record["started"] <= record["finished"]
        outcome = {r["id"]: r["status"] for r in record["results"]}
        assert outcome["signed"] == "failed"
    assert records[0]["results"][0]["status"] == "built" and records[0]["results"][0]["timings"]
    assert records[0]["tools"]["samtools"] and records[1]["counts"]["status"]["cached"] == 1
    assert records[1]["ok"] == [["a", md5(sam)]]  # unchanged rows, compactly
    seen = cli("status", str(manifest), "--store", url, "--json", cwd=tmp_path, env=secret_env)
    assert seen.returncode == 0, seen.stderr
    state = json.loads(seen.stdout)
    assert state["keys"] == {"bam": 1} and [r["command"] for r in state["runs"]] == ["batch", "reindex"]
    assert [f["id"] for f in state["failures"]] == ["signed"] and "TOPSECRETSIG" not in seen.stdout
    assert {r["id"]: r["state"] for r in state["rows"]} == {"a": "current", "signed": "failing"}


def test_retry_failed_reruns_only_the_rows_that_failed(tmp_path):
    bam = samples.bam(tmp_path / "good.bam", reads=200)
    (tmp_path / "late.bam").write_bytes(bam.read_bytes()[:500])  # not yet fully arrived
    sam = samples.sam(tmp_path / "a.sam", reads=200)
    manifest = catalogue(tmp_path, [("a", sam, "SAM", md5(sam)), ("late", tmp_path / "late.bam", "BAM", "")])
    first = cli("batch", str(manifest), "--cluster", "sync", "--json", "first.json", cwd=tmp_path)
    assert first.returncode == 1
    (tmp_path / "late.bam").write_bytes(bam.read_bytes())
    retry = cli("batch", str(manifest), "--cluster", "sync", "--retry-failed", "first.json", "--json", "-",
                cwd=tmp_path)
    assert retry.returncode == 0, retry.stderr
    assert [(r["id"], r["status"]) for r in json.loads(retry.stdout)["results"]] == [("late", "built")]
    assert "retrying 1 row(s)" in retry.stderr
    assert cli("batch", str(manifest), "--retry-failed", "nope.json", cwd=tmp_path).returncode == 2


def test_a_stopped_reindex_releases_its_lease(tmp_path):
    """systemd and ECS stop with SIGTERM: the lease goes with the run, and the next starts at once."""
    store_dir = tmp_path / "store"
    rows = []
    for i in range(16):
        sam = samples.sam(tmp_path / f"s{i}.sam", reads=20000, seed=i + 1)
        rows.append((f"s{i}", sam, "SAM", md5(sam)))
    manifest = catalogue(tmp_path, rows)
    proc = subprocess.Popen([sys.executable, "-m", "preprocess", "reindex", str(manifest), "--store", str(store_dir),
                             "--cluster", "sync"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 200
    while not list(store_dir.glob("v1/*/*/manifest.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    leases = list(store_dir.glob("leases/*.json"))  # marked released (never deleted: generations only grow)
    assert leases and all(json.loads(p.read_text()).get("released") for p in leases)
    finish = reindex(read_catalog(manifest), settings=settings_for(str(store_dir), tmp_path))
    assert finish.lease and finish.lease["taken_over"] is None
    assert all(r.status in ("built", "cached") for r in finish.results)


def test_a_remote_row_without_md5_is_hashed_by_its_worker_and_repaired(s3_bucket, tmp_path):
    import s3fs

    sam = samples.sam(tmp_path / "r.sam", reads=300)
    s3fs.S3FileSystem(skip_instance_cache=True).put_file(str(sam), f"{s3_bucket}/src/r.sam")
    manifest = catalogue(tmp_path, [("r", f"s3://{s3_bucket}/src/r.sam", "SAM", "")])
    settings = settings_for(str(tmp_path / "store"), tmp_path)
    first = reindex(read_catalog(manifest), settings=settings)
    assert actions(first) == {"r": ("hash", "built")} and first.results[0].key
    assert "no md5" in (first.results[0].reason or "")
    store = ArtifactStore(str(tmp_path / "store"))
    key = first.results[0].key
    built = store.lookup(key)
    assert built is not None
    assert actions(reindex(read_catalog(manifest), settings=settings)) == {"r": ("hash", "cached")}
    store.fs.rm_file(store.path(key, built.artifact("index").name))
    assert actions(reindex(read_catalog(manifest), settings=settings)) == {"r": ("hash", "built")}
    assert sha256(store, key, built.artifact("index").name) == built.artifact("index").sha256


def test_a_cached_passthrough_row_is_settled_by_the_listing_and_a_gone_data_file_is_rebuilt(tmp_path,
                                                                                           monkeypatch):
    """CSV, TSV and bigWig keys hold a data file and no index: a listing showing it beside the manifest
    settles the row, as a data file and its index do for the others, with no manifest read; the data file
    gone, the manifest is read and says so, and the row is rebuilt in place."""
    csv, tsv = tmp_path / "t.csv", tmp_path / "t.tsv"
    csv.write_text("a,b\n1,2\n")
    tsv.write_text("a\tb\n1\t2\n")
    bigwig = samples.bigwig(tmp_path / "w.bw")
    manifest = catalogue(tmp_path, [("c", csv, "CSV", md5(csv)), ("t", tsv, "TSV", md5(tsv)),
                                    ("w", bigwig, "bigWig", md5(bigwig))])
    url = str(tmp_path / "store")
    settings = settings_for(url, tmp_path)
    first = reindex(read_catalog(manifest), settings=settings)
    assert actions(first) == {"c": ("build", "built"), "t": ("build", "built"), "w": ("build", "built")}
    read: list[str] = []
    real = ArtifactStore.lookup_many

    def counting(self, keys):
        keys = list(keys)
        read.extend(keys)
        return real(self, keys)

    monkeypatch.setattr(ArtifactStore, "lookup_many", counting)
    assert actions(reindex(read_catalog(manifest), settings=settings)) == {
        "c": ("ok", "cached"), "t": ("ok", "cached"), "w": ("ok", "cached")}
    assert read == []
    store = ArtifactStore(url)
    key = first.results[2].key
    store.fs.rm_file(store.path(key, "data.bw"))
    again = reindex(read_catalog(manifest), settings=settings)
    assert actions(again)["w"] == ("missing", "built") and "data.bw" in (again.results[2].reason or "")
    assert set(read) == {key}  # only the folder the listing could not settle
    assert store.fs.cat_file(store.path(key, "data.bw")) == bigwig.read_bytes()
