"""Genome-browser sessions of what a store holds: igv.js sessions, Gosling specs and one HTML page.

A session is made from a catalogue (its rows already committed in the store; nothing is built) or from
a batch report. Every data URL and index URL is signed (one HEAD each: only what exists is signed),
each track is named for its document, and a CRAM built against an outside reference brings its FASTA.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

from .config import Settings, load_settings
from .model import BatchReport, RunResult
from .records import Record

# Public CDN builds, versions pinned (tests/integration/test_view_browser.py serves the same versions,
# installed by the Makefile into .tools/browser, in their place).
IGV_VERSION = "3.8.10"
GOSLING_VERSION = "1.0.7"
IGV_JS = f"https://cdn.jsdelivr.net/npm/igv@{IGV_VERSION}/dist/igv.min.js"
GOSLING_JS = (f"https://esm.sh/gosling.js@{GOSLING_VERSION}?bundle"
              "&deps=react@18.3.1,react-dom@18.3.1,pixi.js@6.5.10,higlass@1.13.6")

# data artifact suffix -> (igv track type, igv format, Gosling data type or None when Gosling has none)
_FORMATS: dict[str, tuple[Literal["alignment", "variant", "annotation"], str, str | None]] = {
    ".bam": ("alignment", "bam", "bam"),
    ".cram": ("alignment", "cram", None),
    ".vcf.gz": ("variant", "vcf", "vcf"),
    ".bed.gz": ("annotation", "bed", "bed"),
    ".narrowPeak.gz": ("annotation", "narrowpeak", "bed"),
    ".broadPeak.gz": ("annotation", "broadpeak", "bed"),
    ".gff3.gz": ("annotation", "gff3", "gff"),
}


class Track(Record):
    """One built row as a browser track: signed URLs (they carry secrets: never log them)."""

    name: str
    type: Literal["alignment", "variant", "annotation"]
    format: str
    url: str
    index_url: str
    gosling: str | None = None  # Gosling's data type, None where Gosling reads no such file (CRAM)


class Reference(Record):
    """A FASTA for igv.js (CRAM decoding needs it) and its sequence lengths for Gosling."""

    fasta_url: str
    index_url: str
    sequences: list[tuple[str, int]] = field(default_factory=list)


class Session(Record):
    """The tracks of a catalogue or report, and what was left out (with why)."""

    title: str
    tracks: list[Track]
    skipped: list[str] = field(default_factory=list)
    reference: Reference | None = None
    genome: str | None = None
    locus: str | None = None

    def igv(self) -> dict[str, Any]:
        """An igv.js session: igv.createBrowser(div, session) opens it."""
        out: dict[str, Any] = {}
        if self.reference is not None:
            out["reference"] = {"id": "reference", "name": "reference", "fastaURL": self.reference.fasta_url,
                                "indexURL": self.reference.index_url}
        elif self.genome:
            out["genome"] = self.genome
        if self.locus:
            out["locus"] = self.locus
        out["tracks"] = [{"name": t.name, "type": t.type, "format": t.format, "url": t.url, "indexURL": t.index_url,
                          "sourceType": "file"} for t in self.tracks]
        return out

    def gosling(self) -> dict[str, Any]:
        """A Gosling spec with one track per file Gosling reads (BAM, VCF, BED and peaks, GFF3)."""
        tracks = [_gosling_track(t) for t in self.tracks if t.gosling]
        spec: dict[str, Any] = {"title": self.title, "layout": "linear", "arrangement": "vertical",
                                "views": [{"tracks": tracks}]}
        if self.reference is not None and self.reference.sequences:
            spec["assembly"] = [[name, length] for name, length in self.reference.sequences]
        elif self.genome:
            spec["assembly"] = self.genome
        domain = _domain(self.locus)
        if domain:
            spec["xDomain"] = domain
        return spec

    def html(self, igv_js: str = IGV_JS, gosling_js: str = GOSLING_JS) -> str:
        """One page that opens the session in igv.js and in Gosling (scripts from their pinned CDN builds)."""
        return _PAGE.format(title=html.escape(self.title), igv_js=html.escape(igv_js, quote=True),
                            gosling_js=json.dumps(gosling_js), igv=_script_json(self.igv()),
                            gosling=_script_json(self.gosling()))


def session(source: str | Path, *, settings: Settings | None = None, expires: int = 12 * 3600,
            genome: str | None = None, locus: str | None = None) -> Session:
    """The session of a catalogue CSV (rows committed in the store) or of a batch report JSON."""
    settings = settings or load_settings()
    source = Path(source)
    if source.suffix.lower() == ".json":
        report = BatchReport.from_json(source.read_text())
        return from_results(report.results, settings=settings, expires=expires, genome=genome, locus=locus,
                            title=source.name)
    from .build import open_store
    from .catalog import read_catalog
    from .plan import plan

    store = open_store(settings)
    docs = read_catalog(source)
    pending = plan(docs, settings, store)
    references = {doc.id: doc.reference.reveal() for doc in docs if not isinstance(doc, BaseException)
                  and doc.reference is not None}
    waiting = [doc.id for items in pending.tasks.values() for _, doc, _ in items]
    out = from_results([pending.results[i] for i in sorted(pending.results)], settings=settings, expires=expires,
                       genome=genome, locus=locus, title=source.name, references=references)
    out.skipped.extend(f"{doc_id}: not built in {store.url} yet (run `batch` first)" for doc_id in waiting)
    return out


def from_results(results: Iterable[RunResult], *, settings: Settings | None = None, expires: int = 12 * 3600,
                 genome: str | None = None, locus: str | None = None, title: str = "preprocess",
                 references: dict[str, str] | None = None) -> Session:
    """The session of these results: built and cached rows become tracks, the rest are skipped."""
    from .build import signed_url

    settings = settings or load_settings()
    out = Session(title=title, tracks=[], genome=genome, locus=locus)
    for result in results:
        data, index = result.artifacts.get("data"), result.artifacts.get("index")
        if result.status not in ("built", "cached") or not data or not index:
            out.skipped.append(f"{result.id}: {result.status}" + (f" ({result.error.class_})" if result.error else ""))
            continue
        kind = next((kind for suffix, kind in _FORMATS.items() if data.endswith(suffix)), None)
        if kind is None:
            out.skipped.append(f"{result.id}: no browser track type for {data.rsplit('/', 1)[-1]}")
            continue
        if kind[1] == "cram":
            wanted = _cram_reference(result, (references or {}).get(result.id), settings)
            if wanted is not None and out.reference is None:
                out.reference = _reference(wanted, settings, expires)
            elif wanted is not None and not _same_file(out.reference, wanted, settings, expires):
                out.skipped.append(f"{result.id}: its reference differs from the session's (one per igv.js page)")
                continue
        out.tracks.append(Track(name=result.id, type=kind[0], format=kind[1], gosling=kind[2],
                                url=signed_url(data, expires, settings),
                                index_url=signed_url(index, expires, settings)))
    if out.reference is None and not genome and out.tracks:
        out.skipped.append("(no reference: no CRAM names one and no --genome was given; igv.js needs one)")
    return out


NOTEBOOK_TRACKS = 20  # a notebook's display signs each URL (one HEAD): a large batch shows its first ones


def repr_html(results: Iterable[RunResult]) -> str:
    """What a notebook shows for results: the igv.js view of their first NOTEBOOK_TRACKS built files
    (URLs valid for an hour)."""
    built = [r for r in results if r.status in ("built", "cached")]
    try:
        page = from_results(built[:NOTEBOOK_TRACKS], expires=3600)
    except Exception as exc:  # noqa: BLE001 - a notebook's display must not raise; say why instead
        return f"<pre>no genome-browser view: {html.escape(type(exc).__name__)}: {html.escape(str(exc)[:300])}</pre>"
    if not page.tracks:
        return "<pre>no genome-browser view: nothing built</pre>"
    more = f"<p>the first {NOTEBOOK_TRACKS} of {len(built)} built files</p>" if len(built) > NOTEBOOK_TRACKS else ""
    frame = html.escape(page.html(), quote=True)
    return more + f'<iframe srcdoc="{frame}" style="width:100%;height:720px;border:0"></iframe>'


# -- helpers -------------------------------------------------------------------------------------------
def _cram_reference(result: RunResult, given: str | None, settings: Settings) -> str | None:
    """The FASTA a CRAM track needs: the document's (catalogue), else the one its manifest records;
    None when the CRAM is self-contained."""
    manifest = _manifest(result, settings)
    if manifest is None or manifest.records.get("reference") != "external":
        return None
    if given:
        return given
    return manifest.reference.url if manifest.reference else None


def _manifest(result: RunResult, settings: Settings) -> Any:
    from .build import open_store
    from .keys import LAYOUT

    if not result.manifest or not result.key:
        return None
    root = result.manifest.rsplit(f"/{LAYOUT}/", 1)[0]
    return open_store(settings, root).lookup(result.key)


def _reference(url: str, settings: Settings, expires: int) -> Reference:
    """The FASTA signed (when in a store), its .fai beside it, and the .fai's sequence lengths."""
    fai = _beside(url, ".fai")
    return Reference(fasta_url=_browser_url(url, settings, expires), index_url=_browser_url(fai, settings, expires),
                     sequences=_fai_sequences(fai, settings))


