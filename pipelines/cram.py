"""CRAM -> coordinate-sorted CRAM with its CRAI (or, by the `cram-output` setting, BAM with BAI/CSI).

Decoding a CRAM needs the sequences its reads were compressed against. They come, by the @SQ M5
tags, from the document's `reference` FASTA (written here into a directory named by md5), from
htslib's REF_CACHE / REF_PATH (local entries only: htslib's default of fetching from the EBI is
never used), or from references embedded in the CRAM itself. A CRAM that decodes with no outside
reference (embedded references, or none needed) is written self-contained again (`no_ref=1`:
bases stored as they are; decoded and encoded with no outside reference), so the bytes a key names
never depend on what a worker's cache holds. Not `embed_ref=2`: @gmod/cram 8.0.4 (JBrowse,
IGV.js) reads an embedded reference as empty and fails its md5 check. The output CRAM names its
sequences by M5 exactly as the input did: a browser reads it with CRAM + CRAI + the FASTA.

htslib never sees an @SQ UR tag: it would read the path or fetch the URL written there (any file on
the worker, any host) whenever a lookup by M5 fails, so the bytes would depend on the worker and the
input could make it read what nobody named. A header with UR tags is rewritten without them
(`samtools reheader`, which copies the containers undecoded) before anything decodes a record; the
output carries no UR either.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preprocess import shell
from preprocess.errors import InputError, ToolError

from .alignments import (
    CSI_MIN_SHIFT,
    index_flags,
    index_kind_for,
    indexed_records,
    pysam_version,
    quickcheck,
    refuse_damaged,
    users_terms,
)
from .base import BuildContext, BuildOutput, BuildSettings, PipelineBase

CRAM_MAGIC = b"CRAM"
_MISSING = re.compile(r"Failed to populate reference for id (-?\d+)|Unable to fetch reference #(-?\d+)")
_MISMATCH = re.compile(r"MD5 checksum reference mismatch at (\S+):\d+-\d+")
_URL_SCHEMES = ("http", "https", "ftp", "s3", "gs")
# Sort on every thread, but encode CRAM on one: htslib picks each block's codec by trial compressions
# whose running statistics its encoder threads share, so with two or more the bytes vary run to run.
_SORT_TO_CRAM = 'samtools sort --no-PG -u -m "$1" -@ "$2" -T sort-tmp -o - "$3" | ' \
                'samtools view --no-PG -O "$4" -@ 1 -o "$5" -'


@dataclass(frozen=True)
class CramPipeline(PipelineBase):
    name: str = "cram"
    # 2: self-contained output as no_ref=1, not embed_ref=2 (which @gmod/cram misreads); 3: no @SQ UR tags
    version: str = "3"
    formats: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"CRAM": (".cram",)})
    stage: str = "sort_cram"
    passthrough: bool = False
    takes_reference: bool = True
    tool_pins: str | None = "pipelines.pins:TOOLS"  # the tool versions its output pins were made with

    def artifact_names(self) -> dict[str, tuple[str, ...]]:
        """sorted.cram, or sorted.bam with cram-output: bam."""
        return {"data": ("sorted.cram", "sorted.bam"),
                "index": ("sorted.cram.crai", "sorted.bam.bai", "sorted.bam.csi")}

    def parameters(self, settings: BuildSettings) -> dict[str, Any]:
        if settings.cram_output == "bam":
            return {"output": "bam", "compression_level": settings.compression_level,
                    "csi_min_shift": CSI_MIN_SHIFT}
        return {"output": "cram", "compression_level": settings.compression_level}

    def build(self, ctx: BuildContext) -> BuildOutput:
        src, work = ctx.source, ctx.workdir
        with ctx.stage("inspect"):
            with open(src, "rb") as stream:
                if stream.read(4) != CRAM_MAGIC:
                    raise InputError(f"{ctx.label}: not a CRAM file (it does not start with the CRAM magic)")
            refuse_damaged(src, ctx.label)
            alone = reference_environment(work, outside=False)
            header = _header(src, ctx.label, alone)
            sq = _sq_lines(header, ctx.label)
            if any("UR" in tags for _, _, tags in sq):
                src = _without_ur(src, header, work, alone)
            given = _write_reference_dir(ctx.reference, sq, work / "refs") if ctx.reference else {}
        with ctx.stage("count"):
            everything = reference_environment(work, outside=True)
            try:
                records_in = _count(src, alone, ctx.settings.threads, ctx.label, sq)
                env, embedded = alone, True
            except _MissingReference:
                env, embedded = everything, False
                try:
                    records_in = _count(src, everything, ctx.settings.threads, ctx.label, sq)
                except _MissingReference as missing:
                    raise InputError(_explain(ctx, sq, missing.sq_index, given, missing.mismatch)) from None
        bam = ctx.settings.cram_output == "bam"
        out = work / ("sorted.bam" if bam else "sorted.cram")
        with ctx.stage("sort"):
            # cwd and relative output names: htslib writes the CRAM's file name into its header
            if bam:
                shell.run(["samtools", "sort", "--no-PG", "-O", "bam", "-l", str(ctx.settings.compression_level),
                           "-m", ctx.settings.sort_memory, "-@", str(ctx.settings.threads), "-T", "sort-tmp",
                           "-o", out.name, str(src)], context=f"sorting {ctx.label}", cwd=work, env=env)
            else:
                layout = f"cram,{'no_ref=1,' if embedded else ''}level={ctx.settings.compression_level}"
                shell.pipe(_SORT_TO_CRAM, ctx.settings.sort_memory, ctx.settings.threads, src, layout, out.name,
                           context=f"sorting {ctx.label}", cwd=work, env=env)
        kind = index_kind_for(dict(enumerate(length for _, length, _ in sq))) if bam else "crai"
        index = out.with_name(f"{out.name}.{kind}")
        with ctx.stage("index"):
            shell.run(["samtools", "index", *index_flags(kind), "-@", str(ctx.settings.threads), out.name, index.name],
                      context=f"indexing {ctx.label}", cwd=work, env=env)
        with ctx.stage("verify"):
            quickcheck(out, "checking the sorted output")
            records_out = (indexed_records(out, index) if bam
                           else _indexed_cram_records(out, index, sq, env, ctx.settings.threads))
            if records_out != records_in:
                raise ToolError(["samtools", "sort"], 0, f"{records_in} records in, {records_out} out",
                                context=f"checking {ctx.label}")
        return BuildOutput(
            artifacts={"data": out, "index": index},
            records={"in": records_in, "out": records_out, "index": index.suffix.lstrip("."),
                     "references": len(sq), "output": "bam" if bam else "cram",
                     "reference": "embedded" if embedded else "external"},
            tools={"samtools": shell.version("samtools"), "pysam": pysam_version()},
        )


class _MissingReference(Exception):
    """htslib could not find the sequence of @SQ number `sq_index` (or found one whose md5 differs)."""

    def __init__(self, sq_index: int | None, mismatch: bool = False) -> None:
        super().__init__(sq_index)
        self.sq_index, self.mismatch = sq_index, mismatch


def _header(path: Path, shown: str, env: dict[str, str]) -> str:
    """The CRAM's SAM header text (reading it decodes no record, so no reference is looked up)."""
    try:
        return shell.run(["samtools", "view", "-H", "--no-PG", str(path)], env=env)
    except ToolError as exc:
        raise InputError(f"{shown}: cannot read the CRAM header: {users_terms(exc.stderr_tail, path, shown)}") from None


