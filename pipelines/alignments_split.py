"""The tool steps of one SAM/BAM sorted across workers: split by reference ranges, sort a part, merge.

Why the merged BAM is byte-identical to `samtools sort` of the whole file: samtools sort is stable
(ties keep their input order) and orders by reference id first, unplaced reads (id -1) last. A part
holds a contiguous range of reference ids, its records in input order, so the sorted parts laid end
to end are the whole sort's record stream. htslib writes that stream in BGZF blocks filled greedily
with whole records (a record that would overflow 0xff00 bytes starts a new block; the header has
blocks of its own), so a part's blocks are the whole file's from the first block both packings end
alike. The first part's blocks are copied as they are; after each seam the merge re-packs blocks until
the packings meet, which records of similar size rarely do soon, so the rest of that part is re-encoded
by samtools view from the open block on: the merge's serial cost is compressing all parts but the first.
"""

from __future__ import annotations

import itertools
import mmap
import re
import struct
import subprocess
from pathlib import Path
from typing import Any, BinaryIO

from preprocess import shell
from preprocess.errors import InputError, ToolError

from . import bgzf
from .alignments import (
    first_line_naming,
    index_bam,
    index_kind_for,
    indexed_records,
    quickcheck,
    records_in_sort_order,
    reference_lengths,
    refuse_damaged,
    sniff,
    unreachable_reads,
    users_terms,
)
from .base import BuildSettings, SplitSteps
from .bgzf import EOF_BLOCK, Block

BLOCK = 0xFF00  # htslib's BGZF_BLOCK_SIZE: the most uncompressed bytes one block holds
# samtools view's -l is a library filter: the BGZF level goes in --output-fmt-option
_MERGE = ('samtools cat --no-PG -o - "${@:4}" '
          '| samtools view --no-PG -b --output-fmt-option "level=$1" -@ "$2" -o "$3" -')


def part_ranges(lengths: dict[str, int], parts: int) -> list[tuple[int, int]]:
    """Reference-id ranges [first, stop) of `parts` parts (fewer when there are fewer references), each
    cut at the reference boundary nearest its share of the total length; every id is in exactly one."""
    count = len(lengths)
    parts = max(1, min(parts, count))
    ends = list(itertools.accumulate(lengths.values()))
    total = ends[-1] if ends else 0
    cuts = [0]
    for share in range(1, parts):
        target = total * share / parts
        best = min(range(cuts[-1] + 1, count - (parts - share) + 1), key=lambda tid: abs(ends[tid - 1] - target))
        cuts.append(best)
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
        refuse_damaged(source, shown)
    return reference_lengths(source, shown)


def extract_part(source: Path, expression: str, out: Path, level: int, threads: int, shown: str) -> int:
    """Write the records `expression` selects, in input order, as a BAM with the source's header
    (`level` 0: uncompressed, the cheapest to write and to sort; it is read once and removed), and
    return how many. The parts' ranges cover every reference id and -1, so their counts add up to the
    input's; a record naming a reference no @SQ line declares is refused, as the single-worker build does."""
    try:
        _, warnings = shell.run_with_stderr(
            ["samtools", "view", "--no-PG", "-b", "--output-fmt-option", f"level={level}", "-@", str(threads),
             "-e", expression, "-o", str(out), str(source)], context=f"splitting {shown}")
    except ToolError as exc:
        raise InputError(f"{shown}: unreadable alignment records: {users_terms(exc.stderr_tail, source, shown)}"
                         ) from None
    unknown = re.search(r"recognized reference name (\S+?);", warnings)
    if unknown:  # htslib would quietly make such a read unmapped
        line = first_line_naming(source, unknown.group(1).strip('"'))
        where = f"{shown}: line {line}" if line else shown
        raise InputError(f"{where}: a record names reference {unknown.group(1)}, which no @SQ line declares")
    return int(shell.run(["samtools", "view", "-c", "-@", str(threads), str(out)], context="counting a part"))


def sort_part(unsorted: Path, out: Path, settings: BuildSettings, workdir: Path) -> None:
    """samtools sort of one part exactly as the single-worker build sorts the whole file: its blocks
    are the whole output's, compressed here, on the part's worker."""
    shell.run(["samtools", "sort", "--no-PG", "-l", str(settings.compression_level), "-m", settings.sort_memory,
               "-@", str(settings.threads), "-T", str(workdir / "sort-tmp"), "-o", str(out), str(unsorted)],
              context=f"sorting part {unsorted.name}")


