"""Plan a batch on the client: what is known without a cluster, and the tasks that remain.

Planning is cheap and needs no cluster: format, pipeline and, where the document carries an md5
or is a local file (hashed here), the key and a store lookup. Only documents that still need work
become tasks, keyed `<stage>-<key>` (e.g. `sort_bam-<key>`), so the dashboard groups them by stage
and one key submitted twice runs once (graph.py runs them).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import digests, registry, sources
from .build import cached_result, key_for, takes_reference
from .config import Settings
from .errors import InputError, StoreError
from .keys import task_key
from .model import FileDoc, RunResult, ValidationError, redact_url
from .store import ArtifactStore
from .urls import Url


@dataclass
class Plan:
    """Results known without a cluster, and the tasks that remain (task key -> its documents)."""

    results: dict[int, RunResult] = field(default_factory=dict)
    tasks: dict[str, list[tuple[int, FileDoc, str]]] = field(default_factory=dict)
    rebuild: set[str] = field(default_factory=set)  # tasks that build even when a manifest is there

    def schedule(self, index: int, doc: FileDoc, fmt: str, key: str, rebuild: bool = False) -> None:
        """Add a document to the task of its derivation key (`rebuild`: repair a committed key)."""
        name = task_key(registry.pipeline_for(fmt).stage, key)
        self.tasks.setdefault(name, []).append((index, doc, fmt))
        if rebuild:
            self.rebuild.add(name)

    @property
    def needs_cluster(self) -> bool:
        return bool(self.tasks)


def coerce(doc: FileDoc | Mapping[str, Any]) -> FileDoc:
    if isinstance(doc, FileDoc):
        return doc
    known = set(FileDoc.__dataclass_fields__)
    data = {k: v for k, v in doc.items() if k in known}
    extra = {k: v for k, v in doc.items() if k not in known}
    if extra:
        data["extra"] = {**data.get("extra", {}), **extra}
    try:
        return FileDoc.from_dict(data)
    except ValidationError as exc:
        raise InputError(f"{doc.get('id', '?')}: invalid file document: {exc}") from None


def plan(docs: Iterable[FileDoc | Mapping[str, Any] | BaseException], settings: Settings,
         store: ArtifactStore) -> Plan:
    """Sort documents into results known now (cached, linked passthrough, invalid) and tasks to run."""
    out, keyed = classify(docs, settings)
    manifests = store.lookup_many(key for _, _, _, key in keyed)
    for index, doc, fmt, key in keyed:
        manifest = manifests[key]
        if isinstance(manifest, StoreError):
            out.results[index] = RunResult.failure(doc.id, manifest, format=fmt)
        elif manifest is not None:
            out.results[index] = cached_result(doc, fmt, store, manifest)
        else:
            out.schedule(index, doc, fmt, key)
    return out


def classify(docs: Iterable[FileDoc | Mapping[str, Any] | BaseException],
             settings: Settings) -> tuple[Plan, list[tuple[int, FileDoc, str, str]]]:
    """What is known without the store: linked public passthrough and invalid documents (results), remote documents
    without an md5 (tasks keyed by a token of their URL), and the keyed rest (index, doc, format, key),
    local files without an md5 included: they are hashed here."""
    out = Plan()
    keyed: list[tuple[int, FileDoc, str, str]] = []  # documents with an md5: looked up together below
    unhashed: list[tuple[int, FileDoc, str]] = []  # local documents without one: hashed here, below
    for index, item in enumerate(docs):
        doc_id = _doc_id(item, index)
        fmt = None
        try:
            if isinstance(item, BaseException):
                raise item
            doc = absolute_doc(coerce(item))
            fmt = registry.canonical_format(doc.format or registry.infer_format(doc.name))
            pipeline = registry.pipeline_for(fmt)
            if pipeline.passthrough and settings.keep_public_urls and _public(doc.access_url):
                out.results[index] = _linked(doc, fmt, pipeline.name)
                continue
            reference_md5 = doc.reference_md5 if takes_reference(pipeline, doc) else None
            reference_known = reference_md5 is not None or not takes_reference(pipeline, doc)
            if doc.md5 and reference_known:
                keyed.append((index, doc, fmt, key_for(pipeline, doc.md5, settings, reference_md5)))
                continue
            if not doc.md5 and reference_known and sources.is_local(doc.access_url):
                unhashed.append((index, doc, fmt))
                continue
            from dask.base import tokenize

            name = f"{pipeline.stage}-{tokenize(doc.access_url, doc.size, fmt, doc.reference)}"
            out.tasks.setdefault(name, []).append((index, doc, fmt))
        except Exception as exc:  # noqa: BLE001 - reported per document; the batch goes on
            out.results[index] = RunResult.failure(doc_id, _name_doc(exc, doc_id), format=fmt)
    for index, doc, fmt, found in md5_local_sources(unhashed):
        if isinstance(found, BaseException):
            out.results[index] = RunResult.failure(doc.id, _name_doc(found, doc.id), format=fmt)
        else:
            doc = doc.replace(md5=found)  # the worker checks it again as it reads
            pipeline = registry.pipeline_for(fmt)
            reference_md5 = doc.reference_md5 if takes_reference(pipeline, doc) else None
            keyed.append((index, doc, fmt, key_for(pipeline, found, settings, reference_md5)))
    return out, keyed


def _name_doc(exc: BaseException, doc_id: str) -> BaseException:
    """An InputError found while planning names its document, as one raised by a build does (`run()`
    raises it as it is)."""
    if isinstance(exc, InputError) and exc.doc_id is None:
        exc.doc_id = doc_id
    return exc


def md5_local_sources(docs: list[tuple[int, FileDoc, str]]) -> list[tuple[int, FileDoc, str, str | BaseException]]:
    """md5 of local sources, read here and concurrently (hashlib releases the GIL): a cached answer
    for a document without an md5 then needs no cluster, which would only hash the same file. A build
    in this process reuses the hash while the file keeps its state (digests)."""
    if not docs:
        return []
    from concurrent.futures import ThreadPoolExecutor

    def digest(item: tuple[int, FileDoc, str]) -> tuple[int, FileDoc, str, str | BaseException]:
        index, doc, fmt = item
        path = sources.local_path(doc.access_url)
        try:
            if not path.is_file():
                raise InputError(f"{doc.id}: source {redact_url(doc.access_url)} does not exist or is not a file")
            if doc.size is not None and doc.size != path.stat().st_size:
                raise InputError(f"{doc.id}: size mismatch for {redact_url(doc.access_url)}: document says "
                                 f"{doc.size}, file has {path.stat().st_size}")
            return index, doc, fmt, digests.md5(path)
        except OSError as exc:
            return index, doc, fmt, InputError(f"{doc.id}: cannot read {redact_url(doc.access_url)}: {exc}")
        except InputError as exc:
            return index, doc, fmt, exc

    with ThreadPoolExecutor(max_workers=min(4, len(docs))) as pool:
        return list(pool.map(digest, docs))


def _public(url: Url) -> bool:
    """An http(s) URL anyone can read as it is: no credentials, no query string (a signed URL expires)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url.reveal())
    return url.scheme in ("https", "http") and not (parts.username or parts.password or parts.query)


