"""SAM/BAM -> coordinate-sorted BAM with a BAI index (CSI when a reference is >= 2^29 bp).

Sorting and indexing use the samtools command line (measured faster than pysam's bundled htslib);
pysam reads the header and the index statistics. Coordinates are not touched here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preprocess import shell
from preprocess.errors import InputError, ToolError

from .base import BuildContext, BuildOutput, BuildSettings

BAI_MAX_LENGTH = 2**29  # BAI bins address positions below 2^29; longer references need CSI
CSI_MIN_SHIFT = 14
BGZF_MAGIC = b"\x1f\x8b\x08\x04"
BAM_MAGIC = b"BAM\x01"


@dataclass(frozen=True)
class AlignmentPipeline:
    name: str = "alignments"
    version: str = "1"
    formats: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {"SAM": (".sam",), "BAM": (".bam",)})
    stage: str = "sort_bam"
    passthrough: bool = False

    def parameters(self, settings: BuildSettings) -> dict[str, Any]:
        return {"compression_level": settings.compression_level, "csi_min_shift": CSI_MIN_SHIFT}

    def build(self, ctx: BuildContext) -> BuildOutput:
        src = ctx.source
        with ctx.stage("inspect"):
            kind = sniff(src)
            if kind == "other":
                raise InputError(f"{ctx.label}: not SAM or BAM (neither BGZF-compressed BAM nor SAM text)")
            if kind == "bam":
                _quickcheck(src, ctx.label)
            lengths = _reference_lengths(src, ctx.label)
        with ctx.stage("count"):
            records_in = _count(src, ctx.settings.threads, "counting input records", ctx.label)
        out = ctx.workdir / "sorted.bam"
        with ctx.stage("sort"):
            shell.run(["samtools", "sort", "--no-PG", "-l", str(ctx.settings.compression_level),
                       "-m", ctx.settings.sort_memory, "-@", str(ctx.settings.threads),
                       "-T", str(ctx.workdir / "sort-tmp"), "-o", str(out), str(src)],
                      context=f"sorting {ctx.label}")
        csi = any(length >= BAI_MAX_LENGTH for length in lengths.values())
        index = out.with_name(out.name + (".csi" if csi else ".bai"))
        with ctx.stage("index"):
            flag = ["-c", "-m", str(CSI_MIN_SHIFT)] if csi else ["-b"]
            shell.run(["samtools", "index", *flag, "-@", str(ctx.settings.threads), str(out), str(index)],
                      context=f"indexing {ctx.label}")
        with ctx.stage("verify"):
            shell.run(["samtools", "quickcheck", "-u", "-v", str(out)], context="checking the sorted output")
            records_out = _indexed_records(out, index)
            if records_out != records_in:
                raise ToolError(["samtools", "sort"], 0,
                                f"{records_in} records in, {records_out} out", context=f"checking {ctx.label}")
        return BuildOutput(
            artifacts={"data": out, "index": index},
            records={"in": records_in, "out": records_out, "index": "csi" if csi else "bai",
                     "references": len(lengths)},
            tools={"samtools": shell.version("samtools"), "pysam": _pysam_version()},
        )


def sniff(path: Path) -> str:
    """"bam" for BGZF-compressed BAM, "sam" for text that looks like SAM, "other" otherwise."""
    with open(path, "rb") as stream:
        head = stream.read(4096)
    if head.startswith(b"\x1f\x8b"):
        import gzip
        import zlib

        try:
            with gzip.open(path, "rb") as inner:
                magic = inner.read(4)
        except (OSError, EOFError, zlib.error):
            return "bam" if head.startswith(BGZF_MAGIC) else "other"  # let quickcheck name the damage
        if magic == BAM_MAGIC:
            return "bam"
        return "sam" if magic[:1] == b"@" else "other"  # gzip- or bgzip-compressed SAM: htslib reads it
    if head[:1] == b"@" or (head and b"\t" in head.split(b"\n", 1)[0] and b"\0" not in head):
        return "sam"
    if not head:
        return "sam"  # an empty SAM: samtools reports the missing header
    return "other"


def _quickcheck(path: Path, shown: str) -> None:
    try:  # -u: an unaligned BAM (no @SQ: PacBio HiFi, GATK uBAM) is valid, not a damaged header
        shell.run(["samtools", "quickcheck", "-u", "-v", str(path)])
    except ToolError:
        raise InputError(f"{shown}: BAM is truncated or corrupt (samtools quickcheck failed: "
                         "missing EOF block, bad header or unreadable)") from None


def _reference_lengths(path: Path, shown: str) -> dict[str, int]:
    import pysam

    try:
        with pysam.AlignmentFile(str(path), check_sq=False) as aln:
            return {name: int(aln.get_reference_length(name)) for name in aln.references}
    except (ValueError, OSError) as exc:
        raise InputError(f"{shown}: cannot read the SAM/BAM header: {users_terms(str(exc), path, shown)}") from None


def _count(path: Path, threads: int, context: str, shown: str) -> int:
    """Records in the input; InputError when one is unreadable or names a reference the header lacks."""
    try:
        out, warnings = shell.run_with_stderr(["samtools", "view", "-c", "--no-PG", "-@", str(threads), str(path)],
                                              context=context)
    except ToolError as exc:
        reason = users_terms(exc.stderr_tail, path, shown)
        raise InputError(f"{shown}: unreadable alignment records: {reason}") from None
    unknown = re.search(r"recognized reference name (\S+?);", warnings)
    if unknown:  # htslib would quietly make such a read unmapped
        line = _first_line_naming(path, unknown.group(1).strip('"'))
        where = f"{shown}: line {line}" if line else shown
        raise InputError(f"{where}: a record names reference {unknown.group(1)}, which no @SQ line declares")
    return int(out.strip())


def _first_line_naming(path: Path, name: str) -> int | None:
    """The line number of the first SAM record whose RNAME or RNEXT is `name`; None for BAM."""
    import gzip

    if sniff(path) != "sam":
        return None
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
    key = name.encode()
    with (gzip.open(path, "rb") if compressed else open(path, "rb")) as text:
        for number, line in enumerate(text, 1):
            fields = line.split(b"\t", 7)
            if not line.startswith(b"@") and len(fields) > 6 and key in (fields[2], fields[6]):
                return number
    return None


def users_terms(text: str, path: Path, shown: str) -> str:
    """A tool's message with the path of our copy of the input replaced by the user's file name."""
    return text.replace(str(path), shown)


def _indexed_records(bam: Path, index: Path) -> int:
    """Records reachable through the index: mapped + unmapped per reference + unplaced."""
    import pysam

    try:
        with pysam.AlignmentFile(str(bam), index_filename=str(index), check_sq=False) as aln:
            stats = aln.get_index_statistics()
            return sum(s.mapped + s.unmapped for s in stats) + aln.nocoordinate
    except (ValueError, OSError) as exc:
        raise ToolError(["pysam.AlignmentFile", str(bam)], 1, str(exc), context="opening the new index") from None


def _pysam_version() -> str:
    import pysam

    return pysam.__version__


ALIGNMENTS = AlignmentPipeline()