def _without_ur(path: Path, header: str, work: Path, env: dict[str, str]) -> Path:
    """A copy of the CRAM in `work` whose @SQ lines have no UR tag: containers copied as they are."""
    lines = ["\t".join(f for f in line.split("\t") if not f.startswith("UR:")) if line.startswith("@SQ\t") else line
             for line in header.splitlines()]
    text = work / "header.sam"
    text.write_text("\n".join(lines) + "\n")
    copy = work / "input.cram"
    shell.pipe('samtools reheader --no-PG "$1" "$2" > "$3"', text, path, copy,
               context="removing @SQ UR tags", env=env)
    text.unlink()
    return copy


def _sq_lines(text: str, shown: str) -> list[tuple[str, int, dict[str, str]]]:
    """(name, length, tags) of each @SQ line of a header, in order (the order of htslib's reference ids)."""
    found = []
    for line in text.splitlines():
        if line.startswith("@SQ\t"):
            tags = dict(field.split(":", 1) for field in line.split("\t")[1:] if ":" in field)
            try:
                found.append((tags["SN"], int(tags["LN"]), tags))
            except (KeyError, ValueError):
                raise InputError(f"{shown}: an @SQ line lacks SN or a numeric LN: {line[:200]!r}") from None
    return found


def _write_reference_dir(fasta: Path, sq: list[tuple[str, int, dict[str, str]]], target: Path) -> dict[str, str]:
    """Write each sequence of `fasta` that an @SQ M5 tag asks for into `target`/<md5> (htslib's
    REF_PATH layout: upper-case bases, no line breaks); return the md5 of every sequence whose
    length some @SQ has, by name, to explain a mismatch."""
    import pysam

    wanted = {tags["M5"].lower() for _, _, tags in sq if "M5" in tags}
    lengths = {length for _, length, _ in sq}
    target.mkdir(exist_ok=True)
    found = {}
    with pysam.FastaFile(str(fasta)) as ref:
        for name, length in zip(ref.references, ref.lengths, strict=True):
            if length not in lengths:
                continue
            bases = ref.fetch(name).upper().encode("ascii")
            digest = hashlib.md5(bases, usedforsecurity=False).hexdigest()
            found[name] = digest
            if digest in wanted:
                (target / digest).write_bytes(bases)
    return found


