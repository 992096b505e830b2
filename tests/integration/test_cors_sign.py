"""`cors`, `sign` and `view` against moto (S3) and Azurite (Azure Blob), without a browser (that is
test_view_browser.py).

moto checks only that an S3 signature is present, never that it is valid: a tampered or expired
presigned URL is served all the same. So these tests show that `sign` writes SigV4 URLs, which moto
serves, but no emulator here shows that S3 itself would accept them. Azurite does check a SAS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import requests

import preprocess
from preprocess.cloud import RULE_ID
from preprocess.config import load_settings
from preprocess.errors import StoreError
from tests import samples
from tests.servers import FaultProxy


def cli(*args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process, its environment this one's with `env` set (None: removed)."""
    merged = {key: value for key, value in {**os.environ, **env}.items() if value is not None}
    return subprocess.run([sys.executable, "-m", "preprocess", *args], capture_output=True, text=True, env=merged,
                          timeout=300)


def settings_for(store: str, tmp_path: Path, **options: object):
    extra = {"store.storage-options": options} if options else {}
    return load_settings(**{"store.url": store, "cluster.profile": "sync", "scratch": str(tmp_path), **extra})


# -- sign --------------------------------------------------------------------------------------------------
def test_sign_refuses_a_key_the_store_does_not_hold_at_the_cost_of_one_head(s3_bucket, s3_endpoint, tmp_path):
    proxy = FaultProxy(int(s3_endpoint.rsplit(":", 1)[1]), fail=lambda method, path: False)
    try:
        settings = settings_for(f"s3://{s3_bucket}/a", tmp_path, endpoint_url=f"http://127.0.0.1:{proxy.port}")
        with pytest.raises(StoreError, match=f"s3://{s3_bucket}/typo/sorted.bam: no such object in the store"):
            preprocess.sign(f"s3://{s3_bucket}/typo/sorted.bam", settings=settings)
        assert proxy.requests == [("HEAD", f"/{s3_bucket}/typo/sorted.bam", 404)]
    finally:
        proxy.close()


@pytest.mark.parametrize("backend", ["s3", "az"])
def test_sign_cli_exits_1_for_what_is_not_there(backend, request):
    bucket = request.getfixturevalue("s3_bucket" if backend == "s3" else "az_container")
    out = cli("sign", f"{backend}://{bucket}/typo/sorted.bam")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr == f"error: {backend}://{bucket}/typo/sorted.bam: no such object in the store (nothing signed)\n"
    gone = cli("sign", f"{backend}://no-such-bucket-{bucket[-6:]}/typo/sorted.bam")
    assert gone.returncode == 1 and "no such object" in gone.stderr


def test_sign_cli_exits_1_when_the_endpoint_is_down(azurite_connection, az_container):
    from tests.servers import free_port

    dead = azurite_connection.replace(azurite_connection.split("BlobEndpoint=")[1].split("/")[2],
                                      f"127.0.0.1:{free_port()}")
    out = cli("sign", f"az://{az_container}/a/sorted.bam", AZURE_STORAGE_CONNECTION_STRING=dead)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith(f"error: az://{az_container}/a/sorted.bam: cannot be checked: ")
    assert "Eby8vdM02" not in out.stderr


@pytest.mark.parametrize("region", ["us-east-1", "eu-central-1"])
def test_sign_writes_sigv4_in_every_region(region, s3_bucket):
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.pipe(f"{s3_bucket}/k/data.bin", b"0123456789")
    out = cli("sign", f"s3://{s3_bucket}/k/data.bin", AWS_DEFAULT_REGION=region)
    assert out.returncode == 0, out.stderr
    query = parse_qs(urlsplit(out.stdout.strip()).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Credential"][0].split("/")[2] == region
    assert "AWSAccessKeyId" not in query and "Signature" not in query  # no SigV2
    part = requests.get(out.stdout.strip(), headers={"Range": "bytes=2-5"}, timeout=30)
    assert part.status_code == 206 and part.content == b"2345"


def test_botocore_alone_presigns_sigv2_in_us_east_1(s3_bucket):
    """Why the store configures s3v4: without it, the same presign in us-east-1 is Signature Version 2."""
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, client_kwargs={"region_name": "us-east-1"})
    fs.pipe(f"{s3_bucket}/k/data.bin", b"x")
    assert "AWSAccessKeyId=" in fs.sign(f"{s3_bucket}/k/data.bin")


