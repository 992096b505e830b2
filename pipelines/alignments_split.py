"""The tool steps of one SAM/BAM sorted across workers: split by reference ranges, sort a part, merge.

Why the merged BAM is byte-identical to `samtools sort` of the whole file: samtools sort is stable
(ties keep their input order) and orders by reference id first, unplaced reads (id -1) last. A part
holds a contiguous range of reference ids, its records in input order, so the sorted parts laid end
to end are the whole sort's record stream; the merge re-encodes that stream at the build's level
(BGZF block boundaries depend on every record before them, so parts are never copied block-wise).
Parts are intermediate: written at level 1, they never reach the store's artifacts.
"""

from __future__ import annotations

from pathlib import Path

from preprocess import shell
from preprocess.errors import InputError, ToolError

from .alignments import (
    BAI_MAX_LENGTH,
    CSI_MIN_SHIFT,
    _indexed_records,
    _quickcheck,
    _reference_lengths,
    _refuse_past_the_end,
    sniff,
    users_terms,
)
from .base import BuildSettings

PART_LEVEL = 1  # BGZF level of the unsorted and sorted parts: they are read once and removed
# samtools view's -l is a library filter: the BGZF level goes in --output-fmt-option
_MERGE = ('samtools cat --no-PG -o - "${@:4}" '
          '| samtools view --no-PG -b --output-fmt-option "level=$1" -@ "$2" -o "$3" -')


def part_ranges(lengths: dict[str, int], parts: int) -> list[tuple[int, int]]:
    """Reference-id ranges [first, stop) of `parts` parts (fewer when there are fewer references), cut
    where the running total of reference lengths passes each share; every id is in exactly one range."""
    count = len(lengths)
    parts = max(1, min(parts, count))
    total = sum(lengths.values()) or 1
    cuts, running = [0], 0
    for tid, length in enumerate(lengths.values()):
        running += length
        if len(cuts) < parts and running * parts >= total * len(cuts) and tid + 1 < count:
            cuts.append(tid + 1)
    cuts.append(max(count, 1))
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def part_filter(first: int, stop: int, last: bool) -> str:
    """The samtools filter expression selecting part [first, stop); the last part also takes the
    unplaced reads (reference id -1), which the sort puts at its end, as the whole sort puts them."""
    expression = f"refid >= {first} && refid < {stop}"
    return f"({expression}) || refid == -1" if last else expression


def inspect(source: Path, shown: str) -> dict[str, int]:
    """The single-worker build's input checks (SAM or BAM, intact, valid @SQ lengths): reference lengths."""
    kind = sniff(source)
    if kind == "other":
        raise InputError(f"{shown}: not SAM or BAM (neither BGZF-compressed BAM nor SAM text)")
    if kind == "bam":
        _quickcheck(source, shown)
    return _reference_lengths(source, shown)


def extract_part(source: Path, expression: str, out: Path, threads: int, shown: str) -> None:
    """Write the records `expression` selects, in input order, as a level-1 BAM with the source's header."""
    try:
        shell.run(["samtools", "view", "--no-PG", "-b", "--output-fmt-option", f"level={PART_LEVEL}",
                   "-@", str(threads), "-e", expression, "-o", str(out), str(source)], context=f"splitting {shown}")
    except ToolError as exc:
        raise InputError(f"{shown}: unreadable alignment records: {users_terms(exc.stderr_tail, source, shown)}"
                         ) from None


def sort_part(unsorted: Path, out: Path, settings: BuildSettings, workdir: Path) -> None:
    """samtools sort of one part, as the single-worker build sorts the whole file (level 1: a part)."""
    shell.run(["samtools", "sort", "--no-PG", "-l", str(PART_LEVEL), "-m", settings.sort_memory,
               "-@", str(settings.threads), "-T", str(workdir / "sort-tmp"), "-o", str(out), str(unsorted)],
              context=f"sorting part {unsorted.name}")


def merge_parts(parts: list[Path], out: Path, settings: BuildSettings) -> None:
    """The sorted parts' records, in part order, re-encoded into one BAM at the build's level."""
    shell.pipe(_MERGE, settings.compression_level, settings.threads, out, *parts, context="merging sorted parts")


def index_and_verify(out: Path, lengths: dict[str, int], records_in: int, threads: int, shown: str
                     ) -> tuple[Path, dict[str, int | str]]:
    """Index the merged BAM and check it as the single-worker build does; its index and its records."""
    csi = any(length >= BAI_MAX_LENGTH for length in lengths.values())
    index = out.with_name(out.name + (".csi" if csi else ".bai"))
    flag = ["-c", "-m", str(CSI_MIN_SHIFT)] if csi else ["-b"]
    shell.run(["samtools", "index", *flag, "-@", str(threads), str(out), str(index)], context=f"indexing {shown}")
    shell.run(["samtools", "quickcheck", "-u", "-v", str(out)], context="checking the merged output")
    records_out = _indexed_records(out, index)
    _refuse_past_the_end(out, index, lengths, out, shown)  # the source is not here: the read is named
    if records_out != records_in:
        raise ToolError(["samtools", "sort"], 0, f"{records_in} records in, {records_out} out",
                        context=f"checking {shown}")
    return index, {"in": records_in, "out": records_out, "index": "csi" if csi else "bai",
                   "references": len(lengths)}
