"""`threads: auto`: one big file gets every core; tasks running side by side share them."""

from __future__ import annotations

import json
import subprocess
import sys

from distributed import Client, Event, LocalCluster

from preprocess.build import SMALL_SOURCE, tool_threads
from preprocess.cluster import host_cores
from tests import samples


def test_a_default_run_gives_one_file_every_core(tmp_path):
    """`preprocess run FILE` with the shipped settings: the local cluster's worker runs the one task,
    whose tools get all the cores this process may use (as `samtools sort -@` would be told by hand)."""
    bam = samples.bam(tmp_path / "a.bam", reads=60000)  # over build.SMALL_SOURCE: a small one gets one thread
    assert bam.stat().st_size >= SMALL_SOURCE
    out = subprocess.run([sys.executable, "-m", "preprocess", "run", str(bam), "--store", str(tmp_path / "store"),
                          "--json", "-"], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    [found] = (tmp_path / "store").rglob("manifest.json")
    manifest = json.loads(found.read_text())
    assert json.loads(out.stdout)["results"][0]["status"] == "built"
    assert "__main__" not in out.stderr  # `python -m preprocess` is guarded: worker processes, not threads
    assert manifest["threads"] == host_cores()


def _threads_beside(mine: str, other: str) -> int:
    """A task's auto threads, taken once the other task is running too; neither returns before both took theirs."""
    Event(mine).set()
    Event(other).wait(30)
    threads = tool_threads("auto")
    Event(f"{mine}-took").set()
    Event(f"{other}-took").wait(30)
    return threads


def _threads_alone() -> int:
    return tool_threads("auto")


def test_tasks_running_side_by_side_share_the_cores(tmp_path):
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", silence_logs=40) as cluster, Client(cluster) as client:
        alone = client.submit(_threads_alone, pure=False).result(timeout=60)
        pair = [client.submit(_threads_beside, mine, other, pure=False) for mine, other in (("a", "b"), ("b", "a"))]
        shared = [future.result(timeout=60) for future in pair]
    assert alone == host_cores()
    assert shared == [max(1, host_cores() // 2)] * 2


def test_builds_side_by_side_in_this_process_share_the_cores_and_a_small_source_gets_one_thread():
    """The in-process batch (profile auto, small local work) runs a build per core on threads: each
    counts the others, as a worker's tasks do. A source under a megabyte gets one thread: htslib's
    thread pools cost more than they save there. A number set by hand is used as it is."""
    from preprocess.build import building

    with building():
        alone = tool_threads("auto", SMALL_SOURCE)
        with building():
            beside = tool_threads("auto", SMALL_SOURCE)
    assert (alone, beside) == (host_cores(), max(1, host_cores() // 2))
    assert tool_threads("auto", SMALL_SOURCE - 1) == 1 and tool_threads(3, 10) == 3
