"""Reindex a catalogue: decide for every row what is stale, then build only that.

Actions: `ok` (the current key is committed; with verify, every artifact's size and sha256 match its
manifest), `build` (no manifest under the current key: a new row, a changed md5, a bumped pipeline
version or parameter), `missing` (manifest there, an artifact gone), `corrupt` (verify: stored bytes
differ from the manifest, or the manifest is unreadable), `hash` (no md5 and not a local file: a
worker fetches and hashes it, the only way to see an upstream change), `invalid` (the row cannot be
read). Rows without an md5 that are local files are hashed here, on the client (`hashed`).

Planning reads listings, not manifests: a listing request returns up to a thousand names, and a
committed key shows as its manifest beside a data file and its index. A manifest is read only where
the listing does not settle it (`verify`, or a key folder of another shape). Work goes through
graph.execute like a batch; `missing` and `corrupt` rebuild the key in place (each artifact is
replaced whole, and the manifest, written by the same deterministic build, stays).

One reindex of a store runs at a time (lease.py). Interrupted anywhere, the store stays consistent
(nothing is visible before its manifest) and the next run finds and finishes what is left.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from . import registry, sources
from .build import open_store
from .config import Settings, load_settings
from .errors import StoreError
from .graph import _absolute, classify, coerce
from .keys import LAYOUT
from .lease import DEFAULT_EXPIRY, Lease, acquire
from .model import ErrorInfo, FileDoc, Manifest, RunResult, redact_url
from .store import CHUNK, MANIFEST, ArtifactStore

Action = Literal["ok", "build", "missing", "corrupt", "hash", "invalid"]
PlanFrom = Literal["auto", "shards", "keys"]
ACTIONS: tuple[str, ...] = ("ok", "build", "missing", "corrupt", "hash", "invalid")
STATUSES: tuple[str, ...] = ("built", "cached", "passthrough", "failed", "pending")
INDEX_SUFFIXES = (".bai", ".csi", ".tbi", ".crai")
SHARD_LISTING_FROM = 256  # rows from which an object store is planned from shard listings
HISTORY = 10  # run records read to say why a row needs building (status reads the same ones)


class ReindexResult(BaseModel):
    """One row: what the plan decided (`action`, `reason`) and what became of it (`status`;
    `pending` in a dry run)."""

    id: str
    action: Action
    status: Literal["built", "cached", "passthrough", "failed", "pending"]
    key: str | None = None
    format: str | None = None
    pipeline: str | None = None  # name/version, so a later status can say a version moved
    md5: str | None = None
    hashed: bool = False         # no md5 in the row: hashed on the client
    reason: str | None = None
    error: ErrorInfo | None = None
    timings: dict[str, float] = Field(default_factory=dict)


class ReindexReport(BaseModel):
    run: str
    store: str
    started: str
    finished: str
    dry_run: bool
    verify: bool
    planned_from: str              # "shards" or "keys": what was listed
    lease: dict[str, Any] | None = None
    dashboard: str | None = None
    results: list[ReindexResult]

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        actions = dict.fromkeys(ACTIONS, 0)
        status = dict.fromkeys(STATUSES, 0)
        for result in self.results:
            actions[result.action] += 1
            status[result.status] += 1
        return {"actions": actions, "status": status}

    @property
    def ok(self) -> bool:
        return all(result.status != "failed" for result in self.results)

    def to_json(self) -> str:
        import json

        data = self.model_dump(mode="json", by_alias=True)
        data["counts"] = self.counts
        return json.dumps(data, indent=2)


def reindex(docs: Iterable[FileDoc | Mapping[str, Any] | BaseException], *, store: str | None = None,
            settings: Settings | None = None, verify: bool = False, dry_run: bool = False,
            client: Any | None = None, wait: float = 0, lease_expiry: timedelta = DEFAULT_EXPIRY,
            plan_from: PlanFrom = "auto", progress: Callable[[RunResult], None] | None = None,
            on_client: Callable[[Any], None] | None = None, on_wait: Callable[[str], None] | None = None,
            options: Mapping[str, Any] | None = None) -> ReindexReport:
    """Bring the store up to date with a catalogue, building only what is stale; see the module doc.

    Holds the store's reindex lease throughout (LeaseHeld when another run holds it after `wait`
    seconds); a dry run takes no lease and changes nothing. Writes a run record unless dry.
    """
    from .api import execute_plan
    from .runs import new_run_id

    settings = settings or load_settings()
    if store is not None:
        settings = settings.model_copy(update={"store": settings.store.model_copy(update={"url": store})})
    artifact_store = open_store(settings)
    artifact_store.check()
    run_id = new_run_id()
    started = _now()
    lease: Lease | None = None
    if not dry_run:
        lease = acquire(artifact_store, "reindex", lease_expiry, wait=wait, on_wait=on_wait)
        lease.keep_alive()
    try:
        clock = time.perf_counter()
        items, hashed = _hash_local(list(docs))
        pending, keyed = classify(items, settings)
        mode = _mode(artifact_store, len({key for *_, key in keyed}), plan_from)
        decided = inspect_keys(artifact_store, [key for *_, key in keyed], verify, mode)
        results: dict[int, ReindexResult] = {}
        for index, known in pending.results.items():
            action: Action = "ok" if known.status == "passthrough" else "invalid"
            results[index] = ReindexResult(id=known.id, action=action, status=known.status, format=known.format,
                                           pipeline=known.pipeline, error=known.error)
        for members in pending.tasks.values():  # no md5, not local: a worker fetches and hashes it
            for index, doc, fmt in members:
                results[index] = ReindexResult(id=doc.id, action="hash", status="pending", format=fmt,
                                               pipeline=_pipeline(fmt), reason="no md5: fetched and hashed to "
                                               "find its key")
        unreadable: list[str] = []
        before = _history(artifact_store) if any(decided[key][0] == "build" for *_, key in keyed) else {}
        for index, doc, fmt, key in keyed:
            action, reason = decided[key]
            if action == "build":
                reason = why_build(key, doc.md5, _pipeline(fmt), before.get(doc.id))
            results[index] = ReindexResult(id=doc.id, action=action, status="cached" if action == "ok" else "pending",
                                           key=key, format=fmt, pipeline=_pipeline(fmt), md5=doc.md5,
                                           hashed=index in hashed,
                                           reason="; ".join(filter(None, [reason, _HASHED if index in hashed
                                                                          else None])) or None)
            if action != "ok":
                pending.schedule(index, doc, fmt, key, rebuild=action in ("missing", "corrupt"))
                if reason == _UNREADABLE:
                    unreadable.append(key)
        planning = round(time.perf_counter() - clock, 4)
        dashboard = None
        if not dry_run:
            for key in dict.fromkeys(unreadable):  # the manifest itself is bad: un-commit, then rebuild
                artifact_store.fs.rm_file(artifact_store.path(key, MANIFEST))
            built, dashboard = execute_plan(pending, settings, client, progress, on_client)
            for index, outcome in built.items():
                results[index] = results[index].model_copy(update={
                    "status": outcome.status, "key": outcome.key or results[index].key, "error": outcome.error,
                    "timings": outcome.timings})
    finally:
        if lease is not None:
            lease.release()
    report = ReindexReport(
        run=run_id, store=redact_url(artifact_store.url), started=started, finished=_now(), dry_run=dry_run,
        verify=verify, planned_from=mode, dashboard=dashboard, results=[results[i] for i in sorted(results)],
        lease=None if lease is None else lease.info())
    if not dry_run:
        _write_record(artifact_store, report, {**(options or {}), "verify": verify, "plan_seconds": planning})
    return report


_UNREADABLE = "the manifest cannot be read"
_NO_BUILD = "no build under the current key (new row, changed md5 or pipeline version)"


def _history(store: ArtifactStore) -> dict[str, dict[str, Any]]:
    """Each row's latest outcome in the last HISTORY run records (runs.latest_outcomes)."""
    from .runs import latest_outcomes, list_records

    return latest_outcomes(list_records(store, last=HISTORY))


