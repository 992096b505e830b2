"""The store answers 500s during a commit (a fault-injecting proxy in front of the moto S3 server):
retried and committed whole, or failed cleanly with no manifest; a worker killed mid-upload leaves
a real unfinished multipart upload, nothing visible, and the key is rebuilt; gc removes the remains."""

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


PART = 5 * 2**20  # S3's smallest part: the artifact goes up as a multipart upload of several parts


def test_a_worker_killed_while_it_uploads_an_artifact_leaves_no_manifest_and_the_key_is_rebuilt(
        s3_endpoint, s3_bucket, tmp_path):
    """The worker is killed (SIGKILL) while the second part of sorted.bam is on its way: the first part is
    stored, the upload is never completed. Nothing is visible (no object, no manifest), the restarted
    worker rebuilds the key, and `gc` aborts the dead worker's upload, its stored part with it."""
    import os
    import signal
    import threading
    from datetime import timedelta

    import dask.config
    import s3fs
    from distributed import Client, LocalCluster

    from preprocess.gc import collect

    port = int(s3_endpoint.rsplit(":", 1)[1])
    cut = threading.Event()  # only the dead worker's part 2 is held; the rebuild's goes through

    def hold(method: str, path: str) -> bool:
        if method == "PUT" and "/sorted.bam?" in path and "partNumber=2&" in path + "&" and not cut.is_set():
            cut.set()
            return True
        return False

    proxy = FaultProxy(port, lambda method, path: False, hold=hold)
    options = {"endpoint_url": f"http://127.0.0.1:{proxy.port}", "default_block_size": PART}
    settings = load_settings(**{"store.url": f"s3://{s3_bucket}/k", "store.storage-options": options,
                                "scratch": str(tmp_path), "compression-level": 0})
    sam = samples.sam(tmp_path / "k.sam", reads=90000)  # about 12 MB of BAM at level 0: three parts
    store = ArtifactStore(f"s3://{s3_bucket}/k")
    s3 = s3fs.S3FileSystem(skip_instance_cache=True)

    def unfinished() -> list[dict]:
        return s3.call_s3("list_multipart_uploads", Bucket=s3_bucket, Prefix="k/").get("Uploads", [])

    results = []
    try:
        # workers take the store options from their own config (set here as the cluster starts), not a task
        with dask.config.set({"preprocess.store.storage-options": options}), \
                LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                             dashboard_address="127.0.0.1:0", silence_logs=50) as cluster, Client(cluster) as client:
            batch = threading.Thread(target=lambda: results.append(run_many(
                [{"id": "k", "access_url": str(sam), "format": "SAM"}], settings=settings, client=client)))
            batch.start()
            assert proxy.held.wait(120)  # the worker is uploading part 2 of sorted.bam: kill it there
            (pid,) = client.run(os.getpid).values()
            os.kill(pid, signal.SIGKILL)
            [upload] = unfinished()  # begun, part 1 stored, never completed
            assert upload["Key"].endswith("/sorted.bam")
            parts = s3.call_s3("list_parts", Bucket=s3_bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            assert [p["PartNumber"] for p in parts.get("Parts", [])] == [1]
            s3.invalidate_cache()
            assert not [p for p in s3.find(f"{s3_bucket}/k") if p.endswith(("manifest.json", "sorted.bam"))]
            proxy.release.set()  # the held part reaches no one who would complete it
            batch.join(240)
    finally:
        proxy.close()
    result = results[0].results[0]
    assert result.status == "built", result.error
    uploads = [path for method, path, _ in proxy.requests if method == "POST" and "/sorted.bam?uploads" in path]
    assert len(uploads) == 2  # the killed worker's multipart upload, then the rebuild's
    manifest = store.lookup(result.key)
    for art in manifest.artifacts:
        assert hashlib.sha256(store.fs.cat_file(store.path(result.key, art.name))).hexdigest() == art.sha256
    # the dead worker's upload is still there, unfinished, until gc aborts it; the built key stays whole
    [left] = unfinished()
    assert left["UploadId"] == upload["UploadId"]
    report = collect(store, timedelta(0))
    assert report.aborted_uploads == [f"{upload['Key']}#{upload['UploadId']}"] and report.removed == []
    assert unfinished() == []
    assert store.lookup(result.key) == manifest