def test_azure_user_delegation_sas_needs_entra_id_credentials(az_container, azurite_connection):
    """Azurite, like Azure, hands out a user-delegation key only to a bearer token (Entra ID), and its
    OAuth needs HTTPS: with the account key of the emulator's connection string the request is refused,
    and `sign --user-delegation` says why."""
    import adlfs

    adlfs.AzureBlobFileSystem(connection_string=azurite_connection, skip_instance_cache=True).pipe(
        f"{az_container}/k/data.bin", b"x")
    out = cli("sign", "--user-delegation", f"az://{az_container}/k/data.bin")
    assert out.returncode == 1 and out.stdout == ""
    assert "a user-delegation SAS needs Entra ID credentials" in out.stderr
    assert "Eby8vdM02" not in out.stderr


# -- cors --------------------------------------------------------------------------------------------------
FOREIGN_S3 = {"ID": "someone-else", "AllowedOrigins": ["https://other.example"], "AllowedMethods": ["PUT"]}


def test_cors_on_s3_is_idempotent_keeps_other_rules_and_opens_only_what_is_named(s3_bucket):
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.call_s3("put_bucket_cors", Bucket=s3_bucket, CORSConfiguration={"CORSRules": [FOREIGN_S3]})
    rules = lambda: fs.call_s3("get_bucket_cors", Bucket=s3_bucket)["CORSRules"]  # noqa: E731

    dry = cli("cors", f"s3://{s3_bucket}/prefix", "--allow-origin", "http://127.0.0.1:8000", "--dry-run")
    assert dry.returncode == 0 and "would set" in dry.stderr
    assert rules() == [FOREIGN_S3]  # a dry run changes nothing
    assert [r["ID"] for r in json.loads(dry.stdout)] == ["someone-else", RULE_ID]

    first = cli("cors", f"s3://{s3_bucket}/prefix", "--allow-origin", "http://127.0.0.1:8000",
                "--allow-origin", "https://igv.example.org")
    assert first.returncode == 0 and first.stderr.startswith("set: "), first.stderr
    ours = {"ID": RULE_ID, "AllowedOrigins": ["http://127.0.0.1:8000", "https://igv.example.org"],
            "AllowedMethods": ["GET", "HEAD"], "AllowedHeaders": ["Range"],
            "ExposeHeaders": ["Content-Range", "Content-Length", "Accept-Ranges", "ETag"], "MaxAgeSeconds": 3600}
    assert rules() == [FOREIGN_S3, ours]
    again = cli("cors", f"s3://{s3_bucket}", "--allow-origin", "https://igv.example.org",
                "--allow-origin", "http://127.0.0.1:8000")
    assert again.returncode == 0 and again.stderr.startswith("already set: ")
    assert rules() == [FOREIGN_S3, ours]

    anyone = cli("cors", f"s3://{s3_bucket}", "--allow-origin", "*")  # only when asked by name
    assert anyone.returncode == 0
    assert rules() == [FOREIGN_S3, {**ours, "AllowedOrigins": ["*"]}]


@pytest.mark.parametrize("origin", ["https://*.example.org", "http://host/page.html", "igv.example.org", ""])
def test_cors_refuses_what_is_not_an_origin(origin, s3_bucket):
    out = cli("cors", f"s3://{s3_bucket}", "--allow-origin", origin)
    assert out.returncode == 2 and "--allow-origin" in out.stderr


