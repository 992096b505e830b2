"""A batch on a separate Dask scheduler and worker (profile `address`), sharing nothing but S3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from preprocess.store import ArtifactStore
from tests import samples
from tests.conftest import md5
from tests.servers import HOST, free_port, wait_for_port

VENV_BIN = Path(sys.executable).parent


@pytest.fixture
def scheduler(tmp_path, s3_endpoint):
    """`dask scheduler` and one `dask worker` as their own processes, the worker in a folder of its own."""
    port = free_port()
    worker_dir = tmp_path / "worker-home"
    worker_dir.mkdir()
    env = dict(os.environ)
    procs = [subprocess.Popen([str(VENV_BIN / "dask"), "scheduler", "--host", HOST, "--port", str(port),
                               "--no-dashboard"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        wait_for_port(port)
        procs.append(subprocess.Popen([str(VENV_BIN / "dask"), "worker", f"tcp://{HOST}:{port}", "--host", HOST,
                                       "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
                                       "--local-directory", str(worker_dir)],
                                      cwd=worker_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield f"tcp://{HOST}:{port}"
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_batch_on_an_existing_scheduler_with_sources_and_store_on_s3(scheduler, s3_bucket, tmp_path):
    src = ArtifactStore(f"s3://{s3_bucket}")
    sam = samples.sam(tmp_path / "a.sam", reads=1000)
    bed = samples.bed(tmp_path / "b.bed", records=300)
    for path in (sam, bed):
        src.fs.pipe_file(f"{s3_bucket}/in/{path.name}", path.read_bytes())
    (tmp_path / "catalogue.csv").write_text(
        "id,access_url,format,md5\n"
        f"a,s3://{s3_bucket}/in/a.sam,SAM,{md5(sam)}\n"
        f"b,s3://{s3_bucket}/in/b.bed,BED,\n")  # no md5: the worker hashes it on the way in
    args = [sys.executable, "-m", "preprocess", "batch", "catalogue.csv", "--store", f"s3://{s3_bucket}/out",
            "--cluster", "address", "--address", scheduler, "--json", "-"]
    first = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert first.returncode == 0, first.stderr
    results = json.loads(first.stdout)["results"]
    assert [r["status"] for r in results] == ["built", "built"]
    assert all(u.startswith(f"s3://{s3_bucket}/out/v1/") for r in results for u in r["artifacts"].values())
    second = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    # a: cached from the plan alone; b (no md5): fetched and hashed on the worker, then found cached
    assert [r["status"] for r in json.loads(second.stdout)["results"]] == ["cached", "cached"]
