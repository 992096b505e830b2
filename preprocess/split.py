"""One big SAM/BAM across workers: `split-<key>-<i>`, `sort_part-<key>-<i>`, `merge-<key>` Dask tasks.

The tasks meet only through the store's parts area, <root>/parts/<key>/, each part written whole (a
temporary name, then renamed; an object store's upload is whole or absent). A part already there is
not made again, so a lost worker costs its part, not the file. The merge commits the key exactly as
the single-worker build does, with the same bytes (pipelines/alignments_split.py says why), then
removes the parts. Which files split: preprocess.split (min-size, parts) and a cluster of 2+ workers.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from pipelines import alignments_split as steps
from pipelines.alignments import records_in_sort_order, sniff

from . import shell, sources
from .build import _for, build_doc, build_settings, key_for, key_parameters, open_store
from .config import Settings
from .errors import StoreError
from .keys import LAYOUT, is_key
from .model import Artifact, FileDoc, Manifest, PipelineInfo, RunResult, SourceInfo, redact_url
from .registry import pipeline_for
from .scratch import make_scratch
from .store import ArtifactStore, sha256_file

INPUT = "input.json"  # the source's hashes, reference lengths and number of parts, written by split-0


def parts_for(doc: FileDoc, fmt: str, key: str, settings: Settings, workers: int) -> int:
    """How many parts to split this document into; 0: build it on one worker. Only SAM/BAM with a
    derivation key, at least preprocess.split.min-size bytes, on a cluster of more than one worker."""
    if workers < 2 or pipeline_for(fmt).name != "alignments" or not is_key(key):
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
    if (store.fs.exists(ready) or store.fs.exists(unsorted)) and (i > 0 or store.fs.exists(info)):
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
            lengths = steps.inspect(fetched.path, shown)
            ranges = steps.part_ranges(lengths, parts)
            # an already sorted BAM takes the single build's sorted-input path (its bytes differ from a
            # sort's): no part is made, and the merge task builds it whole; an unsorted one is told in ms
            in_order = sniff(fetched.path) == "bam" and records_in_sort_order(fetched.path, threads) is not None
            if in_order:
                ranges = []
            if i < len(ranges):
                first, stop = ranges[i]
                out = scratch / "part.bam"
                level = 0 if store.local else 1  # uncompressed: cheapest; level 1: fewer bytes to upload
                records = steps.extract_part(fetched.path, steps.part_filter(first, stop, i == len(ranges) - 1),
                                             out, level, threads, shown)
                sources.check_unchanged(doc.id, fetched)  # the part holds the bytes that were hashed
                (scratch / "count").write_text(str(records))
                store._put(scratch / "count", _count_path(store, key, parts, i), move=True)
                store._put(out, unsorted, move=True)  # after its count: a part in the store has one
            if i == 0:
                body = {"md5": fetched.md5, "sha256": fetched.sha256, "size": fetched.size, "lengths": lengths,
                        "parts": len(ranges), "sorted_input": in_order}
                (scratch / INPUT).write_text(json.dumps(body))
                store._put(scratch / INPUT, info, move=True)
    except Exception as exc:
        raise _for(doc, exc, scratch) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    timings["split"] = round(time.perf_counter() - started, 4)
    return timings


def sort_part(doc: FileDoc, settings: Settings, key: str, parts: int, i: int, split: dict[str, float]
              ) -> dict[str, float]:
    """Sort part i into the parts area (skipped when it is there, or when the file has fewer parts)."""
    store = open_store(settings)
    unsorted, ready = _part(store, key, parts, i, "unsorted"), _part(store, key, parts, i, "sorted")
    if store.fs.exists(ready) or not store.fs.exists(unsorted):
        return {**split, "sort_part": 0.0}
    scratch = make_scratch(settings.scratch, doc.id)
    started = time.perf_counter()
    try:
        with shell.time_cap(settings.task_timeout):
            source = _local(store, unsorted, scratch / "unsorted.bam")
            out = scratch / "sorted.bam"
            steps.sort_part(source, out, build_settings(settings), scratch)
            store._put(out, ready, move=True)
            store.fs.rm_file(unsorted)
    except Exception as exc:
        raise _for(doc, exc, scratch) from None
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
        info = json.loads(store.fs.cat_file(f"{parts_dir(store, key)}/{INPUT}"))
        if info.get("sorted_input"):  # nothing to merge: the single build, on this worker, adopts the input
            whole = build_doc(doc, fmt, settings)
            store.fs.rm(parts_dir(store, key), recursive=True)
            return whole
        scratch = make_scratch(settings.scratch, doc.id)
        with shell.time_cap(settings.task_timeout):
            result = _merge(doc, fmt, settings, key, parts, store, scratch, timings)
        store.fs.rm(parts_dir(store, key), recursive=True)
        return RunResult(**result, **common)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, classified, in the result
        return RunResult.failure(doc.id, _for(doc, exc, scratch), key=key, timings=timings, **common)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _merge(doc: FileDoc, fmt: str, settings: Settings, key: str, parts: int, store: ArtifactStore, scratch: Path,
           timings: dict[str, float]) -> dict[str, Any]:
    pipeline = pipeline_for(fmt)
    shown = doc.name or os.path.basename(str(doc.access_url))
    started = time.perf_counter()
    info = json.loads(store.fs.cat_file(f"{parts_dir(store, key)}/{INPUT}"))
    made = [_local(store, _part(store, key, parts, i, "sorted"), scratch / f"part-{i}.bam")
            for i in range(info["parts"])]
    workdir = scratch / "work"
    workdir.mkdir()
    out = workdir / "sorted.bam"
    bsettings = build_settings(settings)
    redone = steps.merge_parts(made, out, bsettings, scratch)
    timings["merge"] = round(time.perf_counter() - started, 4)
    started = time.perf_counter()
    records_in = sum(int(store.fs.cat_file(_count_path(store, key, parts, i))) for i in range(info["parts"]))
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
        tools={"samtools": shell.version("samtools"), "pysam": _pysam_version()}, artifacts=artifacts,
        records={**records, "path": "sort", "parts": info["parts"], "merge": "blocks" if redone >= 0 else "records",
                 "blocks_recompressed": max(redone, 0)}, timings=timings, threads=bsettings.threads,
    )
    committed = store.commit(manifest, {path.name: path for path in files.values()}, move=True)
    timings["commit"] = round(time.perf_counter() - started, 4)
    return {"id": doc.id, "status": "built", "key": key, "artifacts": store.artifact_uris(committed),
            "manifest": store.uri(key, "manifest.json"), "records": committed.records, "timings": timings}


def _local(store: ArtifactStore, remote: str, target: Path) -> Path:
    """A part as a local file: its own path in a local store, else downloaded to `target`."""
    if store.local:
        return Path(remote)
    store.fs.get_file(remote, str(target))
    return target


def _pysam_version() -> str:
    import pysam

    return pysam.__version__
