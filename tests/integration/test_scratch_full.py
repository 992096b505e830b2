"""The scratch disk fills (a 512 KiB tmpfs, mounted in a mount namespace of the batch's own): a
ScratchError naming the folder, scratch cleaned, and the batch goes on.

The tmpfs is mounted by the first way this machine allows: a user namespace (unprivileged), else as
root, else through passwordless sudo (GitHub's runners, where AppArmor refuses user namespaces), the
batch itself running as the calling user. Where none is allowed the test fails as an environment
failure ("environment: ..."), never a skip that reads as a pass."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests import samples
from tests.servers import FileServer

MOUNT = 'mount -t tmpfs -o size=512k,mode=1777 tmpfs "$1" && shift && exec "$@"'
# as root in a private mount namespace, the batch runs as the caller again (setpriv drops root)
MOUNT_AND_DROP = ('mount -t tmpfs -o size=512k,mode=1777 tmpfs "$1" && shift && '
                  'exec setpriv --reuid="$1" --regid="$2" --init-groups -- "${@:3}"')


def _works(argv: list[str]) -> bool:
    return subprocess.run([*argv, "true"], capture_output=True, check=False).returncode == 0


def mounting(scratch: str) -> list[str]:
    """The argv prefix that runs a command (appended) with a 512 KiB tmpfs mounted on `scratch`, in a mount
    namespace of its own, as the calling user; pytest.fail naming the environment when none is allowed."""
    if _works(["unshare", "--user", "--map-root-user", "--mount"]):
        return ["unshare", "--user", "--map-root-user", "--mount", "bash", "-c", MOUNT, "mount-scratch", scratch]
    if os.geteuid() == 0 and _works(["unshare", "--mount"]):
        return ["unshare", "--mount", "bash", "-c", MOUNT, "mount-scratch", scratch]
    if shutil.which("sudo") and shutil.which("setpriv") and _works(["sudo", "-n", "unshare", "--mount"]):
        kept = [f"{name}={os.environ[name]}" for name in ("PATH", "PYTHONPATH") if name in os.environ]  # sudo drops
        return ["sudo", "-n", "-E", "env", *kept, "unshare", "--mount", "bash", "-c", MOUNT_AND_DROP, "mount-scratch",
                scratch, str(os.getuid()), str(os.getgid())]
    pytest.fail("environment: no way to mount a small tmpfs as scratch here (user namespaces refused, not root, "
                "no passwordless sudo); this test needs one of them", pytrace=False)


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
        out = subprocess.run([*mounting(str(scratch)), sys.executable, "-m", "preprocess", "batch", "catalogue.csv",
                              "--store", "store", "--cluster", "sync", "--json", "report.json"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=240,
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
