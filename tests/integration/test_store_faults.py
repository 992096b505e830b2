"""The store answers 500s during a commit (a fault-injecting proxy in front of the moto S3 server):
retried and committed whole, or failed cleanly with no manifest; a worker killed mid-upload leaves
no manifest and the key is rebuilt."""

from __future__ import annotations

import hashlib

from preprocess.api import run_many
from preprocess.config import load_settings
from preprocess.store import ArtifactStore
from tests import samples
from tests.servers import FaultProxy


def _run_through(proxy: FaultProxy, bucket: str, tmp_path):
    options = {"endpoint_url": f"http://127.0.0.1:{proxy.port}",
               "config_kwargs": {"retries": {"mode": "standard", "total_max_attempts": 3}}}
    settings = load_settings(**{"store.url": f"s3://{bucket}/p", "store.storage-options": options,
                                "cluster.profile": "sync", "scratch": str(tmp_path)})
    sam = samples.sam(tmp_path / "f.sam", reads=2000)
    return run_many([{"id": "f", "access_url": str(sam), "format": "SAM"}], settings=settings).results[0]


def test_passing_500s_during_commit_are_retried_and_the_commit_is_whole(s3_endpoint, s3_bucket, tmp_path):
    port = int(s3_endpoint.rsplit(":", 1)[1])
    proxy = FaultProxy(port, lambda method, path: method == "PUT", budget=2)  # the first two uploads fail
    try:
        result = _run_through(proxy, s3_bucket, tmp_path)
    finally:
        proxy.close()
    assert [status for _, _, status in proxy.requests].count(500) == 2
    assert result.status == "built", result.error
    store = ArtifactStore(f"s3://{s3_bucket}/p")
    manifest = store.lookup(result.key)
    for art in manifest.artifacts:
        assert hashlib.sha256(store.fs.cat_file(store.path(result.key, art.name))).hexdigest() == art.sha256


def test_a_store_failing_every_manifest_write_leaves_no_manifest(s3_endpoint, s3_bucket, tmp_path):
    port = int(s3_endpoint.rsplit(":", 1)[1])
    proxy = FaultProxy(port, lambda method, path: method == "PUT" and "manifest.json" in path)
    try:
        result = _run_through(proxy, s3_bucket, tmp_path)
    finally:
        proxy.close()
    assert result.status == "failed" and result.error.class_ == "StoreError", result
    assert sum(1 for _, path, status in proxy.requests if "manifest.json" in path and status == 500) == 3
    store = ArtifactStore(f"s3://{s3_bucket}/p")
    assert store.lookup(result.key) is None
    assert not [p for p in store.fs.find(store.root) if p.endswith("manifest.json")]


def test_a_worker_killed_while_it_uploads_an_artifact_leaves_no_manifest_and_the_key_is_rebuilt(
        s3_endpoint, s3_bucket, tmp_path):
    import os
    import signal
    import threading

    import dask.config
    from distributed import Client, LocalCluster

    port = int(s3_endpoint.rsplit(":", 1)[1])
    proxy = FaultProxy(port, lambda method, path: False, hold=lambda method, path: method == "PUT" and
                       path.split("?")[0].endswith("/sorted.bam"))
    options = {"endpoint_url": f"http://127.0.0.1:{proxy.port}"}
    settings = load_settings(**{"store.url": f"s3://{s3_bucket}/k", "store.storage-options": options,
                                "scratch": str(tmp_path)})
    sam = samples.sam(tmp_path / "k.sam", reads=3000)
    store = ArtifactStore(f"s3://{s3_bucket}/k")
    results = []
    try:
        # workers take the store options from their own config (set here as the cluster starts), not a task
        with dask.config.set({"preprocess.store.storage-options": options}), \
                LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                             dashboard_address="127.0.0.1:0", silence_logs=50) as cluster, Client(cluster) as client:
            batch = threading.Thread(target=lambda: results.append(run_many(
                [{"id": "k", "access_url": str(sam), "format": "SAM"}], settings=settings, client=client)))
            batch.start()
            assert proxy.held.wait(120)  # the worker is uploading sorted.bam: kill it there
            (pid,) = client.run(os.getpid).values()
            os.kill(pid, signal.SIGKILL)
            assert not [p for p in store.fs.find(store.root) if p.endswith("manifest.json")]
            proxy.release.set()  # the restarted worker's retry of the task may now upload
            batch.join(240)
    finally:
        proxy.close()
    result = results[0].results[0]
    assert result.status == "built", result.error
    uploads = [path for method, path, _ in proxy.requests if method == "PUT" and "/sorted.bam" in path]
    assert len(uploads) >= 2  # the killed worker's upload, then the rebuild's
    manifest = store.lookup(result.key)
    for art in manifest.artifacts:
        assert hashlib.sha256(store.fs.cat_file(store.path(result.key, art.name))).hexdigest() == art.sha256
