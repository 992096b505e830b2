"""One big file across workers: `route-<key>-<g>`, `sort_part-<key>-<i>`, `merge-<key>` Dask tasks.

The pipeline defines the output as parts decided by the content and the key alone (contract.SplitSteps;
today a BAM above split.min-size, pipelines/alignments_split.py), and its single build makes the same
parts one after another; here they are made side by side, so the bytes do not depend on the cluster.
A route task (one group per worker) reads its share of the source and writes every part's piece of it,
a sort_part task lays one part's pieces end to end (or routes the part again from the whole source
when the steps do not confirm the groups' seams) and sorts it, and the merge lays the sorted parts end
to end, indexes and checks the output as the single build does, and commits the key (manifest last).
The tasks meet only through the store's parts area, <root>/parts/<key>/, each piece and part written
whole (a temporary name, then renamed; an object store's upload is whole or absent); a group's report
or a sorted part already there is not made again, so a lost worker costs its work, not the file.
The merge removes the parts area.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from . import digests, shell, sources
from .build import build_doc, build_settings, key_for, key_parameters, name_failure, open_store
from .config import Settings
from .contract import SplitSteps
from .errors import InputError, SourceError, StoreError
from .keys import LAYOUT, is_key
from .model import Artifact, FileDoc, Manifest, PipelineInfo, RunResult, SourceInfo, redact_url
from .registry import pipeline_for, split_steps
from .scratch import make_scratch
from .store import ArtifactStore

PLAN = "plan.json"  # the source's hashes and the pipeline's plan of its parts, written by route-0


def parts_for(doc: FileDoc, fmt: str, key: str, settings: Settings, workers: int) -> int:
    """The most parts this document can be built in (the sort tasks to submit); 0: build it on one
    worker. Only a format whose pipeline declares split steps, with a derivation key and a known size
    its steps make into 2+ parts, on a cluster of more than one worker."""
    pipeline = pipeline_for(fmt)
    if workers < 2 or pipeline.split_steps is None or not is_key(key):
        return 0
    size = doc.size
    if size is None and sources.is_local(doc.access_url):
        try:
            size = sources.local_path(doc.access_url).stat().st_size
        except OSError:
            return 0
    if size is None:
        return 0
    most = _steps(fmt).most_parts(fmt, size, build_settings(settings))
    return most if most > 1 else 0


def group(parts: int, groups: int, g: int) -> list[int]:
    """The parts route task g of `groups` writes: a contiguous run, the runs as even as can be."""
    return [i for i in range(parts) if i * groups // parts == g]


def submit(client: Any, doc: FileDoc, fmt: str, settings: Settings, key: str, parts: int, workers: int) -> Any:
    """Submit the split graph of one document; the returned future (`merge-<key>`) gives its RunResult.
    Each sort waits for every route (a part's group is known only once the source is read)."""
    groups = max(1, min(parts, workers))
    routes = [client.submit(route_group, doc, fmt, settings, key, groups, g, key=f"route-{key}-{g}", pure=False)
              for g in range(groups)]
    sorts = [client.submit(sort_part, doc, fmt, settings, key, i, routes, key=f"sort_part-{key}-{i}", pure=False)
             for i in range(parts)]
    return client.submit(merge, doc, fmt, settings, key, sorts, key=f"merge-{key}", pure=False)


def build_split(doc: FileDoc, fmt: str, settings: Settings, key: str, groups: int) -> RunResult:
    """The same graph run in this process, one task after another (tests, debugging)."""
    routes = [route_group(doc, fmt, settings, key, groups, g) for g in range(groups)]
    store = open_store(settings)
    parts = store.read_json(f"{parts_dir(store, key)}/{PLAN}")["plan"]["parts"]
    return merge(doc, fmt, settings, key, [sort_part(doc, fmt, settings, key, i, routes) for i in range(parts)])


def parts_dir(store: ArtifactStore, key: str) -> str:
    if not is_key(key):
        raise StoreError(f"not a derivation key: {key!r}")
    return f"{store.root}/parts/{key}"


def _part(store: ArtifactStore, key: str, i: int, state: str) -> str:
    return f"{parts_dir(store, key)}/{i}.{state}"


def _piece(store: ArtifactStore, key: str, i: int, g: int) -> str:
    """Part i's piece from route group g: its records that start in the group's share of the source."""
    return f"{parts_dir(store, key)}/{i}.{g}.unsorted"


def _report(store: ArtifactStore, key: str, g: int) -> str:
    """Route group g's report (written last: its pieces are whole): its counts and where it started and ended."""
    return f"{parts_dir(store, key)}/route.{g}.json"


def _seen(report: dict[str, Any]) -> tuple[int, ...] | None:
    """The source's state a route group read (inode, size, mtime, ctime: the device number may differ
    between hosts sharing a filesystem); None for a source fetched to scratch, whose hash the group checked."""
    state = report.get("source_state")
    return tuple(state[1:]) if state else None


def _fetch(doc: FileDoc, settings: Settings, scratch: Path, hashed: bool = True
           ) -> tuple[sources.Fetched, sources.Hashing | None]:
    """The source on local disk, hashed beside its reading when it is a local file (as build_doc does).
    `hashed` False (route groups after the first): a local file is only read, its state taken first; the
    sort tasks compare it with the hashed group's, so each byte read is one that was hashed."""
    if doc.md5 and sources.is_local(doc.access_url):
        if not hashed:
            path = sources.local_path(doc.access_url)
            if not path.is_file():
                raise InputError(f"{doc.id}: source {doc.access_url} does not exist or is not a file", doc_id=doc.id)
            state = sources.file_state(path)
            return sources.Fetched(path, doc.md5, "", doc.size or state[2], state), None
        hashing = sources.Hashing(doc)
        return sources.Fetched(hashing.path, doc.md5, "", doc.size or hashing.state[2], hashing.state), hashing
    return sources.fetch(doc, scratch, settings.source), None


def route_group(doc: FileDoc, fmt: str, settings: Settings, key: str, groups: int, g: int) -> dict[str, float]:
    """Route group g of `groups`: its share of the source read, every part's piece of it and the group's
    report written to the parts area; route-0 also writes the plan with the source's hashes. A group
    whose report is there is not routed again."""
    store = open_store(settings)
    area = parts_dir(store, key)
    if store.exists(f"{area}/{PLAN}") and store.exists(_report(store, key, g)):
        return {"route": 0.0}
    scratch = make_scratch(settings.scratch, doc.id)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    try:
        with shell.time_cap(settings.task_timeout):
            fetched, hashing = _fetch(doc, settings, scratch, hashed=g == 0)
            timings["fetch"] = round(time.perf_counter() - started, 4)
            if key_for(pipeline_for(fmt), fetched.md5, settings) != key:
                raise StoreError(f"{doc.id}: the source's md5 {fetched.md5} does not give key {key}")
            shown = doc.name or fetched.path.name
            bsettings = build_settings(settings)
            steps = _steps(fmt)
            try:
                plan = steps.plan(fetched.path, shown, bsettings)
                mine = list(range(plan["parts"])) if plan["parts"] > 1 else []
                outs = [scratch / f"{i}.{g}.unsorted" for i in mine]
                report = steps.route(fetched.path, plan, mine, outs, bsettings.threads, shown, store.over_network,
                                     g, groups) if mine else {}
            except Exception:
                if hashing is not None:
                    hashing.result()  # a source that is not the document's is the cause to report
                raise
            if hashing is not None:
                fetched = hashing.result()  # before any part is stored: an md5 mismatch stores nothing
            sources.check_unchanged(doc.id, fetched)  # the parts hold the bytes that were hashed
            for i, out in zip(mine, outs, strict=True):
                store.put(out, _piece(store, key, i, g), move=True)
            if g == 0:
                body = {"md5": fetched.md5, "sha256": fetched.sha256, "size": fetched.size, "plan": plan,
                        "groups": groups}
                (scratch / PLAN).write_text(json.dumps(body))
                store.put(scratch / PLAN, f"{area}/{PLAN}", move=True)
            state = fetched.read_in_place
            (scratch / "report").write_text(json.dumps({**report, "source_state": list(state) if state else None}))
            store.put(scratch / "report", _report(store, key, g), move=True)  # last: the group's pieces are whole
    except Exception as exc:
        raise name_failure(doc, exc, scratch) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    timings["route"] = round(time.perf_counter() - started, 4)
    return timings


def sort_part(doc: FileDoc, fmt: str, settings: Settings, key: str, i: int, routes: list[dict[str, float]]
              ) -> dict[str, float]:
    """Sort part i into the parts area (skipped when it is there, or when the file has fewer parts)."""
    store = open_store(settings)
    timings = {"fetch": max(t.get("fetch", 0.0) for t in routes), "route": max(t.get("route", 0.0) for t in routes)}
    info = store.read_json(f"{parts_dir(store, key)}/{PLAN}")
    if store.exists(_part(store, key, i, "sorted")) or i >= info["plan"]["parts"] or info["plan"]["parts"] <= 1:
        return {**timings, "sort_part": 0.0}
    started = time.perf_counter()
    _sort(doc, fmt, settings, store, key, i)
    return {**timings, "sort_part": round(time.perf_counter() - started, 4)}


def _sort(doc: FileDoc, fmt: str, settings: Settings, store: ArtifactStore, key: str, i: int) -> None:
    """Part i: its pieces laid end to end in group order when the groups' seams are confirmed, else routed
    again from the whole source (exact whatever the groups guessed); sorted, with its record count."""
    scratch = make_scratch(settings.scratch, doc.id)
    try:
        with shell.time_cap(settings.task_timeout):
            info = store.read_json(f"{parts_dir(store, key)}/{PLAN}")
            plan, groups = info["plan"], info["groups"]
            steps = _steps(fmt)
            reports = [store.read_json(_report(store, key, g)) for g in range(groups)]
            if len({_seen(report) for report in reports}) > 1:
                raise SourceError(f"{doc.id}: source {redact_url(str(doc.access_url))} changed while it was being "
                                  "built (the route groups read it in different states): nothing was committed")
            if steps.confirmed(reports):
                count = sum(report["counts"][i] for report in reports if report["counts"])
                pieces = [store.local_copy(_piece(store, key, i, g), scratch / f"{i}.{g}.unsorted")
                          for g in range(groups)]
            else:  # a seam not confirmed: this part from one read of the whole source
                fetched, hashing = _fetch(doc, settings, scratch)
                if hashing is not None:
                    fetched = hashing.result()
                if fetched.md5 != info["md5"]:
                    raise StoreError(f"{doc.id}: the source's md5 {fetched.md5} is not the routed one's {info['md5']}")
                bsettings = build_settings(settings)
                pieces = [scratch / f"{i}.unsorted"]
                count = steps.route(fetched.path, plan, [i], pieces, bsettings.threads,
                                    doc.name or fetched.path.name, False)["counts"][0]
                sources.check_unchanged(doc.id, fetched)
            out, *more = steps.sort_part(pieces, scratch / f"{i}.sorted", plan, build_settings(settings), scratch)
            (scratch / "count").write_text(str(count))
            store.put(scratch / "count", _part(store, key, i, "count"), move=True)
            for k, extra in enumerate(more, 1):  # the part's own index: before the part, which says it is whole
                store.put(extra, _part(store, key, i, f"sorted.{k}"), move=True)
            store.put(out, _part(store, key, i, "sorted"), move=True)
            for g in range(groups):
                if store.exists(_piece(store, key, i, g)):
                    store.remove(_piece(store, key, i, g))
    except Exception as exc:
        raise name_failure(doc, exc, scratch) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def merge(doc: FileDoc, fmt: str, settings: Settings, key: str, sorted_parts: list[dict[str, float]]) -> RunResult:
    """Lay the sorted parts end to end, index and check the output as the single build does, commit the
    key (manifest last) and remove the parts. A file the plan builds whole (an already sorted one, one of
    a single part) is built here by the single build. Never raises: a failure is a failed result."""
    pipeline = pipeline_for(fmt)
    common: dict[str, Any] = {"format": fmt, "source": redact_url(doc.access_url), "pipeline": pipeline.name}
    timings = {name: max((t.get(name, 0.0) for t in sorted_parts), default=0.0)
               for name in ("fetch", "route", "sort_part")}
    timings["sort_parts"] = round(sum(t.get("sort_part", 0.0) for t in sorted_parts), 4)  # the work, not the wait
    scratch = None
    try:
        store = open_store(settings)
        found = store.lookup(key)
        if found is not None:
            return RunResult(id=doc.id, status="cached", key=key, artifacts=store.artifact_uris(found),
                             manifest=store.uri(key, "manifest.json"), records=found.records, **common)
        info = store.read_json(f"{parts_dir(store, key)}/{PLAN}")
        if info["plan"]["parts"] <= 1:  # the single build, on this worker, makes the file whole
            whole = build_doc(doc, fmt, settings)
            store.remove(parts_dir(store, key), recursive=True)
            return whole
        scratch = make_scratch(settings.scratch, doc.id)
        with shell.time_cap(settings.task_timeout):
            result = _merge(doc, fmt, settings, key, info, store, scratch, timings)
        store.remove(parts_dir(store, key), recursive=True)
        return RunResult(**result, **common)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, classified, in the result
        return RunResult.failure(doc.id, name_failure(doc, exc, scratch), key=key, timings=timings, **common)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _merge(doc: FileDoc, fmt: str, settings: Settings, key: str, info: dict[str, Any], store: ArtifactStore,
           scratch: Path, timings: dict[str, float]) -> dict[str, Any]:
    pipeline = pipeline_for(fmt)
    shown = doc.name or os.path.basename(str(doc.access_url))
    plan = info["plan"]
    for i in range(plan["parts"]):  # a part no sort task was submitted for (a size the document misstated)
        if not store.exists(_part(store, key, i, "sorted")):
            if not all(store.exists(_report(store, key, g)) for g in range(info["groups"])):
                raise StoreError(f"{doc.id}: part {i} of {plan['parts']} is missing from {parts_dir(store, key)}")
            _sort(doc, fmt, settings, store, key, i)
    started = time.perf_counter()
    made = [[store.local_copy(_part(store, key, i, "sorted"), scratch / f"{i}.sorted")] for i in range(plan["parts"])]
    for i, files in enumerate(made):
        while store.exists(extra := _part(store, key, i, f"sorted.{len(files)}")):
            files.append(store.local_copy(extra, scratch / f"{i}.sorted.{len(files)}"))
    records_in = sum(int(store.read_bytes(_part(store, key, i, "count"))) for i in range(plan["parts"]))
    workdir = scratch / "work"
    workdir.mkdir()
    bsettings = build_settings(settings)
    output = _steps(fmt).finish(made, plan, records_in, bsettings, workdir, shown)
    timings["merge"] = round(time.perf_counter() - started, 4)
    started = time.perf_counter()
    artifacts = [Artifact(kind=kind, name=path.name, size=path.stat().st_size, sha256=digests.sha256(path))
                 for kind, path in output.artifacts.items()]
    manifest = Manifest(
        key=key, layout=LAYOUT,
        source=SourceInfo(url=redact_url(doc.access_url), format=fmt, md5=info["md5"], sha256=info["sha256"],
                          size=info["size"]),
        pipeline=PipelineInfo(name=pipeline.name, version=pipeline.version,
                              parameters=key_parameters(pipeline, settings)),
        tools=output.tools, artifacts=artifacts, records=output.records, timings=timings, threads=bsettings.threads,
    )
    committed = store.commit(manifest, {path.name: path for path in output.artifacts.values()}, move=True)
    timings["commit"] = round(time.perf_counter() - started, 4)
    return {"id": doc.id, "status": "built", "key": key, "artifacts": store.artifact_uris(committed),
            "manifest": store.uri(key, "manifest.json"), "records": committed.records, "timings": timings}


def _steps(fmt: str) -> SplitSteps:
    """The split steps the format's pipeline declares (parts_for admits no other format)."""
    steps = split_steps(pipeline_for(fmt))
    if steps is None:
        raise ValueError(f"the {fmt} pipeline declares no split steps")
    return steps