def why_build(key: str, md5: str | None, pipeline: str | None, before: Mapping[str, Any] | None) -> str:
    """Why a row's current key has no build, from its latest recorded outcome (`before`, see
    runs.latest_outcomes): the one wording of this reason, for reindex and status alike. Only what
    the records show is said: a batch records a pipeline's name, a reindex its name/version."""
    if not before:
        return _NO_BUILD
    run = f"run {before.get('run')} ({before.get('when')})"
    old_key, old_md5, old_pipeline = before.get("key"), before.get("md5"), before.get("pipeline")
    if before.get("status") == "failed" and old_key in (key, None):
        error = before.get("error") or {}
        return f"failed in {run}: {error.get('class')}: {error.get('message')}"
    if old_key == key:
        return f"committed in {run}, removed from the store since (gc, or by hand)"
    if old_md5 and md5 and old_md5 != md5:
        return f"md5 changed since {run} ({old_md5[:8]}… -> {md5[:8]}…)"
    if old_pipeline and pipeline and old_pipeline != (pipeline if "/" in old_pipeline else pipeline.split("/")[0]):
        return f"pipeline {old_pipeline} -> {pipeline} since {run}"
    if old_key:
        moved = ("same md5, so a pipeline version or a parameter" if old_md5 and old_md5 == md5
                 else "the md5, a pipeline version or a parameter")
        return f"the key changed since {run}: {moved} (compression-level, the reference) moved"
    return f"{_NO_BUILD}; last seen in {run}"
