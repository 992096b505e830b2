"""Run records: every batch and reindex leaves `runs/<sequence number>.json` in the store.

Nothing else remembers a run once the process exits, so the record holds what an operator asks
the next morning: when, where, which versions, with which options (never a secret: storage option
values, URL userinfo and query strings are dropped), and what happened to each file. `status`
reads them back. They live beside the layout folder, never inside it, so `gc` never sees them.

The records are a hash chain: each carries `seq`, `previous` (the sha256 of the previous record's
canonical bytes) and `sha256` (of its own canonical bytes without that field). A record is appended
by creating the next number only if absent (the store's exclusive create), so two runs finishing at
once both land, one after the other. `verify_chain` names the first record edited, removed or
inserted. Tamper-evident, not unforgeable: whoever can write the store can rewrite the whole chain,
and removing or rewriting the newest record leaves no trace (that is what signatures are for).
Records written before the chain (`<time>-<id>.json`) are listed first and not covered.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import socket
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .model import BatchReport, redact_url
from .store import ArtifactStore

RUNS = "runs"
APPEND_ATTEMPTS = 50                                 # tries for the next number while other runs take it
_CHAINED = re.compile(r"^(?P<seq>[0-9]{12})\.json$")
_LEGACY = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]+\.json$")  # before the chain: `<time>-<id>.json`
_PACKAGES = ("dask", "distributed", "fsspec", "s3fs", "adlfs", "pysam")


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def record_name(seq: int) -> str:
    """`<sequence number>.json`, zero-padded: names sort in the order the records were appended."""
    return f"{seq:012d}.json"


def canonical(record: Mapping[str, Any]) -> bytes:
    """The bytes a record is hashed by (and written as): sorted keys, no spaces, UTF-8."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(record: Mapping[str, Any]) -> str:
    """sha256 of a record's canonical bytes: what the next record names as `previous`."""
    return hashlib.sha256(canonical(record)).hexdigest()


def _own_digest(record: Mapping[str, Any]) -> str:
    return digest({k: v for k, v in record.items() if k != "sha256"})


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
    """Append one run record to the chain; return its path. A failure to write is reported on
    stderr, not raised: the run's own outcome stands."""
    folder = f"{store.root}/{RUNS}"
    path = folder
    try:
        for attempt in range(APPEND_ATTEMPTS):
            seq, previous = _head(store)
            chained = {**record, "seq": seq + 1, "previous": previous}
            chained["sha256"] = _own_digest(chained)
            path = f"{folder}/{record_name(seq + 1)}"
            try:
                store.create(path, canonical(chained))
                return path
            except FileExistsError:  # another run appended this number first: read the new head, retry
                time.sleep(random.uniform(0, 0.02 * min(attempt + 1, 10)))
        raise TimeoutError(f"{APPEND_ATTEMPTS} other runs appended first")
    except Exception as exc:  # noqa: BLE001 - history is worth a warning, not a failed run
        print(f"warning: could not write the run record {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
    return path


def _names(store: ArtifactStore) -> list[str]:
    """The names of the files in runs/ that end in .json (hidden and temp files left out)."""
    names = store.names_in(f"{store.root}/{RUNS}")
    return [n for n in names if n.endswith(".json") and not n.startswith(".")]


def _ordered(names: Iterable[str]) -> list[str]:
    """Records before the chain first (by time), then the chain by number; other names last."""
    def rank(name: str) -> tuple[int, str]:
        return (0 if _LEGACY.match(name) else 1 if _CHAINED.match(name) else 2, name)

    return sorted(names, key=rank)


def _head(store: ArtifactStore) -> tuple[int, str | None]:
    """The last record's number and digest (0 and None on an empty chain)."""
    chained = sorted(n for n in _names(store) if _CHAINED.match(n))
    if not chained:
        return 0, None
    name = chained[-1]
    data = store.read_bytes(f"{store.root}/{RUNS}/{name}")
    try:
        return int(name[:12]), digest(json.loads(data))
    except ValueError:  # unreadable: chain to its bytes; verify names it
        return int(name[:12]), hashlib.sha256(data).hexdigest()


@dataclass
class ChainCheck:
    """What `history --verify` found: `problem` names the first record edited, removed or inserted."""

    records: int
    before_chain: int
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify_chain(store: ArtifactStore) -> ChainCheck:
    """Walk the chain in number order; stop at the first record that was edited, removed or inserted."""
    folder = f"{store.root}/{RUNS}"
    names = _names(store)
    chained = sorted(n for n in names if _CHAINED.match(n))
    legacy = [n for n in names if _LEGACY.match(n)]
    check = ChainCheck(records=len(chained), before_chain=len(legacy))
    found = store.read_many([f"{folder}/{n}" for n in chained])
    shown = f"{RUNS}/{{}}"
    previous: tuple[int, str | None, str | None] = (0, None, None)  # number, name, digest
    before: str | None = None                                        # the digest the one before that had
    first_started: str | None = None
    for name in chained:
        seq = int(name[:12])
        data = found.get(f"{folder}/{name}")
        try:
            record = json.loads(data) if isinstance(data, bytes | str) else None
        except ValueError:
            record = None
        if not isinstance(record, dict):
            check.problem = f"{shown.format(name)} was edited: it is not a JSON record"
            return check
        if record.get("sha256") != _own_digest(record):
            check.problem = f"{shown.format(name)} was edited: its bytes do not match the sha256 it carries"
            return check
        last_seq, last_name, last_digest = previous
        if record.get("previous") != last_digest:
            if last_name is not None and record.get("previous") == before:
                check.problem = (f"{shown.format(last_name)} was inserted: {shown.format(name)} links past it, "
                                 "to the record before it")
            elif seq != last_seq + 1:
                check.problem = _removed(shown, last_seq, seq, name)
            elif last_name is None:
                check.problem = (f"{shown.format(name)} was inserted: the first record links to a record "
                                 "that does not exist")
            else:
                check.problem = (f"{shown.format(last_name)} was edited: {shown.format(name)} carries another "
                                 "sha256 for it")
            return check
        if seq != last_seq + 1:
            check.problem = _removed(shown, last_seq, seq, name)
            return check
        if record.get("seq") != seq:
            check.problem = f"{shown.format(name)} was moved: it holds record {record.get('seq')}"
            return check
        first_started = first_started or record.get("started")
        before = last_digest
        previous = (seq, name, digest(record))
    others = sorted(n for n in names if not _CHAINED.match(n) and not _LEGACY.match(n))
    if others:
        check.problem = f"{shown.format(others[0])} was inserted: it is not a record of the chain"
        return check
    for name in sorted(legacy):
        problem = _legacy_problem(store, f"{folder}/{name}", first_started)
        if problem:
            check.problem = f"{shown.format(name)} was inserted: {problem}"
            return check
    return check


def _removed(shown: str, last_seq: int, seq: int, name: str) -> str:
    gone = range(last_seq + 1, seq)
    listed = ", ".join(shown.format(record_name(n)) for n in list(gone)[:3]) + (" …" if len(gone) > 3 else "")
    return f"{listed} {'was' if len(gone) == 1 else 'were'} removed: {shown.format(name)} follows " + (
        shown.format(record_name(last_seq)) if last_seq else "nothing")


def _legacy_problem(store: ArtifactStore, path: str, first_started: str | None) -> str | None:
    """A record named as before the chain must look like one: no chain fields, older than the chain."""
    try:
        record = store.read_json(path)
    except (ValueError, FileNotFoundError):
        return "it is not a JSON record"
    if not isinstance(record, dict) or {"seq", "previous", "sha256"} & set(record):
        return "it carries chain fields under a name from before the chain"
    if first_started and str(record.get("started", "")) > first_started:
        return "it is dated after the chain began"
    return None


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
                          "error": r.error.to_dict() if r.error else None, "timings": r.timings}
                         for r in report.results]
    record["counts"] = report.counts
    return write_record(store, record)


