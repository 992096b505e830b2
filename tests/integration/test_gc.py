"""gc removes the debris of interrupted commits, only when old enough, and never a committed key."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest

import preprocess
from preprocess.catalog import read_catalog
from preprocess.gc import collect
from preprocess.store import ArtifactStore
from tests import samples


def committed_and_debris(store: ArtifactStore, tmp_path, settings_for) -> tuple[str, str]:
    """One built key, and one key folder holding an artifact but no manifest (a commit cut short)."""
    sam = samples.sam(tmp_path / "g.sam", reads=200)
    result = preprocess.run({"id": "g", "access_url": str(sam), "format": "SAM"}, settings=settings_for(store.url))
    orphan = "ab" * 32
    store.fs.makedirs(store.key_dir(orphan), exist_ok=True)
    store.fs.pipe_file(store.path(orphan, "sorted.bam"), b"half of a bam")
    return result.key, orphan


@pytest.fixture
def settings_for(tmp_path):
    from preprocess.config import load_settings

    return lambda url: load_settings(**{"store.url": url, "cluster.profile": "sync", "scratch": str(tmp_path)})


@pytest.mark.parametrize("backend", ["local", "s3", "az"])
def test_gc_removes_orphans_only_once_they_are_old_enough(backend, tmp_path, settings_for, request):
    url = {"local": lambda: str(tmp_path / "store"),
           "s3": lambda: f"s3://{request.getfixturevalue('s3_bucket')}/p",
           "az": lambda: f"az://{request.getfixturevalue('az_container')}/p"}[backend]()
    store = ArtifactStore(url)
    key, orphan = committed_and_debris(store, tmp_path, settings_for)
    young = collect(store, timedelta(hours=1))
    assert young.removed == []  # a commit could still be running: leave it
    old = collect(store, timedelta(seconds=-60))  # a cut-off in the future: everything counts as old
    assert [p.rsplit("/", 2)[-2] for p in old.removed] == [orphan]
    assert not store.fs.exists(store.path(orphan, "sorted.bam"))
    assert backend != "local" or not os.path.exists(store.key_dir(orphan))
    manifest = store.lookup(key)
    assert manifest is not None and all(store.fs.exists(store.path(key, a.name)) for a in manifest.artifacts)


def test_gc_aborts_stale_multipart_uploads_on_s3(s3_bucket, tmp_path):
    store = ArtifactStore(f"s3://{s3_bucket}/p")
    key = f"p/v1/cd/{'cd' * 32}/sorted.bam"
    store.fs.call_s3("create_multipart_upload", Bucket=s3_bucket, Key=key)  # what kill -9 mid-upload leaves
    dry = collect(store, timedelta(0), dry_run=True)
    assert dry.aborted_uploads == [f"s3://{s3_bucket}/{key}"]
    collect(store, timedelta(0))
    assert store.fs.call_s3("list_multipart_uploads", Bucket=s3_bucket).get("Uploads", []) == []


def test_gc_command_dry_run_lists_and_keeps(tmp_path, settings_for):
    store = ArtifactStore(str(tmp_path / "store"))
    _, orphan = committed_and_debris(store, tmp_path, settings_for)
    old = time.time() - 7200
    os.utime(store.path(orphan, "sorted.bam"), (old, old))
    out = subprocess.run([sys.executable, "-m", "preprocess", "gc", "--store", store.url, "--older-than", "1h",
                          "--dry-run"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and f"would remove {store.path(orphan, 'sorted.bam')}" in out.stdout
    assert store.fs.exists(store.path(orphan, "sorted.bam"))
    plain = subprocess.run([sys.executable, "-m", "preprocess", "gc", "--store", store.url, "--older-than", "1h"],
                           capture_output=True, text=True, timeout=60)
    assert plain.returncode == 0 and "nothing removed: give --delete to remove" in plain.stdout
    assert store.fs.exists(store.path(orphan, "sorted.bam"))  # without --delete, as with a catalogue: nothing goes
    done = subprocess.run([sys.executable, "-m", "preprocess", "gc", "--store", store.url, "--older-than", "1h",
                           "--delete"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and f"removed {store.path(orphan, 'sorted.bam')}" in done.stdout
    assert not store.fs.exists(store.path(orphan, "sorted.bam"))
    bad = subprocess.run([sys.executable, "-m", "preprocess", "gc", "--store", store.url, "--older-than", "soon"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2


def gc_cli(*args: str, cwd) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "preprocess", "gc", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_partial_catalogue_keeps_every_other_documents_keys(backend, tmp_path, settings_for, request):
    """One lab's rows: gc --delete removes only their superseded builds; the other rows' keys are
    orphans, listed with their bytes and kept until --orphans; keys too young are counted, not hidden."""
    from preprocess.reindex import reindex

    url = str(tmp_path / "store") if backend == "local" else f"s3://{request.getfixturevalue('s3_bucket')}/p"
    store = ArtifactStore(url)
    settings = settings_for(url)
    sams = [samples.sam(tmp_path / f"{name}.sam", reads=120, seed=seed) for name, seed in (("a", 1), ("b", 2))]
    everyone = tmp_path / "all.csv"
    everyone.write_text("id,access_url,format\n" + "".join(f"{p.stem},{p},SAM\n" for p in sams)
                        + f"w,{samples.bigwig(tmp_path / 'w.bw')},bigWig\n")
    first = {r.id: r.key for r in reindex(read_catalog(everyone), settings=settings).results}
    samples.sam(tmp_path / "a.sam", reads=120, seed=7)  # lab one's row changes: its old key is superseded
    lab = tmp_path / "lab.csv"
    lab.write_text(f"id,access_url,format\na,{tmp_path / 'a.sam'},SAM\n")
    now = {r.id: r.key for r in reindex(read_catalog(lab), settings=settings).results}
    assert now["a"] != first["a"]

    def keys() -> list[str]:
        store.fs.invalidate_cache()  # gc ran in another process: s3fs would answer from its listing cache
        return sorted(store.keys())

    young = gc_cli(str(lab), "--store", url, "--older-than", "1h", "--delete", cwd=tmp_path)
    assert young.returncode == 0 and "too young to collect (3)" in young.stdout, young.stdout
    assert len(keys()) == 4

    done = gc_cli(str(lab), "--store", url, "--older-than", "0s", "--delete", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert keys() == sorted([now["a"], first["b"], first["w"]])  # every other document's keys stay
    shown = url if backend == "local" else f"s3://{store.root}"
    assert f"removed superseded key {shown}/v1/{first['a'][:2]}/{first['a']}" in done.stdout
    assert f"orphan key {shown}/v1/{first['b'][:2]}/{first['b']} (kept)" in done.stdout
    orphan_bytes = _size(store, first["b"]) + _size(store, first["w"])
    assert f"orphans (no row names them): 2 key(s), {orphan_bytes} bytes" in done.stdout

    assert gc_cli(str(lab), "--store", url, "--orphans", cwd=tmp_path).returncode == 2  # --orphans needs --delete
    preview = gc_cli(str(lab), "--store", url, "--older-than", "0s", "--delete", "--orphans", "--dry-run",
                     cwd=tmp_path)
    assert preview.returncode == 0 and "would remove orphan key" in preview.stdout and len(keys()) == 3
    gone = gc_cli(str(lab), "--store", url, "--older-than", "0s", "--delete", "--orphans", cwd=tmp_path)
    assert gone.returncode == 0 and keys() == [now["a"]]


def _size(store: ArtifactStore, key: str) -> int:
    return sum(entry.size for entry in store.list_files(store.key_dir(key) + "/"))


def test_doctor_reports_tools_and_store(tmp_path):
    out = subprocess.run([sys.executable, "-m", "preprocess", "doctor", "--store", str(tmp_path / "s")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout
    assert "ok  samtools" in out.stdout and "ok  gffread" in out.stdout and "ok  store" in out.stdout


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_gc_removes_a_dead_split_builds_parts_area_once_old_enough(backend, tmp_path, request):
    """A big file built across workers meets in parts/<key>/; its merge removes the area. One left by a
    build that died is debris once all of it is older than the cut-off; a committed key is untouched."""
    from preprocess.split import parts_dir

    url = str(tmp_path / "store") if backend == "local" else f"s3://{request.getfixturevalue('s3_bucket')}/p"
    store = ArtifactStore(url)
    key = "cd" * 32
    area = parts_dir(store, key)
    store.fs.makedirs(area, exist_ok=True)
    for name, body in (("0.0.unsorted", b"piece" * 100), ("route.0.json", b"{}"), ("plan.json", b"{}")):
        store.fs.pipe_file(f"{area}/{name}", body)
    young = collect(store, timedelta(hours=1))
    assert young.removed == [] and store.fs.exists(f"{area}/0.0.unsorted")  # a build may be routing now
    dry = collect(store, timedelta(seconds=-60), dry_run=True)
    assert sorted(p.rsplit("/", 1)[-1] for p in dry.removed) == ["0.0.unsorted", "plan.json", "route.0.json"]
    assert dry.debris_bytes == 504 and store.fs.exists(f"{area}/plan.json")
    old = collect(store, timedelta(seconds=-60))
    assert len(old.removed) == 3 and not store.fs.exists(f"{area}/0.0.unsorted")
    assert backend != "local" or not os.path.exists(area)
