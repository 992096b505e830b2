"""python -m preprocess {run,batch,reindex,status,history,mirror,sign,cors,view,gc,doctor,keygen,cluster,
config}: parse options, call the API, report, exit.

Settings come from preprocess.yaml, dask's YAML files, DASK_PREPROCESS__* variables and, on top of them
all, `--set KEY=VALUE` and the explicit flags (`--store`, `--cluster`, …); `config` shows which won.

Exit codes: 0 every file succeeded, 1 some failed (history --verify: the chain is broken), 2 a usage
or configuration error, 3 (reindex) another run holds the store's lease, or took it over from this one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .errors import ConfigError
from .model import BatchReport, RunResult


def _apply_set(ctx: click.Context, _: click.Parameter, values: tuple[str, ...]) -> None:
    """`--set KEY=VALUE…`: applied to dask.config for the whole command, so every setting it loads (and
    the workers of a local cluster it starts) sees them; kept in ctx.meta for `config` to name them."""
    import dask.config

    from .config import parse_assignment

    flags = ctx.meta.setdefault("preprocess.set", {})
    for text in values:
        key, value = parse_assignment(text)
        flags[key] = (value, f"--set {key}")  # the value may be a secret: `config` shows it hidden
    if flags:
        ctx.with_resource(dask.config.set({f"preprocess.{k}": v for k, (v, _) in flags.items()}))


def _set_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--set", "assignments", metavar="KEY=VALUE", multiple=True, expose_value=False,
                        callback=_apply_set,
                        help="Override a setting (repeatable), e.g. --set threads=4 --set sort-memory=2G; beats "
                             "YAML and DASK_PREPROCESS__* variables (see `python -m preprocess config`).")(fn)


def _store_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--store URL, and --set KEY=VALUE: every command that reads settings has both."""
    fn = _set_option(fn)
    return click.option("--store", metavar="URL",
                        help="Artifact store: a local path, file://, s3://bucket/prefix, az://container/prefix.")(fn)


