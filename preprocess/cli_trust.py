"""python -m preprocess {history,keygen}: the store's run history (a hash chain, runs.py) and the
key pair that signs manifests (signing.py). Registered on the group in cli.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from .cli_options import load_cli_settings, store_option


@click.command("history")
@store_option
@click.option("--last", type=click.IntRange(min=0), metavar="N", help="Only the last N runs (default: all).")
@click.option("--json", "json_path", metavar="PATH", help="Write the runs as JSON to PATH ('-' for standard output).")
@click.option("--verify", is_flag=True, help="Check the hash chain of the run records: exit 0 when whole, 1 naming "
              "the first record edited, removed or inserted.")
def history(store: str | None, last: int | None, json_path: str | None, verify: bool) -> None:
    """List the runs recorded in the store (oldest first), or verify that their chain is whole."""
    from .build import open_store
    from .runs import list_records, verify_chain

    settings = load_cli_settings(store, None, None, None)
    artifact_store = open_store(settings)
    artifact_store.check()
    checked = verify_chain(artifact_store) if verify else None
    runs = [_summary(record) for record in list_records(artifact_store, last=last)]
    data: dict[str, Any] = {"store": artifact_store.url, "runs": runs}
    if checked is not None:
        data["verify"] = {"ok": checked.ok, "records": checked.records, "before_chain": checked.before_chain,
                          "problem": checked.problem}
    if json_path == "-":
        click.echo(json.dumps(data, indent=2))
    else:
        if json_path:
            Path(json_path).write_text(json.dumps(data, indent=2) + "\n")
        if checked is None:
            for run in runs:
                click.echo(_line(run))
            click.echo(f"{len(runs)} run(s); store {artifact_store.url}")
        elif checked.ok:
            older = f"; {checked.before_chain} written before the chain, not covered" if checked.before_chain else ""
            click.echo(f"chain whole: {checked.records} record(s){older}; store {artifact_store.url}")
    if checked is not None and not checked.ok:
        click.echo(f"error: run history of {artifact_store.url} is not whole: {checked.problem}", err=True)
        sys.exit(1)


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    fields = ("seq", "run", "command", "started", "finished", "host", "counts", "sha256", "previous")
    return {name: record.get(name) for name in fields}


def _line(run: dict[str, Any]) -> str:
    counts = run.get("counts") or {}
    flat = counts.get("status", counts)
    text = ", ".join(f"{n} {s}" for s, n in flat.items() if n) if isinstance(flat, dict) else ""
    seq = run.get("seq")
    return (f"{seq if seq is not None else '-':>6}  {run.get('started')}  {run.get('command') or '-':<8} "
            f"{run.get('run')}  {run.get('host')}  {text}")


@click.command("keygen")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def keygen(path: Path) -> None:
    """Write an Ed25519 key pair for signed manifests: PATH (private, mode 0600) and PATH.pub."""
    from .signing import keygen as write_pair

    private, public = write_pair(path)
    click.echo(f"wrote {private} (private: keep it where the builds run, never share it) and {public}")
    click.echo(f"sign with:   DASK_PREPROCESS__STORE__SIGNING_KEY={private.resolve()}")
    click.echo(f"verify with: DASK_PREPROCESS__STORE__VERIFY_KEY={public.resolve()}")


COMMANDS = (history, keygen)  # added to the `preprocess` group by cli.py
