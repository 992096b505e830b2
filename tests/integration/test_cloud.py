"""S3 (moto server) and Azure Blob (Azurite) as stores and sources; https and DRS from a local server."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

import preprocess
from preprocess.api import run_many
from preprocess.config import load_settings
from preprocess.errors import ConfigError
from preprocess.store import ArtifactStore
from tests import samples
from tests.conftest import md5
from tests.servers import DropProxy, FileServer


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "preprocess", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ))


def cloud_settings(store: str, tmp_path: Path, **more):
    return load_settings(**{"store.url": store, "cluster.profile": "sync", "scratch": str(tmp_path), **more})


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    sam = samples.sam(data / "s1.sam", reads=1500)
    vcf = samples.bgzip(samples.vcf(data / "v.vcf", records=300), data / "v.vcf.gz")
    path = tmp_path / "manifest.csv"
    path.write_text(f"id,access_url,format,md5\ns1,data/s1.sam,SAM,{md5(sam)}\nv1,data/v.vcf.gz,VCF,{md5(vcf)}\n")
    return path


@pytest.mark.parametrize("backend", ["s3", "az"])
def test_batch_to_an_object_store_builds_then_is_cached_and_leaks_no_credential(
        backend, manifest, tmp_path, request):
    bucket = request.getfixturevalue("s3_bucket" if backend == "s3" else "az_container")
    store = f"{backend}://{bucket}/artifacts"
    profile = ["--workers", "1"] if backend == "s3" else ["--cluster", "sync"]  # S3 from worker processes too
    first = cli("batch", str(manifest), "--store", store, *profile, "--json", "report.json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr + first.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert [r["status"] for r in report["results"]] == ["built", "built"]
    uris = report["results"][0]["artifacts"]
    assert uris["data"].startswith(f"{backend}://{bucket}/artifacts/v1/") and uris["data"].endswith("/sorted.bam")
    assert uris["index"] == uris["data"] + ".bai"
    second = cli("batch", str(manifest), "--store", store, "--json", "-", cwd=tmp_path)
    assert [r["status"] for r in json.loads(second.stdout)["results"]] == ["cached", "cached"]
    secrets = ["testing-secret-key", "Eby8vdM02xNOcqFlqUwJ"]
    everything = first.stdout + first.stderr + second.stdout + second.stderr + (tmp_path / "report.json").read_text()
    manifest_json = ArtifactStore(store).fs.cat_file(uris["data"].rsplit("/", 1)[0] + "/manifest.json").decode()
    assert not any(s in everything or s in manifest_json for s in secrets)


@pytest.mark.parametrize("backend", ["s3", "az"])
def test_signed_url_serves_the_artifact_by_range_to_a_plain_http_client(backend, tmp_path, request):
    bucket = request.getfixturevalue("s3_bucket" if backend == "s3" else "az_container")
    settings = cloud_settings(f"{backend}://{bucket}/p", tmp_path)
    sam = samples.sam(tmp_path / "x.sam", reads=2000)
    result = preprocess.run({"id": "x", "access_url": str(sam), "format": "SAM"}, settings=settings)
    url = preprocess.sign(result.artifacts["data"], expires=600, settings=settings)
    assert url.startswith("http://127.0.0.1:") and "?" in url
    whole = requests.get(url, timeout=30)
    assert whole.status_code == 200
    assert hashlib.sha256(whole.content).hexdigest() == _manifest_sha(settings, result, "data")
    part = requests.get(url, headers={"Range": "bytes=0-3"}, timeout=30)
    assert part.status_code == 206 and part.content == b"\x1f\x8b\x08\x04"  # a BGZF block, as IGV reads it
    tail = requests.get(url, headers={"Range": f"bytes={len(whole.content) - 28}-"}, timeout=30)
    assert tail.content == whole.content[-28:]  # the BGZF EOF block
    assert preprocess.sign(result.artifacts["index"], settings=settings) != url


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_passthrough_file_is_in_the_store_and_readable_through_sign(backend, tmp_path, request):
    """A bigWig is committed like any artifact: its URI is in the store, `sign` gives a URL a browser
    reads it by, and a mirror copies it; only keep-public-urls keeps a public URL instead."""
    url = str(tmp_path / "store") if backend == "local" else f"s3://{request.getfixturevalue('s3_bucket')}/p"
    settings = cloud_settings(url, tmp_path)
    bigwig = samples.bigwig(tmp_path / "w.bw")
    result = preprocess.run({"id": "w", "access_url": str(bigwig), "format": "bigWig"}, settings=settings)
    assert result.status == "built" and result.key
    store = ArtifactStore(url)
    assert result.artifacts["data"] == store.uri(result.key, "data.bw")
    assert store.lookup(result.key).artifact("data").sha256 == hashlib.sha256(bigwig.read_bytes()).hexdigest()
    signed = cli("sign", result.artifacts["data"], "--expires", "600", cwd=tmp_path)
    assert signed.returncode == 0, signed.stderr
    link = signed.stdout.strip()
    if backend == "local":
        assert Path(link.removeprefix("file://")).read_bytes() == bigwig.read_bytes()
    else:
        assert link.startswith("http://127.0.0.1:") and "?" in link
        assert requests.get(link, timeout=30).content == bigwig.read_bytes()
        part = requests.get(link, headers={"Range": "bytes=0-3"}, timeout=30)
        assert part.status_code == 206 and part.content == bigwig.read_bytes()[:4]  # read by range, as IGV does
    mirrored = cli("mirror", url, str(tmp_path / "mirror"), "--json", "-", cwd=tmp_path)
    assert json.loads(mirrored.stdout)["copied"] == [result.key]
    with FileServer() as server:
        public = server.add("w.bw", bigwig.read_bytes())
        doc = {"id": "p", "access_url": public, "format": "bigWig"}
        copied = run_many([doc], settings=settings).results[0]
        linked = run_many([doc, {**doc, "id": "signed", "access_url": public + "?sig=x"}],
                          settings=cloud_settings(url, tmp_path, **{"keep-public-urls": True})).results
    assert copied.status == "cached" and copied.artifacts["data"] == result.artifacts["data"]  # one content, one key
    assert linked[0].status == "passthrough" and linked[0].artifacts == {"data": public} and linked[0].key is None
    assert linked[1].status == "cached"  # a signed URL expires: it is never kept as the artifact


def _manifest_sha(settings, result, kind: str) -> str:
    store = ArtifactStore(settings.store.url)
    return store.lookup(result.key).artifact(kind).sha256


def test_mirror_s3_to_azure_copies_verifies_then_skips_and_refuses_tampered(s3_bucket, az_container, tmp_path):
    src, dst = f"s3://{s3_bucket}/a", f"az://{az_container}/b"
    settings = cloud_settings(src, tmp_path)
    built = [preprocess.run({"id": f"s{i}", "access_url": str(samples.sam(tmp_path / f"s{i}.sam", reads=300, seed=i)),
                             "format": "SAM"}, settings=settings) for i in range(3)]
    source = ArtifactStore(src)
    source.fs.pipe_file(source.path(built[2].key, "sorted.bam.bai"), b"tampered")  # bytes no longer match
    out = cli("mirror", src, dst, "--json", "report.json", cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert sorted(report["copied"]) == sorted(r.key for r in built[:2])
    assert list(report["refused"]) == [built[2].key] and "sha256" in report["refused"][built[2].key]
    target = ArtifactStore(dst)
    assert target.lookup(built[2].key) is None
    for result in built[:2]:
        manifest = target.lookup(result.key)
        for art in manifest.artifacts:
            assert hashlib.sha256(target.fs.cat_file(target.path(result.key, art.name))).hexdigest() == art.sha256
    again = cli("mirror", src, dst, "--json", "-", cwd=tmp_path)
    assert sorted(json.loads(again.stdout)["skipped"]) == sorted(r.key for r in built[:2])


def test_missing_bucket_or_container_is_a_config_error_at_start(s3_endpoint, azurite_connection, manifest, tmp_path):
    for store in ("s3://no-such-bucket-here/x", "az://nosuchcontainer/x"):
        out = cli("batch", str(manifest), "--store", store, cwd=tmp_path)
        assert out.returncode == 2 and "does not exist" in out.stderr
        with pytest.raises(ConfigError):
            run_many([], settings=cloud_settings(store, tmp_path))


def test_sources_from_s3_azure_https_and_drs(s3_bucket, az_container, tmp_path):
    bam = samples.bam(tmp_path / "src.bam", reads=800)
    raw, digest = bam.read_bytes(), md5(bam)
    ArtifactStore(f"s3://{s3_bucket}").fs.pipe_file(f"{s3_bucket}/in/src.bam", raw)
    ArtifactStore(f"az://{az_container}").fs.pipe_file(f"{az_container}/in/src.bam", raw)
    with FileServer() as server:
        https_url = server.add("src.bam", raw, drs_id="obj-1")
        host = server.base.split("://", 1)[1]
        docs = [{"id": "s3", "access_url": f"s3://{s3_bucket}/in/src.bam", "format": "BAM", "md5": digest},
                {"id": "az", "access_url": f"az://{az_container}/in/src.bam", "format": "BAM"},
                {"id": "http", "access_url": https_url + "?token=secret-signature", "format": "BAM", "md5": digest},
                {"id": "drs", "access_url": f"drs://{host}/obj-1", "format": "BAM", "md5": digest}]
        # each into a store of its own, so that each is really fetched (one key is built once per store)
        reports = [run_many([doc], settings=cloud_settings(str(tmp_path / doc["id"]), tmp_path,
                                                           **{"source.drs-scheme": "http"})) for doc in docs]
        file_gets = [h for m, p, h in server.requests if m == "GET" and p == "/files/src.bam"]
    results = [report.results[0] for report in reports]
    assert [r.status for r in results] == ["built"] * 4, results
    assert len({r.key for r in results}) == 1  # one content, one key, whatever the source (az had no md5)
    assert len(file_gets) == 2 and any(h.get("Authorization") == "Bearer drs-token" for h in file_gets)
    assert all("secret-signature" not in report.to_json() for report in reports)
    assert results[2].source == https_url  # the query string is not reported


def test_transient_http_failures_are_retried_then_reported_as_source_errors(tmp_path):
    settings = cloud_settings(str(tmp_path / "store"), tmp_path, **{"source.backoff": 0.05, "source.attempts": 3})
    sam = samples.sam(tmp_path / "r.sam", reads=100)
    with FileServer() as server:
        flaky = server.add("flaky.sam", sam.read_bytes())
        server.fail["/files/flaky.sam"] = 2
        down = server.add("down.sam", sam.read_bytes())
        server.fail["/files/down.sam"] = 100
        docs = [{"id": "flaky", "access_url": flaky, "format": "SAM"},
                {"id": "down", "access_url": down, "format": "SAM"},
                {"id": "gone", "access_url": f"{server.base}/files/gone.sam", "format": "SAM"},
                {"id": "wrong", "access_url": flaky, "format": "SAM", "md5": "0" * 32}]
        results = run_many(docs, settings=settings).results
        down_tries = sum(1 for m, p, _ in server.requests if m == "GET" and p == "/files/down.sam")
    assert results[0].status == "built"
    assert results[1].error.class_ == "SourceError" and "after 3 attempt(s)" in results[1].error.message
    assert down_tries == 3
    assert results[2].error.class_ == "InputError" and "does not exist" in results[2].error.message
    assert results[3].error.class_ == "InputError" and "md5 mismatch" in results[3].error.message


def _build_through_dropping_proxy(store_url: str, upstream_port: int, options_for, tmp_path: Path):
    """Build one 40,000-read SAM into `store_url`, reached through a proxy that cuts uploads at 256 KiB."""
    proxy = DropProxy(upstream_port, limit=256 * 1024)
    try:
        settings = load_settings(**{"store.url": store_url, "store.storage-options": options_for(proxy.port),
                                    "cluster.profile": "sync", "scratch": str(tmp_path)})
        sam = samples.sam(tmp_path / "big.sam", reads=40000)
        result = run_many([{"id": "big", "access_url": str(sam), "format": "SAM"}], settings=settings).results[0]
    finally:
        proxy.close()
    assert result.status == "failed" and result.error.class_ == "StoreError", result
    assert proxy.dropped >= 1
    direct = ArtifactStore(store_url)
    assert direct.lookup(result.key) is None
    assert direct.fs.find(direct.root) == []  # nothing visible: no manifest, no partial object


def test_connection_dropped_mid_upload_to_s3_leaves_no_manifest_and_no_object(s3_bucket, s3_endpoint, tmp_path):
    _build_through_dropping_proxy(
        f"s3://{s3_bucket}/p", int(s3_endpoint.rsplit(":", 1)[1]),
        lambda port: {"endpoint_url": f"http://127.0.0.1:{port}", "config_kwargs": {"retries": {"max_attempts": 1}}},
        tmp_path)


def test_connection_dropped_mid_upload_to_azure_leaves_no_manifest_and_no_blob(az_container, azurite_connection,
                                                                                 tmp_path):
    # About 90 s: azure-storage-blob retries with a 15 s initial backoff, and adlfs has no setting for it.
    port = int(azurite_connection.split("BlobEndpoint=http://127.0.0.1:", 1)[1].split("/", 1)[0])
    _build_through_dropping_proxy(
        f"az://{az_container}/p", port,
        lambda proxy_port: {"connection_string": azurite_connection.replace(f"127.0.0.1:{port}",
                                                                            f"127.0.0.1:{proxy_port}")},
        tmp_path)
