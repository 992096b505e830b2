"""Signed manifests: `keygen` writes a key pair; with a signing key every manifest is committed with a
detached Ed25519 signature beside it; with a verify key lookup (batch), mirror and reindex --verify
name each manifest whose signature is missing or fails. On the local disk, S3 (moto) and Azure."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from preprocess.errors import SignatureError
from preprocess.signing import signature_name
from preprocess.store import MANIFEST, ArtifactStore
from tests import samples
from tests.conftest import md5
from tests.integration.test_store import files, make_manifest, new_key  # noqa: F401 - `files` is a fixture


def cli(*args: str, cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **{f"DASK_PREPROCESS__STORE__{k.upper()}": v for k, v in settings.items()}}
    return subprocess.run([sys.executable, "-m", "preprocess", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=240)


@pytest.fixture
def keys(tmp_path) -> dict[str, Path]:
    """Two key pairs made by `keygen`: ours, and another operator's."""
    made = {}
    for name in ("ours", "other"):
        out = cli("keygen", str(tmp_path / f"{name}.key"), cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        made[name], made[f"{name}.pub"] = tmp_path / f"{name}.key", tmp_path / f"{name}.key.pub"
    return made


@pytest.fixture(params=["local", "s3", "az"])
def store_url(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "store")
    if request.param == "s3":
        return f"s3://{request.getfixturevalue('s3_bucket')}/signed"
    return f"az://{request.getfixturevalue('az_container')}/signed"


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_replaces_one(keys, tmp_path):
    private = keys["ours"].read_text()
    assert private.startswith("-----BEGIN PRIVATE KEY-----") and stat.S_IMODE(keys["ours"].stat().st_mode) == 0o600
    assert keys["ours.pub"].read_text().startswith("-----BEGIN PUBLIC KEY-----")
    again = cli("keygen", str(keys["ours"]), cwd=tmp_path)
    assert again.returncode == 2 and f"{keys['ours']} exists: keygen never replaces a key" in again.stderr
    assert keys["ours"].read_text() == private
    body = private.splitlines()[1]
    assert body not in again.stdout + again.stderr


def test_a_signed_commit_verifies_and_a_missing_or_foreign_signature_is_named(store_url, keys, files):  # noqa: F811
    signed = ArtifactStore(store_url, signing_key=str(keys["ours"]))
    key = new_key()
    committed = signed.commit(make_manifest(key, files), files)
    body = signed.fs.cat_file(signed.path(key, MANIFEST))
    signature = signed.path(key, signature_name(body))
    assert len(signed.fs.cat_file(signature)) == 64  # a detached Ed25519 signature beside the manifest
    assert ArtifactStore(store_url, verify_key=str(keys["ours.pub"])).lookup(key) == committed
    manifest_uri = signed.uri(key, MANIFEST)
    with pytest.raises(SignatureError, match="does not verify with store.verify-key") as caught:
        ArtifactStore(store_url, verify_key=str(keys["other.pub"])).lookup(key)
    assert manifest_uri in str(caught.value)
    signed.fs.rm_file(signature)
    with pytest.raises(SignatureError, match="has no signature") as caught:
        ArtifactStore(store_url, verify_key=str(keys["ours.pub"])).lookup(key)
    assert manifest_uri in str(caught.value)
    assert ArtifactStore(store_url).lookup(key) == committed  # without a verify key nothing is checked


def test_an_edited_manifest_fails_its_check(keys, files, tmp_path):  # noqa: F811
    store = ArtifactStore(str(tmp_path / "store"), signing_key=str(keys["ours"]), verify_key=str(keys["ours.pub"]))
    key = new_key()
    store.commit(make_manifest(key, files), files)
    path = Path(store.path(key, MANIFEST))
    path.write_text(path.read_text().replace('"size": 1', '"size": 2'))  # the source's size, say
    with pytest.raises(SignatureError, match="unsigned, or the manifest was changed after signing"):
        store.lookup(key)


def catalogue(tmp_path: Path) -> Path:
    bed = samples.bed(tmp_path / "b.bed", records=60)
    vcf = samples.vcf(tmp_path / "v.vcf", records=60)
    path = tmp_path / "c.csv"
    path.write_text(f"id,access_url,format,md5\nb,{bed},BED,{md5(bed)}\nv,{vcf},VCF,{md5(vcf)}\n")
    return path


def test_batch_signs_and_lookup_mirror_and_reindex_verify_name_a_bad_signature(keys, tmp_path):
    store_dir = tmp_path / "store"
    manifest = catalogue(tmp_path)
    sign = {"signing_key": str(keys["ours"])}
    check = {"verify_key": str(keys["ours.pub"])}
    built = cli("batch", str(manifest), "--store", str(store_dir), "--cluster", "sync", "--json", "-", cwd=tmp_path,
                **sign)
    assert built.returncode == 0, built.stderr
    keys_built = {r["id"]: r["key"] for r in json.loads(built.stdout)["results"]}
    for key in keys_built.values():
        folder = next(store_dir.glob(f"v1/*/{key}"))
        assert [p.name for p in folder.glob("*.sig")] == [signature_name((folder / MANIFEST).read_bytes())]
    private = keys["ours"].read_text().splitlines()[1]
    assert not [p for p in store_dir.rglob("*") if p.is_file() and private.encode() in p.read_bytes()]

    mirrored = cli("mirror", str(store_dir), str(tmp_path / "copy"), cwd=tmp_path, **check)
    assert mirrored.returncode == 0 and "copied 2" in mirrored.stdout, mirrored.stderr
    assert len(list((tmp_path / "copy").glob("v1/*/*/*.sig"))) == 2  # the signatures travel with the bytes

    bad = next(store_dir.glob(f"v1/*/{keys_built['v']}/*.sig"))
    bad.write_bytes(bytes(64))
    cached = cli("batch", str(manifest), "--store", str(store_dir), "--cluster", "sync", "--json", "-", cwd=tmp_path,
                 **check)
    assert cached.returncode == 1
    rows = {r["id"]: r for r in json.loads(cached.stdout)["results"]}
    assert rows["b"]["status"] == "cached" and rows["v"]["status"] == "failed"
    assert rows["v"]["error"]["class"] == "SignatureError"
    assert f"{keys_built['v']}/manifest.json: its signature" in rows["v"]["error"]["message"]

    verified = cli("reindex", str(manifest), "--store", str(store_dir), "--cluster", "sync", "--verify", "--json", "-",
                   cwd=tmp_path, **check)
    assert verified.returncode == 1
    rows = {r["id"]: r for r in json.loads(verified.stdout)["results"]}
    assert (rows["b"]["action"], rows["b"]["status"]) == ("ok", "cached")
    assert (rows["v"]["action"], rows["v"]["status"]) == ("corrupt", "failed")
    assert "does not verify" in rows["v"]["error"]["message"]
    assert next(store_dir.glob(f"v1/*/{keys_built['v']}/{MANIFEST}"))  # named, not repaired over: it may be tampering

    bad.unlink()
    refused = cli("mirror", str(store_dir), str(tmp_path / "copy2"), cwd=tmp_path, **check)
    assert refused.returncode == 1 and "copied 1" in refused.stdout
    assert f"refused {keys_built['v']}: SignatureError:" in refused.stderr and "has no signature" in refused.stderr


def test_a_signing_key_that_is_not_one_is_a_config_error_that_never_shows_the_file(tmp_path):
    planted = tmp_path / "bad.key"
    planted.write_text("-----BEGIN PRIVATE KEY-----\nPLANTED-NOT-A-KEY-5e1b\n-----END PRIVATE KEY-----\n")
    manifest = catalogue(tmp_path)
    out = cli("batch", str(manifest), "--store", str(tmp_path / "store"), "--cluster", "sync", cwd=tmp_path,
              signing_key=str(planted))
    assert out.returncode == 2
    assert f"store.signing-key {planted}: not an unencrypted private key PEM" in out.stderr
    assert "PLANTED-NOT-A-KEY" not in out.stdout + out.stderr
