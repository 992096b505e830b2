"""One big file across workers: `split-<key>-<i>`, `sort_part-<key>-<i>`, `merge-<key>` Dask tasks.

The tasks meet only through the store's parts area, <root>/parts/<key>/, each part written whole (a
temporary name, then renamed; an object store's upload is whole or absent). A part already there is
not made again, so a lost worker costs its part, not the file. The merge commits the key exactly as
the single-worker build does, with the same bytes (pipelines/alignments_split.py says why), then
removes the parts. Which files split: those whose pipeline declares split steps (contract.SplitSteps;
today SAM/BAM's), from preprocess.split.min-size, on a cluster of 2+ workers (preprocess.split.parts).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from . import shell, sources
from .build import build_doc, build_settings, key_for, key_parameters, name_failure, open_store
from .config import Settings
from .contract import SplitSteps
from .errors import StoreError
from .keys import LAYOUT, is_key
from .model import Artifact, FileDoc, Manifest, PipelineInfo, RunResult, SourceInfo, redact_url
from .registry import canonical_format, infer_format, pipeline_for, split_steps
from .scratch import make_scratch
from .store import ArtifactStore, sha256_file

INPUT = "input.json"  # the source's hashes, reference lengths and number of parts, written by split-0


def parts_for(doc: FileDoc, fmt: str, key: str, settings: Settings, workers: int) -> int:
    """How many parts to split this document into; 0: build it on one worker. Only a format whose
    pipeline declares split steps, with a derivation key, at least preprocess.split.min-size bytes, on a
    cluster of more than one worker."""
    if workers < 2 or pipeline_for(fmt).split_steps is None or not is_key(key):
        return 0
    size = doc.size
    if size is None and sources.is_local(doc.access_url):
        try:
            size = sources.local_path(doc.access_url).stat().st_size
        except OSError:
            return 0
    if size is None or size < settings.split.min_size:
        return 0
    return settings.split.parts or workers


def submit(client: Any, doc: FileDoc, fmt: str, settings: Settings, key: str, parts: int) -> Any:
    """Submit the split graph of one document; the returned future (`merge-<key>`) gives its RunResult."""
    splits = [client.submit(split_part, doc, fmt, settings, key, parts, i, key=f"split-{key}-{i}", pure=False)
              for i in range(parts)]
    sorts = [client.submit(sort_part, doc, settings, key, parts, i, done, key=f"sort_part-{key}-{i}", pure=False)
             for i, done in enumerate(splits)]
    return client.submit(merge, doc, fmt, settings, key, parts, sorts, key=f"merge-{key}", pure=False)


def build_split(doc: FileDoc, fmt: str, settings: Settings, key: str, parts: int) -> RunResult:
    """The same graph run in this process, one task after another (tests, debugging)."""
    done = [split_part(doc, fmt, settings, key, parts, i) for i in range(parts)]
    return merge(doc, fmt, settings, key, parts, [sort_part(doc, settings, key, parts, i, d)
                                                  for i, d in enumerate(done)])


def parts_dir(store: ArtifactStore, key: str) -> str:
    if not is_key(key):
        raise StoreError(f"not a derivation key: {key!r}")
    return f"{store.root}/parts/{key}"


def _part(store: ArtifactStore, key: str, parts: int, i: int, state: str) -> str:
    return f"{parts_dir(store, key)}/{parts}-{i}.{state}.bam"


def _count_path(store: ArtifactStore, key: str, parts: int, i: int) -> str:
    return f"{parts_dir(store, key)}/{parts}-{i}.count"


def split_part(doc: FileDoc, fmt: str, settings: Settings, key: str, parts: int, i: int) -> dict[str, float]:
    """Write part i of the source (its reference range, in input order) and its record count to the parts
    area; split 0 also records the source's hashes. Skipped when the part is already there."""
    store = open_store(settings)
    unsorted, ready = _part(store, key, parts, i, "unsorted"), _part(store, key, parts, i, "sorted")
    info = f"{parts_dir(store, key)}/{INPUT}"
    if (store.exists(ready) or store.exists(unsorted)) and (i > 0 or store.exists(info)):
        return {"split": 0.0}
    scratch = make_scratch(settings.scratch, doc.id)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    try:
        with shell.time_cap(settings.task_timeout):
            fetched = sources.fetch(doc, scratch, settings.source)
            timings["fetch"] = round(time.perf_counter() - started, 4)
            if key_for(pipeline_for(fmt), fetched.md5, settings) != key:
                raise StoreError(f"{doc.id}: the source's md5 {fetched.md5} does not give key {key}")
            shown = doc.name or fetched.path.name
            threads = build_settings(settings).threads
            steps = _steps(fmt)
            lengths = steps.inspect(fetched.path, shown)
            ranges = steps.part_ranges(lengths, parts)
            # an already sorted input takes the single build's sorted-input path (its bytes differ from a
            # sort's): no part is made, and the merge task builds it whole
            in_order = steps.in_order(fetched.path, threads)
            if in_order:
                ranges = []
            if i < len(ranges):
                first, stop = ranges[i]
                out = scratch / "part.bam"
                records = steps.extract_part(fetched.path, first, stop, i == len(ranges) - 1, out,
                                             store.over_network, threads, shown)
                sources.check_unchanged(doc.id, fetched)  # the part holds the bytes that were hashed
                (scratch / "count").write_text(str(records))
                store.put(scratch / "count", _count_path(store, key, parts, i), move=True)
                store.put(out, unsorted, move=True)  # after its count: a part in the store has one
            if i == 0:
                body = {"md5": fetched.md5, "sha256": fetched.sha256, "size": fetched.size, "lengths": lengths,
                        "parts": len(ranges), "sorted_input": in_order}
                (scratch / INPUT).write_text(json.dumps(body))
                store.put(scratch / INPUT, info, move=True)
    except Exception as exc:
        raise name_failure(doc, exc, scratch) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    timings["split"] = round(time.perf_counter() - started, 4)
    return timings


