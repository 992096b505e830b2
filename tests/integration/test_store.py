"""One contract for every store backend: local, memory, and (in conftest) S3 on moto, Azure on Azurite."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from preprocess.errors import StoreError
from preprocess.keys import derive_key
from preprocess.model import Artifact, Manifest, PipelineInfo, SourceInfo
from preprocess.store import ArtifactStore


def make_manifest(key: str, files: dict[str, Path]) -> Manifest:
    arts = [Artifact(kind="data" if i == 0 else "index", name=name, size=path.stat().st_size,
                     sha256=hashlib.sha256(path.read_bytes()).hexdigest())
            for i, (name, path) in enumerate(files.items())]
    return Manifest(key=key, layout="v1", artifacts=arts,
                    source=SourceInfo(url="/x.bam", format="BAM", md5="0" * 32, size=1),
                    pipeline=PipelineInfo(name="test", version="1", parameters={}))


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    data = tmp_path / "sorted.bam"
    data.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    index = tmp_path / "sorted.bam.bai"
    index.write_bytes(b"BAI\x01" + b"\x00" * 100)
    return {"sorted.bam": data, "sorted.bam.bai": index}


def new_key() -> str:
    return derive_key("md5:" + hashlib.md5(uuid.uuid4().bytes).hexdigest(), "test", "1", {})


def test_commit_then_lookup_and_read_by_range(any_store: ArtifactStore, files):
    key = new_key()
    assert any_store.lookup(key) is None
    committed = any_store.commit(make_manifest(key, files), files)
    found = any_store.lookup(key)
    assert found == committed
    uris = any_store.artifact_uris(found)
    assert uris["data"].endswith(f"/{key}/sorted.bam") and uris["index"].endswith("sorted.bam.bai")
    assert key in set(any_store.keys())
    whole = files["sorted.bam"].read_bytes()
    assert any_store.read_range(key, "sorted.bam", 1000, 1100) == whole[1000:1100]
    assert any_store.read_range(key, "sorted.bam", len(whole) - 10, len(whole)) == whole[-10:]


def test_second_writer_of_a_key_keeps_the_first_manifest(any_store, files):
    key = new_key()
    first = any_store.commit(make_manifest(key, files), files)
    second = make_manifest(key, files).replace(created="2000-01-01T00:00:00+00:00")
    assert any_store.commit(second, files).created == first.created


def test_an_artifact_that_fails_verification_leaves_no_manifest(any_store, files):
    key = new_key()
    manifest = make_manifest(key, files)
    manifest.artifacts[1].size += 1  # what was built and what was stored disagree
    with pytest.raises(StoreError, match="size"):
        any_store.commit(manifest, files)
    assert any_store.lookup(key) is None and key not in set(any_store.keys())


def test_an_upload_that_cannot_start_leaves_no_manifest(any_store, files, tmp_path):
    key = new_key()
    manifest = make_manifest(key, files)
    broken = dict(files, **{"sorted.bam.bai": tmp_path / "vanished.bai"})
    with pytest.raises(StoreError):
        any_store.commit(manifest, broken)
    assert any_store.lookup(key) is None


@pytest.mark.parametrize("name", ["../escape", "/abs/path", ".hidden", "a/b", "", "x" * 300])
def test_path_escapes_in_artifact_names_are_refused(any_store, name):
    with pytest.raises(StoreError, match="refusing artifact name"):
        any_store.path(new_key(), name)


def test_non_keys_are_refused(any_store):
    with pytest.raises(StoreError, match="not a derivation key"):
        any_store.key_dir("../../etc")


def test_local_store_leaves_no_temp_files(tmp_path, files):
    store = ArtifactStore(str(tmp_path / "s"))
    key = new_key()
    store.commit(make_manifest(key, files), files)
    names = sorted(p.name for p in (tmp_path / "s").rglob("*") if p.is_file())
    assert names == ["manifest.json", "sorted.bam", "sorted.bam.bai"]


def test_lookup_many_answers_each_key_and_isolates_a_corrupt_manifest(any_store, files):
    good, missing, corrupt = new_key(), new_key(), new_key()
    any_store.commit(make_manifest(good, files), files)
    any_store.fs.makedirs(any_store.key_dir(corrupt), exist_ok=True)
    any_store.fs.pipe_file(any_store.path(corrupt, "manifest.json"), b"{not json")
    found = any_store.lookup_many([good, missing, corrupt, good])
    assert list(found) == [good, missing, corrupt]
    assert found[good].key == good and found[missing] is None and isinstance(found[corrupt], StoreError)


def test_a_racing_build_with_other_bytes_never_leaves_a_manifest_over_the_wrong_bytes(any_store, files, tmp_path):
    key = new_key()
    any_store.commit(make_manifest(key, files), files)
    other = tmp_path / "other.bam"
    other.write_bytes(b"different bytes" * 1000)  # as a worker with another samtools version might build
    rival = {"sorted.bam": other, "sorted.bam.bai": files["sorted.bam.bai"]}
    with pytest.raises(StoreError, match="un-committed"):
        any_store.commit(make_manifest(key, rival), rival)
    assert any_store.lookup(key) is None  # invisible until rebuilt, never inconsistent


def _build_bed(tmp_path: Path, store: Path, name: str = "b.bed"):
    """A real build of a small BED into the local store at `store` (issue 20's reproductions build one)."""
    from preprocess.build import build_doc
    from preprocess.config import load_settings
    from preprocess.model import FileDoc
    from tests import samples

    source = tmp_path / name
    if not source.exists():
        samples.bed(source, records=50)
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    settings = load_settings(**{"store.url": str(store), "cluster.profile": "sync", "scratch": str(scratch)})
    return build_doc(FileDoc(id="b", access_url=str(source), format="BED"), "BED", settings)


@pytest.mark.parametrize("linked", ["layout", "prefix", "key"])
def test_a_local_store_refuses_to_write_through_a_symlink_in_its_own_folders(tmp_path, linked):
    """Issue 20 item 5: with the store's v1/<key[:2]> folder (or v1, or the key's own) a symlink to a folder
    outside, the artifacts went there. Now the build fails with a StoreError and nothing is written outside."""
    key = _build_bed(tmp_path, tmp_path / "first").key
    store, outside = tmp_path / "store", tmp_path / "outside"
    outside.mkdir()
    link = {"layout": store / "v1", "prefix": store / "v1" / key[:2], "key": store / "v1" / key[:2] / key}[linked]
    link.parent.mkdir(parents=True)
    link.symlink_to(outside, target_is_directory=True)
    result = _build_bed(tmp_path, store)
    assert result.status == "failed" and result.error.class_ == "StoreError", result
    assert f"refusing to write through {link}: it is a symlink inside the store" in result.error.message
    assert list(outside.rglob("*")) == []


def test_a_local_store_reads_through_a_symlink_in_its_folders(tmp_path):
    """Reading may follow one (the README says so): a store whose v1 links to another store's finds its builds."""
    first = _build_bed(tmp_path, tmp_path / "first")
    store = tmp_path / "store"
    store.mkdir()
    (store / "v1").symlink_to(tmp_path / "first" / "v1", target_is_directory=True)
    assert ArtifactStore(str(store)).lookup(first.key).key == first.key
    assert _build_bed(tmp_path, store).status == "cached"


SECRETS = b"AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\nAWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"


def test_a_manifest_linked_to_a_secrets_file_is_refused_without_quoting_it(tmp_path):
    """Issue 20 item 6: lookup's StoreError printed the parser's input_value, the start and end of the file."""
    first = _build_bed(tmp_path, tmp_path / "store")
    secrets = tmp_path / "credentials.env"
    secrets.write_bytes(SECRETS)
    manifest = tmp_path / "store" / "v1" / first.key[:2] / first.key / "manifest.json"
    manifest.unlink()
    manifest.symlink_to(secrets)
    with pytest.raises(StoreError) as caught:
        ArtifactStore(str(tmp_path / "store")).lookup(first.key)
    message = str(caught.value)
    assert message.startswith(f"{manifest} is not a valid manifest: document: invalid JSON"), message
    again = _build_bed(tmp_path, tmp_path / "store")  # a build that meets it reports it the same way
    assert again.status == "failed" and again.error.class_ == "StoreError", again
    for shown in (message, again.error.message, repr(caught.value)):
        assert "AKIA" not in shown and "EXAMPLEKEY" not in shown and "AWS_" not in shown, shown
