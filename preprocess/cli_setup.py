"""python -m preprocess {config,cluster,doctor}: the commands that show the setup a build would use
(settings, a Fargate cluster's arguments, tools and store), registered on the group in cli.py."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .cli_options import cluster_options, json_option, load_cli_settings, store_option, write_json
from .errors import ConfigError


@click.command("cluster")
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


@click.command("config")
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
        write_json(json.dumps([s.to_dict() for s in found], indent=2), json_path)
    if json_path == "-":
        return
    width = max(len(s.key) for s in found)
    for s in found:
        shown = s.value if isinstance(s.value, str) else json.dumps(s.value)
        click.echo(f"{s.key:<{width}}  {shown:<24} {s.source}{' ' + s.where if s.where else ''}")


@click.command()
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


COMMANDS = (cluster_plan, show_config, doctor)  # added to the `preprocess` group by cli.py
