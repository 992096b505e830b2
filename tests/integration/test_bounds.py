"""Bounds on time and memory (issue 20, items 7 and 8): every loop over input structure ends, a download
that drips is stopped, a decompression bomb is refused, and the task time cap stops a task at its
deadline wherever it is. Each hostile input has the shape of its reproduction (tests/hostile_samples.py).
Time appears here only as hang guards: bounds far above what the work takes, never a speed check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pysam
import pytest

import preprocess
from preprocess.build import build_doc
from preprocess.errors import TimeLimitError
from preprocess.model import FileDoc
from tests import hostile_samples, samples
from tests.conftest import store_files
from tests.servers import HOST, free_port

HANG_GUARD = 120  # seconds: each case below ends in a few; without its bound it never would


def test_the_hostile_kinds_are_refused_classified_or_built_whole(settings, store_dir, tmp_path):
    """The generated bad-file set's contract for the hostile kinds: an InputError and nothing stored,
    or an artifact with every record."""
    outcomes = {}
    for kind, (fmt, _, make) in hostile_samples.HOSTILE.items():
        folder = tmp_path / kind
        folder.mkdir()
        result = build_doc(FileDoc(id=kind, access_url=str(make(folder)), format=fmt), fmt, settings)
        if result.status == "built":
            assert result.records["in"] == result.records["out"]
        else:
            assert result.error is not None and result.error.class_ == "InputError", result.error
            assert store_files(store_dir / "v1") == []
        outcomes[kind] = result.status
    assert outcomes == {"self-referential-index": "failed", "decompression-bomb": "failed", "huge-header": "built"}


def test_a_bigbed_whose_index_points_at_itself_fails_and_the_batch_writes_its_report(tmp_path):
    """The reproduction: `batch` with task-timeout=5 on a 245-byte bigBed whose R-tree root is its own child."""
    hostile_samples.bigbed(tmp_path / "loop.bb", loop=True)
    assert (tmp_path / "loop.bb").stat().st_size < 300
    samples.bed(tmp_path / "good.bed", records=50)
    (tmp_path / "m.csv").write_text("id,access_url,format\nloop,loop.bb,bigBed\ngood,good.bed,BED\n")
    env = {**os.environ, "DASK_PREPROCESS__TASK_TIMEOUT": "5"}
    done = subprocess.run([sys.executable, "-m", "preprocess", "batch", "m.csv", "--cluster", "sync", "--json",
                           "report.json"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=HANG_GUARD)
    assert done.returncode == 1, done.stderr
    results = {r["id"]: r for r in json.loads((tmp_path / "report.json").read_text())["results"]}
    assert results["good"]["status"] == "built"
    assert results["loop"]["error"] == {
        "class": "InputError",
        "message": "loop.bb: corrupt bigBed (its R-tree index reaches the node at offset 213 twice: a tree's "
                   "nodes have one parent, and loops never end)"}


def test_a_bigbed_zlib_bomb_is_refused_at_the_size_its_header_declares(tmp_path):
    """2 GiB of zeros in a 2 MB file; a worker allowed 1 GiB of address space refuses it without a MemoryError."""
    bomb = hostile_samples.bigbed(tmp_path / "bomb.bb", bomb=2 * 2**30)
    assert bomb.stat().st_size < 3 * 2**20
    outcome = _convert_with_memory_limit(bomb, 2**30)
    assert outcome == ("InputError: bomb.bb: corrupt bigBed (the data block at offset 120 inflates to more than "
                       "the 42 bytes its header allows a block)")


def test_a_bigbed_block_too_large_for_the_memory_left_is_an_input_error(tmp_path):
    """A block whose header allows 200 MB, under a 150 MB address-space limit: MemoryError becomes an InputError."""
    big = hostile_samples.bigbed(tmp_path / "big.bb", bomb=200 * 2**20, declared=200 * 2**20 + 42)
    assert _convert_with_memory_limit(big, 150 * 2**20, above_current=True) == (
        "InputError: big.bb: bigBed too large to convert in the memory this worker has (MemoryError)")


def _convert_with_memory_limit(path: Path, limit: int, above_current: bool = False) -> str:
    """The bigBed reader run in a child process under RLIMIT_AS: 'Class: message' of what it raised."""
    code = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from pipelines.bigbed import to_bed\n"
        f"limit = {limit}\n"
        f"if {above_current}:\n"
        "    limit += int(open('/proc/self/status').read().split('VmSize:')[1].split()[0]) * 1024\n"
        "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
        "try:\n"
        f"    to_bed(Path({str(path)!r}), Path({str(path)!r} + '.bed'), {path.name!r})\n"
        "    print('converted')\n"
        "except BaseException as exc:\n"
        "    print(f'{type(exc).__name__}: {exc}')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def huge_header(tmp_path_factory) -> Path:
    """A 128 MB header (about 700 KB on disk): the order check took 81 s at this size when it was quadratic."""
    return hostile_samples.huge_header_bam(tmp_path_factory.mktemp("header") / "header.bam",
                                           header_bytes=128 * 2**20)


def test_a_bam_with_a_huge_header_builds_within_a_generous_cap(settings, huge_header):
    capped = settings.replace(task_timeout=60.0)  # a hang guard: the build takes seconds
    result = build_doc(FileDoc(id="header", access_url=str(huge_header), format="BAM"), "BAM", capped)
    assert result.status == "built", result.error
    assert result.records["in"] == result.records["out"] == 200 and result.records["path"] == "sorted-input"
    with pysam.AlignmentFile(result.artifacts["data"]) as aln:
        assert len(str(aln.header)) > 128 * 10**6 and aln.references == ("chr1",)


@pytest.mark.parametrize("walk", ["native", "python"])
def test_the_time_cap_stops_the_order_check_in_c_or_in_its_python_loop(huge_header, monkeypatch, walk):
    from pipelines import native
    from pipelines.alignments import records_in_sort_order
    from preprocess import shell

    monkeypatch.setenv(native.SWITCH, "python" if walk == "python" else "")
    assert (native.program() is None) == (walk == "python")

    with pytest.raises(TimeLimitError) as caught, shell.time_cap(0.05):
        records_in_sort_order(huge_header)
    assert str(caught.value) == ("stopped after the task time cap of 0.05s (preprocess.task-timeout) "
                                 "while checking the record order")


def test_the_time_cap_stops_a_huge_header_build_at_its_deadline_on_a_worker(tmp_path, huge_header):
    """Real worker processes: a 1 s cap stops the build (in a tool or in Python) and the batch reports it."""
    samples.bed(tmp_path / "good.bed", records=50)
    (tmp_path / "m.csv").write_text(f"id,access_url,format\nheader,{huge_header},BAM\ngood,good.bed,BED\n")
    env = {**os.environ, "DASK_PREPROCESS__TASK_TIMEOUT": "1"}
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "preprocess", "batch", "m.csv", "--workers", "1", "--json",
                           "report.json"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=HANG_GUARD)
    assert time.monotonic() - began < HANG_GUARD
    assert done.returncode == 1, done.stderr
    results = {r["id"]: r for r in json.loads((tmp_path / "report.json").read_text())["results"]}
    assert results["good"]["status"] == "built"
    error = results["header"]["error"]
    assert error["class"] == "TimeLimitError"
    assert error["message"].startswith("stopped after the task time cap of 1s (preprocess.task-timeout)")


class DripServer:
    """An HTTP server that announces `size` bytes, then sends one every `gap` seconds (until the client
    hangs up or the server closes); counts its GET requests."""

    def __init__(self, size: int = 1000, gap: float = 5.0) -> None:
        self.gets = 0
        self.closing = threading.Event()
        self.port = free_port()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                server.gets += 1
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                try:
                    for _ in range(size):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        if server.closing.wait(gap):
                            return
                except OSError:  # the client hung up
                    return

        self.httpd = ThreadingHTTPServer((HOST, self.port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> DripServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_source_sending_a_byte_every_5s_is_stopped_at_the_task_time_cap(settings, tmp_path):
    bed = samples.bed(tmp_path / "good.bed", records=50)
    capped = settings.replace(task_timeout=3.0)  # source.timeout and min-rate at their defaults
    began = time.monotonic()
    with DripServer() as server:
        report = preprocess.run_many([{"id": "drip", "access_url": f"http://{HOST}:{server.port}/slow.bed"},
                                      {"id": "good", "access_url": str(bed)}], settings=capped)
    assert time.monotonic() - began < HANG_GUARD
    drip, good = report.results
    assert drip.status == "failed" and drip.error is not None and drip.error.class_ == "TimeLimitError"
    assert drip.error.message == ("stopped after the task time cap of 3s (preprocess.task-timeout) "
                                  "while downloading the source")
    assert good.status == "built"
    assert not any(Path(settings.scratch).iterdir())


def test_a_source_slower_than_the_minimum_rate_is_a_source_error_naming_the_url(settings):
    """No task cap: source.min-rate stops it, after each try allowed; the message never shows the query string."""
    source = settings.source.replace(timeout=1.0, min_rate=1024, attempts=2, backoff=0)
    slow = settings.replace(source=source)
    with DripServer(gap=0.2) as server:
        url = f"http://{HOST}:{server.port}/slow.bed"
        report = preprocess.run_many([{"id": "drip", "access_url": url + "?X-Amz-Signature=s3cr3t"}],
                                     settings=slow)
        gets = server.gets
    (drip,) = report.results
    assert drip.error is not None and drip.error.class_ == "SourceError"
    assert drip.error.message.startswith(f"drip: fetching {url} failed after 2 attempt(s): SlowSource: ")
    assert "slower than source.min-rate (1024 bytes/s over each source.timeout)" in drip.error.message
    assert "s3cr3t" not in drip.error.message and "?" not in drip.error.message
    assert gets == 2  # retried once, as a read timeout is
