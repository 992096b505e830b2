"""Workers that die, hang or collide, on a real `dask scheduler` and two `dask worker` processes.

Sources come over HTTP from the tests' file server, which holds each request until the test lets it
go, so a worker is surely mid-task when it is killed or frozen. The store is S3 on a moto server.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import preprocess
from preprocess.model import BatchReport
from preprocess.store import ArtifactStore
from tests import samples
from tests.conftest import md5, process_gone
from tests.servers import HOST, FileServer, free_port, wait_for_port

VENV_BIN = Path(sys.executable).parent


@dataclass
class Cluster:
    address: str
    scratch: list[Path]                      # each worker's TMPDIR, where its task folders go
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    stray: list[int] = field(default_factory=list)  # pids a test stopped: killed at teardown

    def client(self) -> Any:
        from distributed import Client

        return Client(self.address, timeout="30s")


@pytest.fixture
def cluster(tmp_path) -> Iterator[Cluster]:
    """`dask scheduler` and two `dask worker`s (each with a nanny that restarts it), scratch apart."""
    port = free_port()
    found = Cluster(f"tcp://{HOST}:{port}", [tmp_path / "scratch-1", tmp_path / "scratch-2"])
    found.procs.append(subprocess.Popen([str(VENV_BIN / "dask"), "scheduler", "--host", HOST, "--port", str(port),
                                         "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        wait_for_port(port)
        for n, scratch in enumerate(found.scratch, 1):
            home = tmp_path / f"worker-{n}"
            for folder in (scratch, home):
                folder.mkdir()
            found.procs.append(subprocess.Popen(
                [str(VENV_BIN / "dask"), "worker", found.address, "--host", HOST, "--nworkers", "1", "--nthreads", "1",
                 "--no-dashboard", "--local-directory", str(home), "--name", f"worker-{n}"],
                cwd=home, env={**os.environ, "TMPDIR": str(scratch)},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with found.client() as client:
            client.wait_for_workers(2, timeout=120)
        yield found
    finally:
        for pid in found.stray:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in reversed(found.procs):
            proc.terminate()
        for proc in found.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def held_sources(server: FileServer, tmp_path: Path) -> tuple[list[dict[str, Any]], list[threading.Event]]:
    """Four documents of three formats, served over HTTP, each request held until its gate is set."""
    files = [samples.sam(tmp_path / "a.sam", reads=800), samples.vcf(tmp_path / "b.vcf", records=300),
             samples.bed(tmp_path / "c.bed", records=300), samples.sam(tmp_path / "d.sam", reads=600, seed=9)]
    gates = [server.hold(path.name) for path in files]
    docs = [{"id": path.stem, "access_url": server.add(path.name, path.read_bytes()), "md5": md5(path)}
            for path in files]
    return docs, gates


def fetching(server: FileServer) -> int:
    return sum(1 for method, path, _ in server.requests if method == "GET" and path.startswith("/files/"))


def in_background(work: Callable[[], BatchReport]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["report"] = work()
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test that reads it
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def finished(thread: threading.Thread, out: dict[str, Any]) -> BatchReport:
    thread.join(timeout=240)
    assert not thread.is_alive(), "the batch never finished"
    if "error" in out:
        raise out["error"]
    return out["report"]


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)
    return value


def busy_worker(client: Any) -> tuple[str, int]:
    """The address and pid of a worker that is running one of our tasks now."""
    processing = wait_until(lambda: {a: k for a, k in client.processing().items() if k}, "a task to run")
    address = sorted(processing)[0]
    return address, client.run(os.getpid, workers=[address])[address]


def task_folders(scratch: Path) -> list[Path]:
    return sorted(scratch.glob("preprocess-*"))


def assert_store_whole(store: ArtifactStore, report: BatchReport) -> None:
    """Every result built and readable; every object under the store belongs to a committed key and
    has the size and sha256 its manifest gives: nothing half-written."""
    assert [r.status for r in report.results] == ["built"] * len(report.results), report.to_json()
    keys = set(store.keys())
    assert keys == {r.key for r in report.results}
    listed = store.fs.find(store.root)
    expected = set()
    for key in keys:
        manifest = store.lookup(key)
        assert manifest is not None
        expected.add(store.path(key, "manifest.json"))
        for artifact in manifest.artifacts:
            path = store.path(key, artifact.name)
            expected.add(path)
            data = store.fs.cat_file(path)
            assert len(data) == artifact.size and hashlib.sha256(data).hexdigest() == artifact.sha256
    assert sorted(p.lstrip("/") for p in listed) == sorted(p.lstrip("/") for p in expected)


def address_settings(cluster: Cluster, bucket: str, **more: Any) -> Any:
    from preprocess.config import load_settings

    return load_settings(**{"store.url": f"s3://{bucket}/out", "cluster.profile": "address",
                            "cluster.address": cluster.address, **more})


def test_kill_9_of_a_worker_mid_batch(cluster, s3_bucket, tmp_path):
    settings = address_settings(cluster, s3_bucket)
    with FileServer() as server, cluster.client() as client:
        docs, gates = held_sources(server, tmp_path)
        thread, out = in_background(lambda: preprocess.run_many(docs, settings=settings, client=client))
        wait_until(lambda: fetching(server) >= 2, "both workers fetching")
        address, pid = busy_worker(client)
        name = client.scheduler_info()["workers"][address]["name"]  # worker-1 or worker-2
        scratch = cluster.scratch[int(name.rsplit("-", 1)[1]) - 1]
        left = [p for p in task_folders(scratch) if f"~{pid}-" in p.name]
        assert left, "the busy worker has a task folder"
        os.kill(pid, signal.SIGKILL)
        for gate in gates:
            gate.set()
        report = finished(thread, out)
        assert_store_whole(ArtifactStore(settings.store.url), report)
        # the nanny restarted the worker; our plugin, handed to it on joining, removed the dead one's folder
        client.wait_for_workers(2, timeout=120)
        wait_until(lambda: not any(p.exists() for p in left), "the killed worker's scratch to be swept")
        assert not task_folders(scratch)


def test_a_frozen_worker_is_dropped_after_our_worker_ttl(cluster, s3_bucket, tmp_path):
    settings = address_settings(cluster, s3_bucket, **{"cluster.worker-ttl": "5s"})
    with FileServer() as server, cluster.client() as client:
        docs, gates = held_sources(server, tmp_path)
        thread, out = in_background(lambda: preprocess.run_many(docs, settings=settings, client=client))
        wait_until(lambda: fetching(server) >= 2, "both workers fetching")
        address, pid = busy_worker(client)
        cluster.stray.append(pid)
        os.kill(pid, signal.SIGSTOP)  # alive but silent: no heartbeat, no progress
        for gate in gates:
            gate.set()
        report = finished(thread, out)
        dropped = [event for _, event in client.get_events("scheduler")
                   if event.get("action") == "worker-ttl-timed-out"]
    assert dropped and address in dropped[0]["workers"]
    assert dropped[0]["ttl"] == 5  # ours, not distributed's five minutes
    assert_store_whole(ArtifactStore(settings.store.url), report)


def test_two_clients_submitting_one_file_at_once_build_it_once(cluster, s3_bucket, tmp_path):
    settings = address_settings(cluster, s3_bucket)
    sam = samples.sam(tmp_path / "a.sam", reads=800)
    with FileServer() as server, cluster.client() as first, cluster.client() as second:
        gate = server.hold("a.sam")
        doc = {"id": "a", "access_url": server.add("a.sam", sam.read_bytes()), "md5": md5(sam)}
        one = in_background(lambda: preprocess.run_many([doc], settings=settings, client=first))
        wait_until(lambda: fetching(server) == 1, "the first client's task to fetch")
        two = in_background(lambda: preprocess.run_many([{**doc, "id": "a-again"}], settings=settings, client=second))
        (key,) = first.processing().get(busy_worker(first)[0], [])
        wait_until(lambda: first.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks[key].who_wants)) == 2,
                   "the second client to want the same task")
        gate.set()
        reports = [finished(*one), finished(*two)]
    assert [r.results[0].status for r in reports] == ["built", "built"]
    assert reports[0].results[0].key == reports[1].results[0].key and key.startswith("sort_bam-")
    assert server.gets("a.sam") == 1  # fetched, hence built, once
    assert_store_whole(ArtifactStore(settings.store.url), reports[0])


def test_a_task_past_the_time_cap_fails_classified_and_the_batch_goes_on(settings, tmp_path, monkeypatch):
    """samtools sort that never ends (a wrapper that hangs, with a child of its own): the cap kills both."""
    real = subprocess.run(["bash", "-c", "command -v samtools"], capture_output=True, text=True).stdout.strip()
    shims = tmp_path / "bin"
    shims.mkdir()
    pids = tmp_path / "pids"
    (shims / "samtools").write_text(
        "#!/bin/bash\n"
        f'if [ "$1" = sort ]; then sleep 600 & echo $! >> {pids}; echo $$ >> {pids}; wait; fi\n'
        f'exec {real} "$@"\n')
    (shims / "samtools").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}:{os.environ['PATH']}")
    capped = settings.replace(task_timeout=3.0)
    sam = samples.sam(tmp_path / "a.sam", reads=300)
    bed = samples.bed(tmp_path / "b.bed", records=100)
    report = preprocess.run_many([{"id": "a", "access_url": str(sam)}, {"id": "b", "access_url": str(bed)}],
                                 settings=capped)
    hung, fine = report.results
    assert hung.status == "failed" and hung.error is not None and hung.error.class_ == "TimeLimitError"
    assert "task time cap of 3s (preprocess.task-timeout)" in hung.error.message
    assert "samtools sort" in hung.error.message and "process group was killed" in hung.error.message
    assert fine.status == "built"
    started = [int(pid) for pid in pids.read_text().split()]
    assert len(started) == 2 and all(process_gone(pid) for pid in started)
    assert not task_folders(Path(settings.scratch))
