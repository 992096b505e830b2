"""The Dask dashboard as a user sees it while a batch runs, and the performance report of a run."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

import preprocess
from preprocess.cluster import open_client
from tests import samples
from tests.browser import browser
from tests.conftest import md5
from tests.servers import FileServer

HINT = "Dask needs bokeh"


@contextmanager
def running_batch(tmp_path: Path, settings: Any) -> Iterator[tuple[Any, dict[str, Any]]]:
    """A local cluster (profile local, two worker processes) running a batch of three formats whose
    sources are held by the HTTP server until the block ends; yields the client and the outcome."""
    files = [samples.sam(tmp_path / "a.sam", reads=500), samples.vcf(tmp_path / "b.vcf", records=200),
             samples.bed(tmp_path / "c.bed", records=200)]
    local = settings.replace(cluster=settings.cluster.replace(
        profile="local", n_workers=2))
    outcome: dict[str, Any] = {}
    with FileServer() as server, open_client(local.cluster) as client:
        gates = [server.hold(path.name) for path in files]
        docs = [{"id": path.stem, "access_url": server.add(path.name, path.read_bytes()), "md5": md5(path)}
                for path in files]

        def batch() -> None:
            outcome["report"] = preprocess.run_many(docs, settings=local, client=client,
                                                    report=outcome.get("report_path"))

        outcome["report_path"] = tmp_path / "report.html"
        worker = threading.Thread(target=batch)
        worker.start()
        try:
            _wait(lambda: sum(server.gets(path.name) for path in files) >= 2, "two tasks fetching")
            yield client, outcome
        finally:
            for gate in gates:
                gate.set()
            worker.join(timeout=240)
    assert not worker.is_alive(), "the batch did not finish once its sources were released"


def _wait(condition: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def test_dashboard_pages_render_while_a_batch_runs_and_group_by_stage(tmp_path, settings):
    with running_batch(tmp_path, settings) as (client, outcome):
        link = client.dashboard_link
        assert link.startswith("http://127.0.0.1:") and link.endswith("/status")
        base = link.rsplit("/", 1)[0]
        for page in ("/status", "/tasks", "/individual-task-stream"):
            response = requests.get(base + page, timeout=30)
            assert response.status_code == 200, page
            assert HINT not in response.text, f"{page} is the install hint, not the dashboard"
            assert "Bokeh" in response.text and "static/js/bokeh" in response.text, page
        prefixes = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    assert prefixes == ["sort_bam", "sort_bed", "sort_vcf"]
    report = outcome["report"]
    assert [r.status for r in report.results] == ["built", "built", "built"]
    assert [r.key for r in report.results] and all(r.key for r in report.results)


def colored_share(png: bytes, skip_top: int = 60) -> float:
    """The share of pixels below the navigation bar that are clearly colored (not white, grey or black):
    zero for a blank page or a page of text such as the install hint; plots and bars are colored."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    width, height = image.size
    body = image.crop((0, skip_top, width, height))
    channels = [band.load() for band in body.split()]
    colored = sum(1 for x in range(0, body.width, 2) for y in range(0, body.height, 2)
                  if max(c[x, y] for c in channels) - min(c[x, y] for c in channels) > 80)
    return colored / ((body.width // 2) * (body.height // 2))


def test_dashboard_screenshot_in_headless_chromium_shows_the_plots(tmp_path, settings):
    shot = tmp_path / "status.png"
    with running_batch(tmp_path, settings) as (client, _), browser(tmp_path / "chromium-profile") as page:
        page.open(client.dashboard_link)
        share = 0.0
        deadline = time.monotonic() + 90  # the plots arrive over a websocket after the page loads
        while share < 0.01 and time.monotonic() < deadline:
            time.sleep(0.5)
            shot.write_bytes(page.screenshot())
            share = colored_share(shot.read_bytes())
        title = page.evaluate("document.title")
        text = page.evaluate("document.body.innerText")
    assert title == "Dask: Status" and HINT not in text
    assert share >= 0.01, f"no plots drawn on the dashboard: see {shot}"


def test_blank_and_hint_pages_have_no_colored_area(tmp_path):
    """The screenshot check can fail: the install hint distributed serves without bokeh draws no plot."""
    from distributed.versions import BOKEH_REQUIREMENT as NEED

    hint = tmp_path / "hint.html"  # what distributed.http.scheduler.missing_bokeh writes
    hint.write_text(f"<p>Dask needs {NEED} for the dashboard.</p>"
                    f'<p>Install with conda: <code>conda install "{NEED}"</code></p>'
                    f'<p>Install with pip: <code>pip install "{NEED}"</code></p>')
    with browser(tmp_path / "chromium-profile") as page:
        page.open(hint.as_uri())
        _wait(lambda: page.evaluate("document.readyState") == "complete", "the page to load")
        png = page.screenshot()
    assert colored_share(png) == 0.0


def test_performance_report_of_a_run_names_each_stage(tmp_path, settings):
    with running_batch(tmp_path, settings) as (_, outcome):
        pass
    report = outcome["report"]
    assert report.performance_report == str(tmp_path / "report.html")
    html = (tmp_path / "report.html").read_text()
    assert "Dask Performance Report" in html
    assert all(stage in html for stage in ("sort_bam", "sort_vcf", "sort_bed"))


def test_no_performance_report_when_everything_is_cached(tmp_path, settings):
    sam = samples.sam(tmp_path / "a.sam", reads=200)
    doc = {"id": "a", "access_url": str(sam)}
    assert preprocess.run_many([doc], settings=settings).results[0].status == "built"
    again = preprocess.run_many([doc], settings=settings, report=tmp_path / "again.html")
    assert again.results[0].status == "cached" and again.performance_report is None
    assert not (tmp_path / "again.html").exists()


def test_batch_report_option_writes_the_report_only_when_something_ran(tmp_path):
    samples.sam(tmp_path / "a.sam", reads=200)
    (tmp_path / "catalogue.csv").write_text("id,access_url,format\na,a.sam,SAM\n")
    args = [sys.executable, "-m", "preprocess", "batch", "catalogue.csv", "--workers", "1", "--report", "run.html"]
    first = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert first.returncode == 0, first.stderr
    assert f"performance report: {tmp_path / 'run.html'}" in first.stderr
    assert "Dask Performance Report" in (tmp_path / "run.html").read_text()
    (tmp_path / "run.html").unlink()
    again = subprocess.run([*args[:-1], "again.html"], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0 and "performance report: not written to again.html" in again.stderr
    assert not (tmp_path / "again.html").exists()