def merge_parts(parts: list[Path], out: Path, settings: BuildSettings, workdir: Path) -> int:
    """The sorted parts as one BAM, byte for byte what one sort of the whole would write; returns how
    many blocks were compressed again (the rest were copied). Falls back to re-encoding every record
    where a part breaks the rules the copy relies on (a record over 64 KiB, a header sharing a block)."""
    try:
        return _merge_blocks(parts, out, settings.compression_level, settings.threads, workdir)
    except _NotBlockwise:
        shell.pipe(_MERGE, settings.compression_level, settings.threads, out, *parts, context="merging sorted parts")
        return -1


class _NotBlockwise(Exception):
    """A part whose blocks cannot be reused as they are."""


def _blocks(path: Path) -> list[Block]:
    """Every BGZF block of a part (bgzf.walk); _NotBlockwise where it is not BGZF throughout."""
    found = bgzf.blocks(path)
    if found is None:
        raise _NotBlockwise(f"{path.name} is not BGZF throughout")
    return found


def _header_blocks(data: mmap.mmap, blocks: list[Block]) -> tuple[int, bytes]:
    """How many leading blocks hold the BAM header (htslib flushes after it: no record shares them),
    and the header's bytes."""
    head, count = b"", 0
    while True:
        if count == len(blocks):
            raise _NotBlockwise("truncated header")
        head += bgzf.inflate(data, blocks[count])
        count += 1
        try:
            text = struct.unpack_from("<i", head, 4)[0]
            at = 8 + text + 4
            for _ in range(struct.unpack_from("<i", head, 8 + text)[0]):
                at += 4 + struct.unpack_from("<i", head, at)[0] + 4
        except struct.error:
            continue
        if len(head) == at:
            return count, head
        if len(head) > at:
            raise _NotBlockwise("a record shares the header's block")


def _records(block: bytes) -> list[bytes]:
    """The whole records of one block; _NotBlockwise when one is cut at the block's end."""
    found, at = [], 0
    while at < len(block):
        if at + 4 > len(block):
            raise _NotBlockwise("a record cut at a block's end")
        end = at + 4 + struct.unpack_from("<i", block, at)[0]
        if end > len(block):
            raise _NotBlockwise("a record cut at a block's end")
        found.append(block[at:end])
        at = end
    return found


SYNC_LIMIT = 8  # blocks after a seam re-packed one by one; past it the rest of the part goes through samtools
# (measured: even reads of varied length rarely meet again within a few hundred blocks)


def _merge_blocks(parts: list[Path], out: Path, level: int, threads: int, workdir: Path) -> int:
    """Write the parts' header once, then every record block: a block the whole file would also have
    is copied; after a seam, blocks are packed and compressed anew until the packings meet again, or
    (records of one size may never meet) the rest of the part is re-encoded by samtools view."""
    pending = bytearray()  # the records of the whole file's block being filled
    redone = 0

    def emit(stream: object) -> None:
        nonlocal redone
        stream.write(_compress(bytes(pending), level, workdir))  # type: ignore[attr-defined]
        pending.clear()
        redone += 1

    with open(out, "wb") as target:
        for number, part in enumerate(parts):
            with open(part, "rb") as raw, mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ) as data:
                blocks = _blocks(part)
                header, head = _header_blocks(data, blocks)
                if number == 0:
                    target.write(data[:blocks[header - 1].offset + blocks[header - 1].size])
                body = [b for b in blocks[header:] if b.isize > 0]  # records only: no EOF marker
                same = False  # the whole file's packing and this part's coincide from here on
                for index, block in enumerate(body):
                    last = index == len(body) - 1
                    if same and not last:
                        target.write(data[block.offset:block.offset + block.size])
                        continue
                    if not same and index >= SYNC_LIMIT:
                        redone += _reencode(head, pending, data, body[index:], target, level, threads, workdir)
                        break
                    content = bgzf.inflate(data, block)
                    for record in _records(content):
                        if len(record) > BLOCK:
                            raise _NotBlockwise("a record over one block")
                        if len(pending) + len(record) > BLOCK:
                            emit(target)
                        pending.extend(record)
                    if not last and pending == content:  # both packings close this block here
                        target.write(data[block.offset:block.offset + block.size])
                        pending.clear()
                        same = True
        if pending:
            emit(target)
        target.write(EOF_BLOCK)
    return redone


