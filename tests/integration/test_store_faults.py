"""The store answers 500s during a commit (a fault-injecting proxy in front of the moto S3 server):
retried and committed whole, or failed cleanly with no manifest."""

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
