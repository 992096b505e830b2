"""Run records: every batch and reindex leaves `runs/<time>-<id>.json` in the store.

Nothing else remembers a run once the process exits, so the record holds what an operator asks
the next morning: when, where, which versions, with which options (never a secret: storage option
values, URL userinfo and query strings are dropped), and what happened to each file. `status`
reads them back. They live beside the layout folder, never inside it, so `gc` never sees them.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from .model import BatchReport, redact_url
from .store import ArtifactStore

RUNS = "runs"
_PACKAGES = ("dask", "distributed", "fsspec", "s3fs", "adlfs", "pysam", "pydantic")


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def record_name(started: datetime, run_id: str) -> str:
    """`<UTC time>-<id>.json`: names sort in time order, so the last runs are the last names."""
    return f"{started.astimezone(UTC):%Y%m%dT%H%M%SZ}-{run_id}.json"


def safe_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options as given, without secrets: URLs lose userinfo and query, storage options keep only
    their names (a value may be a key or a SAS token), anything unset is left out."""
    out: dict[str, Any] = {}
    for name, value in options.items():
        if value is None or value == () or value == []:
            continue
        if name in ("storage_options", "storage-options") and isinstance(value, Mapping):
            out["storage_options"] = sorted(str(k) for k in value)
        elif isinstance(value, str):
            out[name] = redact_url(value)
        elif isinstance(value, list | tuple):
            out[name] = [redact_url(str(v)) for v in value]
        elif isinstance(value, bool | int | float):
            out[name] = value
        else:
            out[name] = redact_url(str(value))
    return out


def versions() -> dict[str, str]:
    """Python and the installed versions of the packages a run depends on (from metadata: no imports)."""
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    found = {"python": sys.version.split()[0], "preprocess": __version__}  # its distribution: preprocess-genomics
    for package in _PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def tool_versions(store: ArtifactStore, keys: Iterable[str]) -> dict[str, list[str]]:
    """The tool versions the workers recorded in the manifests they committed in this run (a tool
    with several versions across workers lists them all): the client may have no samtools at all."""
    tools: dict[str, set[str]] = {}
    unique = [k for k in dict.fromkeys(keys) if k]
    if not unique:
        return {}
    for manifest in store.lookup_many(unique).values():
        if manifest is None or isinstance(manifest, Exception):
            continue
        for tool, text in manifest.tools.items():
            tools.setdefault(tool, set()).add(text)
    return {tool: sorted(found) for tool, found in sorted(tools.items())}


def write_record(store: ArtifactStore, record: dict[str, Any]) -> str:
    """Write one run record; return its path. A failure to write is reported on stderr, not raised:
    the run's own outcome stands."""
    started = datetime.fromisoformat(record["started"])
    path = f"{store.root}/{RUNS}/{record_name(started, record['run'])}"
    body = json.dumps(record, separators=(",", ":")).encode()  # compact: the C encoder, ~1 µs a row
    try:
        if store.local:  # whole or absent: a temp name, then a rename (names are unique: no race)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{os.path.dirname(path)}/.{os.path.basename(path)}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "wb") as stream:
                stream.write(body)
            os.replace(tmp, path)
        else:
            store.fs.pipe_file(path, body)  # one PUT: an object appears whole
    except Exception as exc:  # noqa: BLE001 - history is worth a warning, not a failed run
        print(f"warning: could not write the run record {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
    return path


def base_record(command: str, run_id: str, started: str, finished: str, store: ArtifactStore,
                options: Mapping[str, Any]) -> dict[str, Any]:
    opts = safe_options(options)
    if store.option_names:
        opts["storage_options"] = store.option_names
    return {"run": run_id, "command": command, "started": started, "finished": finished,
            "host": socket.gethostname(), "pid": os.getpid(), "store": redact_url(store.url),
            "versions": versions(), "options": opts}


def write_batch_record(store: ArtifactStore, report: BatchReport, options: Mapping[str, Any]) -> str:
    """The run record of a batch: its options and each file's outcome, key and timings."""
    record = base_record("batch", new_run_id(), report.started, report.finished, store, options)
    record["tools"] = tool_versions(store, (r.key for r in report.results if r.status == "built" and r.key))
    record["results"] = [{"id": r.id, "status": r.status, "format": r.format, "pipeline": r.pipeline, "key": r.key,
                          "error": r.error.model_dump(by_alias=True) if r.error else None, "timings": r.timings}
                         for r in report.results]
    record["counts"] = report.counts
    return write_record(store, record)


def list_records(store: ArtifactStore, last: int | None = None) -> list[dict[str, Any]]:
    """The run records, oldest first (the `last` ones when given); an unreadable one is skipped."""
    folder = f"{store.root}/{RUNS}"
    try:
        if store.local:
            names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
        else:
            store.fs.invalidate_cache(folder)
            names = sorted(p.rsplit("/", 1)[-1] for p in store.fs.ls(folder, detail=False) if p.endswith(".json"))
    except FileNotFoundError:
        return []
    if last is not None:
        names = names[-last:] if last > 0 else []
    paths = [f"{folder}/{name}" for name in names]
    found = store.fs.cat(paths, on_error="return") if paths else {}
    records = []
    for path in paths:
        data = found.get(path)
        if isinstance(data, bytes | str):
            try:
                records.append(json.loads(data))
            except ValueError:
                continue
    return records


def latest_outcomes(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each id's outcome in the most recent run that had it (records oldest first; dry runs skipped),
    with the run's id and start time: `status`, `key`, `error`, and `md5`/`pipeline` where recorded."""
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        if record.get("options", {}).get("dry_run"):
            continue
        when = {"run": record.get("run"), "when": record.get("started")}
        for entry in record.get("results", []):
            if entry.get("status") in ("built", "cached", "passthrough", "failed"):
                latest[entry["id"]] = {**entry, **when}
        for doc_id, md5 in record.get("ok", []):  # reindex lists unchanged rows as [id, md5], without key
            earlier = latest.get(doc_id, {})
            same = earlier.get("md5") in (md5, None)  # a batch records no md5: its key stands
            latest[doc_id] = {"id": doc_id, "status": "cached", "md5": md5, "error": None,
                              "key": earlier.get("key") if same else None,
                              "pipeline": earlier.get("pipeline") if same else None, **when}
    return latest


def failed_ids(report_path: str) -> set[str]:
    """The ids of the rows that failed in an earlier batch or reindex report (`--json` output)."""
    from .errors import ConfigError

    try:
        with open(report_path, encoding="utf-8") as stream:
            data = json.load(stream)
        return {str(r["id"]) for r in data["results"] if r.get("status") == "failed"}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read the report {report_path}: {type(exc).__name__}: {exc}") from None


def select(docs: Iterable[Any], ids: set[str]) -> list[Any]:
    """The catalogue rows (documents, or the errors of malformed rows) whose id is in `ids`."""
    return [d for d in docs if (getattr(d, "id", None) or getattr(d, "doc_id", None)) in ids]
