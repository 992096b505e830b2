"""`python -m preprocess` as a user runs it: a real local Dask cluster with worker processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests import samples
from tests.conftest import md5, store_files


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "preprocess", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=240)


def test_batch_builds_then_reports_cached_with_exit_codes_and_json(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    sam = samples.sam(data / "s1.sam", reads=2000)
    bam = samples.bam(data / "s2.bam", reads=1000)
    truncated = data / "broken.bam"
    truncated.write_bytes(bam.read_bytes()[:3000])
    (tmp_path / "manifest.csv").write_text(
        "id,access_url,format,md5,lab\n"
        f"s1,data/s1.sam,sam,{md5(sam)},north\n"
        f"s2,data/s2.bam,BAM,{md5(bam)},south\n"
        "s3,data/broken.bam,BAM,,east\n"
        "s4,data/s1.sam\n"
        f"s5,data/s1.sam,SAM,{'f' * 32},west\n")
    first = cli("batch", "manifest.csv", "--workers", "2", "--json", "report.json", cwd=tmp_path)
    assert first.returncode == 1, first.stderr
    assert "dashboard: http://127.0.0.1:" in first.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    by_id = {r["id"]: r for r in report["results"]}
    assert [by_id[i]["status"] for i in ("s1", "s2", "s3", "s5")] == ["built", "built", "failed", "failed"]
    assert by_id["s3"]["error"]["class"] == "InputError" and "broken.bam" in by_id["s3"]["error"]["message"]
    assert by_id["s5"]["error"]["class"] == "InputError" and "md5 mismatch" in by_id["s5"]["error"]["message"]
    assert by_id["line 5"]["error"]["message"].startswith("manifest.csv line 5:")
    assert report["counts"] == {"built": 2, "cached": 0, "passthrough": 0, "failed": 3}
    for result in (by_id["s1"], by_id["s2"]):
        assert set(result["artifacts"]) == {"data", "index"}
        assert all(os.path.isabs(u) and os.path.exists(u) for u in result["artifacts"].values())
    assert "s1" in first.stdout and "InputError" in first.stdout  # the summary table
    built_files = store_files(tmp_path / "preprocess-store" / "v1")  # runs/ holds the run record
    assert len(built_files) == 6  # two keys x (bam, bai, manifest.json): nothing from the failures

    second = cli("batch", "manifest.csv", "--json", "-", cwd=tmp_path)
    assert second.returncode == 1
    again = {r["id"]: r["status"] for r in json.loads(second.stdout)["results"]}
    assert again["s1"] == again["s2"] == "cached" and again["s3"] == "failed"

    good_rows = (tmp_path / "manifest.csv").read_text().splitlines()[:3]
    (tmp_path / "good.csv").write_text("\n".join(good_rows) + "\n")
    cached = cli("batch", "good.csv", cwd=tmp_path)
    assert cached.returncode == 0 and "2 cached" in cached.stdout
    assert "dashboard" not in cached.stderr  # nothing to build: no cluster was started


def test_all_good_exits_0_and_usage_or_config_errors_exit_2(tmp_path):
    sam = samples.sam(tmp_path / "ok.sam", reads=100)
    (tmp_path / "good.csv").write_text("id,access_url,format\nok,ok.sam,SAM\n")
    assert cli("batch", "good.csv", "--cluster", "sync", cwd=tmp_path).returncode == 0
    (tmp_path / "nofmt.csv").write_text("id,access_url\nok,ok.sam\n")
    missing_column = cli("batch", "nofmt.csv", cwd=tmp_path)
    assert missing_column.returncode == 2 and "lacks required column(s) format" in missing_column.stderr
    assert cli("batch", "nope.csv", cwd=tmp_path).returncode == 2
    assert cli("batch", "--no-such-flag", "good.csv", cwd=tmp_path).returncode == 2
    bad_config = cli("batch", "good.csv", cwd=tmp_path, env={"DASK_PREPROCESS__SORT_MEMORY": "plenty"})
    assert bad_config.returncode == 2 and "sort-memory" in bad_config.stderr
    assert sam.exists()


def test_run_one_file_by_path(tmp_path):
    sam = samples.sam(tmp_path / "one.sam", reads=300)
    out = cli("run", str(sam), "--md5", md5(sam), "--store", str(tmp_path / "st"), "--cluster", "sync",
              "--json", "-", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)["results"][0]
    assert result["status"] == "built" and result["format"] == "SAM" and result["id"] == "one.sam"
    wrong = cli("run", str(sam), "--md5", "0" * 32, "--store", str(tmp_path / "st"), "--cluster", "sync",
                cwd=tmp_path)
    assert wrong.returncode == 1 and "md5 mismatch" in wrong.stdout


def test_small_local_work_runs_in_this_process_and_more_or_asked_for_starts_a_local_cluster(tmp_path):
    for name, seed in (("a", 1), ("b", 2), ("c", 3), ("d", 4)):
        samples.sam(tmp_path / f"{name}.sam", reads=200, seed=seed)
    one = cli("run", "a.sam", "--json", "-", cwd=tmp_path)  # default settings: profile auto
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout)["results"][0]["status"] == "built" and "dashboard" not in one.stderr
    (tmp_path / "two.csv").write_text("id,access_url,format\na,a.sam,SAM\nb,b.sam,SAM\n")
    left_one = cli("batch", "two.csv", cwd=tmp_path)  # a is cached: the plan leaves one file to build
    assert left_one.returncode == 0 and "1 built, 1 cached" in left_one.stdout
    assert "dashboard" not in left_one.stderr
    (tmp_path / "four.csv").write_text("id,access_url,format\na,a.sam,SAM\nb,b.sam,SAM\nc,c.sam,SAM\nd,d.sam,SAM\n")
    several = cli("batch", "four.csv", cwd=tmp_path)
    assert several.returncode == 0 and "2 built, 2 cached" in several.stdout
    assert "dashboard" not in several.stderr  # two small local files: built here too
    for name, seed in (("e", 5), ("f", 6)):
        samples.sam(tmp_path / f"{name}.sam", reads=200, seed=seed)
    (tmp_path / "two-more.csv").write_text("id,access_url,format\ne,e.sam,SAM\nf,f.sam,SAM\n")
    asked = cli("batch", "two-more.csv", "--workers", "1", cwd=tmp_path)
    assert asked.returncode == 0 and "2 built" in asked.stdout
    assert "dashboard: http://127.0.0.1:" in asked.stderr  # a cluster asked for: one started
    big = tmp_path / "big.sam"  # 64 MiB and more of local sources: a cluster pays
    big.write_bytes(samples.sam(tmp_path / "g.sam", reads=200, seed=7).read_bytes()
                    + b"".join(f"r{i}\t4\t*\t0\t0\t*\t*\t0\t0\t{'A' * 2000}\t{'I' * 2000}\n".encode()
                               for i in range(17000)))
    (tmp_path / "more.csv").write_text("id,access_url,format\nbig,big.sam,SAM\ng,g.sam,SAM\n")
    more = cli("batch", "more.csv", cwd=tmp_path)
    assert more.returncode == 0 and "2 built" in more.stdout, more.stdout + more.stderr
    assert "dashboard: http://127.0.0.1:" in more.stderr


def test_a_manifest_row_with_a_byte_that_is_not_utf8_fails_alone_and_the_batch_builds_the_rest(tmp_path):
    """The reproduction of issue 20: a bad byte in one row's id, 10 kB of another column in the row before."""
    samples.bed(tmp_path / "b1.bed", records=50)
    samples.narrowpeak(tmp_path / "p1.narrowPeak", records=50)
    (tmp_path / "m.csv").write_bytes(b"id,access_url,format,note\nok1,b1.bed,BED," + b"n" * 10_000 +
                                     b"\nbad\xff,b1.bed,BED,\nok2,p1.narrowPeak,narrowPeak,\n")
    done = cli("batch", "m.csv", "--cluster", "sync", "--json", "report.json", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert {r["id"]: r["status"] for r in report["results"]} == {"ok1": "built", "line 3": "failed", "ok2": "built"}
    (failed,) = [r for r in report["results"] if r["status"] == "failed"]
    assert failed["error"]["class"] == "InputError"
    assert "m.csv line 3: unreadable row: byte 0xff at line 3, byte offset 10045" in failed["error"]["message"]


def _memory_capped() -> None:
    """In the child: at most 4 GiB of address space, so a regression that reads /dev/zero whole fails there
    instead of taking the test machine's memory."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def test_retry_failed_with_a_report_of_the_wrong_shape_is_a_usage_error(tmp_path):
    """Issue 20 item 9: a wrong-shaped report gave a Python traceback; /dev/zero grew to 12 GB of memory."""
    samples.bed(tmp_path / "b.bed", records=20)
    (tmp_path / "m.csv").write_text("id,access_url,format\nb,b.bed,BED\n")
    shapes = {"list.json": '["a"]', "strings.json": '{"results": ["abc"]}', "no-id.json": '{"results": [{}]}',
              "not-json.json": "{results", "deep.json": "{" + '"a":[' * 100_000}
    for name, text in shapes.items():
        (tmp_path / name).write_text(text)
    for report in [*shapes, "/dev/zero", "missing.json"]:
        out = subprocess.run([sys.executable, "-m", "preprocess", "batch", "m.csv", "--cluster", "sync",
                              "--retry-failed", report], cwd=tmp_path, capture_output=True, text=True, timeout=240,
                             preexec_fn=_memory_capped)
        assert out.returncode == 2 and "Traceback" not in out.stderr, (report, out.stderr)
        assert out.stderr.startswith(f"error: --retry-failed {report}: "), out.stderr
        assert "give the JSON report an earlier batch wrote with --json" in out.stderr
    assert store_files(tmp_path / "preprocess-store") == []


def test_a_gs_source_without_gcsfs_says_what_to_install(tmp_path):
    """Issue 20 item 9: the message ended "(None is missing)". (gcsfs is not installed here: with it, this
    test would reach Google, so it fails rather than run.)"""
    import importlib.util

    assert importlib.util.find_spec("gcsfs") is None, "gcsfs is installed: this test must not reach Google"
    out = cli("run", "gs://bucket/x.bed", "--store", str(tmp_path / "st"), "--cluster", "sync", "--json", "-",
              cwd=tmp_path)
    error = json.loads(out.stdout)["results"][0]["error"]
    assert error == {"class": "ConfigError", "message": "gs:// sources need gcsfs: pip install gcsfs"}, error