def _same_file(reference: Reference | None, url: str, settings: Settings, expires: int) -> bool:
    return reference is not None and reference.fasta_url.split("?", 1)[0] == \
        _browser_url(url, settings, expires).split("?", 1)[0]


def _beside(url: str, suffix: str) -> str:
    path, sep, query = url.partition("?")
    return f"{path}{suffix}{sep}{query}"


def _browser_url(url: str, settings: Settings, expires: int) -> str:
    """A URL a browser can read: store URLs signed, http(s) as given, local paths as file://."""
    from .build import signed_url

    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("http", "https"):
        return url
    return signed_url(url, expires, settings)


def _fai_sequences(fai: str, settings: Settings) -> list[tuple[str, int]]:
    """(name, length) of each sequence in a FASTA index, read where the session is made."""
    import fsspec

    from .build import open_store

    scheme = fai.split("://", 1)[0].lower() if "://" in fai else ""
    if scheme in ("http", "https", "", "file"):
        with fsspec.open(fai, "rt") as stream:
            text = stream.read()
    else:
        store = open_store(settings, f"{scheme}://{fai.split('://', 1)[1].split('/', 1)[0]}")
        text = store.read_uri(fai).decode()
    return [(cols[0], int(cols[1])) for cols in (line.split("\t") for line in text.splitlines()) if len(cols) > 1]


