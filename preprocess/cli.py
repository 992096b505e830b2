"""python -m preprocess {run,batch,reindex,status,history,mirror,sign,cors,view,gc,doctor,keygen,cluster,
config}: parse options, call the API, report, exit.

Settings come from preprocess.yaml, dask's YAML files, DASK_PREPROCESS__* variables and, on top of them
all, `--set KEY=VALUE` and the explicit flags (`--store`, `--cluster`, …); `config` shows which won.
This module holds the commands that run work; cli_setup.py those that show the setup (config, cluster,
doctor), cli_trust.py history and keygen, cli_options.py the options they share.

Exit codes: 0 every file succeeded, 1 some failed (history --verify: the chain is broken), 2 a usage
or configuration error, 3 (reindex) another run holds the store's lease, or took it over from this one.
"""

from __future__ import annotations

import gc
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import __version__, cli_browse, cli_setup, cli_trust
from .cli_options import (
    cluster_options,
    finish,
    json_option,
    load_cli_settings,
    parse_age,
    set_option,
    store_option,
    write_json,
)
from .errors import ConfigError

if TYPE_CHECKING:
    from .model import BatchReport, RunResult


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="preprocess")  # not from metadata: a source checkout
# with its .egg-info beside an installed copy has two distributions of the name, which click refuses
def cli() -> None:
    """Sort, compress, index and check genomic files into a content-addressed store.

    Every command that reads settings takes --set KEY=VALUE (repeatable); `config` shows the settings
    in effect and where each came from.
    """


@cli.command()
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@store_option
@cluster_options
@json_option("batch report")
@click.option("--retry-failed", "retry", metavar="REPORT.json",
              help="Only the rows that failed in this earlier report.")
@click.option("--report", "report_path", metavar="HTML", type=click.Path(dir_okay=False, path_type=Path),
              help="Save Dask's performance report of the run (written only when something was built).")
def batch(manifest: Path, store: str | None, profile: str | None, address: str | None, workers: int | None,
          json_path: str | None, retry: str | None, report_path: Path | None) -> None:
    """Build every row of a catalogue CSV.

    Columns: id, access_url and format (may be empty: inferred from the name) required; md5, size,
    filename, and for a CRAM reference (its FASTA, .fai beside it) and reference_md5, optional; any
    other column is kept in the document's extra. Exit 0 all succeeded, 1 some failed, 2 usage.
    """
    from .catalog import read_catalog
    from .runs import failed_ids, select

    settings = load_cli_settings(store, profile, address, workers)
    docs = read_catalog(manifest)
    if retry:
        docs = select(docs, failed_ids(retry))
        click.echo(f"retrying {len(docs)} row(s) that failed in {retry}", err=True)
    options = {"manifest": str(manifest), "store": settings.store.url, "cluster": settings.cluster.profile,
               "address": settings.cluster.address, "workers": workers, "json": json_path, "retry_failed": retry}
    finish(_run(docs, settings, options, report_path), json_path)


