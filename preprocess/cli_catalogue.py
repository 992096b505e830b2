"""python -m preprocess {reindex,status}: operating a catalogue on a schedule. A shell over reindex.py
and status.py, registered on the group in cli.py."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import click

from .cli_options import cluster_options, finish, json_option, load_cli_settings, parse_age, store_option, write_json


@click.command("reindex")
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


@click.command("status")
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
        write_json(found.model_dump_json(indent=2), json_path)
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


COMMANDS = (reindex_catalogue, store_status)  # added to the `preprocess` group by cli.py
