"""Nothing outside the store and scratch: hostile prefixes, forged manifests, DRS answers, document fields."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from preprocess.api import run_many
from preprocess.config import load_settings
from preprocess.errors import ConfigError, StoreError
from preprocess.mirror import mirror
from preprocess.store import ArtifactStore
from tests import samples
from tests.conftest import md5
from tests.servers import FileServer


def sync(tmp_path: Path, store: str, **more):
    return load_settings(**{"store.url": store, "cluster.profile": "sync", "scratch": str(tmp_path / "scratch"),
                            **more})


@pytest.mark.parametrize("url", ["memory://bucket/a/../b", "memory://bucket/./b", "memory://bucket/a/%2e%2e/b",
                                 "memory://bucket/a/%252e%252e/b", "s3://bucket/../other-bucket/p"])
def test_an_object_store_prefix_with_dot_segments_is_refused(url):
    with pytest.raises(ConfigError, match="not allowed in an object store's prefix"):
        ArtifactStore(url)


def _built(tmp_path: Path, store: str, seed: int = 1):
    (tmp_path / "scratch").mkdir(exist_ok=True)
    sam = samples.sam(tmp_path / f"s{seed}.sam", reads=200, seed=seed)
    result = run_many([{"id": f"s{seed}", "access_url": str(sam), "format": "SAM"}],
                      settings=sync(tmp_path, store)).results[0]
    assert result.status == "built", result.error
    return result, sam


def _forge(store: ArtifactStore, key: str, other: str, manifest_text: str | None = None) -> None:
    """Copy `key`'s folder to `other`'s, manifest included (or replaced by `manifest_text`)."""
    shutil.copytree(store.key_dir(key), store.key_dir(other))
    if manifest_text is not None:
        Path(store.path(other, "manifest.json")).write_text(manifest_text)


def test_lookup_refuses_a_manifest_whose_key_is_not_its_folders(tmp_path):
    store_url = str(tmp_path / "store")
    result, _ = _built(tmp_path, store_url, seed=1)
    _, other_sam = _built(tmp_path, str(tmp_path / "elsewhere"), seed=2)
    store = ArtifactStore(store_url)
    from preprocess import registry
    from preprocess.build import key_for

    other_key = key_for(registry.pipeline_for("SAM"), md5(other_sam), sync(tmp_path, store_url))
    _forge(store, result.key, other_key)  # s2's key folder now serves s1's bytes
    with pytest.raises(StoreError, match="claims key"):
        store.lookup(other_key)
    again = run_many([{"id": "s2", "access_url": str(other_sam), "format": "SAM", "md5": md5(other_sam)}],
                     settings=sync(tmp_path, store_url)).results[0]
    assert again.status == "failed" and again.error.class_ == "StoreError"  # never "cached" with s1's bytes


def test_mirror_refuses_forged_manifests_and_writes_nothing_outside_the_destination(tmp_path):
    src_url, dst_url = str(tmp_path / "src"), str(tmp_path / "dst" / "store")
    result, _ = _built(tmp_path, src_url)
    src = ArtifactStore(src_url)
    manifest = json.loads(Path(src.path(result.key, "manifest.json")).read_text())
    moved, climbing, named = "ab" * 32, "cd" * 32, "ef" * 32
    _forge(src, result.key, moved)  # a manifest under another key's folder
    _forge(src, result.key, climbing, json.dumps({**manifest, "key": "../../../../outside"}))
    evil = [{**art, "name": "../../../../evil.bam"} for art in manifest["artifacts"]]
    _forge(src, result.key, named, json.dumps({**manifest, "key": named, "artifacts": evil}))
    before = {p for p in tmp_path.rglob("*") if "dst" not in p.parts}
    report = mirror(src_url, dst_url, settings=sync(tmp_path, src_url))
    assert report.copied == [result.key]
    assert sorted(report.refused) == sorted([moved, climbing, named])
    assert all("StoreError" in why for why in report.refused.values())
    dst = ArtifactStore(dst_url)
    assert sorted(dst.keys()) == [result.key]
    after = {p for p in tmp_path.rglob("*") if "dst" not in p.parts}
    assert after == before  # nothing written outside the destination (mirror's scratch is removed)


def test_a_drs_answer_with_a_file_url_is_refused_and_nothing_local_is_read(tmp_path):
    secret_file = samples.sam(tmp_path / "worker-local.sam", reads=50)  # a file the worker could read
    with FileServer() as server:
        server.add("real.sam", b"unused", drs_id="obj-file")
        server.drs_access["obj-file"] = f"file://{secret_file}"
        server.add("real2.sam", b"unused", drs_id="obj-mem")
        server.drs_access["obj-mem"] = "memory://anything/x.sam"
        host = server.base.split("://", 1)[1]
        results = run_many([{"id": "f", "access_url": f"drs://{host}/obj-file", "format": "SAM"},
                            {"id": "m", "access_url": f"drs://{host}/obj-mem", "format": "SAM"}],
                           settings=sync(tmp_path, str(tmp_path / "store"), **{"source.drs-scheme": "http"})).results
    (tmp_path / "scratch").mkdir(exist_ok=True)
    for result, scheme in zip(results, ("file", "memory"), strict=True):
        assert result.status == "failed" and result.error.class_ == "InputError"
        assert f"access URL scheme(s) {scheme}" in result.error.message
        assert "drs-access-schemes" in result.error.message
    assert not list((tmp_path / "store").rglob("manifest.json"))


HOSTILE = ["$(touch pwned-dollar)", "`touch pwned-tick`", "a; touch pwned-semi", "q'uo\"te", "new\nline",
           "../../escape", "/abs/path/escape", "%2e%2e%2fescape", "..%2F..%2Fescape", "-rf"]


def test_hostile_values_in_every_document_field_run_nothing_and_write_nowhere_else(tmp_path):
    work = tmp_path / "work"
    data = work / "data"
    odd = data / "a $(touch pwned-dir) `id`; x"
    odd.mkdir(parents=True)
    sam = samples.sam(odd / "s 'q' $(touch pwned-file).sam", reads=100)
    bed = samples.bed(data / "b.bed", records=30)
    rows = []
    for i, value in enumerate(HOSTILE):
        quoted = '"' + value.replace('"', '""') + '"'
        rows += [
            f'{quoted},"{sam}",SAM,{md5(sam)},,,{quoted}',                    # id and an extra column
            f'id{i}f,"{bed}",,,,{quoted}.bed,{quoted}',                        # filename (format from it)
            f'id{i}t,"{bed}",{quoted},,,,x',                                   # format
            f'id{i}m,"{bed}",BED,{quoted},{quoted},,x',                        # md5 and size
            f'id{i}u,{quoted},BED,,,,x',                                       # access URL as a relative path
            f'id{i}v,"file://{data}/{value.replace(chr(10), "")}/b.bed",BED,,,,x',  # and as a file URL
        ]
    rows.append(f'dotted,"{data}/sub/../b.bed",BED,,,,x')
    (data / "sub").mkdir()
    (work / "catalogue.csv").write_text("id,access_url,format,md5,size,filename,note\n" + "\n".join(rows) + "\n")
    (work / "scratch").mkdir()
    before = _tree(tmp_path)
    out = subprocess.run([sys.executable, "-m", "preprocess", "batch", "catalogue.csv", "--store", "store",
                          "--cluster", "sync", "--json", "report.json"], cwd=work, capture_output=True, text=True,
                         timeout=240, env={**os.environ, "DASK_PREPROCESS__SCRATCH": str(work / "scratch")})
    assert out.returncode == 1, out.stderr
    results = json.loads((work / "report.json").read_text())["results"]
    assert len(results) == len(rows)
    by_id = {r["id"]: r for r in results}
    assert all(by_id[value]["status"] in ("built", "cached") for value in HOSTILE)  # hostile ids are just names
    assert by_id["dotted"]["status"] in ("built", "cached")
    assert {r["status"] for r in results} <= {"built", "cached", "failed"}
    new = _tree(tmp_path) - before
    allowed = (work / "store", work / "report.json", work / "scratch")
    assert [p for p in new if not any(p == a or a in p.parents for a in allowed)] == []
    assert not [p for p in tmp_path.rglob("*pwned*") if "pwned" not in str(p.parent) and p.name.startswith("pwned")]
    assert not list(Path.cwd().glob("pwned*")) and not list(Path("/tmp").glob("pwned*"))
    assert not [p for p in (work / "scratch").iterdir()]  # scratch cleaned after every document
    store_keys = [p for p in (work / "store" / "v1").glob("*/*") if p.is_dir()]
    assert all(len(p.name) == 64 for p in store_keys)


def _tree(root: Path) -> set[Path]:
    return set(root.rglob("*"))