def site_ref_path() -> list[str]:
    """The local directories of the worker's REF_PATH; URL entries (htslib would fetch) are dropped."""
    parts = os.environ.get("REF_PATH", "").split(":")
    kept, skip = [], False
    for part in parts:
        if part.lower() in _URL_SCHEMES:
            skip = True  # "http" then "//host/…" then maybe "8080/…": all one URL
            continue
        if skip and not (part.startswith("/") and not part.startswith("//")):
            continue
        skip = False
        if part.startswith("/"):  # a directory (htslib appends /<md5>) or a template with %s
            kept.append(part)
    return kept


def reference_environment(work: Path, outside: bool) -> dict[str, str]:
    """REF_PATH / REF_CACHE for htslib: with `outside`, the document's reference and the worker's
    local cache; without, none at all (embedded references only). Never empty: an empty REF_PATH
    makes htslib fetch from the EBI."""
    nowhere = f"{work}/no-references/%s"
    if not outside:
        return {"REF_PATH": nowhere, "REF_CACHE": ""}
    paths = [f"{work}/refs/%s"] if (work / "refs").is_dir() else []
    paths += site_ref_path()
    cache = os.environ.get("REF_CACHE", "")
    return {"REF_PATH": ":".join(paths) or nowhere, "REF_CACHE": cache if cache.startswith("/") else ""}


def _count(path: Path, env: dict[str, str], threads: int, shown: str,
           sq: list[tuple[str, int, dict[str, str]]]) -> int:
    """Records in a CRAM, decoding every one; _MissingReference when a sequence cannot be found, or
    one was found whose bases differ from those a slice was encoded against (htslib checks md5s)."""
    try:
        out = shell.run(["samtools", "view", "-c", "--no-PG", "-@", str(threads), str(path)], env=env)
    except ToolError as exc:
        missing = _MISSING.search(exc.stderr_tail)
        if missing:
            raise _MissingReference(int(missing.group(1) or missing.group(2))) from None
        mismatch = _MISMATCH.search(exc.stderr_tail)
        if mismatch:
            names = [name for name, _, _ in sq]
            found = names.index(mismatch.group(1)) if mismatch.group(1) in names else None
            raise _MissingReference(found, mismatch=True) from None
        raise InputError(f"{shown}: unreadable CRAM records: {users_terms(exc.stderr_tail, path, shown)}") from None
    return int(out.strip())


def _explain(ctx: BuildContext, sq: list[tuple[str, int, dict[str, str]]], index: int | None,
             given: dict[str, str], mismatch: bool) -> str:
    """Which @SQ has no reference, and every place that was looked in, in the user's terms."""
    tags: dict[str, str]
    name, tags = "", {}
    if index is None or not 0 <= index < len(sq):
        which = "a reference sequence"
    else:
        name, length, tags = sq[index]
        which = f"@SQ SN:{name} LN:{length}" + (f" M5:{tags['M5']}" if "M5" in tags else "")
    if mismatch:
        return (f"{ctx.label}: the reference sequence found for {which} (in REF_CACHE or REF_PATH on the worker) "
                "has other bases than the CRAM was encoded against: the md5 of a slice differs")
    tried = ["not embedded in the CRAM"]
    if "M5" not in tags:
        tried.append("the @SQ line has no M5 tag, so no reference can be matched to it by content")
    if ctx.reference is None:
        tried.append("the document gives no reference (set `reference` to the FASTA URL, with its .fai beside it)")
    elif name in given:
        tried.append(f"the document's reference has {name} with md5 {given[name]}, not the M5 the CRAM records")
    else:
        tried.append(f"the document's reference has no sequence of that md5 (nor a {name} of that length)")
    cache = os.environ.get("REF_CACHE", "")
    tried.append(f"REF_CACHE {cache}" if cache.startswith("/") else "no REF_CACHE on the worker")
    local = site_ref_path()
    tried.append(f"REF_PATH {':'.join(local)}" if local else "no local REF_PATH on the worker (URLs are never used)")
    if "UR" in tags:
        tried.append(f"UR {tags['UR']} is never followed (a reference is not taken from a path or URL inside the "
                     "input)")
    return f"{ctx.label}: no reference sequence for {which}: " + "; ".join(tried)


def _indexed_cram_records(cram: Path, index: Path, sq: list[tuple[str, int, dict[str, str]]],
                          env: dict[str, str], threads: int) -> int:
    """Records reachable through the CRAI: every reference queried whole, then the unplaced reads."""
    regions = cram.with_name("references.bed")
    regions.write_text("".join(f"{name}\t0\t{length}\n" for name, length, _ in sq))
    assert index.name == cram.name + ".crai"  # where samtools looks for it
    base = ["samtools", "view", "-c", "--no-PG", "-@", str(threads)]
    placed = int(shell.run([*base, "-M", "-L", str(regions), str(cram)], env=env,
                           context="counting records through the new index").strip()) if sq else 0
    unplaced = int(shell.run([*base, str(cram), "*"], env=env, context="counting unplaced records").strip())
    regions.unlink()
    return placed + unplaced


CRAM = CramPipeline()
