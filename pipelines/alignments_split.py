"""A big BAM's parted layout: sorted in parts, each on its own, and the parts' blocks laid end to end.

A BAM source of more than `split_min_size` bytes (a key parameter) that is not already sorted is built
in P = ceil(size / part_size) parts (part_size a key parameter too), at most one per reference. Part i
holds a contiguous range of reference ids cut on the @SQ lengths (the unplaced reads go in the last),
in input order, and is sorted by `samtools sort` on its own. The output is the sorted header's blocks, then every part's
record blocks as samtools sort wrote them, then the EOF marker; it is indexed whole. samtools sort
orders by reference id first (unplaced last) and keeps the input order of ties, so the records are
the whole sort's, in the same order; only the blocks differ, each part's starting afresh. The single
build (build_parted) makes the same parts one after another, and preprocess/split.py makes them on
several workers (route-, sort_part-, merge- tasks): which worker sorts which part never changes a byte.
"""

from __future__ import annotations

import bisect
import itertools
import mmap
import os
import struct
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from preprocess import shell
from preprocess.errors import InputError, ToolError

from . import bgzf, native
from .alignments import (
    check_input,
    count_records,
    index_bam,
    index_kind_for,
    pysam_version,
    records_in_sort_order,
    sniff,
    verify_sorted,
)
from .base import BuildContext, BuildOutput, BuildSettings, SplitSteps
from .bgzf import EOF_BLOCK


