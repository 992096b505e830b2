"""python -m preprocess {run,batch,reindex,status,history,mirror,sign,gc,doctor,keygen,cluster,config}: parse
options, call the API, report, exit.

Settings come from preprocess.yaml, dask's YAML files, DASK_PREPROCESS__* variables and, on top of them
all, `--set KEY=VALUE` and the explicit flags (`--store`, `--cluster`, …); `config` shows which won.

Exit codes: 0 every file succeeded, 1 some failed (history --verify: the chain is broken), 2 a usage
or configuration error, 3 (reindex) another run holds the store's lease, or took it over from this one.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from . import cli_catalogue, cli_trust
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
from .model import BatchReport, RunResult


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="preprocess", prog_name="preprocess")
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


@cli.command("run")
@click.argument("source")
@click.option("--format", "fmt", help="File format (inferred from the name when omitted).")
@click.option("--md5", help="Expected md5 of the source; a mismatch is an input error.")
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
    text = report.model_dump_json(indent=2)
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
@set_option
def sign_uri(uri: str, expires: int) -> None:
    """Print a time-limited URL for an artifact that a genome browser can read by range."""
    from .api import sign

    click.echo(sign(uri, expires))


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
    manifest, temp files, unfinished S3 uploads.

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


@cli.command("cluster")
@click.option("--profile", type=click.Choice(["fargate"]), required=True, help="The cluster profile to resolve.")
@click.option("--dry-run", is_flag=True, help="Print the resolved arguments and warnings as JSON; call nothing.")
@click.option("--teardown", metavar="NAME", help="Delete what cluster NAME created (left by a killed run).")
@store_option
def cluster_plan(profile: str, dry_run: bool, teardown: str | None, store: str | None) -> None:
    """Show the cluster a batch would start (arguments resolved from config, the traps that apply), or
    delete what an earlier one left behind. `batch --cluster fargate` starts and deletes its own."""
    import json

    from . import fargate

    settings = load_cli_settings(store, profile, None, None)
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
@store_option
@cluster_options
@json_option("settings")
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
        write_json(json.dumps([s.model_dump() for s in found], indent=2), json_path)
    if json_path == "-":
        return
    width = max(len(s.key) for s in found)
    for s in found:
        shown = s.value if isinstance(s.value, str) else json.dumps(s.value)
        click.echo(f"{s.key:<{width}}  {shown:<24} {s.source}{' ' + s.where if s.where else ''}")


@cli.command()
@store_option
def doctor(store: str | None) -> None:
    """Check the tools, the Python packages and the store a build needs; exit 2 if something is missing."""
    import importlib.metadata
    import shutil

    from . import __version__, registry, shell

    click.echo(f"ok  {'preprocess':12} {__version__} ({Path(__file__).parent})")
    problems = 0
    pins = registry.pinned_tools()
    for tool in ("samtools", "bgzip", "tabix", "gffread", "sort", "awk", "gzip", "bash"):
        found = shutil.which(tool)
        problems += not found
        seen = shell.version(tool) if found else ""
        pinned = pins.get(tool, seen)
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
    settings = load_cli_settings(store, None, None, None)
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


for _command in (*cli_catalogue.COMMANDS, *cli_trust.COMMANDS):  # commands kept in modules of their own
    cli.add_command(_command)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
