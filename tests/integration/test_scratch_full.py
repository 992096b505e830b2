"""The scratch disk fills (a 512 KiB tmpfs, mounted in a user namespace of the batch's own): a
ScratchError naming the folder, scratch cleaned, and the batch goes on."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests import samples
from tests.servers import FileServer

UNSHARE = ["unshare", "--user", "--map-root-user", "--mount"]


def _can_mount() -> bool:
    probe = subprocess.run([*UNSHARE, "true"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount(), reason="this kernel refuses unprivileged user namespaces (no tmpfs to fill)")
def test_a_full_scratch_disk_is_a_scratch_error_and_the_batch_goes_on(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    big = samples.sam(tmp_path / "big.sam", reads=30000)
    small = samples.sam(tmp_path / "small.sam", reads=100, seed=2)
    with FileServer() as server:
        remote = server.add("remote.sam", big.read_bytes())  # 5 MB: does not fit while it downloads
        (tmp_path / "catalogue.csv").write_text(
            "id,access_url,format\n"
            f"big,{big},SAM\n"
            f"remote,{remote},SAM\n"
            f"small,{small},SAM\n")
        script = 'mount -t tmpfs -o size=512k tmpfs "$1" && shift && exec "$@"'
        out = subprocess.run([*UNSHARE, "bash", "-c", script, "mount-scratch", str(scratch), sys.executable, "-m",
                              "preprocess", "batch", "catalogue.csv", "--store", "store", "--cluster", "sync",
                              "--json", "report.json"], cwd=tmp_path, capture_output=True, text=True, timeout=240,
                             env={**os.environ, "DASK_PREPROCESS__SCRATCH": str(scratch)})
    assert out.returncode == 1, out.stderr
    results = {r["id"]: r for r in json.loads((tmp_path / "report.json").read_text())["results"]}
    assert results["small"]["status"] == "built"
    for name in ("big", "remote"):
        error = results[name]["error"]
        assert error["class"] == "ScratchError", error
        assert f"scratch folder {scratch}" in error["message"] and "is full" in error["message"]
    assert "bytes needed" in results["remote"]["error"]["message"]  # the server said how big the source is
    assert list(scratch.iterdir()) == []  # the namespace's tmpfs is gone; nothing was left under it either
    manifests = list((tmp_path / "store").rglob("manifest.json"))
    assert len(manifests) == 1
