"""Per-task scratch folders named for the process that owns them, and the sweep of dead owners' folders.

A task's folder is removed when the task ends, but a worker killed mid-task (OOM killer, kill -9, a
lost spot instance's disk reused) leaves it behind. Its name carries the host and pid of its owner,
so a worker starting later on the same host removes the folders whose owner is gone, and only those.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

PREFIX = "preprocess-"
_OWNED = re.compile(rf"{PREFIX}(?P<host>[A-Za-z0-9_.-]+)~(?P<pid>[0-9]+)-")


def scratch_dir(base: str | None) -> Path:
    """The scratch root: `base`, else $TMPDIR, else /tmp."""
    root = Path(base) if base else Path(os.environ.get("TMPDIR", "/tmp"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def make_scratch(base: str | None, doc_id: str) -> Path:
    """A new folder for one task, named `preprocess-<host>~<pid>-<doc id>-<random>`."""
    prefix = f"{PREFIX}{_host()}~{os.getpid()}-{safe_name(doc_id)}-"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=scratch_dir(base)))


def sweep_stale(base: str | None) -> list[Path]:
    """Remove task folders under the scratch root whose owner, a process on this host, has exited."""
    removed = []
    root = scratch_dir(base)
    for entry in root.iterdir():
        found = _OWNED.match(entry.name)
        if not found or found["host"] != _host() or _alive(int(found["pid"])) or not entry.is_dir():
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:40]


def _host() -> str:
    return safe_name(socket.gethostname())[:32] or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True