def _json_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--json PATH on every command that has a report: '-' (or --json alone) prints it instead."""
    return click.option("--json", "json_path", metavar="PATH", is_flag=False, flag_value="-", callback=_no_csv,
                        help=f"Write the {what} as JSON to PATH ('-' for standard output, instead of the table).")


def _no_csv(_: click.Context, __: click.Parameter, path: str | None) -> str | None:
    """Refused before any work: JSON never overwrites a CSV (`status --json catalogue.csv` once meant
    "this catalogue's status, as JSON")."""
    if path and path != "-" and path.lower().endswith(".csv") and Path(path).exists():
        raise click.BadParameter(f"{path} is a CSV file; JSON is not written over it. For a catalogue's "
                                 "report on standard output: CATALOGUE.csv --json -")
    return path


def _cluster_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--cluster", "profile", type=click.Choice(["auto", "local", "sync", "address", "fargate"]),
                      help="Where tasks run (default from config: auto, which builds one file in this process "
                           "and starts a local cluster for several).")(fn)
    fn = click.option("--address", metavar="ADDR", help="Dask scheduler address for --cluster address.")(fn)
    return click.option("--workers", type=click.IntRange(min=1), help="Worker processes for a local cluster.")(fn)


def _write_json(text: str, json_path: str) -> None:
    """Print `text` for '-', else write it to the path."""
    if json_path == "-":
        click.echo(text)
    else:
        Path(json_path).write_text(text + "\n")


def _settings(store: str | None, profile: str | None, address: str | None, workers: int | None) -> Any:
    from .config import load_settings

    overrides = {"store.url": store, "cluster.profile": profile, "cluster.address": address,
                 "cluster.n-workers": workers}
    return load_settings(**overrides)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="preprocess", prog_name="preprocess")
def cli() -> None:
    """Sort, compress, index and check genomic files into a content-addressed store.

    Every command that reads settings takes --set KEY=VALUE (repeatable); `config` shows the settings
    in effect and where each came from.
    """


@cli.command()
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@_store_option
@_cluster_options
@_json_option("batch report")
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

    settings = _settings(store, profile, address, workers)
    docs = read_catalog(manifest)
    if retry:
        docs = select(docs, failed_ids(retry))
        click.echo(f"retrying {len(docs)} row(s) that failed in {retry}", err=True)
    options = {"manifest": str(manifest), "store": settings.store.url, "cluster": settings.cluster.profile,
               "address": settings.cluster.address, "workers": workers, "json": json_path, "retry_failed": retry}
    _finish(_run(docs, settings, options, report_path), json_path)


@cli.command("run")
@click.argument("source")
@click.option("--format", "fmt", help="File format (inferred from the name when omitted).")
@click.option("--md5", help="Expected md5 of the source; a mismatch is an input error.")
@click.option("--id", "doc_id", help="Identifier for the report (default: the file name).")
@_store_option
@_cluster_options
@_json_option("batch report")
def run_one(source: str, fmt: str | None, md5: str | None, doc_id: str | None, store: str | None,
            profile: str | None, address: str | None, workers: int | None, json_path: str | None) -> None:
    """Build one file given by path or URL."""
    settings = _settings(store, profile, address, workers)
    name = source.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    doc = {"id": doc_id or name or source, "access_url": source, "format": fmt, "md5": md5}
    _finish(_run([doc], settings), json_path)


@cli.command("mirror")
@click.argument("source")
@click.argument("destination")
@_json_option("mirror report")
@click.option("--create", is_flag=True, help="Create the destination's bucket or container when it does not exist.")
@_set_option
def mirror_stores(source: str, destination: str, json_path: str | None, create: bool) -> None:
    """Copy committed artifacts SOURCE has and DESTINATION lacks, verifying each sha256; manifests last."""
    from .config import load_settings
    from .mirror import mirror

    report = mirror(source, destination, settings=load_settings(), create=create)
    text = report.model_dump_json(indent=2)
    if json_path:
        _write_json(text, json_path)
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
@_set_option
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
@_store_option
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
    manifest, temp files, unfinished S3 uploads.

    Given catalogue CSVs, also the committed keys no row maps to under the current pipeline
    versions: superseded (an older build of a document a row names, by id or source), removed with
    --delete, and orphans (no row names them), removed only with --delete --orphans.
    """
    from .build import open_store
    from .gc import collect, sweep

    if orphans and not (delete and manifests):
        raise click.UsageError("--orphans removes the keys no catalogue row names: give catalogue CSVs and --delete")
    settings = _settings(store, None, None, None)
    artifact_store = open_store(settings)
    artifact_store.check()
    remove = delete and not dry_run
    verb = "removed" if remove else "would remove"
    age = _age(older_than)
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


@cli.command("cluster")
@click.option("--profile", type=click.Choice(["fargate"]), required=True, help="The cluster profile to resolve.")
@click.option("--dry-run", is_flag=True, help="Print the resolved arguments and warnings as JSON; call nothing.")
@click.option("--teardown", metavar="NAME", help="Delete what cluster NAME created (left by a killed run).")
@_store_option
def cluster_plan(profile: str, dry_run: bool, teardown: str | None, store: str | None) -> None:
    """Show the cluster a batch would start (arguments resolved from config, the traps that apply), or
    delete what an earlier one left behind. `batch --cluster fargate` starts and deletes its own."""
    import json

    from . import fargate

    settings = _settings(store, profile, None, None)
    if dry_run == bool(teardown):
        raise click.UsageError("give one of --dry-run or --teardown NAME")
    if dry_run:
        click.echo(json.dumps(fargate.plan(settings.cluster.fargate, str(settings.store.url)), indent=2))
        return
    options = settings.cluster.fargate
    for item in fargate.teardown(str(teardown), region_name=options.get("region_name"),
                                 cluster_arn=options.get("cluster_arn")):
        click.echo(f"deleted {item}")


