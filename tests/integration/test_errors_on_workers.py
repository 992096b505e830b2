"""The exception a worker process raised is the one run() raises: real class, every attribute."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import preprocess
from preprocess.config import load_settings
from tests import samples
from tests.unit.test_errors import EXAMPLES, fields


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", silence_logs=50) as cluster, Client(cluster) as connected:
        yield connected


def raise_it(exc: BaseException) -> None:
    raise exc


def test_each_error_class_round_trips_through_a_dask_worker(client):
    for exc in EXAMPLES:
        with pytest.raises(type(exc)) as caught:
            client.submit(raise_it, exc, pure=False).result()
        assert fields(caught.value) == fields(exc)


def test_run_raises_the_workers_input_error_with_its_doc_id(client, tmp_path):
    settings = load_settings(**{"store.url": str(tmp_path / "store"), "scratch": str(tmp_path)})
    sam = samples.sam(tmp_path / "m.sam", reads=50)
    doc = {"id": "doc-7", "access_url": str(sam), "format": "SAM"}
    with pytest.raises(preprocess.InputError, match="md5 mismatch") as caught:
        preprocess.run({**doc, "md5": "0" * 32}, settings=settings, client=client)
    assert caught.value.doc_id == "doc-7"
    bad = tmp_path / "b.bam"
    bad.write_bytes(samples.bam(tmp_path / "good.bam", reads=500).read_bytes()[:700])  # a pipeline's own error
    with pytest.raises(preprocess.InputError, match="truncated or corrupt") as caught:
        preprocess.run({"id": "doc-8", "access_url": str(bad), "format": "BAM"}, settings=settings, client=client)
    assert caught.value.doc_id == "doc-8"


def test_run_raises_a_failing_tools_argv_returncode_and_stderr(tmp_path):
    # A samtools whose sort fails as a full disk would make it; every other subcommand is the real one.
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "samtools").write_text('#!/bin/bash\nif [ "$1" = sort ]; then echo "sort: write failed: disk full" >&2;'
                                   f' exit 3; fi\nexec {_real("samtools")} "$@"\n')
    (shim / "samtools").chmod(0o755)
    from distributed import Client, LocalCluster

    settings = load_settings(**{"store.url": str(tmp_path / "store"), "scratch": str(tmp_path)})
    sam = samples.sam(tmp_path / "t.sam", reads=200)
    saved = os.environ["PATH"]
    os.environ["PATH"] = f"{shim}:{saved}"  # the worker processes inherit it
    try:
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address="127.0.0.1:0", silence_logs=50) as cluster, Client(cluster) as client:
            with pytest.raises(preprocess.ToolError) as caught:
                preprocess.run({"id": "t", "access_url": str(sam), "format": "SAM"}, settings=settings,
                               client=client)
    finally:
        os.environ["PATH"] = saved
    exc = caught.value
    assert exc.argv[:2] == ["samtools", "sort"] and exc.returncode == 3
    assert "disk full" in exc.stderr_tail
    assert not list(Path(tmp_path / "store").rglob("manifest.json"))


def _real(tool: str) -> str:
    import shutil

    found = shutil.which(tool)
    assert found
    return found


@pytest.mark.parametrize("fmt,md5", [("SAM", None), ("SAM", "0" * 32), ("TSV", None)])
def test_a_missing_local_file_raises_an_input_error_naming_its_document(fmt, md5, tmp_path):
    """Found while planning (hashing a local file, a passthrough) or by the build: doc_id is set either way."""
    settings = load_settings(**{"store.url": str(tmp_path / "store"), "cluster.profile": "sync"})
    doc = {"id": "doc-9", "access_url": str(tmp_path / "gone.sam"), "format": fmt, "md5": md5}
    with pytest.raises(preprocess.InputError, match="does not exist") as caught:
        preprocess.run(doc, settings=settings)
    assert caught.value.doc_id == "doc-9"
