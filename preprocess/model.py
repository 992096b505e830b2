"""The documents that go in and come out: FileDoc, Artifact, Manifest, RunResult, BatchReport."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from .records import NON_EMPTY, Ge, Match, Record
from .records import ValidationError as ValidationError  # its home is records.py; imported from here too
from .urls import Url, redact

Status = Literal["built", "cached", "passthrough", "failed"]
_MD5 = re.compile(r"^[0-9a-f]{32}$")


def _md5(value: Any) -> Any:
    if value is None or value == "":
        return None
    text = str(value).strip().lower()
    if not _MD5.match(text):
        shown = "other characters" if len(text) == 32 else f"{len(text)} characters"  # never the value: a
        raise ValueError(f"md5 must be 32 hexadecimal digits, got {shown}")  # shifted column may hold a signed URL
    return text


def _empty_is_none(value: Any) -> Any:
    return None if value == "" else value


class FileDoc(Record):
    """One catalogue entry: where a file is and what it should be.

    `format` is matched case-insensitively against the registered pipelines and inferred from the
    file name when empty; `extra` keeps columns this package does not know. `access_url` is a Url:
    it prints (and serializes) without credentials or query string; `reveal()` gives the raw value.
    """

    _extra = "forbid"
    _strip = True
    _before = {"md5": _md5, "reference_md5": _md5, "format": _empty_is_none, "filename": _empty_is_none,
               "reference": _empty_is_none, "size": _empty_is_none}

    id: Annotated[str, NON_EMPTY]
    access_url: Url
    format: str | None = None
    md5: str | None = None
    size: Annotated[int, Ge(0)] | None = None
    filename: str | None = None
    reference: Url | None = None      # CRAM: URL of the FASTA (with .fai beside it) its reads were aligned to
    reference_md5: str | None = None  # the FASTA's md5: a cached CRAM is then found without fetching it
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The file name used to infer a format: `filename`, else the last part of the URL path."""
        if self.filename:
            return self.filename
        return self.access_url.path.rstrip("/").rsplit("/", 1)[-1]


def redact_url(url: str | Url) -> str:
    """The URL without credentials or query string, so a signed URL never reaches a log or report."""
    return str(url) if isinstance(url, Url) else redact(url)


_SHA256 = Match(r"[0-9a-f]{64}", "must be 64 lower-case hexadecimal digits")


class Artifact(Record):
    kind: Annotated[str, Match(r"[a-z][a-z0-9_-]{0,31}")]  # "data" or "index"
    name: Annotated[str, Match(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}", "must be a file name, never a path")]
    size: Annotated[int, Ge(0)]
    sha256: Annotated[str, _SHA256]


class SourceInfo(Record):
    url: str  # redacted: no credentials, no query string
    format: str
    md5: str
    sha256: str | None = None
    size: int


class ReferenceInfo(Record):
    """The outside reference a CRAM was built against: its md5 (in the key) and where it was read from
    (redacted; not in the key), so a genome-browser session can pair the CRAM with its FASTA."""

    url: str
    md5: str


class PipelineInfo(Record):
    name: str
    version: str
    parameters: dict[str, Any]


class Manifest(Record):
    """manifest.json: written last; its presence is what makes a key's artifacts visible."""

    key: Annotated[str, _SHA256]
    layout: str
    source: SourceInfo
    pipeline: PipelineInfo
    tools: dict[str, str] = field(default_factory=dict)
    reference: ReferenceInfo | None = None  # CRAM built against an outside reference FASTA
    artifacts: list[Artifact]
    records: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    threads: int | None = None  # threads each tool ran with (the timings depend on it, the bytes do not)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def artifact(self, kind: str) -> Artifact:
        for art in self.artifacts:
            if art.kind == kind:
                return art
        raise KeyError(kind)


class ErrorInfo(Record):
    class_: str  # written "class"
    message: str


# How a notebook shows results: api registers view.py's genome-browser page here (imported when first shown),
# so this model, floors below the view, never imports it.
_HTML_VIEW: list[Callable[[list[RunResult]], str]] = []


def register_html_view(render: Callable[[list[RunResult]], str]) -> None:
    """Make `render` what RunResult and BatchReport show in a notebook (`_repr_html_`)."""
    _HTML_VIEW[:] = [render]


class RunResult(Record):
    """What happened to one document. `artifacts` maps kind to an absolute URI."""

    id: str
    status: Status
    format: str | None = None
    pipeline: str | None = None
    key: str | None = None
    source: str | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    manifest: str | None = None
    records: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    error: ErrorInfo | None = None
    # pickled with the result, not in JSON
    _exception: BaseException | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    @property
    def exception(self) -> BaseException | None:
        """The classified exception a failure raised, with its attributes (ToolError.argv, …)."""
        if self.error is None:
            return None
        if self._exception is not None:
            return self._exception
        from .errors import rebuild

        return rebuild(self.error.class_, self.error.message)

    def _repr_html_(self) -> str | None:
        """A notebook shows the built file in igv.js (view.py's page, signed URLs valid for an hour)."""
        return _HTML_VIEW[0]([self]) if _HTML_VIEW else None  # None: the notebook shows the text repr

    @classmethod
    def failure(cls, doc_id: str, error: dict[str, str] | BaseException, **fields: Any) -> RunResult:
        """A failed result; given the exception itself, it travels with the result (see errors.portable)."""
        if isinstance(error, BaseException):
            from .errors import describe, portable

            result = cls(id=doc_id, status="failed", error=ErrorInfo.from_dict(describe(error)), **fields)
            result._exception = portable(error)
            return result
        return cls(id=doc_id, status="failed", error=ErrorInfo.from_dict(error), **fields)


class BatchReport(Record):
    store: str
    results: list[RunResult]
    started: str
    finished: str
    dashboard: str | None = None
    performance_report: str | None = None  # the HTML file written, when a cluster ran something

    @property
    def counts(self) -> dict[str, int]:
        counts = {"built": 0, "cached": 0, "passthrough": 0, "failed": 0}
        for result in self.results:
            counts[result.status] += 1
        return counts

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.results)

    @property
    def warnings(self) -> list[dict[str, str]]:
        """What a user should know of files that were built all the same ({"id", "warning"} each)."""
        return [{"id": result.id, "warning": text} for result in self.results for text in warnings_of(result.records)]

    def _repr_html_(self) -> str | None:
        """A notebook shows the batch's built files in igv.js (view.py's page, signed URLs valid for an hour)."""
        return _HTML_VIEW[0](self.results) if _HTML_VIEW else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, with the counts and warnings a reader of the file wants first."""
        return {**super().to_dict(), "counts": self.counts, "warnings": self.warnings}


def warnings_of(records: dict[str, Any]) -> list[str]:
    """The warnings a build's records carry: reads no region query reaches (records["unreachable"])."""
    unreachable = records.get("unreachable")
    if not unreachable:
        return []
    first = unreachable["first"][0]
    return [f"{unreachable['count']} read(s) start past the end of their reference, where no region query "
            f"reaches them (first: {first['read']} at {first['at']}, length {first['length']}); "
            "they are kept and counted in the manifest's records.unreachable"]
