"""Remove what interrupted commits leave behind: key directories with no manifest, temp files,
and unfinished S3 multipart uploads. Only debris older than a cut-off is touched, so a build
that is committing right now is never disturbed. Committed keys are removed only by
`superseded()`: keys no row of the given catalogues maps to under the current pipeline versions.
Only the layout folder is looked at: run records (runs/) and leases (leases/) are never debris.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from .config import Settings
from .errors import ConfigError
from .keys import LAYOUT, is_key
from .store import MANIFEST, ArtifactStore


class GcReport(BaseModel):
    store: str
    dry_run: bool
    removed: list[str] = Field(default_factory=list)            # paths (or would be, with dry_run)
    aborted_uploads: list[str] = Field(default_factory=list)    # S3 multipart uploads, by key
    superseded: list[str] = Field(default_factory=list)         # committed keys no catalogue row maps to


class UnknownKeys(ConfigError):
    """Some rows' keys cannot be known without fetching them, so no committed key can be called unused."""


def superseded(store: ArtifactStore, docs: Iterable[Any], settings: Settings, older_than: timedelta,
               delete: bool = False) -> GcReport:
    """Committed keys that no row of `docs` maps to under the current pipeline versions and
    parameters (superseded builds), whose files are all older than `older_than` (a running batch
    could be committing a younger one). With `delete`, each is un-committed (manifest first) and
    removed. UnknownKeys when a row's key cannot be derived (no md5 and not local, or unreadable)."""
    from .graph import classify
    from .reindex import _hash_local
    from .status import _key_folders

    items, _ = _hash_local(list(docs))
    pending, keyed = classify(items, settings)
    unknown = [f"{doc.id} (no md5, not a local file)" for members in pending.tasks.values() for _, doc, _ in members]
    unknown += [f"{r.id} ({r.error.message if r.error else 'invalid'})" for r in pending.results.values()
                if r.status == "failed"]
    if unknown:
        raise UnknownKeys("cannot tell which keys are in use, these rows have no key without fetching or fixing "
                          f"them: {'; '.join(unknown[:10])}{' …' if len(unknown) > 10 else ''}")
    current = {key for *_, key in keyed}
    cutoff = datetime.now(UTC) - older_than
    report = GcReport(store=store.url, dry_run=not delete)
    for key, files in sorted(_key_folders(store).items()):
        if key in current or MANIFEST not in files:
            continue  # in use, or debris that collect() handles
        ages = [_mtime(store.fs.info(store.path(key, name))) for name in files]
        if max(ages) < cutoff:
            report.superseded.append(key)
    if delete:
        for key in report.superseded:
            store.fs.rm_file(store.path(key, MANIFEST))  # un-commit first: never a manifest without its bytes
            rest = [store.path(key, name) for name in _key_folders_one(store, key)]
            if rest:
                store.fs.rm(rest)
            if store.local:
                with contextlib.suppress(OSError):
                    os.rmdir(store.key_dir(key))
    return report


def _key_folders_one(store: ArtifactStore, key: str) -> list[str]:
    from .reindex import list_keys

    return sorted(list_keys(store, [key], "keys").get(key, {}))


def collect(store: ArtifactStore, older_than: timedelta, dry_run: bool = False) -> GcReport:
    """Find debris older than `older_than` and remove it (unless `dry_run`)."""
    cutoff = datetime.now(UTC) - older_than
    report = GcReport(store=store.url, dry_run=dry_run)
    base = f"{store.root}/{LAYOUT}"
    by_key: dict[str, list[tuple[str, datetime]]] = {}
    for path, info in store.fs.find(base, detail=True).items():
        parts = path.rstrip("/").split("/")
        if len(parts) >= 2 and is_key(parts[-2]):
            by_key.setdefault(parts[-2], []).append((path, _mtime(info)))
    for files in by_key.values():
        committed = any(path.endswith("/" + MANIFEST) for path, _ in files)
        for path, mtime in files:
            is_temp = path.rsplit("/", 1)[-1].startswith(".") or path.endswith(".tmp")
            if (not committed or is_temp) and mtime < cutoff:
                report.removed.append(path)
    if store.protocol in ("s3", "s3a"):
        report.aborted_uploads = _stale_uploads(store, cutoff)
    if not dry_run:
        if report.removed:
            store.fs.rm(report.removed)
            if store.local:  # object stores have no empty folders to leave behind
                for folder in sorted({path.rsplit("/", 1)[0] for path in report.removed}):
                    with contextlib.suppress(OSError):
                        os.rmdir(folder)
        _abort(store, report.aborted_uploads)
    return report


def _mtime(info: dict[str, Any]) -> datetime:
    value = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or info.get("created")
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.now(UTC)  # unknown age: treat as new, never delete it


def _stale_uploads(store: ArtifactStore, cutoff: datetime) -> list[str]:
    bucket, _, prefix = store.root.partition("/")
    found = store.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=f"{prefix}/{LAYOUT}/" if prefix
                             else f"{LAYOUT}/")
    return [f"{upload['Key']}#{upload['UploadId']}" for upload in found.get("Uploads", [])
            if _mtime({"LastModified": upload["Initiated"]}) < cutoff]


def _abort(store: ArtifactStore, uploads: list[str]) -> None:
    bucket = store.root.partition("/")[0]
    for entry in uploads:
        key, _, upload_id = entry.rpartition("#")
        store.fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
