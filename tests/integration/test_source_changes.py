"""A local source read in place that changes while it is built: the build fails with a SourceError and
nothing is committed, so the bytes a manifest's md5 names are always the bytes that were built."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from preprocess.api import run_many
from tests import samples
from tests.conftest import md5, store_files


def grow_when_run(bin_dir: Path, tool: str, subcommand: str | None, source: Path) -> None:
    """Put a `tool` on PATH that appends 100 lines to `source` once (when called with `subcommand`, if
    given), then runs the real tool: the source changes while the pipeline is building it."""
    real = shutil.which(tool)
    assert real is not None
    only = f'[ "${{1:-}}" = {subcommand} ] && ' if subcommand else ""
    script = bin_dir / tool
    script.write_text("#!/bin/bash\n"
                      f'{only}[ ! -e "$0.done" ] && touch "$0.done" && '
                      f"for i in $(seq 100); do printf 'chr1\\t1\\t2\\n'; done >> {str(source)!r}\n"
                      f'exec {real!r} "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize("fmt, tool, subcommand", [("BED", "bgzip", None), ("BAM", "samtools", "sort")])
@pytest.mark.parametrize("with_md5", [True, False], ids=["md5-given", "no-md5"])
def test_a_source_appended_to_while_it_is_built_fails_and_commits_nothing(data, settings, store_dir, tmp_path,
                                                                             monkeypatch, fmt, tool, subcommand,
                                                                             with_md5):
    source = samples.bed(data / "grow.bed", records=3000) if fmt == "BED" else samples.bam(data / "grow.bam")
    before = source.stat().st_size
    doc = {"id": "g", "access_url": str(source), "format": fmt, **({"md5": md5(source)} if with_md5 else {})}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    grow_when_run(bin_dir, tool, subcommand, source)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PREPROCESS_BGZINDEX", "off")  # the text's compressor is then bgzip, the shim
    result = run_many([doc], settings=settings).results[0]
    assert source.stat().st_size > before  # the shim did run during the build
    assert result.status == "failed" and result.error.class_ == "SourceError", result.error
    assert result.error.message == (f"g: source {source} changed while it was being built ({before} bytes when "
                                    f"hashed, {source.stat().st_size} bytes after the build, modified since): "
                                    "nothing was committed")
    assert [p for p in store_files(store_dir) if "/runs/" not in str(p)] == []



@pytest.mark.parametrize("with_md5", [True, False], ids=["md5-given", "no-md5"])
def test_a_source_hashed_early_then_rewritten_is_built_from_its_new_bytes(data, settings, store_dir, with_md5):
    """The CLI hashes a local SOURCE while the modules load (digests.start); a file rewritten before the
    plan reads it has another state, so that hash is not the one its key and manifest take."""
    from preprocess import digests

    source = samples.bed(data / "early.bed", records=3000)
    old = md5(source)
    digests.start(source, sha256=True).md5.result()
    lines = source.read_text().splitlines(keepends=True)
    source.write_text("".join(lines[:-10]))  # fewer lines: another size, mtime and ctime
    new = md5(source)
    doc = {"id": "e", "access_url": str(source), "format": "BED", **({"md5": new} if with_md5 else {})}
    result = run_many([doc], settings=settings).results[0]
    assert result.status == "built", result.error
    manifest = json.loads(Path(result.manifest).read_text())
    assert (manifest["source"]["md5"], manifest["source"]["sha256"]) == (
        new, hashlib.sha256(source.read_bytes()).hexdigest()) and new != old
    assert manifest["records"]["in"] == 3000 - 10  # the track line is no record


def test_a_source_hashed_early_still_fails_on_a_wrong_md5(data, settings, store_dir):
    """The early hash answers for the build's md5 check: a document naming another md5 still commits nothing."""
    from preprocess import digests

    source = samples.bed(data / "early.bed", records=300)
    digests.start(source, sha256=True)
    doc = {"id": "e", "access_url": str(source), "format": "BED", "md5": "0" * 32}
    result = run_many([doc], settings=settings).results[0]
    assert result.status == "failed" and result.error.class_ == "InputError"
    assert result.error.message == (f"e: md5 mismatch for {source}: document says {'0' * 32}, file has "
                                    f"{md5(source)}")
    assert [p for p in store_files(store_dir) if "/runs/" not in str(p)] == []
