"""The work one Dask task does for one document: fetch, key, build, check, commit.

It runs on a worker that shares nothing with the client but the store, so it takes only
picklable values (the document, the format, the settings) and returns a RunResult; every failure
becomes a failed result with its classified error rather than an exception.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import digests, registry, shell, sources
from .cluster import host_cores
from .config import Settings
from .contract import BuildContext, BuildSettings, Pipeline
from .errors import InputError, ScratchError, ToolError
from .keys import LAYOUT, derive_key
from .model import Artifact, FileDoc, Manifest, PipelineInfo, ReferenceInfo, RunResult, SourceInfo, redact_url
from .scratch import make_scratch
from .store import ArtifactStore
from .urls import Url

SMALL_SOURCE = 1 << 20  # bytes: below it a thread pool's start and stop cost more than its threads save


def build_settings(settings: Settings, source_size: int | None = None) -> BuildSettings:
    """The knobs a pipeline reads; `threads: auto` resolved here, where the task runs (no output byte
    depends on it: tested), for a source of `source_size` bytes when known."""
    return BuildSettings(threads=tool_threads(settings.threads, source_size), sort_memory=settings.sort_memory,
                         compression_level=settings.compression_level, cram_output=settings.cram_output,
                         unreachable_reads=settings.unreachable_reads, split_min_size=settings.split.min_size,
                         part_size=settings.split.part_size)


def tool_threads(configured: int | str, source_size: int | None = None) -> int:
    """Threads for each tool of this task: the configured number, or for "auto" this machine's cores
    over the tasks its Dask worker is running now (one big file gets every core, a batch one each),
    and one for a source under SMALL_SOURCE (htslib's pools take 10-20 ms to start and stop: measured,
    bgzip -@2 of 150 kB 12 ms against 5, samtools sort -@2 of 50 kB 25 ms against 6)."""
    if configured != "auto":
        return int(configured)
    if source_size is not None and source_size < SMALL_SOURCE:
        return 1
    with _building_lock:
        running = _building[0]  # builds under way in this process (a worker's tasks, or the in-process batch)
    distributed = sys.modules.get("distributed")  # never imported for this: a sync run has no worker
    if distributed is not None:
        try:
            running = max(running, distributed.get_worker().state.executing_count)
        except ValueError:  # not inside a worker's task
            pass
    return max(1, host_cores() // max(1, running))


_building, _building_lock = [0], threading.Lock()


@contextmanager
def building() -> Iterator[None]:
    """One more build under way in this process while the block runs (tool_threads shares the cores)."""
    with _building_lock:
        _building[0] += 1
    try:
        yield
    finally:
        with _building_lock:
            _building[0] -= 1


def open_store(settings: Settings, url: str | None = None) -> ArtifactStore:
    """The configured store, or the one at `url`: configured storage options apply to a URL of the
    configured store's scheme; another scheme gets its library's defaults (credential chains)."""
    target, configured = Url(url or settings.store.url), Url(settings.store.url)
    same = (target.scheme or "file") == (configured.scheme or "file")
    return ArtifactStore(target, settings.store.options() if same else {}, settings.store.verify,
                         signing_key=settings.store.signing_key, verify_key=settings.store.verify_key)


def signed_url(uri: str, expires: int, settings: Settings, delegation: bool = False) -> str:
    """A time-limited URL for an artifact URI that a genome browser can read by range (api.sign, view);
    a StoreError when nothing is there. `delegation`: on Azure, a user-delegation SAS (Entra ID)."""
    if "://" not in uri or uri.startswith("file://"):
        root = os.path.dirname(uri[len("file://"):] if uri.startswith("file://") else uri)
    else:
        scheme, rest = uri.split("://", 1)
        root = f"{scheme}://{rest.split('/', 1)[0]}"  # the bucket or container
    return open_store(settings, root).sign(uri, expires, delegation)


def takes_reference(pipeline: Pipeline, doc: FileDoc) -> bool:
    """Whether the document's `reference` is an input of this build (CRAM), fetched and keyed."""
    return bool(doc.reference) and pipeline.takes_reference


def key_parameters(pipeline: Pipeline, settings: Settings, reference_md5: str | None = None) -> dict[str, Any]:
    """The parameters that enter the key: the pipeline's, and the md5 of a reference it decodes with."""
    parameters = pipeline.parameters(build_settings(settings))
    if reference_md5 is not None:
        parameters = {**parameters, "reference": f"md5:{reference_md5}"}
    return parameters


def key_for(pipeline: Pipeline, md5: str, settings: Settings, reference_md5: str | None = None) -> str:
    return derive_key(f"md5:{md5}", pipeline.name, pipeline.version,
                      key_parameters(pipeline, settings, reference_md5))


def cached_result(doc: FileDoc, fmt: str, store: ArtifactStore, manifest: Manifest) -> RunResult:
    return RunResult(id=doc.id, status="cached", format=fmt, pipeline=manifest.pipeline.name, key=manifest.key,
                     source=redact_url(doc.access_url), artifacts=store.artifact_uris(manifest),
                     manifest=store.uri(manifest.key, "manifest.json"), records=manifest.records)


