"""Remove what interrupted commits leave behind, and with catalogues the builds they no longer need.

`collect()`: key directories with no manifest, temp files, unfinished S3 multipart uploads, and a big
file's parts area (parts/<key>/, split.py) whose build died before its merge removed it.
`sweep()`: committed keys the given catalogues do not map to, in two groups: superseded (an older
key of a document a catalogue names, by id or source) and orphans (no row names them: maybe another
lab's rows, missing from a partial catalogue), each removed only when asked for by name. Only what
is older than a cut-off is touched, so a build committing right now is never disturbed; only the
layout folder and the parts area are looked at: run records (runs/) and leases (leases/) are never debris.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import field
from datetime import UTC, datetime, timedelta
from typing import Any

from .config import Settings
from .errors import ConfigError, StoreError
from .keys import LAYOUT, is_key
from .model import redact_url
from .records import Record
from .store import MANIFEST, ArtifactStore, StoredFile


class GcReport(Record):
    """Paths are URIs as the user names the store (a local path, else scheme://bucket/…)."""

    store: str
    dry_run: bool
    removed: list[str] = field(default_factory=list)            # debris paths (or would be, with dry_run)
    debris_bytes: int = 0
    aborted_uploads: list[str] = field(default_factory=list)    # S3 multipart uploads, by key URI
    superseded: list[str] = field(default_factory=list)         # keys: older builds of a named document
    superseded_bytes: int = 0
    orphans: list[str] = field(default_factory=list)            # keys no catalogue row names
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
    from .plan import classify, fill_local_md5
    from .runs import list_records

    items, _ = fill_local_md5(list(docs))
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
            store.remove_key(key)
        report.orphans_removed = orphans
    return report


def superseded(store: ArtifactStore, docs: Iterable[Any], settings: Settings, older_than: timedelta,
               delete: bool = False) -> GcReport:
    """sweep() that may remove superseded keys, never orphans."""
    return sweep(store, docs, settings, older_than, delete=delete)


def collect(store: ArtifactStore, older_than: timedelta, dry_run: bool = False) -> GcReport:
    """Find debris older than `older_than` and remove it (unless `dry_run`)."""
    cutoff = datetime.now(UTC) - older_than
    report = GcReport(store=store.url, dry_run=dry_run)
    base = f"{store.root}/{LAYOUT}"
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
    doomed += _dead_parts(store, cutoff, report)
    report.removed = [store.location(path) for path in doomed]
    uploads = store.stale_uploads(cutoff)
    report.aborted_uploads = [store.upload_uri(key) for key, _ in uploads]
    if not dry_run:
        store.remove(doomed, prune=True)
        store.abort_uploads(uploads)
    return report



def _dead_parts(store: ArtifactStore, cutoff: datetime, report: GcReport) -> list[str]:
    """The files of each parts/<key>/ area (a split build's pieces and sorted parts) where even the newest
    is older than `cutoff`: a build still routing or sorting writes there, a merge removes its area whole,
    so an area left that long belongs to a build that died (a rerun makes its parts again)."""
    areas: dict[str, list[StoredFile]] = {}
    area = f"{store.root}/parts/"
    for entry in store.list_files(area):
        rest = entry.path.removeprefix(area).split("/")
        if len(rest) >= 2 and is_key(rest[0]):
            areas.setdefault(rest[0], []).append(entry)
    doomed: list[str] = []
    for files in areas.values():
        if all(entry.modified is not None and entry.modified < cutoff for entry in files):
            doomed += [entry.path for entry in files]
            report.debris_bytes += sum(entry.size for entry in files)
    return doomed