def _linked(doc: FileDoc, fmt: str, pipeline: str) -> RunResult:
    """A passthrough document that keeps its public URL (keep-public-urls): status `passthrough`,
    the URL as the artifact, nothing in the store."""
    uri = str(doc.access_url)
    return RunResult(id=doc.id, status="passthrough", format=fmt, pipeline=pipeline, source=uri,
                     artifacts={"data": uri})


def absolute_doc(doc: FileDoc) -> FileDoc:
    url = doc.access_url
    if sources.is_local(url) and url.scheme != "file":
        return doc.replace(access_url=Url(os.path.abspath(os.path.expanduser(url.reveal()))))
    return doc


def _doc_id(item: Any, index: int) -> str:
    if isinstance(item, FileDoc):
        return item.id
    if isinstance(item, Mapping) and item.get("id"):
        return str(item["id"])
    if isinstance(item, InputError) and item.doc_id:
        return str(item.doc_id)
    return f"#{index + 1}"


def fill_local_md5(items: list[Any]) -> tuple[list[Any], set[int]]:
    """Rows without an md5 whose source is a local file get one, hashed here (no worker needed)."""
    out: list[Any] = []
    hashed: set[int] = set()
    for index, item in enumerate(items):
        if isinstance(item, BaseException):
            out.append(item)
            continue
        try:
            doc = absolute_doc(coerce(item))
        except Exception:  # noqa: BLE001 - classify() reports it with its reason
            out.append(item)
            continue
        if doc.md5 is None and sources.is_local(doc.access_url):
            path = sources.local_path(doc.access_url)
            try:
                digest = digests.md5(path)
            except OSError:
                out.append(doc)  # the build reports the missing or unreadable source
                continue
            doc = doc.replace(md5=digest)
            hashed.add(index)
        out.append(doc)
    return out, hashed