def test_cors_on_the_azure_blob_service_is_idempotent_and_keeps_other_rules(az_container, azurite_connection):
    from azure.storage.blob import BlobServiceClient, CorsRule

    service = BlobServiceClient.from_connection_string(azurite_connection)
    foreign = CorsRule(["https://other.example"], ["PUT"], max_age_in_seconds=5)
    service.set_service_properties(cors=[foreign])
    try:
        first = cli("cors", f"az://{az_container}", "--allow-origin", "http://127.0.0.1:8000")
        assert first.returncode == 0 and first.stderr.startswith("set: "), first.stderr
        again = cli("cors", f"az://{az_container}/x", "--allow-origin", "http://127.0.0.1:8000")
        assert again.returncode == 0 and again.stderr.startswith("already set: ")
        rules = service.get_service_properties()["cors"]
        assert [(r.allowed_origins, r.allowed_methods) for r in rules] == [
            ("https://other.example", "PUT"), ("http://127.0.0.1:8000", "GET,HEAD")]
        assert rules[1].allowed_headers == "Range"
        assert rules[1].exposed_headers == "Content-Range,Content-Length,Accept-Ranges,ETag"
        assert json.loads(again.stdout)[1]["AllowedOrigins"] == ["http://127.0.0.1:8000"]
    finally:
        service.set_service_properties(cors=[])


# -- view without a browser --------------------------------------------------------------------------------
def test_view_of_a_catalogue_lists_built_rows_and_skips_the_rest(s3_bucket, tmp_path):
    store = f"s3://{s3_bucket}/a"
    settings = settings_for(store, tmp_path)
    bam = samples.bam(tmp_path / "a.bam", reads=200)
    vcf = samples.vcf(tmp_path / "b.vcf", records=50)
    preprocess.run({"id": "reads", "access_url": str(bam)}, settings=settings)
    catalogue = tmp_path / "catalogue.csv"
    catalogue.write_text(f"id,access_url,format\nreads,{bam},BAM\nvariants,{vcf},VCF\n")
    out = cli("view", str(catalogue), "--store", store, "--igv", str(tmp_path / "igv.json"), "--genome", "hg38")
    assert out.returncode == 0, out.stderr
    session = json.loads((tmp_path / "igv.json").read_text())
    assert session["genome"] == "hg38"
    assert [(t["name"], t["type"], t["format"]) for t in session["tracks"]] == [("reads", "alignment", "bam")]
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in session["tracks"][0]["indexURL"]
    assert f"skipped variants: not built in {store} yet (run `batch` first)" in out.stderr
    assert "X-Amz-Signature" not in out.stderr  # a signed URL is never printed to the log


def test_a_cram_manifest_records_its_reference_url_without_secrets(s3_bucket, tmp_path):
    from preprocess.store import ArtifactStore
    from tests.servers import FileServer

    reference = samples.fasta(tmp_path / "ref.fa")
    settings = settings_for(f"s3://{s3_bucket}/a", tmp_path)
    cram = samples.cram(tmp_path / "a.cram", reference, reads=200)
    with FileServer() as server:
        url = server.add("ref.fa", reference.read_bytes())
        server.add("ref.fa.fai", Path(str(reference) + ".fai").read_bytes())
        result = preprocess.run({"id": "c", "access_url": str(cram), "reference": url + "?token=secret-token"},
                                settings=settings)
    manifest = ArtifactStore(f"s3://{s3_bucket}/a").lookup(result.key)
    assert manifest is not None and manifest.reference is not None
    assert manifest.reference.url == url  # no query string: no token
    assert f"md5:{manifest.reference.md5}" == manifest.pipeline.parameters["reference"]


def test_results_render_in_a_notebook_as_an_igv_page(s3_bucket, tmp_path):
    settings = settings_for(f"s3://{s3_bucket}/a", tmp_path)
    bam = samples.bam(tmp_path / "a.bam", reads=100)
    report = preprocess.run_many([{"id": "reads", "access_url": str(bam)},
                                  {"id": "broken", "access_url": str(tmp_path / "missing.bam")}], settings=settings)
    page = report._repr_html_()
    assert page.startswith("<iframe srcdoc=") and "igv.min.js" in page and "&quot;reads&quot;" in page
    assert report.results[1]._repr_html_() == "<pre>no genome-browser view: nothing built</pre>"


