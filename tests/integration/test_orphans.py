"""kill -9 of the process running a build's tools leaves no tool behind (issue 20, item 10).

A real Python process runs real tabix and sort through preprocess.shell, each blocked reading a FIFO
nobody writes, so they are surely running when that process is killed with SIGKILL; then every one of
its descendants must be gone, as the process group and the parent-death signal promise.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import process_gone

TASK = r"""
import sys
from preprocess import shell

how, fifo, out = sys.argv[1:4]
if how == "run":  # a tool run directly, as tabix indexes an output
    shell.run(["tabix", "-p", "bed", fifo])
else:  # a bash pipeline, as intervals.sh runs: its stages are the script's children, not ours
    shell.pipe('tabix -p bed "$1" & sort -- "$1" | bgzip -c > "$2"; wait', fifo, out)
"""


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, name, start time) of a live process, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    name = text[text.index("(") + 1:text.rindex(")")]
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), name, fields[19]


def _descendants(root: int) -> dict[int, tuple[str, str]]:
    """Every live descendant of `root`: pid -> (name, start time)."""
    table = {int(p): s for p in os.listdir("/proc") if p.isdigit() and (s := _stat(int(p))) is not None}
    found: dict[int, tuple[str, str]] = {}
    parents = {root}
    while True:
        new = {pid for pid, (ppid, _, _) in table.items() if ppid in parents and pid not in found}
        if not new:
            return found
        found.update({pid: table[pid][1:] for pid in new})
        parents = new


def _alive(pid: int, started: str) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[2] == started and not process_gone(pid, wait=0)


@pytest.mark.parametrize("how, tools", [("run", {"tabix"}), ("pipe", {"tabix", "sort", "bgzip"})])
def test_kill_9_of_the_task_process_leaves_no_tool_running(tmp_path, how, tools):
    fifo = tmp_path / "input.bed.gz"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    task = subprocess.Popen([sys.executable, "-c", TASK, how, str(fifo), str(tmp_path / "out.gz")], env=env)
    seen: dict[int, tuple[str, str]] = {}
    try:
        deadline = time.monotonic() + 60
        while not tools <= {name for name, _ in seen.values()}:
            assert task.poll() is None and time.monotonic() < deadline, f"the tools never started: {seen}"
            time.sleep(0.05)
            seen = _descendants(task.pid)
        task.send_signal(signal.SIGKILL)
        task.wait()
        left = {pid: name for pid, (name, started) in seen.items()
                if not process_gone(pid, wait=10) and _alive(pid, started)}
        assert left == {}, f"still running after kill -9 of their task process: {left}"
    finally:
        for pid, (_, started) in seen.items():  # a failed run must not leave them to the next test
            if _alive(pid, started):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):  # any reader still blocked on the FIFO sees its end
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        if task.poll() is None:
            task.kill()
            task.wait()