@cli.command("config")
@_store_option
@_cluster_options
@_json_option("settings")
@click.pass_context
def show_config(ctx: click.Context, store: str | None, profile: str | None, address: str | None,
                workers: int | None, json_path: str | None) -> None:
    """Show the settings in effect and where each came from: default (preprocess.yaml), YAML (a file
    in dask's config paths), environment (DASK_PREPROCESS__…) or flag; credentials hidden."""
    import json

    from .config import describe_settings

    flags = dict(ctx.meta.get("preprocess.set", {}))
    for key, value, flag in (("store.url", store, "--store"), ("cluster.profile", profile, "--cluster"),
                             ("cluster.address", address, "--address"), ("cluster.n-workers", workers, "--workers")):
        if value is not None:
            flags[key] = (value, f"{flag} {value}")
    found = describe_settings(flags)
    if json_path:
        _write_json(json.dumps([s.model_dump() for s in found], indent=2), json_path)
    if json_path == "-":
        return
    width = max(len(s.key) for s in found)
    for s in found:
        shown = s.value if isinstance(s.value, str) else json.dumps(s.value)
        click.echo(f"{s.key:<{width}}  {shown:<24} {s.source}{' ' + s.where if s.where else ''}")


def _age(text: str) -> Any:
    from datetime import timedelta

    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise click.BadParameter(f"{text!r}: expected a number and a unit (s, m, h, d), e.g. 24h")
    return timedelta(**{units[text[-1]]: int(text[:-1])})


@cli.command()
@_store_option
def doctor(store: str | None) -> None:
    """Check the tools, the Python packages and the store a build needs; exit 2 if something is missing."""
    import importlib.metadata
    import shutil

    from pipelines.pins import TOOLS

    from . import __version__, shell

    click.echo(f"ok  {'preprocess':12} {__version__} ({Path(__file__).parent})")
    problems = 0
    for tool in ("samtools", "bgzip", "tabix", "gffread", "sort", "awk", "gzip", "bash"):
        found = shutil.which(tool)
        problems += not found
        seen = shell.version(tool) if found else ""
        pinned = TOOLS.get(tool, seen)
        click.echo(f"{'ok ' if found else 'MISSING'} {tool:12} {seen}"
                   + ("" if seen == pinned else f"  (differs from {pinned!r}, which the pipelines' output pins were "
                                                "made with: keys built here may name other bytes)"))
    for package in ("pysam", "dask", "distributed", "fsspec", "s3fs", "adlfs"):
        try:
            click.echo(f"ok  {package:12} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            optional = package in ("s3fs", "adlfs")
            problems += not optional
            click.echo(f"{'-- ' if optional else 'MISSING'} {package:12} {'(optional)' if optional else ''}")
    settings = _settings(store, None, None, None)
    from .build import open_store

    try:
        open_store(settings).check()
        click.echo(f"ok  {'store':12} {settings.store.url}")
    except ConfigError as exc:
        problems += 1
        click.echo(f"FAIL {'store':11} {exc}")
    sys.exit(2 if problems else 0)


def _run(docs: list[Any], settings: Any, record: dict[str, Any] | None = None,
         report_path: Path | None = None) -> BatchReport:
    from tqdm import tqdm

    from .api import run_many

    bar = tqdm(total=len(docs), unit="file", file=sys.stderr, disable=None, dynamic_ncols=True)

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


def _finish(report: Any, json_path: str | None, table: Callable[[Any], str] | None = None) -> None:
    """Print the report (as JSON for `--json -`, else as a table), save it to `json_path`, exit 0 or 1."""
    if json_path:
        _write_json(report.to_json(), json_path)
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


from . import cli_browse, cli_catalogue, cli_trust  # noqa: E402,F401 - register cors, view, reindex, status, history, keygen


def main() -> None:
    try:
        cli(standalone_mode=True)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
