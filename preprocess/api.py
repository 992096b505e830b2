"""The Python API: run() for one document, run_many() for a catalogue. The CLI is a shell over it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from .build import open_store, signed_url
from .config import Settings, load_settings
from .graph import run_plan
from .model import BatchReport, FileDoc, RunResult, redact_url, register_html_view
from .plan import plan

Doc = FileDoc | Mapping[str, Any]


def _repr_html(results: list[RunResult]) -> str:
    """What a RunResult or a BatchReport shows in a notebook: view.py's genome-browser page, imported when
    a notebook first shows one (a command line run never pays its import)."""
    from .view import repr_html

    return repr_html(results)


register_html_view(_repr_html)


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
        settings = settings.replace(store=settings.store.replace(url=store))
    started = _now()
    artifact_store = open_store(settings)
    artifact_store.check()
    pending = plan(docs, settings, artifact_store)
    results = dict(pending.results)
    if progress:
        for result in pending.results.values():
            progress(result)
    built, dashboard, written = run_plan(pending, settings, client, progress, on_client, report)
    results.update(built)
    ordered = [results[i] for i in sorted(results)]
    batch = BatchReport(store=redact_url(artifact_store.url), results=ordered, started=started, finished=_now(),
                        dashboard=dashboard, performance_report=written)
    if record is not None:
        from .runs import write_batch_record

        write_batch_record(artifact_store, batch, record)
    return batch


def sign(uri: str, expires: int = 3600, *, settings: Settings | None = None, delegation: bool = False) -> str:
    """A time-limited URL for an artifact URI that a genome browser can read by range; a StoreError
    when nothing is there (one HEAD). `delegation`: on Azure, a user-delegation SAS (Entra ID)."""
    return signed_url(uri, expires, settings or load_settings(), delegation)


def run(doc: Doc, *, store: str | None = None, client: Any | None = None,
        settings: Settings | None = None) -> RunResult:
    """Build one document's artifacts, or find them cached; raise its classified error on failure."""
    result = run_many([doc], store=store, client=client, settings=settings).results[0]
    exc = result.exception
    if exc is not None:
        raise exc
    return result
