"""python -m preprocess {cors,view}: opening a store's artifacts in a genome browser. A shell over
cloud.py (through the store) and view.py, registered on the group in cli.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .cli import _settings, _store_option, cli
from .errors import StoreError


@cli.command("cors")
@click.argument("store_url", metavar="STORE")
@click.option("--allow-origin", "origins", multiple=True, required=True, metavar="ORIGIN",
              help="A page origin (scheme://host[:port]) allowed to read by range; repeat for more. "
                   "'*' (any page) only when given by name.")
@click.option("--dry-run", is_flag=True, help="Show the rules that would be set; change nothing.")
def cors(store_url: str, origins: tuple[str, ...], dry_run: bool) -> None:
    """Set the CORS rule a genome-browser page needs on an S3 bucket or an Azure account's blob service:
    GET and HEAD with a Range header, Content-Range, Content-Length, Accept-Ranges and ETag exposed.

    Idempotent: the rule it wrote before is replaced (its origins become ORIGIN…); others are kept.
    """
    from .build import open_store
    from .cloud import check_origins

    try:
        allowed = check_origins(origins)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--allow-origin") from None
    store = open_store(_settings(None, None, None, None), store_url)
    try:
        change = store.set_cors(allowed, dry_run=dry_run)
    except StoreError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps(change.rules, indent=2))
    verb = ("would set" if change.changed else "already set") if dry_run else ("set" if change.applied
                                                                               else "already set")
    click.echo(f"{verb}: CORS rule for {', '.join(allowed)} on {change.target}", err=True)


@cli.command("view")
@click.argument("source", metavar="CATALOGUE.csv|REPORT.json", type=click.Path(dir_okay=False, path_type=Path))
@_store_option
@click.option("--igv", "igv_path", metavar="PATH", type=click.Path(dir_okay=False, path_type=Path),
              help="Write an igv.js session (JSON).")
@click.option("--gosling", "gosling_path", metavar="PATH", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a Gosling spec (JSON).")
@click.option("--html", "html_path", metavar="PATH", type=click.Path(dir_okay=False, path_type=Path),
              help="Write one page that opens the tracks in igv.js and Gosling.")
@click.option("--expires", default=3600 * 12, show_default=True, type=click.IntRange(min=1),
              help="Seconds the signed URLs stay valid.")
@click.option("--genome", metavar="ID", help="A genome igv.js and Gosling know by name (e.g. hg38), when no "
              "CRAM names its reference FASTA.")
@click.option("--locus", metavar="REGION", help="Where the page opens (e.g. chr1:1-10000).")
def view(source: Path, store: str | None, igv_path: Path | None, gosling_path: Path | None, html_path: Path | None,
         expires: int, genome: str | None, locus: str | None) -> None:
    """Write a genome-browser session of the built rows of a catalogue (what is in the store now) or of
    a batch report: signed data and index URLs, each track named for its document."""
    from . import view as views

    settings = _settings(store, None, None, None)
    session = views.session(source, settings=settings, expires=expires, genome=genome, locus=locus)
    for skipped in session.skipped:
        click.echo(f"skipped {skipped}", err=True)
    if igv_path:
        igv_path.write_text(json.dumps(session.igv(), indent=2) + "\n")
    if gosling_path:
        gosling_path.write_text(json.dumps(session.gosling(), indent=2) + "\n")
    if html_path:
        html_path.write_text(session.html())
    if not (igv_path or gosling_path or html_path):
        click.echo(json.dumps(session.igv(), indent=2))
    click.echo(f"{len(session.tracks)} track(s), {len(session.skipped)} skipped; URLs valid for {expires}s",
               err=True)
    sys.exit(0 if session.tracks else 1)
