"""The Python API: run() for one document, run_many() for a catalogue. The CLI is a shell over it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from .build import open_store
from .cluster import open_client
from .config import Settings, load_settings
from .graph import Plan, execute, plan
from .model import BatchReport, FileDoc, RunResult, redact_url

Doc = FileDoc | Mapping[str, Any]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def run_many(docs: Iterable[Doc | BaseException], *, store: str | None = None, client: Any | None = None,
             settings: Settings | None = None,
             progress: Callable[[RunResult], None] | None = None,
             on_client: Callable[[Any], None] | None = None,
             record: Mapping[str, Any] | None = None,
             report: str | os.PathLike[str] | None = None) -> BatchReport:
    """Build every document's artifacts; a failure is recorded in its result and the rest go on.

    Cached and passthrough documents are answered from the store alone; a cluster is used only when
    something needs building: `client`, else a Client already connected in this process (profile
    auto or local), else, for one document to build under profile auto, none (it is built in this
    process), else one started for the call. `progress` is called with each finished result and
    `on_client` with the client once one is connected (the CLI shows its dashboard link). With
    `record` (the options to note, secrets are dropped), a run record is written to the store's runs/.
    `report`: where to save distributed's performance report (HTML) of the run; written only when a
    cluster ran something (a fully cached batch starts none, and writes none).
    """
    settings = settings or load_settings()
    if store is not None:
        settings = settings.model_copy(update={"store": settings.store.model_copy(update={"url": store})})
    started = _now()
    artifact_store = open_store(settings)
    artifact_store.check()
    pending = plan(docs, settings, artifact_store)
    results = dict(pending.results)
    if progress:
        for result in pending.results.values():
            progress(result)
    built, dashboard, written = _run_plan(pending, settings, client, progress, on_client, report)
    results.update(built)
    ordered = [results[i] for i in sorted(results)]
    batch = BatchReport(store=redact_url(artifact_store.url), results=ordered, started=started, finished=_now(),
                        dashboard=dashboard, performance_report=written)
    if record is not None:
        from .runs import write_batch_record

        write_batch_record(artifact_store, batch, record)
    return batch


def execute_plan(pending: Plan, settings: Settings, client: Any | None = None,
                 progress: Callable[[RunResult], None] | None = None,
                 on_client: Callable[[Any], None] | None = None) -> tuple[dict[int, RunResult], str | None]:
    """Run a plan's tasks on `client`, the notebook's client, or a cluster started for the call (only
    when there is work); return the results by position and the dashboard link of a started cluster."""
    built, dashboard, _ = _run_plan(pending, settings, client, progress, on_client, None)
    return built, dashboard


def _run_plan(pending: Plan, settings: Settings, client: Any | None,
              progress: Callable[[RunResult], None] | None, on_client: Callable[[Any], None] | None,
              report: str | os.PathLike[str] | None) -> tuple[dict[int, RunResult], str | None, str | None]:
    """execute_plan(), and the path of the performance report saved to `report` (when a cluster ran)."""
    if not pending.needs_cluster:
        return {}, None, None
    client = client or _current_client(settings)
    if client is not None:
        built, written = _execute_reported(pending, settings, client, progress, report)
        return built, None, written
    if _in_process(pending, settings, report):
        return execute(pending, settings, None, progress), None, None
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


def _in_process(pending: Plan, settings: Settings, report: str | os.PathLike[str] | None) -> bool:
    """Profile auto with one document to build, and no cluster asked for (cluster.n-workers, a
    performance report): build it in this process, as profile sync does; starting a local cluster
    for one task costs more than the task (issue 15)."""
    return (settings.cluster.profile == "auto" and len(pending.tasks) == 1 and settings.cluster.n_workers is None
            and report is None)


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
    """While a cluster starts: the store options and this process's seal key in its dask config, so the
    local workers it spawns (each Nanny hands its config to its worker) resolve them without a task or
    a message carrying them."""
    import dask.config

    from .urls import SEAL_CONFIG, seal_key

    values: dict[str, Any] = {"preprocess.store.storage-options": settings.store.options()}
    if settings.cluster.profile in ("auto", "local"):  # workers spawned here; Fargate's are told by a plugin
        values[SEAL_CONFIG] = seal_key().decode("ascii")
    return dask.config.set(values)


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


def sign(uri: str, expires: int = 3600, *, settings: Settings | None = None, delegation: bool = False) -> str:
    """A time-limited URL for an artifact URI that a genome browser can read by range; a StoreError
    when nothing is there (one HEAD). `delegation`: on Azure, a user-delegation SAS (Entra ID)."""
    settings = settings or load_settings()
    if "://" not in uri or uri.startswith("file://"):
        root = os.path.dirname(uri[len("file://"):] if uri.startswith("file://") else uri)
    else:
        scheme, rest = uri.split("://", 1)
        root = f"{scheme}://{rest.split('/', 1)[0]}"  # the bucket or container
    return open_store(settings, root).sign(uri, expires, delegation)


def run(doc: Doc, *, store: str | None = None, client: Any | None = None,
        settings: Settings | None = None) -> RunResult:
    """Build one document's artifacts, or find them cached; raise its classified error on failure."""
    result = run_many([doc], store=store, client=client, settings=settings).results[0]
    exc = result.exception
    if exc is not None:
        raise exc
    return result