def list_records(store: ArtifactStore, last: int | None = None) -> list[dict[str, Any]]:
    """The run records, oldest first (the `last` ones when given); an unreadable one is skipped."""
    folder = f"{store.root}/{RUNS}"
    names = [n for n in _ordered(_names(store)) if _CHAINED.match(n) or _LEGACY.match(n)]
    if last is not None:
        names = names[-last:] if last > 0 else []
    paths = [f"{folder}/{name}" for name in names]
    found = store.read_many(paths)
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


REPORT_MAX_BYTES = 256 << 20  # a report of a million rows is far smaller; more is not a report


def failed_ids(report_path: str) -> set[str]:
    """The ids of the rows that failed in an earlier batch or reindex report (`--json` output).
    ConfigError (a usage error, exit 2) when it is not one: not JSON, another shape, or over 256 MiB
    (read no further: /dev/zero given by mistake must not fill memory)."""
    from .errors import ConfigError

    def refuse(why: str) -> ConfigError:
        return ConfigError(f"--retry-failed {report_path}: {why}; give the JSON report an earlier batch wrote "
                           "with --json")

    try:
        with open(report_path, "rb") as stream:
            data = stream.read(1 << 16)
            if not data.lstrip().startswith(b"{"):  # a report is a JSON object: nothing else is read further
                raise refuse("not a report (a JSON object)")
            data += stream.read(REPORT_MAX_BYTES + 1 - len(data))
    except OSError as exc:
        raise refuse(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > REPORT_MAX_BYTES:
        raise refuse(f"larger than {REPORT_MAX_BYTES >> 20} MiB, so not a report")
    try:
        report = json.loads(data)
    except (ValueError, RecursionError):
        raise refuse("not JSON") from None
    results = report.get("results") if isinstance(report, dict) else None
    if not isinstance(results, list) or not all(isinstance(r, dict) and isinstance(r.get("id"), str | int)
                                                for r in results):
        raise refuse('not a report: it needs a "results" list of rows, each with an "id" and a "status"')
    return {str(r["id"]) for r in results if r.get("status") == "failed"}


def select(docs: Iterable[Any], ids: set[str]) -> list[Any]:
    """The catalogue rows (documents, or the errors of malformed rows) whose id is in `ids`."""
    return [d for d in docs if (getattr(d, "id", None) or getattr(d, "doc_id", None)) in ids]
