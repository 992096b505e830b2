"""What a store holds and how its last runs went, at a glance; with a catalogue, each row's state.

Everything comes from listings and the run records (runs.py): the store is never walked manifest
by manifest. A key's format is the type of its data artifact (`sorted.bam` -> bam).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from .build import open_store
from .config import Settings, load_settings
from .keys import LAYOUT, is_key
from .model import FileDoc, redact_url
from .reindex import INDEX_SUFFIXES, reindex
from .runs import list_records
from .signing import is_signature
from .store import MANIFEST, ArtifactStore

HISTORY = 10  # run records read to find each row's latest outcome


class RowState(BaseModel):
    id: str
    state: Literal["current", "stale", "failing", "unknown"]
    why: str | None = None
    key: str | None = None


class StoreStatus(BaseModel):
    store: str
    keys: dict[str, int] = Field(default_factory=dict)   # committed keys by data artifact type
    bytes: int = 0                                        # committed keys' files, manifests included
    uncommitted: int = 0                                  # key folders without a manifest (gc debris)
    runs: list[dict[str, Any]] = Field(default_factory=list)
    failures: list[dict[str, Any]] = Field(default_factory=list)
    rows: list[RowState] | None = None


def status(docs: Iterable[FileDoc | Mapping[str, Any] | BaseException] | None = None, *, store: str | None = None,
           settings: Settings | None = None, last: int = 5) -> StoreStatus:
    """Keys per format, bytes, the `last` runs with their counts, current failures; per row with `docs`."""
    settings = settings or load_settings()
    if store is not None:
        settings = settings.model_copy(update={"store": settings.store.model_copy(update={"url": store})})
    artifact_store = open_store(settings)
    artifact_store.check()
    out = StoreStatus(store=redact_url(artifact_store.url))
    for files in _key_folders(artifact_store).values():
        if MANIFEST not in files:
            out.uncommitted += 1
            continue
        out.keys[_kind(files)] = out.keys.get(_kind(files), 0) + 1
        out.bytes += sum(files.values())
    out.keys = dict(sorted(out.keys.items()))
    records = list_records(artifact_store, last=max(last, HISTORY))
    out.runs = [{"run": r.get("run"), "command": r.get("command"), "started": r.get("started"),
                 "finished": r.get("finished"), "host": r.get("host"), "counts": r.get("counts")}
                for r in records[-last:]] if last > 0 else []
    latest = _latest_outcomes(records)
    out.failures = [{"id": doc_id, "error": entry.get("error"), "run": entry["run"], "when": entry["when"],
                     "key": entry.get("key")}
                    for doc_id, entry in latest.items() if entry.get("status") == "failed"]
    if docs is not None:
        plan = reindex(docs, settings=settings, dry_run=True)
        out.rows = [_row(r.model_dump(), latest.get(r.id)) for r in plan.results]
    return out


def _row(result: dict[str, Any], before: dict[str, Any] | None) -> RowState:
    action, key = result["action"], result["key"]
    if action == "ok":
        return RowState(id=result["id"], state="current", key=key)
    if action == "invalid":
        error = result.get("error") or {}
        return RowState(id=result["id"], state="failing", why=f"{error.get('class_')}: {error.get('message')}")
    if action == "hash":
        return RowState(id=result["id"], state="unknown", why="no md5 and not a local file: only a reindex, "
                        "fetching it, can tell")
    if before and before.get("status") == "failed" and before.get("key") in (key, None):
        error = before.get("error") or {}
        return RowState(id=result["id"], state="failing", key=key,
                        why=f"{error.get('class')}: {error.get('message')} (run {before['run']})")
    why = result.get("reason") or action
    if action == "build" and before:
        if before.get("md5") and result.get("md5") and before["md5"] != result["md5"]:
            why = f"md5 changed since run {before['run']} ({before['md5'][:8]}… -> {result['md5'][:8]}…)"
        elif before.get("pipeline") and result.get("pipeline") and before["pipeline"] != result["pipeline"]:
            why = f"pipeline {before['pipeline']} -> {result['pipeline']} since run {before['run']}"
    elif action == "build":
        why = "never built"
    return RowState(id=result["id"], state="stale", why=why, key=key)


def _latest_outcomes(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each id's outcome in the most recent run that had it (records are oldest first)."""
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        if record.get("options", {}).get("dry_run"):
            continue
        when = {"run": record.get("run"), "when": record.get("started")}
        for entry in record.get("results", []):
            if entry.get("status") in ("built", "cached", "passthrough", "failed"):
                latest[entry["id"]] = {**entry, **when}
        for doc_id, md5 in record.get("ok", []):  # reindex lists unchanged rows as [id, md5]
            latest[doc_id] = {**latest.get(doc_id, {}), "id": doc_id, "status": "cached", "md5": md5, "error": None,
                              **when}
    return latest


def _kind(files: Mapping[str, int]) -> str:
    data = [n for n in files if n != MANIFEST and not n.endswith(INDEX_SUFFIXES) and not is_signature(n)]
    if not data:
        return "unknown"
    name = data[0]
    name = name[len("sorted."):] if name.startswith("sorted.") else name
    return name[: -len(".gz")] if name.endswith(".gz") else name


def _key_folders(store: ArtifactStore) -> dict[str, dict[str, int]]:
    """Name -> size under every key folder of the layout, from listings."""
    from .reindex import _list_prefix

    base = f"{store.root}/{LAYOUT}/"
    if store.local and not os.path.isdir(base):
        return {}
    found: dict[str, dict[str, int]] = {}
    for path, size in _list_prefix(store, base):
        parts = path.rsplit("/", 2)
        if len(parts) == 3 and is_key(parts[1]) and not parts[2].startswith(".") and not parts[2].endswith(".tmp"):
            found.setdefault(parts[1], {})[parts[2]] = size
    return found