def sort_part(doc: FileDoc, settings: Settings, key: str, parts: int, i: int, split: dict[str, float]
              ) -> dict[str, float]:
    """Sort part i into the parts area (skipped when it is there, or when the file has fewer parts)."""
    store = open_store(settings)
    unsorted, ready = _part(store, key, parts, i, "unsorted"), _part(store, key, parts, i, "sorted")
    if store.exists(ready) or not store.exists(unsorted):
        return {**split, "sort_part": 0.0}
    scratch = make_scratch(settings.scratch, doc.id)
    started = time.perf_counter()
    try:
        with shell.time_cap(settings.task_timeout):
            steps = _steps(canonical_format(doc.format or infer_format(doc.name)))  # as the plan found it
            source = store.local_copy(unsorted, scratch / "unsorted.bam")
            out = scratch / "sorted.bam"
            steps.sort_part(source, out, build_settings(settings), scratch)
            store.put(out, ready, move=True)
            store.remove(unsorted)
    except Exception as exc:
        raise name_failure(doc, exc, scratch) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {**split, "sort_part": round(time.perf_counter() - started, 4)}


def merge(doc: FileDoc, fmt: str, settings: Settings, key: str, parts: int, sorted_parts: list[dict[str, float]]
          ) -> RunResult:
    """Merge the sorted parts into sorted.bam, index and check it as the single-worker build does,
    commit the key (manifest last) and remove the parts. Never raises: a failure is a failed result."""
    pipeline = pipeline_for(fmt)
    common: dict[str, Any] = {"format": fmt, "source": redact_url(doc.access_url), "pipeline": pipeline.name}
    timings = {"fetch": max(t.get("fetch", 0.0) for t in sorted_parts),
               "split": max(t.get("split", 0.0) for t in sorted_parts),
               "sort_part": max(t.get("sort_part", 0.0) for t in sorted_parts)}
    scratch = None
    try:
        store = open_store(settings)
        found = store.lookup(key)
        if found is not None:
            return RunResult(id=doc.id, status="cached", key=key, artifacts=store.artifact_uris(found),
                             manifest=store.uri(key, "manifest.json"), records=found.records, **common)
        info = store.read_json(f"{parts_dir(store, key)}/{INPUT}")
        if info.get("sorted_input"):  # nothing to merge: the single build, on this worker, adopts the input
            whole = build_doc(doc, fmt, settings)
            store.remove(parts_dir(store, key), recursive=True)
            return whole
        scratch = make_scratch(settings.scratch, doc.id)
        with shell.time_cap(settings.task_timeout):
            result = _merge(doc, fmt, settings, key, parts, store, scratch, timings)
        store.remove(parts_dir(store, key), recursive=True)
        return RunResult(**result, **common)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, classified, in the result
        return RunResult.failure(doc.id, name_failure(doc, exc, scratch), key=key, timings=timings, **common)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _merge(doc: FileDoc, fmt: str, settings: Settings, key: str, parts: int, store: ArtifactStore, scratch: Path,
           timings: dict[str, float]) -> dict[str, Any]:
    pipeline = pipeline_for(fmt)
    shown = doc.name or os.path.basename(str(doc.access_url))
    started = time.perf_counter()
    info = store.read_json(f"{parts_dir(store, key)}/{INPUT}")
    made = [store.local_copy(_part(store, key, parts, i, "sorted"), scratch / f"part-{i}.bam")
            for i in range(info["parts"])]
    workdir = scratch / "work"
    workdir.mkdir()
    out = workdir / "sorted.bam"
    bsettings = build_settings(settings)
    steps = _steps(fmt)
    redone = steps.merge_parts(made, out, bsettings, scratch)
    timings["merge"] = round(time.perf_counter() - started, 4)
    started = time.perf_counter()
    records_in = sum(int(store.read_bytes(_count_path(store, key, parts, i))) for i in range(info["parts"]))
    index, records = steps.index_and_verify(out, info["lengths"], records_in, bsettings.threads, shown,
                                            bsettings.unreachable_reads == "refuse")
    timings["verify"] = round(time.perf_counter() - started, 4)
    started = time.perf_counter()
    files = {"data": out, "index": index}
    artifacts = [Artifact(kind=kind, name=path.name, size=path.stat().st_size, sha256=sha256_file(path))
                 for kind, path in files.items()]
    manifest = Manifest(
        key=key, layout=LAYOUT,
        source=SourceInfo(url=redact_url(doc.access_url), format=fmt, md5=info["md5"], sha256=info["sha256"],
                          size=info["size"]),
        pipeline=PipelineInfo(name=pipeline.name, version=pipeline.version,
                              parameters=key_parameters(pipeline, settings)),
        tools=steps.tools(), artifacts=artifacts,
        records={**records, "path": "sort", "parts": info["parts"], "merge": "blocks" if redone >= 0 else "records",
                 "blocks_recompressed": max(redone, 0)}, timings=timings, threads=bsettings.threads,
    )
    committed = store.commit(manifest, {path.name: path for path in files.values()}, move=True)
    timings["commit"] = round(time.perf_counter() - started, 4)
    return {"id": doc.id, "status": "built", "key": key, "artifacts": store.artifact_uris(committed),
            "manifest": store.uri(key, "manifest.json"), "records": committed.records, "timings": timings}


def _steps(fmt: str) -> SplitSteps:
    """The split steps the format's pipeline declares (parts_for admits no other format)."""
    steps = split_steps(pipeline_for(fmt))
    if steps is None:
        raise ValueError(f"the {fmt} pipeline declares no split steps")
    return steps
