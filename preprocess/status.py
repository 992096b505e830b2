"""What a store holds and how its last runs went, at a glance; with a catalogue, each row's state.

Everything comes from listings and the run records (runs.py): the store is never walked manifest
by manifest. A key's format is the type of its data artifact (`sorted.bam` -> bam).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import field
from typing import Any, Literal

from . import registry
from .build import open_store
from .config import Settings, load_settings
from .model import FileDoc, redact_url
from .records import Record
from .runs import latest_outcomes, list_records
from .stale import HISTORY, ReindexResult, plan_catalogue
from .store import MANIFEST


class RowState(Record):
    id: str
    state: Literal["current", "stale", "failing", "unknown"]
    why: str | None = None
    key: str | None = None


class StoreStatus(Record):
    store: str
    keys: dict[str, int] = field(default_factory=dict)   # committed keys by data artifact type
    bytes: int = 0                                        # committed keys' files, manifests included
    uncommitted: int = 0                                  # key folders without a manifest (gc debris)
    runs: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    rows: list[RowState] | None = None


def status(docs: Iterable[FileDoc | Mapping[str, Any] | BaseException] | None = None, *, store: str | None = None,
           settings: Settings | None = None, last: int = 5) -> StoreStatus:
    """Keys per format, bytes, the `last` runs with their counts, current failures; per row with `docs`."""
    settings = settings or load_settings()
    if store is not None:
        settings = settings.replace(store=settings.store.replace(url=store))
    artifact_store = open_store(settings)
    artifact_store.check()
    out = StoreStatus(store=redact_url(artifact_store.url))
    for files in artifact_store.key_folders().values():
        if MANIFEST not in files:
            out.uncommitted += 1
            continue
        out.keys[_kind(files)] = out.keys.get(_kind(files), 0) + 1
        out.bytes += sum(entry.size for entry in files.values())
    out.keys = dict(sorted(out.keys.items()))
    records = list_records(artifact_store, last=max(last, HISTORY))
    out.runs = [{"run": r.get("run"), "command": r.get("command"), "started": r.get("started"),
                 "finished": r.get("finished"), "host": r.get("host"), "counts": r.get("counts")}
                for r in records[-last:]] if last > 0 else []
    latest = latest_outcomes(records[-HISTORY:])  # the records reindex explains its reasons from
    out.failures = [{"id": doc_id, "error": entry.get("error"), "run": entry["run"], "when": entry["when"],
                     "key": entry.get("key")}
                    for doc_id, entry in latest.items() if entry.get("status") == "failed"]
    if docs is not None:
        planned = plan_catalogue(docs, artifact_store, settings).results  # reindex's plan, as a dry run makes it
        out.rows = [_row(planned[i], latest.get(planned[i].id)) for i in sorted(planned)]
    return out


def _row(result: ReindexResult, before: Mapping[str, Any] | None) -> RowState:
    """A row's state from reindex's plan; the reason is reindex's own (stale.why_build), never re-derived."""
    if result.action == "ok":
        return RowState(id=result.id, state="current", key=result.key)
    if result.action == "invalid":
        error = result.error
        return RowState(id=result.id, state="failing", why=f"{error.class_}: {error.message}" if error else None)
    if result.action == "hash":
        return RowState(id=result.id, state="unknown", why="no md5 and not a local file: only a reindex, "
                        "fetching it, can tell")
    failing = before is not None and before.get("status") == "failed" and before.get("key") in (result.key, None)
    return RowState(id=result.id, state="failing" if failing else "stale", why=result.reason or result.action,
                    key=result.key)


def _kind(files: Mapping[str, Any]) -> str:
    """The type of a key's data artifact, found by the names the registered pipelines declare."""
    kinds = registry.artifact_kinds()
    data = [n for n in files if kinds.get(n) == "data"]
    if not data:
        return "unknown"
    name = data[0]
    name = name.split(".", 1)[1] if name.startswith(("sorted.", "data.")) else name
    return name[: -len(".gz")] if name.endswith(".gz") else name