def _domain(locus: str | None) -> dict[str, Any] | None:
    """Gosling's xDomain for `chr:start-end` (1-based, inclusive, as igv.js reads it) or `chr`."""
    if not locus:
        return None
    name, _, span = locus.rpartition(":") if ":" in locus else (locus, "", "")
    if not span:
        return {"chromosome": locus}
    start, _, end = span.replace(",", "").partition("-")
    return {"chromosome": name, "interval": [int(start), int(end or start)]}


def _gosling_track(track: Track) -> dict[str, Any]:
    data = {"type": track.gosling, "url": track.url, "indexUrl": track.index_url}
    base: dict[str, Any] = {"id": track.name, "title": track.name, "data": data, "width": 800}
    if track.gosling == "bam":
        return {**base, "height": 200, "mark": "rect",
                "dataTransform": [{"type": "displace", "method": "pile", "newField": "row", "maxRows": 200,
                                   "boundingBox": {"startField": "start", "endField": "end", "padding": 5,
                                                   "isPaddingBP": True}}],
                "x": {"field": "start", "type": "genomic"}, "xe": {"field": "end", "type": "genomic"},
                "y": {"field": "row", "type": "nominal", "flip": False},
                "color": {"value": "steelblue"}, "stroke": {"value": "white"}, "strokeWidth": {"value": 0.5}}
    if track.gosling == "vcf":
        return {**base, "height": 40, "mark": "rect", "x": {"field": "POS", "type": "genomic"}, "size": {"value": 3},
                "color": {"value": "darkorange"}}
    if track.gosling == "gff":
        return {**base, "height": 40, "mark": "rect", "x": {"field": "start", "type": "genomic"},
                "xe": {"field": "end", "type": "genomic"}, "color": {"value": "seagreen"}}
    return {**base, "height": 40, "mark": "rect", "x": {"field": "chromStart", "type": "genomic"},
            "xe": {"field": "chromEnd", "type": "genomic"}, "color": {"value": "purple"}}


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element (no `</script>` can end it early)."""
    return json.dumps(value, indent=1).replace("</", "<\\/").replace("<!--", "<\\!--")


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<script src="{igv_js}"></script>
<style>body {{ font-family: sans-serif; margin: 1em; }} .error {{ color: #b00; }}</style>
</head>
<body>
<h1>{title}</h1>
<h2>igv.js</h2>
<div id="igv"></div>
<h2>Gosling</h2>
<div id="gosling"></div>
<pre id="errors" class="error"></pre>
<script type="application/json" id="igv-session">{igv}</script>
<script type="application/json" id="gosling-spec">{gosling}</script>
<script type="module">
const state = window.preprocessView = {{ igv: null, gosling: null, errors: [], raw: {{}}, done: 0, parts: 1 }};
const fail = (where, error) => {{
  state.errors.push(where + ": " + (error && error.message || error));
  document.getElementById("errors").textContent = state.errors.join("\\n");
}};
const session = JSON.parse(document.getElementById("igv-session").textContent);
const spec = JSON.parse(document.getElementById("gosling-spec").textContent);
igv.createBrowser(document.getElementById("igv"), session)
  .then(browser => {{ state.igv = browser; }}, error => fail("igv.js", error))
  .finally(() => {{ state.done += 1; }});
if (spec.views[0].tracks.length) {{
  state.parts += 1;
  import({gosling_js})
    .then(gosling => gosling.embed(document.getElementById("gosling"), spec))
    .then(api => {{
      state.gosling = api;
      api.subscribe("rawData", (type, data) => {{ state.raw[data.id] = data.data; }});
    }}, error => fail("Gosling", error))
    .finally(() => {{ state.done += 1; }});
}}
</script>
</body>
</html>
"""