_HASHED = "no md5 in the row: hashed on the client"


def inspect_keys(store: ArtifactStore, keys: list[str], verify: bool,
                 mode: Literal["shards", "keys"]) -> dict[str, tuple[Action, str | None]]:
    """The action and its reason for each key, from listings; manifests only where needed."""
    unique = list(dict.fromkeys(keys))
    listing = list_keys(store, unique, mode)
    shapes = {key: _shape(listing.get(key, {})) for key in unique}
    to_read = [k for k, shape in shapes.items() if shape == "unsure" or (verify and shape == "complete")]
    manifests = store.lookup_many(to_read) if to_read else {}
    decided: dict[str, tuple[Action, str | None]] = {}
    checks: list[tuple[str, Manifest]] = []
    for key in unique:
        files = listing.get(key, {})
        if shapes[key] == "absent":
            decided[key] = ("build", "no build under the current key (new row, changed md5 or pipeline version)")
            continue
        if key not in manifests:
            decided[key] = ("ok", None)
            continue
        manifest = manifests[key]
        if isinstance(manifest, StoreError):
            decided[key] = ("corrupt", _UNREADABLE)
        elif manifest is None:
            decided[key] = ("build", "no build under the current key")
        elif gone := [a.name for a in manifest.artifacts if a.name not in files]:
            decided[key] = ("missing", f"artifact(s) gone: {', '.join(gone)}")
        elif verify:
            checks.append((key, manifest))
        else:
            decided[key] = ("ok", None)
    for key, problem in _verify_all(store, checks, listing).items():
        decided[key] = ("corrupt", problem) if problem else ("ok", None)
    return decided


def list_keys(store: ArtifactStore, keys: list[str], mode: Literal["shards", "keys"]) -> dict[str, dict[str, int]]:
    """Name -> size of the files under each key folder that exists: one listing per key folder
    (`keys`) or per `<layout>/<xx>/` shard the keys fall in (`shards`), paginated by the store."""
    base = f"{store.root}/{LAYOUT}"
    if mode == "keys":
        prefixes = [f"{base}/{key[:2]}/{key}/" for key in keys]
    else:
        prefixes = sorted({f"{base}/{key[:2]}/" for key in keys})
    if store.local or len(prefixes) < 2:
        listed = [_list_prefix(store, p) for p in prefixes]
    else:
        with ThreadPoolExecutor(max_workers=min(32, len(prefixes))) as pool:
            listed = list(pool.map(lambda p: _list_prefix(store, p), prefixes))
    wanted = set(keys)
    found: dict[str, dict[str, int]] = {}
    for entries in listed:
        for path, size in entries:
            parts = path.rsplit("/", 2)
            if len(parts) == 3 and parts[1] in wanted:
                found.setdefault(parts[1], {})[parts[2]] = size
    return found


def _list_prefix(store: ArtifactStore, prefix: str) -> list[tuple[str, int]]:
    """(path, size) of every file under `prefix`: one request per thousand names on S3."""
    return [(entry.path, entry.size) for entry in store.list_files(prefix)]


