"""Reindex a catalogue: decide for every row what is stale (stale.py), then build only that.

Work goes through graph.execute like a batch; `missing` and `corrupt` rebuild the key in place (each
artifact is replaced whole, and the manifest, written by the same deterministic build, stays).

One reindex of a store runs at a time (lease.py). Interrupted anywhere, the store stays consistent
(nothing is visible before its manifest) and the next run finds and finishes what is left.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from .build import open_store
from .config import Settings, load_settings
from .lease import DEFAULT_EXPIRY, Lease, LeaseLost, acquire
from .model import FileDoc, RunResult, redact_url
from .records import Record
from .stale import PlanFrom, ReindexResult, plan_catalogue
from .store import ArtifactStore

ACTIONS: tuple[str, ...] = ("ok", "build", "missing", "corrupt", "hash", "invalid")
STATUSES: tuple[str, ...] = ("built", "cached", "passthrough", "failed", "pending")


class ReindexReport(Record):
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

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, with the counts by action and by status."""
        return {**super().to_dict(), "counts": self.counts}


def reindex(docs: Iterable[FileDoc | Mapping[str, Any] | BaseException], *, store: str | None = None,
            settings: Settings | None = None, verify: bool = False, dry_run: bool = False,
            client: Any | None = None, wait: float = 0, lease_expiry: timedelta = DEFAULT_EXPIRY,
            plan_from: PlanFrom = "auto", progress: Callable[[RunResult], None] | None = None,
            on_client: Callable[[Any], None] | None = None, on_wait: Callable[[str], None] | None = None,
            on_lost: Callable[[], None] | None = None, options: Mapping[str, Any] | None = None) -> ReindexReport:
    """Bring the store up to date with a catalogue, building only what is stale; see the module doc.

    Holds the store's reindex lease throughout (LeaseHeld when another run holds it after `wait`
    seconds); a dry run takes no lease and changes nothing. Writes a run record unless dry. A run
    whose lease was taken over (not renewed in time) stops with LeaseLost: at the next finished
    file, or at once when `on_lost` (called from the renewing thread) interrupts the caller.
    """
    from .graph import execute_plan
    from .runs import new_run_id

    settings = settings or load_settings()
    if store is not None:
        settings = settings.replace(store=settings.store.replace(url=store))
    artifact_store = open_store(settings)
    artifact_store.check()
    run_id = new_run_id()
    started = _now()
    lease: Lease | None = None
    if not dry_run:
        lease = acquire(artifact_store, "reindex", lease_expiry, wait=wait, on_wait=on_wait)
        lease.keep_alive(on_lost)
        progress = _stop_when_lost(lease, progress)
    try:
        clock = time.perf_counter()
        planned = plan_catalogue(docs, artifact_store, settings, verify, plan_from)
        results, pending, mode = planned.results, planned.pending, planned.mode
        planning = round(time.perf_counter() - clock, 4)
        dashboard = None
        if not dry_run:
            for key in dict.fromkeys(planned.unreadable):  # the manifest itself is bad: un-commit, then rebuild
                artifact_store.uncommit(key)
            built, dashboard = execute_plan(pending, settings, client, progress, on_client)
            for index, outcome in built.items():
                results[index] = results[index].replace(
                    status=outcome.status, key=outcome.key or results[index].key, error=outcome.error,
                    timings=outcome.timings)
    except (KeyboardInterrupt, LeaseLost):
        if lease is not None and lease.lost:
            raise LeaseLost(lease.lost_message()) from None
        raise
    finally:
        if lease is not None:
            lease.release()
    if lease is not None and lease.lost:
        raise LeaseLost(lease.lost_message())
    report = ReindexReport(
        run=run_id, store=redact_url(artifact_store.url), started=started, finished=_now(), dry_run=dry_run,
        verify=verify, planned_from=mode, dashboard=dashboard, results=[results[i] for i in sorted(results)],
        lease=None if lease is None else lease.info())
    if not dry_run:
        _write_record(artifact_store, report, {**(options or {}), "verify": verify, "plan_seconds": planning})
    return report


def _stop_when_lost(lease: Lease, progress: Callable[[RunResult], None] | None) -> Callable[[RunResult], None]:
    """`progress`, raising LeaseLost after any finished file once the lease is lost."""
    def checked(result: RunResult) -> None:
        if progress is not None:
            progress(result)
        if lease.lost:
            raise LeaseLost(lease.lost_message())

    return checked


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
    record["results"] = [r.to_dict() for r in report.results if id(r) not in listed]
    record["counts"] = report.counts
    write_record(store, record)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
