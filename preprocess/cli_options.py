"""The options and report helpers every command of the CLI shares (cli, cli_setup, cli_trust):
one definition each, so a flag reads the same in every command."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from .model import BatchReport


def apply_set(ctx: click.Context, _: click.Parameter, values: tuple[str, ...]) -> None:
    """`--set KEY=VALUE…`: applied over every other source for the whole command, so every setting it
    loads (and the workers of a local cluster it starts) sees them; kept in ctx.meta for `config` to
    name them."""
    from .config import flags_applied, parse_assignment

    flags = ctx.meta.setdefault("preprocess.set", {})
    for text in values:
        key, value = parse_assignment(text)
        flags[key] = (value, f"--set {key}")  # the value may be a secret: `config` shows it hidden
    if flags:
        ctx.with_resource(flags_applied({k: v for k, (v, _) in flags.items()}))


def set_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--set", "assignments", metavar="KEY=VALUE", multiple=True, expose_value=False,
                        callback=apply_set,
                        help="Override a setting (repeatable), e.g. --set threads=4 --set sort-memory=2G; beats "
                             "YAML and DASK_PREPROCESS__* variables (see `python -m preprocess config`).")(fn)


def store_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--store URL, and --set KEY=VALUE: every command that reads settings has both."""
    fn = set_option(fn)
    return click.option("--store", metavar="URL",
                        help="Artifact store: a local path, file://, s3://bucket/prefix, az://container/prefix.")(fn)


def json_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--json PATH on every command that has a report: '-' (or --json alone) prints it instead."""
    return click.option("--json", "json_path", metavar="PATH", is_flag=False, flag_value="-", callback=refuse_csv,
                        help=f"Write the {what} as JSON to PATH ('-' for standard output, instead of the table).")


def refuse_csv(_: click.Context, __: click.Parameter, path: str | None) -> str | None:
    """Refused before any work: JSON never overwrites a CSV (`status --json catalogue.csv` once meant
    "this catalogue's status, as JSON")."""
    if path and path != "-" and path.lower().endswith(".csv") and Path(path).exists():
        raise click.BadParameter(f"{path} is a CSV file; JSON is not written over it. For a catalogue's "
                                 "report on standard output: CATALOGUE.csv --json -")
    return path


def cluster_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--cluster", "profile", type=click.Choice(["auto", "local", "sync", "address", "fargate"]),
                      help="Where tasks run (default from config: auto, which builds one file, or local files "
                           "under 64 MiB in all, in this process and starts a local cluster for more).")(fn)
    fn = click.option("--address", metavar="ADDR", help="Dask scheduler address for --cluster address.")(fn)
    return click.option("--workers", type=click.IntRange(min=1), help="Worker processes for a local cluster.")(fn)


def write_json(text: str, json_path: str) -> None:
    """Print `text` for '-', else write it to the path."""
    if json_path == "-":
        click.echo(text)
    else:
        Path(json_path).write_text(text + "\n")


def load_cli_settings(store: str | None, profile: str | None, address: str | None, workers: int | None) -> Any:
    from .config import load_settings

    overrides = {"store.url": store, "cluster.profile": profile, "cluster.address": address,
                 "cluster.n-workers": workers}
    return load_settings(**overrides)


def parse_age(text: str) -> Any:
    from datetime import timedelta

    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise click.BadParameter(f"{text!r}: expected a number and a unit (s, m, h, d), e.g. 24h")
    return timedelta(**{units[text[-1]]: int(text[:-1])})


def finish(report: Any, json_path: str | None, table: Callable[[Any], str] | None = None) -> None:
    """Print the report (as JSON for `--json -`, else as a table), save it to `json_path`, exit 0 or 1."""
    if json_path:
        write_json(report.to_json(), json_path)
    if json_path != "-":
        click.echo((table or summary_table)(report))
    sys.exit(0 if report.ok else 1)


def summary_table(report: BatchReport) -> str:
    """One line per file (id, status, format, key prefix, first artifact or error), a line per warning
    (a file built with reads no region query reaches), then the counts."""
    rows = [("id", "status", "format", "key", "artifact / error")]
    for r in report.results:
        detail = f"{r.error.class_}: {r.error.message}" if r.error else r.artifacts.get("data", "")
        rows.append((r.id, r.status, r.format or "-", (r.key or "-")[:12], detail))
    widths = [min(40, max(len(row[i]) for row in rows)) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i])[: max(widths[i], 1)] if i < 4 else cell
                       for i, cell in enumerate(row)) for row in rows]
    lines += [f"warning: {w['id']}: {w['warning']}" for w in report.warnings]
    counts = ", ".join(f"{n} {status}" for status, n in report.counts.items() if n)
    lines.append(f"\n{len(report.results)} file(s): {counts or 'nothing to do'}; store {report.store}")
    return "\n".join(lines)
