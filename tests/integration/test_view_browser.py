"""A real browser opens the page `python -m preprocess view --html` writes: headless Chromium loads it
from one loopback origin, and igv.js and Gosling (the npm copies the Makefile installs into
.tools/browser, served in place of the CDN builds) read the tracks by range from two other origins:
moto (S3, started with MOTO_DISABLE_GLOBAL_CORS=1, so the bucket's own CORS rules decide) and Azurite.

What the emulators can show, and what they cannot:
- CORS: both enforce it. Without the rule `cors` sets, every track fails; with it, every track loads.
- Signatures: Azurite checks a SAS (a tampered or expired one is refused: tested here). moto checks only
  that an S3 signature is *present*: a tampered or expired presigned URL is served all the same. So the
  validity of the project's S3 signatures (SigV4, see test_cors_sign.py) is not shown by any test here.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pysam
import pytest

from preprocess import view
from preprocess.api import run_many
from preprocess.config import load_settings
from preprocess.model import BatchReport
from tests import samples
from tests.browser import Browser, browser
from tests.servers import HOST, azurite, moto_process

ROOT = Path(__file__).resolve().parents[2]
VIEWERS = ROOT / ".tools" / "browser"
IGV_JS = VIEWERS / "node_modules" / "igv" / "dist" / "igv.min.js"
GOSLING_JS = VIEWERS / "gosling.bundle.mjs"
CHROM, START, END = "chr1", 20_000, 30_000  # 0-based, end exclusive; 10 kb: Gosling draws reads only this close
LOCUS = f"{CHROM}:{START + 1}-{END}"
SCREENSHOT = ROOT / "docs" / "view.png"


def local_viewers() -> None:
    if not (IGV_JS.exists() and GOSLING_JS.exists()):
        raise RuntimeError("igv.js or the Gosling bundle is missing: `make test` installs them into .tools/browser")


@contextmanager
def page_site(folder: Path) -> Iterator[str]:
    """The page's own origin: a static file server on loopback."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folder))
    SimpleHTTPRequestHandler.extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript"}
    SimpleHTTPRequestHandler.log_message = lambda *args: None  # type: ignore[method-assign]
    httpd = ThreadingHTTPServer((HOST, 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://{HOST}:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> Iterator[dict[str, str]]:
    """moto without global CORS, a fresh Azurite (no CORS rule yet) and the page's server."""
    local_viewers()
    folder = tmp_path_factory.mktemp("site")
    shutil.copy(IGV_JS, folder / "igv.min.js")
    shutil.copy(GOSLING_JS, folder / "gosling.mjs")
    with moto_process(MOTO_DISABLE_GLOBAL_CORS="1") as s3, azurite(tmp_path_factory.mktemp("azurite-cors")) as az, \
            page_site(folder) as page:
        yield {"s3": s3, "az": az, "page": page, "folder": str(folder)}


@pytest.fixture
def clouds(sites, monkeypatch) -> dict[str, str]:
    """This process and the CLI it runs reach the module's moto and Azurite through the environment."""
    import adlfs
    import s3fs

    env = {"AWS_ENDPOINT_URL": sites["s3"], "AWS_ACCESS_KEY_ID": "testing-key-id",
           "AWS_SECRET_ACCESS_KEY": "testing-secret-key", "AWS_DEFAULT_REGION": "us-east-1",
           "AZURE_STORAGE_CONNECTION_STRING": sites["az"]}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for fs in (s3fs.S3FileSystem, adlfs.AzureBlobFileSystem):
        fs.clear_instance_cache()  # instances made for the session's servers must not be reused here
    yield env
    for fs in (s3fs.S3FileSystem, adlfs.AzureBlobFileSystem):
        fs.clear_instance_cache()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "preprocess", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=300)


def build(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """BAM and an outside-reference CRAM in S3, VCF, BED and narrowPeak in Azure; a report of both."""
    import s3fs

    data = tmp_path / "data"
    data.mkdir()
    reference = samples.fasta(data / "ref.fa")
    s3 = s3fs.S3FileSystem(skip_instance_cache=True)
    s3.mkdir("views")
    s3.put(str(reference), "views/refs/ref.fa")
    s3.put(str(reference) + ".fai", "views/refs/ref.fa.fai")
    from adlfs import AzureBlobFileSystem

    AzureBlobFileSystem(connection_string=os.environ["AZURE_STORAGE_CONNECTION_STRING"],
                        skip_instance_cache=True).mkdir("views")
    files = {"reads-bam": samples.bam(data / "a.bam", reads=4000),
             "reads-cram": samples.cram(data / "a.cram", reference, reads=3000),
             "variants": samples.vcf(data / "a.vcf", records=600),
             "intervals": samples.bed(data / "a.bed", records=600),
             "peaks": samples.narrowpeak(data / "a.narrowPeak", records=600)}
    results = []
    for store, ids in (("s3://views/artifacts", ["reads-bam", "reads-cram"]),
                       ("az://views/artifacts", ["variants", "intervals", "peaks"])):
        settings = load_settings(**{"store.url": store, "cluster.profile": "sync", "scratch": str(tmp_path)})
        docs = [{"id": i, "access_url": str(files[i]),
                 **({"reference": "s3://views/refs/ref.fa"} if i == "reads-cram" else {})} for i in ids]
        report = run_many(docs, settings=settings)
        assert report.ok, report.to_json()
        results += report.results
    path = tmp_path / "report.json"
    path.write_text(BatchReport(store="s3 and az", results=results, started="", finished="").to_json())
    return path, {**files, "reference": reference}


def expected(report: Path, reference: Path, folder: Path) -> dict[str, list[Any]]:
    """What pysam returns over the region from the built artifacts (fetched from the stores): reads as
    igv.js shows them by default (no duplicates, QC failures, secondary or supplementary alignments),
    features by their 0-based start."""
    import fsspec

    out: dict[str, list[Any]] = {}
    for result in BatchReport.from_json(report.read_text()).results:
        local = {}
        for kind in ("data", "index"):
            uri = result.artifacts[kind]
            local[kind] = folder / f"{result.id}-{uri.rsplit('/', 1)[1]}"
            with fsspec.open(uri, "rb") as remote:
                local[kind].write_bytes(remote.read())
        if result.format in ("BAM", "CRAM"):
            with pysam.AlignmentFile(str(local["data"]), index_filename=str(local["index"]),
                                     reference_filename=str(reference)) as aln:
                out[result.id] = sorted(
                    f"{r.query_name}:{r.reference_start}" for r in aln.fetch(CHROM, START, END)
                    if not (r.is_duplicate or r.is_qcfail or r.is_secondary or r.is_supplementary))
            continue
        with pysam.TabixFile(str(local["data"]), index=str(local["index"])) as tbx:
            starts = [int(row.split("\t")[1]) for row in tbx.fetch(CHROM, START, END)]
        out[result.id] = sorted(start - 1 if result.format == "VCF" else start for start in starts)
    return out


RECORDS = """(async ([chrom, start, end]) => {  // each igv.js track's records over the region, as pysam lists them
  const out = {};
  for (const tv of window.preprocessView.igv.trackViews) {
    const t = tv.track;
    if (!t || !t.url) continue;
    try {
      const got = await t.getFeatures(chrom, start, end, 1);
      out[t.name] = t.type === "alignment"
        ? got.allAlignments().filter(a => a.start < end && a.start + a.lengthOnRef > start)
             .map(a => a.readName + ":" + a.start).sort()
        : got.filter(f => f.chr === chrom && f.start < end && f.end > start)
             .map(f => f.start).sort((a, b) => a - b);
    } catch (e) { out[t.name] = "error: " + (e && e.message || e); }
  }
  return out;
})(""" + json.dumps([CHROM, START, END]) + ")"


def open_page(page: Browser, url: str, timeout: float = 90) -> dict[str, Any]:
    """Open the page and wait until igv.js and Gosling have each loaded or failed."""
    page.open(url)
    deadline = time.monotonic() + timeout
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        time.sleep(0.5)
        state = page.evaluate("(s => s && {igv: !!s.igv, gosling: !!s.gosling, errors: s.errors, "
                              "done: s.done >= s.parts})(window.preprocessView)") or {}
        if state.get("done"):
            break
    return state


def gosling_records(page: Browser, tracks: int, timeout: float = 60) -> dict[str, list[Any]]:
    """What Gosling drew over the region, per track, in pysam's terms: its genomic axis counts from 1
    (a position is the file's 0-based one plus 1; a VCF POS the file's POS plus 1)."""
    deadline = time.monotonic() + timeout
    raw: dict[str, list[dict[str, Any]]] = {}
    while time.monotonic() < deadline and len(raw) < tracks:
        time.sleep(0.5)
        raw = page.evaluate("window.preprocessView.raw") or {}
    out: dict[str, list[Any]] = {}
    for name, data in raw.items():
        if data and "cigar" in data[0]:  # reads
            reads = {d["id"]: d for d in data if d["start"] - 1 < END and d["end"] - 1 > START}
            out[name] = sorted(f"{d['name']}:{d['start'] - 1}" for d in reads.values())
        elif data and "POS" in data[0]:  # 0-based start: POS - 2
            out[name] = sorted({d["POS"] - 2 for d in data
                                if d["POS"] - 2 < END and d["POS"] - 2 + len(d["REF"]) > START})
        else:
            out[name] = sorted({d["chromStart"] - 1 for d in data
                                if d["chromStart"] - 1 < END and d["chromEnd"] - 1 > START})
    return out


def served(sites: dict[str, str], session: view.Session, name: str) -> str:
    """The page as `view --html` writes it, with the CDN scripts swapped for the local copies."""
    page = session.html(igv_js=f"{sites['page']}/igv.min.js", gosling_js=f"{sites['page']}/gosling.mjs")
    (Path(sites["folder"]) / name).write_text(page)
    return f"{sites['page']}/{name}"


def test_igv_and_gosling_in_chromium_read_every_track_only_with_the_cors_rule(sites, clouds, tmp_path):
    report, files = build(tmp_path)
    out = cli("view", str(report), "--html", str(tmp_path / "view.html"), "--igv", str(tmp_path / "igv.json"),
              "--gosling", str(tmp_path / "gosling.json"), "--locus", LOCUS, "--expires", "900")
    assert out.returncode == 0, out.stderr
    session = json.loads((tmp_path / "igv.json").read_text())
    assert [(t["name"], t["type"], t["format"]) for t in session["tracks"]] == [
        ("reads-bam", "alignment", "bam"), ("reads-cram", "alignment", "cram"), ("variants", "variant", "vcf"),
        ("intervals", "annotation", "bed"), ("peaks", "annotation", "narrowpeak")]
    # the CRAM's reference, recorded in its manifest, signed; data and index URLs signed (SigV4, SAS)
    assert session["reference"]["fastaURL"].startswith(f"{sites['s3']}/views/refs/ref.fa?X-Amz-Algorithm=")
    assert all("X-Amz-Signature=" in t["url"] and "X-Amz-Signature=" in t["indexURL"] for t in session["tracks"][:2])
    assert all("sig=" in t["url"] and "sig=" in t["indexURL"] for t in session["tracks"][2:])
    gosling = json.loads((tmp_path / "gosling.json").read_text())
    assert [t["id"] for t in gosling["views"][0]["tracks"]] == ["reads-bam", "variants", "intervals", "peaks"]
    html = (tmp_path / "view.html").read_text()
    assert view.IGV_JS in html and json.dumps(view.GOSLING_JS) in html  # the pinned CDN builds
    page_url = f"{sites['page']}/view.html"
    (Path(sites["folder"]) / "view.html").write_text(
        html.replace(view.IGV_JS, f"{sites['page']}/igv.min.js")
            .replace(json.dumps(view.GOSLING_JS), json.dumps(f"{sites['page']}/gosling.mjs")))
    want = expected(report, files["reference"], tmp_path)
    assert all(len(v) >= 5 for v in want.values()), {k: len(v) for k, v in want.items()}
    in_s3, in_azure = ["reads-bam", "reads-cram"], ["variants", "intervals", "peaks"]

    with browser(tmp_path / "profile-a") as page:  # no CORS rule anywhere: every response is refused
        state = open_page(page, page_url)
        drawn = gosling_records(page, 4, timeout=10)
    assert not state["igv"] and "CORS" in " ".join(state["errors"]), state  # the FASTA (in S3) is refused
    assert not any(drawn.values()), drawn

    origin = sites["page"]
    out = cli("cors", "s3://views", "--allow-origin", origin)
    assert out.returncode == 0, out.stderr
    with browser(tmp_path / "profile-b") as page:  # the bucket allows the page; the Azure account not yet
        state = open_page(page, page_url)
        assert state["igv"], state
        got = page.evaluate(RECORDS, await_promise=True)
    assert {name: got.get(name) for name in in_s3} == {name: want[name] for name in in_s3}
    assert all(not isinstance(got.get(name), list) for name in in_azure), got  # each Azure track failed

    out = cli("cors", "az://views", "--allow-origin", origin)
    assert out.returncode == 0, out.stderr
    page = Browser(tmp_path / "profile-c", height=1700)  # tall enough for the README's picture
    try:
        state = open_page(page, page_url)
        assert state["igv"] and state["gosling"] and not state["errors"], state
        assert page.evaluate(RECORDS, await_promise=True) == want
        drawn = gosling_records(page, 4)  # Gosling reads no CRAM
        assert drawn == {name: want[name] for name in ("reads-bam", "variants", "intervals", "peaks")}
        shot = page.screenshot()
    finally:
        page.close()
    (tmp_path / "view.png").write_bytes(shot)
    if os.environ.get("PREPROCESS_WRITE_SCREENSHOT"):  # the README's picture, refreshed on demand
        SCREENSHOT.write_bytes(shot)


def test_tampered_and_expired_sas_and_a_wrong_index_are_caught_in_the_browser(sites, clouds, tmp_path):
    """Azurite refuses a tampered and an expired SAS (igv.js fails those tracks); a track given another
    file's index returns records that differ from pysam's, which the record check catches."""
    import adlfs

    from preprocess.view import Session

    adlfs.AzureBlobFileSystem(connection_string=clouds["AZURE_STORAGE_CONNECTION_STRING"],
                              skip_instance_cache=True).mkdir("negative")
    settings = load_settings(**{"store.url": "az://negative/a", "cluster.profile": "sync", "scratch": str(tmp_path)})
    bed = samples.bed(tmp_path / "a.bed", records=600)
    big = samples.bed(tmp_path / "big.bed", records=20000, seed=11)  # its index points far into its many blocks
    report = run_many([{"id": "intervals", "access_url": str(bed)}, {"id": "big", "access_url": str(big)}],
                      settings=settings)
    assert report.ok, report.to_json()
    (tmp_path / "report.json").write_text(report.to_json())
    fasta = samples.fasta(tmp_path / "ref.fa")
    good = view.from_results(report.results, settings=settings, expires=900).tracks[0]
    short = view.from_results(report.results[:1], settings=settings, expires=1).tracks[0]
    cut = good.url.index("sig=") + len("sig=")
    tampered = good.url[:cut] + ("A" if good.url[cut] != "A" else "B") + good.url[cut + 1:]
    wrong_index = view.from_results(report.results[1:], settings=settings, expires=900).tracks[0].index_url
    tracks = [good, good.replace(name="tampered", url=tampered),
              short.replace(name="expired"),
              good.replace(name="wrong-index", index_url=wrong_index)]
    time.sleep(2)  # `expired` is past its expiry
    for name, url in (("ref.fa", fasta), ("ref.fa.fai", Path(str(fasta) + ".fai"))):
        shutil.copy(url, Path(sites["folder"]) / name)
    session = Session(title="negative cases", tracks=tracks, locus=LOCUS,
                      reference=view.Reference(fasta_url=f"{sites['page']}/ref.fa",
                                               index_url=f"{sites['page']}/ref.fa.fai"))
    assert clouds and cli("cors", "az://negative", "--allow-origin", sites["page"]).returncode == 0
    want = expected(tmp_path / "report.json", fasta, tmp_path)["intervals"]
    with browser(tmp_path / "profile") as page:
        state = open_page(page, served(sites, session, "negative.html"))
        assert state["igv"], state
        got = page.evaluate(RECORDS, await_promise=True)
    assert got["intervals"] == want  # the check can pass: the same track, untouched, is read whole
    assert not isinstance(got.get("tampered"), list), got  # refused (403), so igv.js has no records
    assert not isinstance(got.get("expired"), list), got
    assert got.get("wrong-index") != want, got  # caught: what the browser read is not what the file holds
