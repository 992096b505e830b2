"""What is stale in the store for a catalogue: the plan `reindex` carries out and `status` shows.

Actions: `ok` (the current key is committed; with verify, every artifact's size and sha256 match its
manifest), `build` (no manifest under the current key: a new row, a changed md5, a bumped pipeline
version or parameter), `missing` (manifest there, an artifact gone), `corrupt` (verify: stored bytes
differ from the manifest, or the manifest is unreadable), `hash` (no md5 and not a local file: a
worker fetches and hashes it, the only way to see an upstream change), `invalid` (the row cannot be
read). Rows without an md5 that are local files are hashed here, on the client (`hashed`).

Planning reads listings, not manifests: a listing request returns up to a thousand names, and a
committed key shows as its manifest beside a data file and its index, or a passthrough's data file
alone (the names its pipeline declares). A manifest is read only where the listing does not settle it
(`verify`, or a key folder of another shape).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from . import registry
from .config import Settings
from .errors import SignatureError, StoreError
from .model import ErrorInfo, FileDoc, Manifest
from .plan import Plan, classify, fill_local_md5
from .records import Record
from .signing import is_signature
from .store import MANIFEST, ArtifactStore

Action = Literal["ok", "build", "missing", "corrupt", "hash", "invalid"]
PlanFrom = Literal["auto", "shards", "keys"]
SHARD_LISTING_FROM = 256  # rows from which an object store is planned from shard listings
HISTORY = 10  # run records read to say why a row needs building (status reads the same ones)


class ReindexResult(Record):
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
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class CataloguePlan:
    """Each row's result so far (by position), the tasks that rebuild what is stale, the keys whose
    manifest is unreadable (un-committed before they are rebuilt), and what was listed."""

    results: dict[int, ReindexResult]
    pending: Plan
    unreadable: list[str]
    mode: Literal["shards", "keys"]


def plan_catalogue(docs: Iterable[FileDoc | Mapping[str, Any] | BaseException], store: ArtifactStore,
                   settings: Settings, verify: bool = False, plan_from: PlanFrom = "auto") -> CataloguePlan:
    """Decide for every row what is stale (see the module doc); nothing is built or changed."""
    items, hashed = fill_local_md5(list(docs))
    pending, keyed = classify(items, settings)
    mode = _mode(store, len({key for *_, key in keyed}), plan_from)
    decided = inspect_keys(store, [key for *_, key in keyed], verify, mode)
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
    before = _history(store) if any(decided[key][0] == "build" for *_, key in keyed) else {}
    for index, doc, fmt, key in keyed:
        action, reason = decided[key]
        if action == "build":
            reason = why_build(key, doc.md5, _pipeline(fmt), before.get(doc.id))
        results[index] = ReindexResult(id=doc.id, action=action, status="cached" if action == "ok" else "pending",
                                       key=key, format=fmt, pipeline=_pipeline(fmt), md5=doc.md5,
                                       hashed=index in hashed,
                                       reason="; ".join(filter(None, [reason, _HASHED if index in hashed
                                                                      else None])) or None)
        if reason and reason.startswith(_UNSIGNED):  # named as failed; the operator decides what to trust
            error = ErrorInfo(class_="SignatureError", message=reason[len(_UNSIGNED) + 2:])
            results[index] = results[index].replace(status="failed", reason=None, error=error)
        elif action != "ok":
            pending.schedule(index, doc, fmt, key, rebuild=action in ("missing", "corrupt"))
            if reason == _UNREADABLE:
                unreadable.append(key)
    return CataloguePlan(results, pending, unreadable, mode)


_UNREADABLE = "the manifest cannot be read"
_UNSIGNED = "signature"  # missing or failing: reported as failed, never repaired over (it may be tampering)
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
    listing = store.list_keys(unique, mode)
    layouts = registry.artifact_layouts()
    shapes = {key: folder_shape(listing.get(key, {}), layouts) for key in unique}
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
        if isinstance(manifest, SignatureError):
            decided[key] = ("corrupt", f"{_UNSIGNED}: {manifest}")
        elif isinstance(manifest, StoreError):
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


def folder_shape(files: Mapping[str, int], layouts: list[dict[str, str]] | None = None
                 ) -> Literal["absent", "complete", "unsure"]:
    """What a key folder's listing says: no manifest; a manifest beside one file of each artifact kind a
    registered pipeline declares, by its names (`layouts`, default registry.artifact_layouts()): a data
    file and its index, or a passthrough's data file alone, what the pipelines commit; or anything else,
    which needs the manifest read."""
    layouts = registry.artifact_layouts() if layouts is None else layouts
    names = [n for n in files if not n.startswith(".") and not n.endswith(".tmp") and not is_signature(n)]
    if MANIFEST not in names:
        return "absent"
    rest = [n for n in names if n != MANIFEST]
    for layout in layouts:
        if all(n in layout for n in rest) and sorted(layout[n] for n in rest) == sorted(set(layout.values())):
            return "complete"
    return "unsure"


def _verify_all(store: ArtifactStore, checks: list[tuple[str, Manifest]],
                listing: Mapping[str, Mapping[str, int]]) -> dict[str, str | None]:
    """For each key: None when every artifact's size and sha256 match its manifest, else what differs."""
    def one(item: tuple[str, Manifest]) -> tuple[str, str | None]:
        key, manifest = item
        for art in manifest.artifacts:
            if listing[key].get(art.name) != art.size:
                return key, f"{art.name}: stored size {listing[key].get(art.name)} != {art.size}"
            try:
                digest = store.stored_sha256(store.path(key, art.name), art.size)
            except FileNotFoundError:
                return key, f"{art.name}: gone"
            if digest != art.sha256:
                return key, f"{art.name}: stored sha256 differs from the manifest's"
        return key, None

    if not store.over_network or len(checks) < 2:
        return dict(map(one, checks))
    with ThreadPoolExecutor(max_workers=min(16, len(checks))) as pool:
        return dict(pool.map(one, checks))


def _mode(store: ArtifactStore, keys: int, plan_from: PlanFrom) -> Literal["shards", "keys"]:
    if plan_from != "auto":
        return plan_from
    return "shards" if store.over_network and keys >= SHARD_LISTING_FROM else "keys"


def _pipeline(fmt: str) -> str | None:
    try:
        pipeline = registry.pipeline_for(fmt)
    except Exception:  # noqa: BLE001 - an unknown format has no pipeline
        return None
    return f"{pipeline.name}/{pipeline.version}"