def count_parts(kind: str, size: int, settings: BuildSettings, references: int) -> int:
    """How many parts a source is built in: for a BAM of more than split_min_size bytes ceil(size /
    part_size), at most one per reference; else 1 (built whole), and for SAM, whose size says little
    about its records."""
    if kind != "bam" or size <= settings.split_min_size:
        return 1
    return max(1, min(-(-size // settings.part_size), references))


def part_ranges(lengths: dict[str, int], parts: int) -> list[tuple[int, int]]:
    """Reference-id ranges [first, stop) of `parts` parts (fewer when there are fewer references), each
    cut at the reference boundary nearest its share of the total length (the first such boundary on a
    tie), leaving each later part at least one reference; every id is in exactly one. The cut is found
    by bisection of the running ends: a draft assembly's 200,000 contigs took 0.3 s by a scan."""
    count = len(lengths)
    parts = max(1, min(parts, count))
    ends = list(itertools.accumulate(lengths.values()))
    total = ends[-1] if ends else 0
    cuts = [0]
    for share in range(1, parts):
        target = total * share / parts
        low, high = cuts[-1], count - (parts - share) - 1  # the part ends after reference low..high
        above = bisect.bisect_left(ends, target, low, high + 1)  # the first end at or past the target
        near = min({min(max(above - 1, low), high), min(max(above, low), high)},
                   key=lambda end: (abs(ends[end] - target), end))
        near = bisect.bisect_left(ends, ends[near], low, near + 1)  # the first reference ending there
        while near > low and abs(ends[near - 1] - target) == abs(ends[near] - target):  # equal as floats: past
            near = bisect.bisect_left(ends, ends[near - 1], low, near)                   # 2^53 bases, as the scan saw
        cuts.append(near + 1)
    cuts.append(max(count, 1))
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def inspect(source: Path, shown: str) -> dict[str, int]:
    """The single build's input checks (SAM or BAM, intact, valid @SQ lengths): reference lengths."""
    return check_input(source, shown)[1]


def plan(source: Path, shown: str, settings: BuildSettings) -> dict[str, Any]:
    """The source's parts, from its content and the key's split_min_size and part_size alone: {"lengths", "ranges",
    "parts"}; "parts" 1 (no ranges) when it is built whole (small, SAM, one reference, or sorted)."""
    lengths = inspect(source, shown)
    parts = count_parts(sniff(source), source.stat().st_size, settings, len(lengths))
    if parts > 1 and records_in_sort_order(source, settings.threads) is not None:
        parts = 1  # an already sorted BAM keeps its record blocks (the single build's sorted-input path)
    ranges = part_ranges(lengths, parts) if parts > 1 else []
    return {"lengths": lengths, "ranges": ranges, "parts": max(1, len(ranges))}


def _targets(ranges: list[tuple[int, int]], which: list[int], outs: list[Path]
             ) -> tuple[list[int], list[Path], list[int]]:
    """The cuts and targets that send parts `which` (a run of consecutive parts) to `outs` and the rest
    to the null device, and where each of `outs` is among the targets."""
    cuts, targets, mine = [], [], []
    if which[0] > 0:
        cuts.append(ranges[which[0]][0])
        targets.append(Path(os.devnull))
    for i, out in zip(which, outs, strict=True):
        if i != which[0]:
            cuts.append(ranges[i][0])
        mine.append(len(targets))
        targets.append(out)
    if which[-1] < len(ranges) - 1:  # unplaced reads are the last part's
        cuts.append(ranges[which[-1] + 1][0])
        targets.append(Path(os.devnull))
    return cuts, targets, mine


def route(source: Path, ranges: list[tuple[int, int]], which: list[int], outs: list[Path], threads: int,
          shown: str, compress: bool = False) -> list[int]:
    """Write parts `which` (a run of consecutive parts) of the source, their records in input order,
    unsorted, to `outs` in one read of the source (pipelines.native.route): uncompressed, the cheapest
    to write and to sort, or with `compress` BGZF at level 1 (fewer bytes to upload); their
    record counts. Every record is in exactly one part, so the counts of all parts add up to the input's.
    An unreadable input fails with the one-pass sort's message (its count's, samtools view -c)."""
    if not which:
        return []
    cuts, targets, mine = _targets(ranges, which, outs)
    try:
        counts = native.route(source, cuts, targets, threads, shown)
    except InputError:
        count_records(source, threads, "counting input records", shown)  # htslib's words, as one sort gives them
        raise
    _compress(outs if compress else [], threads)
    return [counts[k] for k in mine]


def _compress(outs: list[Path], threads: int) -> None:
    for out in outs:
        packed = out.with_name(f"{out.name}.gz")
        shell.run(["bgzip", "--force", "-l", "1", "-@", str(threads), str(out)], context=f"compressing {out.name}")
        packed.replace(out)


def shares(source: Path, groups: int) -> list[tuple[int, int]]:
    """Where each of `groups` route groups starts, (file byte, uncompressed byte): group g at the first
    BGZF block starting at or after g * size / groups (group 0 at 0), then the file's end (its size,
    its uncompressed size). Read from the blocks' headers and trailers, without inflating."""
    size = source.stat().st_size
    blocks, offset = [], 0
    with open(source, "rb") as stream, mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as data:
        while offset + 18 <= size:  # plan() refused a damaged file: the headers alone, fast
            if data[offset:offset + 4] != b"\x1f\x8b\x08\x04" or data[offset + 12:offset + 14] != b"BC":
                stream.seek(0)
                blocks = [(block.offset, block.isize) for block in bgzf.walk(stream)]  # its Fault, in words
                break
            after = offset + struct.unpack_from("<H", data, offset + 16)[0] + 1
            blocks.append((offset, struct.unpack_from("<I", data, after - 4)[0]))
            offset = after
    found, before, g = [], 0, 0
    for offset, isize in blocks:
        while g < groups and offset >= g * size / groups:
            found.append((offset, before))
            g += 1
        before += isize
    found += [(size, before)] * (groups - g + 1)
    return found


def route_share(source: Path, plan: dict[str, Any], which: list[int], outs: list[Path], threads: int, shown: str,
                compress: bool, group: int, groups: int) -> dict[str, Any]:
    """Route group `group` of `groups`: the records that start in its share of the source's blocks, for
    parts `which`, each piece in input order, group 0's under the header and the others records only
    (part i = its pieces laid end to end in group order). Its report: {"counts", "start", "end",
    "total"}, uncompressed offsets of its first record and of its last record's end; "start" None for a
    guess that failed (confirmed() then says so). One group (or no bamwalk): the whole source."""
    ranges = [(int(a), int(b)) for a, b in plan["ranges"]]
    bounds = shares(source, groups)
    total = bounds[-1][1]
    (begin, at), (_, stop) = bounds[group], bounds[group + 1]
    report: dict[str, Any] = {"start": None, "end": None, "total": total, "counts": [0] * len(which)}
    cuts, targets, mine = _targets(ranges, which, outs)
    whole = groups == 1 or native.program() is None
    if whole and group > 0 or not whole and group > 0 and at == stop:  # nothing to read: an empty piece
        for out in outs:
            out.write_bytes(b"")
        _compress(outs if compress else [], threads)
        report.update(start=total if whole else None, end=total if whole else None, empty=not whole)
        return report
    if whole:
        report.update(start=0, end=total, counts=route(source, ranges, which, outs, threads, shown, compress))
        return report
    try:
        found = native.route_range(source, cuts, targets, threads, None if group == 0 else len(plan["lengths"]),
                                   begin, stop - at, shown)
    except InputError:
        count_records(source, threads, "counting input records", shown)
        raise
    if found is not None:
        first, end, counts = found
        report.update(start=at + first, end=at + end, counts=[counts[k] for k in mine])
    _compress(outs if compress else [], threads)
    return report


def confirmed(reports: list[dict[str, Any]]) -> bool:
    """Whether the route groups' pieces hold every record once, in order: each group started where the
    one before it (from a true record start) ended, and the last ended at the source's end."""
    end = reports[0]["end"]
    for report in reports[1:]:
        if report.get("empty"):
            continue
        if report["start"] is None or report["start"] != end:
            return False
        end = report["end"]
    return end is not None and end == reports[0]["total"]


def sort_part(pieces: list[Path], out: Path, layout: dict[str, Any], settings: BuildSettings, workdir: Path
              ) -> list[Path]:
    """samtools sort of one part, its pieces laid end to end (`cat` into the sort: no joined copy on
    disk), at the build's compression level (its record blocks are the output's), writing the part's
    BAI in the same pass (merge_bai); a CSI layout is indexed whole instead. The part's files: [out] or
    [out, its BAI]."""
    index = out.with_name(f"{out.name}.bai")
    bai = index_kind_for(layout["lengths"]) == "bai"
    argv = ["samtools", "sort", "--no-PG", "-l", str(settings.compression_level), "-m", settings.sort_memory,
            "-@", str(settings.threads), "-T", str(workdir / f"sort-tmp-{pieces[0].stem}"),
            *(["--write-index", "-o", f"{out}##idx##{index}"] if bai else ["-o", str(out)])]
    if len(pieces) == 1:
        shell.run([*argv, str(pieces[0])], context=f"sorting part {pieces[0].name}")
    else:
        shell.pipe('n=$1; shift; cat -- "${@:n+1}" | "${@:1:n}"', len(argv) + 1, *argv, "-", *pieces,
                   context=f"sorting part {pieces[0].name}")
    return [out, index] if bai else [out]


def concatenate(parts: list[Path], out: Path) -> list[int]:
    """`out` = the first part's header blocks, every part's record blocks copied as they are, in order,
    and the EOF marker; returns how far each part's blocks moved (output offset - part offset). ToolError
    when a part is not laid out as samtools sort writes it (the header in blocks of its own, one EOF
    marker at the end) or the parts' headers differ."""
    header, shifts = None, []
    with open(out, "wb") as target:
        for part in parts:
            with open(part, "rb") as stream:
                end, head = _header_end(stream, part)
                size = os.fstat(stream.fileno()).st_size
                stream.seek(size - len(EOF_BLOCK))
                if size - len(EOF_BLOCK) < end or stream.read() != EOF_BLOCK:
                    raise ToolError(["samtools", "sort"], 0, f"{part.name} does not end in the EOF marker",
                                    context="concatenating the sorted parts")
                if header is None:
                    header = head
                    _copy(stream, target, 0, end)
                elif head != header:
                    raise ToolError(["samtools", "sort"], 0, f"{part.name} has another header than the first part",
                                    context="concatenating the sorted parts")
                shifts.append(target.tell() - end)
                _copy(stream, target, end, size - len(EOF_BLOCK) - end)
        target.write(EOF_BLOCK)
    return shifts


def _header_end(stream: BinaryIO, part: Path) -> tuple[int, bytes]:
    """Where the BAM header's blocks end (htslib flushes after the header: no record shares them), and
    the header's bytes."""
    head = b""
    try:
        for block in bgzf.walk(stream):
            stream.seek(block.offset)
            head += bgzf.inflate(stream.read(block.size), replace(block, offset=0))
            try:
                text = struct.unpack_from("<i", head, 4)[0]
                at = 8 + text + 4
                for _ in range(struct.unpack_from("<i", head, 8 + text)[0]):
                    at += 4 + struct.unpack_from("<i", head, at)[0] + 4
            except struct.error:
                continue
            if len(head) == at:
                return block.offset + block.size, head
            break
    except bgzf.Fault as fault:
        raise ToolError(["samtools", "sort"], 0, f"{part.name}: {fault}", context="concatenating the sorted parts"
                        ) from None
    raise ToolError(["samtools", "sort"], 0, f"{part.name}: the header does not end a block",
                    context="concatenating the sorted parts")


def _copy(source: BinaryIO, target: BinaryIO, offset: int, length: int) -> None:
    source.seek(offset)
    while length > 0:
        chunk = source.read(min(length, 1 << 24))
        if not chunk:
            raise ToolError(["cp"], 0, "a sorted part ended early", context="concatenating the sorted parts")
        target.write(chunk)
        length -= len(chunk)


_BAI_MAGIC = b"BAI\x01"
_PSEUDO_BIN = 37450  # its second "chunk" holds the mapped and unmapped counts, not offsets


def merge_bai(indexes: list[Path], ranges: list[tuple[int, int]], shifts: list[int], out: Path) -> None:
    """The BAI of the concatenated parts from the parts' BAIs: each reference lies in one part, so its
    bins, chunks and linear index are that part's, every virtual offset moved by the part's shift (its
    blocks' move; the in-block offset stays). The unplaced count is the last part's. Byte-identical to
    `samtools index` of the output (tested), without reading it again."""
    merged: list[bytes] = []
    tail = b""
    for number, (index, (first, stop), shift) in enumerate(zip(indexes, ranges, shifts, strict=True)):
        data = index.read_bytes()
        if data[:4] != _BAI_MAGIC:
            raise ToolError(["samtools", "sort"], 0, f"{index.name} is not a BAI", context="merging the parts' indexes")
        at, moved = 8, shift << 16
        for ref in range(struct.unpack_from("<i", data, 4)[0]):
            piece = bytearray()
            bins = struct.unpack_from("<i", data, at)[0]
            piece += data[at:at + 4]
            at += 4
            for _ in range(bins):
                bin_id, chunks = struct.unpack_from("<Ii", data, at)
                piece += data[at:at + 8]
                offsets = list(struct.unpack_from(f"<{2 * chunks}Q", data, at + 8))
                at += 8 + 16 * chunks
                moves = 2 if bin_id == _PSEUDO_BIN else len(offsets)
                piece += struct.pack(f"<{len(offsets)}Q", *[o + moved if k < moves else o
                                                           for k, o in enumerate(offsets)])
            intervals = struct.unpack_from("<i", data, at)[0]
            linear = struct.unpack_from(f"<{intervals}Q", data, at + 4)
            piece += data[at:at + 4] + struct.pack(f"<{intervals}Q", *[o + moved for o in linear])
            at += 4 + 8 * intervals
            if first <= ref < stop:
                merged.append(bytes(piece))
            elif bins or intervals:
                raise ToolError(["samtools", "sort"], 0, f"{index.name} indexes reference {ref}, outside its part",
                                context="merging the parts' indexes")
        if number == len(indexes) - 1:
            tail = data[at:]  # n_no_coor: the unplaced reads, all in the last part
    with open(out, "wb") as target:
        target.write(_BAI_MAGIC + struct.pack("<i", len(merged)) + b"".join(merged) + tail)


def finish(parts: list[list[Path]], layout: dict[str, Any], records_in: int, settings: BuildSettings,
           workdir: Path, shown: str) -> BuildOutput:
    """The output from its sorted parts (each [part] or [part, its BAI]): concatenated, indexed (the
    parts' BAIs merged, or a CSI made whole), and checked as the single build checks a sort (records in
    = records out through the index, reads past their reference's end)."""
    lengths = layout["lengths"]
    out = workdir / "sorted.bam"
    kind = index_kind_for(lengths)
    index = out.with_name(f"{out.name}.{kind}")
    shifts = concatenate([files[0] for files in parts], out)
    if kind == "bai" and all(len(files) == 2 for files in parts):
        merge_bai([files[1] for files in parts], [(int(a), int(b)) for a, b in layout["ranges"]], shifts, index)
    else:
        index_bam(out, index, settings.threads, shown)
    # a BAM source names no line: the output stands in for it where a refused read would be named
    records_out, unreachable = verify_sorted(out, index, lengths, out, shown, records_in,
                                             refuse_unreachable=settings.unreachable_reads == "refuse")
    records: dict[str, Any] = {"in": records_in, "out": records_out, "index": kind, "references": len(lengths),
                               "path": "sort", "parts": layout["parts"]}
    if unreachable:
        records["unreachable"] = unreachable
    return BuildOutput(artifacts={"data": out, "index": index}, records=records, tools=tools())


def tools() -> dict[str, str]:
    return {"samtools": shell.version("samtools"), "pysam": pysam_version()}


def build_parted(ctx: BuildContext, layout: dict[str, Any]) -> BuildOutput:
    """The single build of a parted BAM: every part routed, sorted and concatenated here, in order."""
    ranges = [(int(a), int(b)) for a, b in layout["ranges"]]
    unsorted = [ctx.workdir / f"part-{i}.unsorted.bam" for i in range(len(ranges))]
    with ctx.stage("route"):
        records_in = sum(route(ctx.source, ranges, list(range(len(ranges))), unsorted, ctx.settings.threads,
                               ctx.label))
    made = []
    with ctx.stage("sort"):
        for part in unsorted:
            made.append(sort_part([part], part.with_name(part.name.replace(".unsorted.", ".sorted.")), layout,
                                  ctx.settings, ctx.workdir))
            part.unlink()
    with ctx.stage("merge"):
        output = finish(made, layout, records_in, ctx.settings, ctx.workdir, ctx.label)
    for files in made:
        for file in files:
            file.unlink()
    return output


class AlignmentSplitSteps:
    """SAM/BAM's SplitSteps (preprocess.contract), which AlignmentPipeline.split_steps names."""

    def most_parts(self, fmt: str, size: int, settings: BuildSettings) -> int:
        return count_parts("bam" if fmt == "BAM" else "sam", size, settings, size)

    def plan(self, source: Path, shown: str, settings: BuildSettings) -> dict[str, Any]:
        return plan(source, shown, settings)

    def route(self, source: Path, layout: dict[str, Any], which: list[int], outs: list[Path], threads: int,
              shown: str, compress: bool, group: int = 0, groups: int = 1) -> dict[str, Any]:
        return route_share(source, layout, which, outs, threads, shown, compress, group, groups)

    def confirmed(self, reports: list[dict[str, Any]]) -> bool:
        return confirmed(reports)

    def sort_part(self, pieces: list[Path], out: Path, layout: dict[str, Any], settings: BuildSettings,
                  workdir: Path) -> list[Path]:
        return sort_part(pieces, out, layout, settings, workdir)

    def finish(self, parts: list[list[Path]], layout: dict[str, Any], records_in: int, settings: BuildSettings,
               workdir: Path, shown: str) -> BuildOutput:
        return finish(parts, layout, records_in, settings, workdir, shown)


STEPS: SplitSteps = AlignmentSplitSteps()
