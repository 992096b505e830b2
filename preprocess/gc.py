"""Remove what interrupted commits leave behind, and with catalogues the builds they no longer need.

`collect()`: key directories with no manifest, temp files, and unfinished S3 multipart uploads.
`sweep()`: committed keys the given catalogues do not map to, in two groups: superseded (an older
key of a document a catalogue names, by id or source) and orphans (no row names them: maybe another
lab's rows, missing from a partial catalogue), each removed only when asked for by name. Only what
is older than a cut-off is touched, so a build committing right now is never disturbed; only the
layout folder is looked at: run records (runs/) and leases (leases/) are never debris.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from .config import Settings
from .errors import ConfigError, StoreError
from .keys import LAYOUT, is_key
from .model import redact_url
from .store import MANIFEST, ArtifactStore, StoredFile, modified_time


class GcReport(BaseModel):
    """Paths are URIs as the user names the store (a local path, else scheme://bucket/…)."""

    store: str
    dry_run: bool
    removed: list[str] = Field(default_factory=list)            # debris paths (or would be, with dry_run)
    debris_bytes: int = 0
    aborted_uploads: list[str] = Field(default_factory=list)    # S3 multipart uploads, by key URI
    superseded: list[str] = Field(default_factory=list)         # keys: older builds of a named document
    superseded_bytes: int = 0
    orphans: list[str] = Field(default_factory=list)            # keys no catalogue row names
    orphan_bytes: int = 0
    orphans_removed: bool = False                               # only when asked for (--orphans)
    too_young: int = 0                                          # unused keys younger than the cut-off: kept


class UnknownKeys(ConfigError):
    """Some rows' keys cannot be known without fetching them, so no committed key can be called unused."""


def sweep(store: ArtifactStore, docs: Iterable[Any], settings: Settings, older_than: timedelta,
          delete: bool = False, orphans: bool = False) -> GcReport:
    """Committed keys older than `older_than` that no row of `docs` maps to under the current pipeline
    versions and parameters, as `superseded` (a named document's older build: same id in a run record,
    or same source URL in its manifest) or `orphans`. With `delete` the superseded keys are removed
    (manifest first), and with `orphans` too the orphans. UnknownKeys when a row's key cannot be
    derived (no md5 and not local, or unreadable)."""
    from .graph import classify
    from .reindex import _hash_local
    from .runs import list_records

    items, _ = _hash_local(list(docs))
    pending, keyed = classify(items, settings)
    unknown = [f"{doc.id} (no md5, not a local file)" for members in pending.tasks.values() for _, doc, _ in members]
    unknown += [f"{r.id} ({r.error.message if r.error else 'invalid'})" for r in pending.results.values()
                if r.status == "failed"]
    if unknown:
        raise UnknownKeys("cannot tell which keys are in use, these rows have no key without fetching or fixing "
                          f"them: {'; '.join(unknown[:10])}{' …' if len(unknown) > 10 else ''}")
    current = {key for *_, key in keyed}
    named_ids = {doc.id for _, doc, _, _ in keyed}
    named_sources = {redact_url(doc.access_url) for _, doc, _, _ in keyed}
    cutoff = datetime.now(UTC) - older_than
    report = GcReport(store=store.url, dry_run=not delete)
    unused: dict[str, dict[str, StoredFile]] = {}
    for key, files in sorted(store.key_folders().items()):
        if key in current or MANIFEST not in files:
            continue  # in use, or debris that collect() handles
        if all(entry.modified is not None and entry.modified < cutoff for entry in files.values()):
            unused[key] = files
        else:
            report.too_young += 1
    by_id = {entry.get("key") for record in list_records(store) for entry in record.get("results", [])
             if entry.get("id") in named_ids}
    manifests = store.lookup_many(key for key in unused if key not in by_id)
    for key, files in unused.items():
        manifest = manifests.get(key)
        named = key in by_id or (manifest is not None and not isinstance(manifest, StoreError)
                                 and manifest.source.url in named_sources)
        size = sum(entry.size for entry in files.values())
        if named:
            report.superseded.append(key)
            report.superseded_bytes += size
        else:
            report.orphans.append(key)
            report.orphan_bytes += size
    if delete:
        for key in report.superseded + (report.orphans if orphans else []):
            _remove_key(store, key)
        report.orphans_removed = orphans
    return report


def superseded(store: ArtifactStore, docs: Iterable[Any], settings: Settings, older_than: timedelta,
               delete: bool = False) -> GcReport:
    """sweep() that may remove superseded keys, never orphans."""
    return sweep(store, docs, settings, older_than, delete=delete)


def _remove_key(store: ArtifactStore, key: str) -> None:
    """Un-commit first (never a manifest without its bytes), then remove the rest of the folder."""
    store.fs.rm_file(store.path(key, MANIFEST))
    rest = [entry.path for entry in store.list_files(store.key_dir(key) + "/")]
    if rest:
        store.fs.rm(rest)
    if store.local:
        with contextlib.suppress(OSError):
            os.rmdir(store.key_dir(key))


def collect(store: ArtifactStore, older_than: timedelta, dry_run: bool = False) -> GcReport:
    """Find debris older than `older_than` and remove it (unless `dry_run`)."""
    cutoff = datetime.now(UTC) - older_than
    report = GcReport(store=store.url, dry_run=dry_run)
    base = f"{store.root}/{LAYOUT}"
    if store.local and not os.path.isdir(base):
        return report
    by_key: dict[str, list[StoredFile]] = {}
    for entry in store.list_files(base + "/"):
        parts = entry.path.rstrip("/").split("/")
        if len(parts) >= 2 and is_key(parts[-2]):
            by_key.setdefault(parts[-2], []).append(entry)
    doomed: list[str] = []
    for files in by_key.values():
        committed = any(entry.path.endswith("/" + MANIFEST) for entry in files)
        for entry in files:
            is_temp = entry.path.rsplit("/", 1)[-1].startswith(".") or entry.path.endswith(".tmp")
            if (not committed or is_temp) and entry.modified is not None and entry.modified < cutoff:
                doomed.append(entry.path)
                report.debris_bytes += entry.size
    report.removed = [store.location(path) for path in doomed]
    uploads = _stale_uploads(store, cutoff) if store.protocol in ("s3", "s3a") else []
    report.aborted_uploads = [store.location(f"{store.root.partition('/')[0]}/{key}") for key, _ in uploads]
    if not dry_run:
        if doomed:
            store.fs.rm(doomed)
            if store.local:  # object stores have no empty folders to leave behind
                for folder in sorted({path.rsplit("/", 1)[0] for path in doomed}):
                    with contextlib.suppress(OSError):
                        os.rmdir(folder)
        _abort(store, uploads)
    return report


def _mtime(info: Mapping[str, Any]) -> datetime:
    """A listing entry's age; unknown counts as new, so it is never deleted."""
    return modified_time(info) or datetime.now(UTC)


def _stale_uploads(store: ArtifactStore, cutoff: datetime) -> list[tuple[str, str]]:
    bucket, _, prefix = store.root.partition("/")
    found = store.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=f"{prefix}/{LAYOUT}/" if prefix
                             else f"{LAYOUT}/")
    return [(upload["Key"], upload["UploadId"]) for upload in found.get("Uploads", [])
            if _mtime({"LastModified": upload["Initiated"]}) < cutoff]


def _abort(store: ArtifactStore, uploads: list[tuple[str, str]]) -> None:
    bucket = store.root.partition("/")[0]
    for key, upload_id in uploads:
        store.fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