def _hash_early(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A local SOURCE without --md5 starts being hashed as soon as both are read (both eager: before any
    other option), on a thread, while the settings and the modules a build needs load: the plan and the
    build take that hash (digests) while the file keeps its state. With --md5 nothing is read unless the
    key is not cached, and then by the build, in one pass."""
    seen = ctx.meta.setdefault("preprocess.early-hash", {})
    seen[param.name] = value
    source = seen.get("source")
    if len(seen) == 2 and seen["md5"] is None and source and "://" not in source:
        from . import digests

        digests.start(Path(source).expanduser(), sha256=True)
    return value


@cli.command("run")
@click.argument("source", is_eager=True, callback=_hash_early)
@click.option("--format", "fmt", help="File format (inferred from the name when omitted).")
@click.option("--md5", is_eager=True, callback=_hash_early, help="Expected md5 of the source; a mismatch is an "
              "input error.")
@click.option("--id", "doc_id", help="Identifier for the report (default: the file name).")
@store_option
@cluster_options
@json_option("batch report")
def run_one(source: str, fmt: str | None, md5: str | None, doc_id: str | None, store: str | None,
            profile: str | None, address: str | None, workers: int | None, json_path: str | None) -> None:
    """Build one file given by path or URL."""
    settings = load_cli_settings(store, profile, address, workers)
    name = source.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    doc = {"id": doc_id or name or source, "access_url": source, "format": fmt, "md5": md5}
    finish(_run([doc], settings), json_path)


@cli.command("mirror")
@click.argument("source")
@click.argument("destination")
@json_option("mirror report")
@click.option("--create", is_flag=True, help="Create the destination's bucket or container when it does not exist.")
@set_option
def mirror_stores(source: str, destination: str, json_path: str | None, create: bool) -> None:
    """Copy committed artifacts SOURCE has and DESTINATION lacks, verifying each sha256; manifests last."""
    from .config import load_settings
    from .mirror import mirror

    report = mirror(source, destination, settings=load_settings(), create=create)
    text = report.to_json()
    if json_path:
        write_json(text, json_path)
    if json_path != "-":
        if report.created:
            click.echo(f"created {report.destination}")
        click.echo(f"copied {len(report.copied)}, skipped {len(report.skipped)} (already there), "
                   f"refused {len(report.refused)}: {report.source} -> {report.destination}")
        for key, why in report.refused.items():
            click.echo(f"refused {key}: {why}", err=True)
    sys.exit(1 if report.refused else 0)


@cli.command("sign")
@click.argument("uri")
@click.option("--expires", default=3600, show_default=True, type=click.IntRange(min=1),
              help="Seconds the URL stays valid.")
@click.option("--user-delegation", is_flag=True,
              help="Azure: a user-delegation SAS (Entra ID) even when an account key is configured.")
@set_option
def sign_uri(uri: str, expires: int, user_delegation: bool) -> None:
    """Print a time-limited URL for an artifact that a genome browser can read by range (exit 1 when
    the store does not hold it)."""
    from .api import sign
    from .errors import StoreError

    try:
        click.echo(sign(uri, expires, delegation=user_delegation))
    except StoreError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@cli.command("gc")
@click.argument("manifests", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@store_option
@click.option("--older-than", default="24h", show_default=True, metavar="AGE",
              help="Only what is older than this (e.g. 30m, 24h, 7d), so running commits are left alone.")
@click.option("--delete", is_flag=True, help="Remove the debris, and with catalogue CSVs the superseded keys "
              "(without it, nothing is removed).")
@click.option("--orphans", is_flag=True, help="With --delete and catalogue CSVs: also remove the keys no row "
              "names (a partial catalogue names only some documents: check the list first).")
@click.option("--dry-run", is_flag=True, help="List what --delete would remove; remove nothing.")
def gc_store(manifests: tuple[Path, ...], store: str | None, older_than: str, delete: bool, orphans: bool,
             dry_run: bool) -> None:
    """List, and with --delete remove, the debris of interrupted commits: key folders without a
    manifest, temp files, unfinished S3 uploads, a dead split build's parts area.

    Given catalogue CSVs, also the committed keys no row maps to under the current pipeline
    versions: superseded (an older build of a document a row names, by id or source), removed with
    --delete, and orphans (no row names them), removed only with --delete --orphans.
    """
    from .build import open_store
    from .gc import collect, sweep

    if orphans and not (delete and manifests):
        raise click.UsageError("--orphans removes the keys no catalogue row names: give catalogue CSVs and --delete")
    settings = load_cli_settings(store, None, None, None)
    artifact_store = open_store(settings)
    artifact_store.check()
    remove = delete and not dry_run
    verb = "removed" if remove else "would remove"
    age = parse_age(older_than)
    if manifests:
        from .catalog import read_catalog

        docs = [doc for path in manifests for doc in read_catalog(path)]
        keys = sweep(artifact_store, docs, settings, age, delete=remove, orphans=orphans)
        for key in keys.superseded:
            click.echo(f"{verb} superseded key {artifact_store.location(artifact_store.key_dir(key))}")
        for key in keys.orphans:
            shown = artifact_store.location(artifact_store.key_dir(key))
            click.echo(f"{verb} orphan key {shown}" if orphans else f"orphan key {shown} (kept)")
        click.echo(f"superseded: {len(keys.superseded)} key(s), {keys.superseded_bytes} bytes")
        click.echo(f"orphans (no row names them): {len(keys.orphans)} key(s), {keys.orphan_bytes} bytes"
                   + ("" if orphans else ", kept: --delete --orphans removes them"))
        click.echo(f"too young to collect ({keys.too_young})")
    report = collect(artifact_store, age, dry_run=not remove)
    for path in report.removed:
        click.echo(f"{verb} {path}")
    for upload in report.aborted_uploads:
        click.echo(f"{'aborted' if remove else 'would abort'} upload {upload}")
    click.echo(f"debris: {len(report.removed)} file(s), {report.debris_bytes} bytes, "
               f"{len(report.aborted_uploads)} unfinished upload(s): {report.store}")
    if not remove:
        click.echo("nothing removed" + ("" if dry_run else ": give --delete to remove"))


@cli.command("reindex")
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@store_option
@cluster_options
@json_option("reindex report (each row's action, status, key, error)")
@click.option("--verify", is_flag=True, help="Also read every artifact back and check its size and sha256.")
@click.option("--dry-run", is_flag=True, help="Print the plan with counts; change nothing.")
@click.option("--wait", default=0, type=click.FloatRange(min=0), show_default=True, metavar="SECONDS",
              help="Wait this long for another reindex of the store to finish before giving up (exit 3).")
@click.option("--lease-expiry", default="1h", show_default=True, metavar="AGE",
              help="A lease not renewed for this long is taken over (a live run renews it every third).")
@click.option("--plan-from", type=click.Choice(["auto", "shards", "keys"]), default="auto", show_default=True,
              help="List each key folder, or each <layout>/<xx>/ shard (auto: shards for 256+ rows on object stores).")
def reindex_catalogue(manifest: Path, store: str | None, profile: str | None, address: str | None,
                      workers: int | None, json_path: str | None, verify: bool, dry_run: bool, wait: float,
                      lease_expiry: str, plan_from: str) -> None:
    """Rebuild what is stale in the store for a catalogue CSV (columns as for batch).

    Each row gets an action: ok (nothing to do), build (no build under the current key), missing (an
    artifact is gone), corrupt (--verify: bytes differ), hash (no md5 and a remote source: a worker
    fetches and hashes it) or invalid (the row is malformed); only what is needed is done.
    """
    from tqdm import tqdm

    from .catalog import read_catalog
    from .lease import LeaseHeld, LeaseLost
    from .reindex import reindex

    settings = load_cli_settings(store, profile, address, workers)
    docs = read_catalog(manifest)
    options = {"manifest": str(manifest), "store": settings.store.url, "cluster": settings.cluster.profile,
               "address": settings.cluster.address, "workers": workers, "json": json_path, "dry_run": dry_run,
               "wait": wait, "lease_expiry": lease_expiry, "plan_from": plan_from}
    bar = tqdm(unit="file", file=sys.stderr, disable=None, dynamic_ncols=True, desc="building")

    def announce(client: Any) -> None:
        if getattr(client, "dashboard_link", None):
            bar.write(f"dashboard: {client.dashboard_link}", file=sys.stderr)

    # systemd and ECS stop a task with SIGTERM: exit through the finally blocks, so the lease is released.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    on_lost = _interrupt_on_lost()
    try:
        report = reindex(docs, settings=settings, verify=verify, dry_run=dry_run, wait=wait,
                         lease_expiry=parse_age(lease_expiry), plan_from=plan_from,  # type: ignore[arg-type]
                         progress=lambda _: bar.update(1), on_client=announce, options=options,
                         on_wait=lambda message: bar.write(message, file=sys.stderr), on_lost=on_lost)
    except (LeaseHeld, LeaseLost) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(3)
    finally:
        bar.close()
    finish(report, json_path, _plan_table)


def _interrupt_on_lost() -> Any:
    """A callback that stops this (main) thread at once, even mid-build, when the lease is lost:
    SIGUSR1 to it, whose handler raises LeaseLost (reindex() replaces it with the full message)."""
    import threading

    from .lease import LeaseLost

    def raise_lost(*_: Any) -> None:
        raise LeaseLost("the lease was lost")

    signal.signal(signal.SIGUSR1, raise_lost)
    main = threading.main_thread().ident
    return lambda: signal.pthread_kill(main, signal.SIGUSR1) if main is not None else None


def _plan_table(report: Any) -> str:
    lines = []
    for r in report.results:
        if r.action == "ok" and not r.hashed and r.status != "failed":
            continue  # a nightly run of a large catalogue prints only what moved
        detail = f"{r.error.class_}: {r.error.message}" if r.error else (r.reason or "")
        lines.append(f"{r.id:<24} {r.action:<8} {r.status:<11} {(r.key or '-')[:12]:<12} {detail}")
    counts = report.counts
    actions = ", ".join(f"{n} {a}" for a, n in counts["actions"].items() if n)
    status = ", ".join(f"{n} {s}" for s, n in counts["status"].items() if n)
    hashed = sum(r.hashed for r in report.results)
    lines.append(f"\n{len(report.results)} row(s): {actions or 'none'}"
                 + (f"; {status}" if status else "")
                 + (f"; {hashed} without md5 hashed on the client" if hashed else "")
                 + (" (dry run: nothing changed)" if report.dry_run else "")
                 + f"; planned from {report.planned_from} listings; store {report.store}")
    if report.lease and report.lease.get("taken_over"):
        held = report.lease["taken_over"]
        lines.append(f"took over an expired lease (run {held.get('run')} on {held.get('host')}, "
                     f"expired {held.get('expires')})")
    return "\n".join(lines)


@cli.command("status")
@click.argument("manifest", required=False, type=click.Path(dir_okay=False, path_type=Path))
@store_option
@click.option("--last", default=5, show_default=True, type=click.IntRange(min=0), help="How many runs to show.")
@json_option("status")
def store_status(manifest: Path | None, store: str | None, last: int, json_path: str | None) -> None:
    """Keys per format, bytes, the last runs and current failures; per row with a catalogue CSV."""
    from .catalog import read_catalog
    from .status import status

    settings = load_cli_settings(store, "sync", None, None)
    docs = read_catalog(manifest) if manifest else None
    found = status(docs, settings=settings, last=last)
    if json_path:
        write_json(found.to_json(), json_path)
    if json_path == "-":
        return
    kinds = ", ".join(f"{n} {kind}" for kind, n in found.keys.items()) or "none"
    click.echo(f"store {found.store}: {sum(found.keys.values())} key(s) ({kinds}), {found.bytes} bytes"
               + (f", {found.uncommitted} uncommitted folder(s) (gc)" if found.uncommitted else ""))
    click.echo("last runs:" if found.runs else "no runs recorded")
    for run in found.runs:
        counts = run.get("counts") or {}
        flat = counts.get("status", counts)
        text = ", ".join(f"{n} {s}" for s, n in flat.items() if n)
        click.echo(f"  {run['started']}  {run['command']:<8} {run['run']}  {run.get('host')}  {text}")
    click.echo(f"failing now: {len(found.failures)}")
    for failure in found.failures:
        error = failure.get("error") or {}
        click.echo(f"  {failure['id']}: {error.get('class')}: {error.get('message')} (run {failure['run']})")
    if found.rows is not None:
        states: dict[str, int] = {}
        for row in found.rows:
            states[row.state] = states.get(row.state, 0) + 1
            if row.state != "current":
                click.echo(f"  {row.id:<24} {row.state:<8} {row.why or ''}")
        click.echo("rows: " + ", ".join(f"{n} {s}" for s, n in states.items()))


def _run(docs: list[Any], settings: Any, record: dict[str, Any] | None = None,
         report_path: Path | None = None) -> BatchReport:
    from .api import run_many

    bar = _progress(len(docs))

    def progress(result: RunResult) -> None:
        bar.update(1)
        if result.status == "failed":
            bar.write(f"failed: {result.id}: {result.error.class_ if result.error else ''}", file=sys.stderr)

    def announce(client: Any) -> None:
        link = getattr(client, "dashboard_link", None)
        if link:
            bar.write(f"dashboard: {link}", file=sys.stderr)

    try:
        report = run_many(docs, settings=settings, progress=progress, on_client=announce, record=record,
                          report=report_path)
        if report_path is not None:
            bar.write(f"performance report: {report.performance_report}" if report.performance_report else
                      f"performance report: not written to {report_path}, nothing needed a cluster", file=sys.stderr)
        return report
    finally:
        bar.close()


class _Lines:
    """What _run asks of a progress bar, where none is drawn: its lines go to stderr as they are."""

    def update(self, n: int = 1) -> None:
        pass

    def write(self, text: str, file: Any = None) -> None:
        click.echo(text, err=True)

    def close(self) -> None:
        pass


def _progress(total: int) -> Any:
    """A tqdm bar on a terminal when there are several files (tqdm's import, 13 ms, is paid only then)."""
    if total < 2 or not sys.stderr.isatty():
        return _Lines()
    from tqdm import tqdm

    return tqdm(total=total, unit="file", file=sys.stderr, dynamic_ncols=True)


# the commands kept in modules of their own
for _command in (*cli_browse.COMMANDS, *cli_setup.COMMANDS, *cli_trust.COMMANDS):
    cli.add_command(_command)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    finally:
        # Every object alive now lives until the process ends: out of the collector's sight, the final
        # collection at exit no longer walks the modules' objects (25-60 ms of every command's exit).
        gc.freeze()
