"""Run a plan's tasks as Dask tasks, one per derivation key, on a cluster picked for the call.

A task runs every stage of its document on one worker, on that worker's scratch: workers share
nothing but the store, and moving a BAM between stages costs more than it saves. A big file whose
pipeline declares split steps goes across workers (split.py). With one task, or local files that add
up to little, and no cluster asked for, the tasks run in this process (profile auto), as profile sync
does.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

from . import registry, sources
from .build import build_doc
from .cluster import host_cores, open_client
from .config import Settings
from .model import FileDoc, RunResult
from .plan import Plan


def execute(pending: Plan, settings: Settings, client: Any | None,
            progress: Callable[[RunResult], None] | None = None, tell_key: bool = True,
            builders: int = 1) -> dict[int, RunResult]:
    """Run the plan's tasks (in-process when `client` is None, `builders` at a time) and return results
    by position.
    A task carries no secret in clear: no storage options (workers have their own), no catalogue
    extras, and URLs sealed (preprocess/urls.py); `tell_key`: register the seal key with the workers."""
    results: dict[int, RunResult] = {}

    def record(name: str, result: RunResult) -> None:
        for index, doc, _ in pending.tasks[name]:
            results[index] = result.replace(id=doc.id)
            if progress:
                progress(results[index])

    if client is None and (builders <= 1 or len(pending.tasks) <= 1):
        for name, members in pending.tasks.items():
            _, doc, fmt = members[0]
            record(name, build_doc(doc, fmt, settings, rebuild=name in pending.rebuild))
        return results
    if client is None:  # threads: a build mostly waits for its tools (build_doc is what a worker's threads run)
        from concurrent.futures import ThreadPoolExecutor
        from concurrent.futures import as_completed as finished

        with ThreadPoolExecutor(builders, thread_name_prefix="preprocess-build") as pool:
            running = {pool.submit(build_doc, members[0][1], members[0][2], settings,
                                   rebuild=name in pending.rebuild): name for name, members in pending.tasks.items()}
            try:
                for future in finished(running):
                    record(running[future], future.result())
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)  # the builds under way end; none starts
                raise
        return results

    from distributed import as_completed

    from .plugins import install

    install(client, settings, tell_key)
    futures = {}
    carried = settings.for_workers()  # no credential in a task's arguments: workers have their own
    workers = None
    for name, members in pending.tasks.items():
        _, doc, fmt = members[0]
        doc = doc.replace(extra={})  # columns we do not know: a worker never reads them
        if name not in pending.rebuild and _splittable(doc, fmt, settings):  # one big SAM/BAM: across workers
            from . import split

            workers = len(client.scheduler_info()["workers"]) if workers is None else workers
            key = name.partition("-")[2]
            parts = split.parts_for(doc, fmt, key, settings, workers)
            if parts:
                futures[split.submit(client, doc, fmt, carried, key, parts, workers)] = name
                continue
        futures[client.submit(build_doc, doc, fmt, carried, rebuild=name in pending.rebuild, key=name,
                              pure=False)] = name
    for future in as_completed(futures):
        name = futures[future]
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 - a lost worker fails its documents, not the batch
            _, doc, fmt = pending.tasks[name][0]
            result = RunResult.failure(doc.id, exc, format=fmt)
        record(name, result)
    return results


def _splittable(doc: FileDoc, fmt: str, settings: Settings) -> bool:
    """A cheap first look: a file its pipeline can build in parts that may be over preprocess.split.min-size
    (split.parts_for decides)."""
    splits = registry.pipeline_for(fmt).split_steps is not None
    return splits and (doc.size is None or doc.size > settings.split.min_size)


def execute_plan(pending: Plan, settings: Settings, client: Any | None = None,
                 progress: Callable[[RunResult], None] | None = None,
                 on_client: Callable[[Any], None] | None = None) -> tuple[dict[int, RunResult], str | None]:
    """Run a plan's tasks on `client`, the notebook's client, or a cluster started for the call (only
    when there is work); return the results by position and the dashboard link of a started cluster.
    Work kept in this process runs in the calling thread, one file after another, so that an exception
    raised in it (reindex's lost lease) stops the build under way at once."""
    built, dashboard, _ = run_plan(pending, settings, client, progress, on_client, None, side_by_side=False)
    return built, dashboard


def run_plan(pending: Plan, settings: Settings, client: Any | None,
              progress: Callable[[RunResult], None] | None, on_client: Callable[[Any], None] | None,
              report: str | os.PathLike[str] | None, side_by_side: bool = True
              ) -> tuple[dict[int, RunResult], str | None, str | None]:
    """execute_plan(), and the path of the performance report saved to `report` (when a cluster ran);
    `side_by_side`: work kept in this process runs a build per core on threads."""
    if not pending.needs_cluster:
        return {}, None, None
    client = client or _current_client(settings)
    if client is not None:
        built, written = _execute_reported(pending, settings, client, progress, report)
        return built, None, written
    if _in_process(pending, settings, report):
        return execute(pending, settings, None, progress, builders=host_cores() if side_by_side else 1), None, None
    with _workers_configured(settings), open_client(settings.cluster) as started_client:
        dashboard = None
        if started_client is not None:
            dashboard = getattr(started_client, "dashboard_link", None)
            if on_client:
                on_client(started_client)
        own_workers = settings.cluster.profile in ("auto", "local")  # given the seal key as they started
        built, written = _execute_reported(pending, settings, started_client, progress, report,
                                           tell_key=not own_workers)
        return built, dashboard, written


IN_PROCESS_BYTES = 64 << 20  # local sources adding up to less are built one after another in this process


def _in_process(pending: Plan, settings: Settings, report: str | os.PathLike[str] | None) -> bool:
    """Profile auto, no cluster asked for (cluster.n-workers, a performance report), and work a local
    cluster would not repay: one document to build, or local files adding up to under IN_PROCESS_BYTES,
    built a core's worth at a time on threads. A local cluster costs about a second to start and close
    and a few ms a task, more than such a batch gains from it (issue 15: 200 small files, 8 MB: 3.1 s
    here against 4.9-5.9 s on a cluster); a source elsewhere is a download, for a cluster's tasks."""
    if settings.cluster.profile != "auto" or settings.cluster.n_workers is not None or report is not None:
        return False
    if len(pending.tasks) == 1:
        return True
    total = 0
    for (_, doc, _), *_ in pending.tasks.values():
        if not sources.is_local(doc.access_url):
            return False
        try:
            total += sources.local_path(doc.access_url).stat().st_size
        except OSError:  # its build reports it
            continue
        if total >= IN_PROCESS_BYTES:
            return False
    return True


def _execute_reported(pending: Plan, settings: Settings, client: Any | None,
                      progress: Callable[[RunResult], None] | None,
                      report: str | os.PathLike[str] | None,
                      tell_key: bool = True) -> tuple[dict[int, RunResult], str | None]:
    """execute(), inside distributed's performance_report when one is asked for and a cluster runs
    the work; the results and the report's path when one was written."""
    if report is None or client is None:
        return execute(pending, settings, client, progress, tell_key=tell_key), None
    from distributed import performance_report

    with client.as_current(), performance_report(filename=os.fspath(report)):
        built = execute(pending, settings, client, progress, tell_key=tell_key)
    return built, os.path.abspath(report)


def _workers_configured(settings: Settings) -> Any:
    """While a cluster starts: the command's `--set` values, the store options and this process's seal
    key in its dask config, so the local workers it spawns (each Nanny hands its config to its worker)
    resolve them without a task or a message carrying them. Profile sync starts none: nothing to set
    (and dask, 0.2 s to import, stays unimported)."""
    if settings.cluster.profile == "sync":
        return contextlib.nullcontext()
    from .config import active_flags, dask_config
    from .urls import SEAL_CONFIG, seal_key

    values: dict[str, Any] = {**active_flags(), "preprocess.store.storage-options": settings.store.options()}
    if settings.cluster.profile in ("auto", "local"):  # workers spawned here; Fargate's are told by a plugin
        values[SEAL_CONFIG] = seal_key().decode("ascii")
    return dask_config().set(values)


def _current_client(settings: Settings) -> Any | None:
    """The notebook's own distributed.Client, when one is already connected and the profile is the
    default: a notebook that made a Client expects work to run there, not on a second cluster."""
    import sys

    if settings.cluster.profile not in ("auto", "local") or "distributed" not in sys.modules:
        return None  # never import distributed just to ask
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None