def _reencode(head: bytes, pending: bytearray, data: mmap.mmap, blocks: list[Block],
              target: BinaryIO, level: int, threads: int, workdir: Path) -> int:
    """Pack `pending` and the records of `blocks` as the whole file would (samtools view writes them
    from a block boundary, as the whole sort did); write all its blocks but the last, whose records
    become `pending`, the start of the next block. Returns the blocks written."""
    out = workdir / "reencoded.bam"
    argv = ["samtools", "view", "--no-PG", "-b", "--output-fmt-option", f"level={level}", "-@", str(threads),
            "-o", str(out), "-"]
    shell.require("samtools")
    with subprocess.Popen(shell.tied(argv), stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=shell.environment(),
                          start_new_session=True) as proc:
        assert proc.stdin is not None and proc.stderr is not None
        try:
            proc.stdin.write(head)  # an uncompressed BAM: htslib reads it as it reads BGZF
            proc.stdin.write(pending)
            for block in blocks:
                proc.stdin.write(bgzf.inflate(data, block))
            proc.stdin.close()
        except BrokenPipeError:
            pass
        error = proc.stderr.read().decode("utf-8", "replace")
        if proc.wait() != 0:
            raise ToolError(argv, proc.returncode, shell.tail(error), context="merging sorted parts")
    with open(out, "rb") as raw, mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ) as made:
        found = _blocks(out)
        body = [b for b in found[_header_blocks(made, found)[0]:] if b.isize > 0]
        pending.clear()
        if body:
            target.write(made[body[0].offset:body[-1].offset])
            pending.extend(bgzf.inflate(made, body[-1]))
    out.unlink()
    return max(0, len(body) - 1)


def _compress(content: bytes, level: int, workdir: Path) -> bytes:
    """One BGZF block of `content` as htslib compresses it (bgzip of the same htslib, libdeflate or zlib)."""
    source = workdir / "block"
    source.write_bytes(content)
    shell.run(["bgzip", "--force", "--keep", "-l", str(level), str(source)], context="compressing a block")
    whole = source.with_name("block.gz").read_bytes()
    if not whole.endswith(EOF_BLOCK) or len(whole) - len(EOF_BLOCK) != struct.unpack_from("<H", whole, 16)[0] + 1:
        raise ToolError(["bgzip"], 0, "did not write one block", context="compressing a block")
    return whole[:-len(EOF_BLOCK)]


def index_and_verify(out: Path, lengths: dict[str, int], records_in: int, threads: int, shown: str,
                     refuse_unreachable: bool = False) -> tuple[Path, dict[str, Any]]:
    """Index the merged BAM and check it as the single-worker build does; its index and its records."""
    kind = index_kind_for(lengths)
    index = out.with_name(f"{out.name}.{kind}")
    index_bam(out, index, threads, shown)
    quickcheck(out, "checking the merged output")
    records_out = indexed_records(out, index)
    # the source is not here: a refused read is named, not its line
    unreachable = unreachable_reads(out, index, lengths, out, shown, refuse_unreachable)
    if records_out != records_in:
        raise ToolError(["samtools", "sort"], 0, f"{records_in} records in, {records_out} out",
                        context=f"checking {shown}")
    records: dict[str, Any] = {"in": records_in, "out": records_out, "index": kind,
                               "references": len(lengths)}
    if unreachable:
        records["unreachable"] = unreachable
    return index, records


class AlignmentSplitSteps:
    """SAM/BAM's SplitSteps (preprocess.contract), which AlignmentPipeline.split_steps names."""

    def inspect(self, source: Path, shown: str) -> dict[str, int]:
        return inspect(source, shown)

    def part_ranges(self, lengths: dict[str, int], parts: int) -> list[tuple[int, int]]:
        return part_ranges(lengths, parts)

    def in_order(self, source: Path, threads: int) -> bool:
        """An already sorted BAM takes the single build's sorted-input path (its bytes differ from a sort's)."""
        return sniff(source) == "bam" and records_in_sort_order(source, threads) is not None

    def extract_part(self, source: Path, first: int, stop: int, last: bool, out: Path, compress: bool,
                     threads: int, shown: str) -> int:
        level = 1 if compress else 0  # uncompressed: cheapest; level 1: fewer bytes to upload
        return extract_part(source, part_filter(first, stop, last), out, level, threads, shown)

    def sort_part(self, unsorted: Path, out: Path, settings: BuildSettings, workdir: Path) -> None:
        sort_part(unsorted, out, settings, workdir)

    def merge_parts(self, parts: list[Path], out: Path, settings: BuildSettings, workdir: Path) -> int:
        return merge_parts(parts, out, settings, workdir)

    def index_and_verify(self, out: Path, lengths: dict[str, int], records_in: int, threads: int, shown: str,
                         refuse_unreachable: bool) -> tuple[Path, dict[str, Any]]:
        return index_and_verify(out, lengths, records_in, threads, shown, refuse_unreachable)

    def tools(self) -> dict[str, str]:
        import pysam

        return {"samtools": shell.version("samtools"), "pysam": pysam.__version__}


STEPS: SplitSteps = AlignmentSplitSteps()