def build_doc(doc: FileDoc, fmt: str, settings: Settings, rebuild: bool = False) -> RunResult:
    """Build (or find cached) the artifacts of one document; never raises. `rebuild` builds even when
    the key is committed, to restore a missing or corrupt artifact (the commit keeps its manifest).
    Past preprocess.task-timeout its tools are killed and it fails with TimeLimitError."""
    common: dict[str, Any] = {"format": fmt, "source": redact_url(doc.access_url)}
    timings: dict[str, float] = {}
    keyed: list[str] = []  # the key, once the source is hashed, for a failure's report
    try:
        pipeline = registry.pipeline_for(fmt)
        common["pipeline"] = pipeline.name
        scratch = make_scratch(settings.scratch, doc.id)
    except Exception as exc:  # noqa: BLE001 - a worker without the pipeline or without scratch space
        return RunResult.failure(doc.id, name_failure(doc, exc), **common)
    try:
        with building(), shell.time_cap(settings.task_timeout):
            return _build(doc, fmt, settings, pipeline, scratch, timings, keyed, common, rebuild)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, classified, in the result
        return RunResult.failure(doc.id, name_failure(doc, exc, scratch), key=keyed[0] if keyed else None,
                                 timings=timings, **common)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def name_failure(doc: FileDoc, exc: Exception, scratch: Path | None = None) -> Exception:
    """The error, naming its document when it is an InputError raised by a pipeline (which never sees
    ids); a full scratch disk, met by a tool or by Python, becomes a ScratchError naming the folder."""
    if isinstance(exc, InputError) and exc.doc_id is None:
        exc.doc_id = doc.id
    full = (isinstance(exc, OSError) and exc.errno == errno.ENOSPC
            or isinstance(exc, ToolError) and ("No space left on device" in exc.stderr_tail
                                               or scratch is not None and _nearly_full(scratch)))
    if full and scratch is not None:
        return ScratchError(str(scratch.parent), needed=doc.size, detail=str(exc)[:300])
    if isinstance(exc, ScratchError) and scratch is not None and exc.folder == str(scratch):
        return ScratchError(str(scratch.parent), exc.needed, exc.detail)  # the configured folder, not ours
    return exc


def _nearly_full(scratch: Path) -> bool:
    """Whether the scratch filesystem has under 4 MiB left: a tool that failed then ran out of space,
    whatever it says (samtools sort -@2 reports a full disk as "No such file or directory")."""
    try:
        return shutil.disk_usage(scratch).free < 4 * 2**20
    except OSError:
        return False


def _build(doc: FileDoc, fmt: str, settings: Settings, pipeline: Pipeline, scratch: Path, timings: dict[str, float],
           keyed: list[str], common: dict[str, Any], rebuild: bool) -> RunResult:
    store = open_store(settings)
    started = time.perf_counter()
    hashing = None
    if doc.md5 and sources.is_local(doc.access_url):  # key known: the check runs beside the build
        hashing = sources.Hashing(doc)
        fetched = sources.Fetched(hashing.path, doc.md5, "", doc.size or hashing.state[2], hashing.state)
    else:
        fetched = sources.fetch(doc, scratch, settings.source)
    reference = None
    if takes_reference(pipeline, doc) and doc.reference_md5 is None:  # its md5 is needed for the key
        reference = sources.fetch_reference(doc, scratch, settings.source)
    timings["fetch"] = round(time.perf_counter() - started, 4)
    shell.check_time("fetching the source")
    reference_md5 = reference.md5 if reference else (doc.reference_md5 if takes_reference(pipeline, doc)
                                                     else None)
    key = key_for(pipeline, fetched.md5, settings, reference_md5)
    keyed.append(key)
    found = None if rebuild else store.lookup(key)
    # Found only now, after fetching (no md5 in the document): worth a look that its artifacts are
    # all there, since no plan could list them; a gone one is rebuilt in place.
    if found is not None and all(store.exists(store.path(key, a.name)) for a in found.artifacts):
        return cached_result(doc, fmt, store, found)
    if takes_reference(pipeline, doc) and reference is None:
        started = time.perf_counter()
        reference = sources.fetch_reference(doc, scratch, settings.source)
        timings["fetch"] = round(timings["fetch"] + time.perf_counter() - started, 4)
    workdir = scratch / "work"
    workdir.mkdir()
    ctx = BuildContext(source=fetched.path, format=fmt, workdir=workdir,
                       settings=build_settings(settings, fetched.size), timings=timings, name=doc.name,
                       reference=reference.path if reference else None)
    try:
        output = pipeline.build(ctx)
    except Exception:
        if hashing is not None:
            hashing.result()  # a source that is not the document's is the cause to report
        sources.check_unchanged(doc.id, fetched)  # so is a source that changed under the build
        raise
    if hashing is not None:
        started = time.perf_counter()
        fetched = hashing.result()  # before anything is committed: an md5 mismatch commits nothing
        timings["hash_wait"] = round(time.perf_counter() - started, 4)
    sources.check_unchanged(doc.id, fetched)  # a file read in place: the bytes built are the bytes hashed
    if reference is not None:
        sources.check_unchanged(doc.id, reference, "reference")
    shell.check_time("building")
    started = time.perf_counter()
    artifacts = [Artifact(kind=kind, name=path.name, size=path.stat().st_size, sha256=digests.sha256(path))
                 for kind, path in output.artifacts.items()]
    manifest = Manifest(
        key=key, layout=LAYOUT,
        source=SourceInfo(url=redact_url(doc.access_url), format=fmt, md5=fetched.md5,
                          sha256=fetched.sha256, size=fetched.size),
        pipeline=PipelineInfo(name=pipeline.name, version=pipeline.version,
                              parameters=key_parameters(pipeline, settings, reference_md5)),
        tools=output.tools, artifacts=artifacts, records=output.records, timings=timings,
        reference=ReferenceInfo(url=redact_url(doc.reference), md5=reference_md5)
        if doc.reference is not None and reference_md5 is not None else None,
        threads=ctx.settings.threads,
    )
    committed = store.commit(manifest, {path.name: path for path in output.artifacts.values()}, move=True)
    timings["commit"] = round(time.perf_counter() - started, 4)
    return RunResult(id=doc.id, status="built", key=key, artifacts=store.artifact_uris(committed),
                     manifest=store.uri(key, "manifest.json"), records=committed.records, timings=timings, **common)