def test_user_delegation_sas_from_an_entra_id_token_is_accepted_by_azurite(tmp_path):
    """With Entra ID credentials (here a managed identity's token endpoint on loopback, found by
    azure-identity's DefaultAzureCredential) and no account key, `sign` writes a user-delegation SAS:
    Azurite (HTTPS, OAuth) hands out the delegation key and serves the blob through the SAS, and refuses
    it tampered. Azurite checks the token's issuer, audience and expiry, not its signature: that a real
    tenant's token gets a key, and that Azure accepts the SAS, is beyond what these tests can show."""
    from azure.storage.blob import BlobServiceClient

    from tests.servers import TokenServer, azurite, self_signed

    cert, key = self_signed(tmp_path)
    tokens = TokenServer()
    try:
        with azurite(tmp_path / "azurite", tls=(cert, key)) as connection:
            service = BlobServiceClient.from_connection_string(connection, connection_verify=str(cert))
            service.create_container("delegated")
            service.get_blob_client("delegated", "k/data.bin").upload_blob(b"0123456789")
            host = connection.split("BlobEndpoint=https://")[1].rstrip(";")
            options = {"account_name": "devstoreaccount1", "account_host": host, "anon": False}
            env = {"SSL_CERT_FILE": str(cert), "IDENTITY_ENDPOINT": tokens.endpoint, "IDENTITY_HEADER": tokens.header,
                   "DASK_PREPROCESS__STORE__URL": "az://delegated/a",
                   "DASK_PREPROCESS__STORE__STORAGE_OPTIONS": repr(options), "AZURE_STORAGE_CONNECTION_STRING": None}
            out = cli("sign", "az://delegated/k/data.bin", **env)
            missing = cli("sign", "az://delegated/k/typo.bin", **env)
            assert out.returncode == 0, out.stderr
            query = parse_qs(urlsplit(out.stdout.strip()).query)
            assert query["skoid"] == ["11111111-1111-1111-1111-111111111111"] and query["sp"] == ["r"]
            part = requests.get(out.stdout.strip(), headers={"Range": "bytes=2-5"}, timeout=30, verify=str(cert))
            assert part.status_code == 206 and part.content == b"2345"  # Azurite >= 3.37: SAS version 2026-*
            url = urlsplit(out.stdout.strip())  # the signature's first character changed, the rest as sent
            pairs = [(k, ("B" if v[0] == "A" else "A") + v[1:] if k == "sig" else v)
                     for k, v in parse_qsl(url.query, keep_blank_values=True)]
            tampered = urlunsplit(url._replace(query=urlencode(pairs)))
            assert parse_qs(urlsplit(tampered).query)["sig"] != query["sig"]
            assert requests.get(tampered, timeout=30, verify=str(cert)).status_code == 403
            assert missing.returncode == 1 and "no such object" in missing.stderr
            assert tokens.requests >= 1
    finally:
        tokens.close()


def test_view_gives_each_format_its_track_type(tmp_path):
    """Every built format of a real batch (local store: file:// URLs) as igv.js and Gosling tracks."""
    from preprocess import view
    from tests.integration.test_browsers import batch_sources

    data = tmp_path / "data"
    data.mkdir()
    docs = batch_sources(data, str(data / "ref" / "ref.fa"))
    report = preprocess.run_many(docs, settings=settings_for(str(tmp_path / "store"), tmp_path))
    assert report.ok, report.to_json()
    (tmp_path / "report.json").write_text(report.to_json())
    session = view.session(tmp_path / "report.json", settings=settings_for(str(tmp_path / "store"), tmp_path))
    assert {t.name: (t.type, t.format) for t in session.tracks} == {
        "bam": ("alignment", "bam"), "bam-csi": ("alignment", "bam"), "cram": ("alignment", "cram"),
        "cram-embedded": ("alignment", "cram"), "vcf": ("variant", "vcf"), "vcf-csi": ("variant", "vcf"),
        "bed": ("annotation", "bed"), "narrowpeak": ("annotation", "narrowpeak"),
        "broadpeak": ("annotation", "broadpeak"), "gff3": ("annotation", "gff3"), "gtf": ("annotation", "gff3"),
        "bigbed": ("annotation", "bed")}
    assert session.reference is not None and session.reference.fasta_url == f"file://{data}/ref/ref.fa"
    assert [name for name, _ in session.reference.sequences] == list(samples.CONTIGS)
    assert {t["indexURL"].rsplit(".", 1)[1] for t in session.igv()["tracks"]} == {"bai", "csi", "crai", "tbi"}
    gosling = [t["data"]["type"] for t in session.gosling()["views"][0]["tracks"]]
    assert sorted(gosling) == sorted(["bam", "bam", "vcf", "vcf", "bed", "bed", "bed", "gff", "gff", "bed"])