def _shape(files: Mapping[str, int]) -> Literal["absent", "complete", "unsure"]:
    """What a key folder's listing says: no manifest; a manifest beside a data file and its index
    (what every building pipeline commits); or anything else, which needs the manifest read."""
    names = [n for n in files if not n.startswith(".") and not n.endswith(".tmp")]
    if MANIFEST not in names:
        return "absent"
    data = [n for n in names if n != MANIFEST and not n.endswith(INDEX_SUFFIXES)]
    index = [n for n in names if n.endswith(INDEX_SUFFIXES)]
    return "complete" if len(data) == 1 and len(index) == 1 else "unsure"


def _verify_all(store: ArtifactStore, checks: list[tuple[str, Manifest]],
                listing: Mapping[str, Mapping[str, int]]) -> dict[str, str | None]:
    """For each key: None when every artifact's size and sha256 match its manifest, else what differs."""
    def one(item: tuple[str, Manifest]) -> tuple[str, str | None]:
        key, manifest = item
        for art in manifest.artifacts:
            if listing[key].get(art.name) != art.size:
                return key, f"{art.name}: stored size {listing[key].get(art.name)} != {art.size}"
            try:
                digest = _stored_sha256(store, store.path(key, art.name), art.size)
            except FileNotFoundError:
                return key, f"{art.name}: gone"
            if digest != art.sha256:
                return key, f"{art.name}: stored sha256 differs from the manifest's"
        return key, None

    if store.local or len(checks) < 2:
        return dict(map(one, checks))
    with ThreadPoolExecutor(max_workers=min(16, len(checks))) as pool:
        return dict(pool.map(one, checks))


def _stored_sha256(store: ArtifactStore, path: str, size: int) -> str:
    """sha256 of a stored file whose size the listing gave: ranged reads on object stores, so no
    request asks for the size again."""
    if store.local:
        with open(path, "rb") as stream:
            return hashlib.file_digest(stream, "sha256").hexdigest()
    digest = hashlib.sha256()
    for start in range(0, size, CHUNK):
        digest.update(store.fs.cat_file(path, start=start, end=min(start + CHUNK, size)))
    return digest.hexdigest()


def _mode(store: ArtifactStore, keys: int, plan_from: PlanFrom) -> Literal["shards", "keys"]:
    if plan_from != "auto":
        return plan_from
    return "shards" if not store.local and keys >= SHARD_LISTING_FROM else "keys"


def _hash_local(items: list[Any]) -> tuple[list[Any], set[int]]:
    """Rows without an md5 whose source is a local file get one, hashed here (no worker needed)."""
    out: list[Any] = []
    hashed: set[int] = set()
    for index, item in enumerate(items):
        if isinstance(item, BaseException):
            out.append(item)
            continue
        try:
            doc = _absolute(coerce(item))
        except Exception:  # noqa: BLE001 - classify() reports it with its reason
            out.append(item)
            continue
        if doc.md5 is None and sources.is_local(doc.access_url):
            path = sources.local_path(doc.access_url)
            try:
                with open(path, "rb") as stream:
                    digest = hashlib.file_digest(stream, "md5").hexdigest()
            except OSError:
                out.append(doc)  # the build reports the missing or unreadable source
                continue
            doc = doc.model_copy(update={"md5": digest})
            hashed.add(index)
        out.append(doc)
    return out, hashed


def _pipeline(fmt: str) -> str | None:
    try:
        pipeline = registry.pipeline_for(fmt)
    except Exception:  # noqa: BLE001 - an unknown format has no pipeline
        return None
    return f"{pipeline.name}/{pipeline.version}"


def _write_record(store: ArtifactStore, report: ReindexReport, options: Mapping[str, Any]) -> None:
    from .runs import base_record, tool_versions, write_record

    record = base_record("reindex", report.run, report.started, report.finished, store, options)
    record["planned_from"] = report.planned_from
    record["lease"] = report.lease
    record["tools"] = tool_versions(store, (r.key for r in report.results if r.status == "built" and r.key))
    # A nightly run of a million rows is mostly `ok`: those are listed as [id, md5] pairs, the rest in full.
    unchanged = [r for r in report.results if r.action == "ok" and r.status == "cached" and r.md5]
    record["ok"] = [[r.id, r.md5] for r in unchanged]
    listed = {id(r) for r in unchanged}
    record["results"] = [r.model_dump(mode="json", by_alias=True) for r in report.results if id(r) not in listed]
    record["counts"] = report.counts
    write_record(store, record)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
