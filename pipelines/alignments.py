"""SAM/BAM -> coordinate-sorted BAM with a BAI index (CSI when a reference is >= 2^29 bp).

Two paths, chosen by the content alone (records["path"] says which ran):
- "sort": samtools sort writes the BAM and its index in one pass (--write-index); the input's records are
  counted on their way into the sort (a BAM: `bgzip -dc | bamwalk count | samtools sort -`, one
  decompression) or beside it (`samtools view -c`): records in = records out, from the index statistics;
  a BAM bigger than the split_min_size parameter is sorted in parts laid end to end instead (records["parts"],
  the parted layout of pipelines/alignments_split.py, which several workers can build);
- "sorted-input": a BAM whose records are already in samtools sort order (read from the records in one
  streaming pass, never from @HD SO) keeps its record blocks as they are, under the header samtools sort
  would write (samtools reheader, or the file itself when that header is already its own), then is indexed.
  The records and header are those of the sorting path; the bytes differ (the input's compression and
  block layout are kept), which is why the path depends on the content alone: one key, one set of bytes.
pysam reads the header and the index statistics. Coordinates are not touched here.
"""

from __future__ import annotations

import contextvars
import os
import re
import struct
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from preprocess import shell
from preprocess.errors import InputError, ToolError

from . import bgzf, native
from .base import BuildContext, BuildOutput, BuildSettings, PipelineBase, copy_file

BAI_MAX_LENGTH = 2**29  # BAI bins address positions below 2^29; longer references need CSI
CSI_MIN_SHIFT = 14
BGZF_MAGIC = b"\x1f\x8b\x08\x04"
BAM_MAGIC = b"BAM\x01"


@dataclass(frozen=True)
class AlignmentPipeline(PipelineBase):
    name: str = "alignments"
    # 2: an already sorted BAM keeps its record blocks (records["path"] == "sorted-input");
    # 3: a BAM bigger than split_min_size is built in parts of part_size (pipelines/alignments_split.py)
    version: str = "3"
    formats: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {"SAM": (".sam",), "BAM": (".bam",)})
    stage: str = "sort_bam"
    passthrough: bool = False
    split_steps: str | None = "pipelines.alignments_split:STEPS"  # a big BAM's parts across workers
    tool_pins: str | None = "pipelines.pins:TOOLS"  # the tool versions its output pins were made with

    def artifact_names(self) -> dict[str, tuple[str, ...]]:
        return {"data": ("sorted.bam",), "index": ("sorted.bam.bai", "sorted.bam.csi")}

    def parameters(self, settings: BuildSettings) -> dict[str, Any]:
        return {"compression_level": settings.compression_level, "csi_min_shift": CSI_MIN_SHIFT,
                "split_min_size": settings.split_min_size, "part_size": settings.part_size}

    def build(self, ctx: BuildContext) -> BuildOutput:
        src, label, settings = ctx.source, ctx.label, ctx.settings
        shell.ask_version("samtools")  # for the manifest, asked beside the work
        with ctx.stage("inspect"):
            kind, lengths = check_input(src, label)
        index_kind = index_kind_for(lengths)
        out = ctx.workdir / "sorted.bam"
        index = out.with_name(f"{out.name}.{index_kind}")
        records_in = None
        if kind == "bam":  # the order is read from the records, never taken from @HD SO
            with ctx.stage("order"):
                records_in = adopt_if_sorted(src, out, index, settings.threads, ctx.workdir)
        path = "sort" if records_in is None else "sorted-input"
        if records_in is None and kind == "bam":
            from .alignments_split import build_parted, count_parts, part_ranges

            parts = count_parts(kind, src.stat().st_size, settings, len(lengths))
            if parts > 1:  # the parted layout: the bytes every cluster makes of this file
                ranges = part_ranges(lengths, parts)
                return build_parted(ctx, {"lengths": lengths, "ranges": ranges, "parts": len(ranges)})
        if records_in is None:
            with ctx.stage("sort"):
                records_in = sort_bam(src, out, index, settings, ctx.workdir, label, bam=kind == "bam")
        with ctx.stage("verify"):
            records_out, unreachable = verify_sorted(out, index, lengths, src, label, records_in,
                                                     refuse_unreachable=settings.unreachable_reads == "refuse")
        records: dict[str, Any] = {"in": records_in, "out": records_out, "index": index_kind,
                                   "references": len(lengths), "path": path}
        if unreachable:
            records["unreachable"] = unreachable
        return BuildOutput(
            artifacts={"data": out, "index": index},
            records=records,
            tools={"samtools": shell.version("samtools"), "pysam": pysam_version()},
        )


def index_kind_for(lengths: Mapping[Any, int]) -> str:
    """"csi" when a reference is too long for BAI bins, else "bai" (the one choice for SAM, BAM, the BAM a
    CRAM may become, and a BAM merged from parts)."""
    return "csi" if any(length >= BAI_MAX_LENGTH for length in lengths.values()) else "bai"


def index_flags(kind: str) -> list[str]:
    """samtools index's flags for an index kind: "bai", "csi" (min_shift 14, as sort_bam writes it) or "crai"."""
    return {"bai": ["-b"], "csi": ["-c", "-m", str(CSI_MIN_SHIFT)], "crai": []}[kind]


# One decompression for the count and the sort: bamwalk counts the records bgzip writes on their way to
# samtools sort, which reads them as an uncompressed BAM on stdin. The decompression gets half the
# threads ($9): it feeds one reader (samtools' main thread parses the records one after another), and on
# two cores a single-threaded bgzip made the whole sort 3-4% faster than one with a pool of two.
_COUNT_AND_SORT = ('bgzip -dc -@ "$9" "$2" | "$3" count "$4" '
                   '| samtools sort --no-PG -l "$5" -m "$6" -@ "$1" -T "$7" --write-index -o "$8" -')


def sort_bam(src: Path, out: Path, index: Path, settings: BuildSettings, workdir: Path, shown: str,
             bam: bool = False) -> int:
    """samtools sort writing `out` and its index in the same pass (`##idx##`: a .bai name gives BAI, any
    other CSI with min_shift 14, the bytes `samtools index -b`/`-c -m 14` write); returns the number of
    input records. A BAM is decompressed once, counted by bamwalk on its way into the sort; where that
    fails (or bamwalk is not built, or the input is SAM) the sort reads the file itself while `samtools
    view -c` counts it on another thread, and names the problem (InputError for an unreadable record or
    an undeclared reference)."""
    walk = native.program() if bam else None
    if walk is not None:
        tally = workdir / "records-in"
        try:
            shell.pipe(_COUNT_AND_SORT, settings.threads, src, walk, tally, settings.compression_level,
                       settings.sort_memory, workdir / "sort-tmp", f"{out}##idx##{index}",
                       max(1, settings.threads // 2), context=f"sorting {shown}")
            return int(tally.read_text())
        except ToolError:  # the two-pass sort below reports the problem in today's words
            for made in (out, index, *workdir.glob("sort-tmp*")):
                made.unlink(missing_ok=True)
        finally:
            tally.unlink(missing_ok=True)
    counted: dict[str, object] = {}

    def count() -> None:
        try:
            counted["n"] = count_records(src, 1, "counting input records", shown)
        except BaseException as exc:  # re-raised on the building thread
            counted["error"] = exc

    worker = threading.Thread(target=contextvars.copy_context().run, args=(count,), daemon=True)
    worker.start()
    try:
        shell.run(["samtools", "sort", "--no-PG", "-l", str(settings.compression_level), "-m", settings.sort_memory,
                   "-@", str(settings.threads), "-T", str(workdir / "sort-tmp"), "--write-index",
                   "-o", f"{out}##idx##{index}", str(src)], context=f"sorting {shown}")
    except ToolError:
        worker.join()
        if "error" in counted:  # the count names the reason in the user's terms
            raise counted["error"] from None  # type: ignore[misc]
        raise
    finally:
        worker.join()
    if "error" in counted:
        raise counted["error"]  # type: ignore[misc]
    return int(counted["n"])  # type: ignore[call-overload]


def adopt_if_sorted(src: Path, out: Path, index: Path, threads: int, workdir: Path) -> int | None:
    """When the BAM's records are already in samtools sort order: write `out` (adopt_sorted) and its index,
    return the number of records. Else None, leaving neither. Once the first records are seen in order,
    the adopted copy is written beside the rest of the order check; an index htslib refuses (a malformed
    record) also gives None, so the sorting path reports the problem in its terms.

    The order check is bamindex's where it is built (native.indexed_in_order), which writes the index of
    the file as it reads it: that index is the output's when the file's header is samtools sort's (the
    output is then a copy, written beside the check); otherwise, and where the check is bamwalk's or
    Python's, the output is reheadered and `samtools index`ed once the first records pass."""
    go, verdict, failed = threading.Event(), [True], list[BaseException]()
    own, from_walk = [False], [False]  # the header is sort's own; the walk writes the file's index
    copied = [False]  # the worker copied the file and left its index to the walk
    walked = workdir / f"walked{index.suffix}"

    def adopt_and_index() -> None:
        go.wait()
        if verdict[0]:
            try:
                if own[0] and from_walk[0]:
                    copy_file(src, out)
                    copied[0] = True
                else:
                    adopt_sorted(src, out, workdir)
                    index_bam(out, index, threads)  # the order check ends first and leaves it every core
            except BaseException as exc:  # a ToolError means: take the sorting path; others are re-raised
                failed.append(exc)

    def header_is_sorts() -> None:  # while bamindex reads the first blocks
        try:
            own[0] = sorted_header(src, workdir) is None
        except ToolError:
            own[0] = False  # adopt_sorted meets it again and the sorting path reports it

    worker = threading.Thread(target=contextvars.copy_context().run, args=(adopt_and_index,), daemon=True)
    worker.start()
    records = None
    try:
        try:
            from_walk[0] = True
            records = native.indexed_in_order(src, walked, threads, go.set, meanwhile=header_is_sorts)
        except native.Unavailable:
            from_walk[0] = False
            records = records_in_sort_order(src, threads, go.set)
    finally:
        verdict[0] = records is not None
        go.set()
        worker.join()
    for exc in failed:
        if not isinstance(exc, ToolError):
            raise exc
    if records is not None and not failed and copied[0]:
        if from_walk[0]:
            os.replace(walked, index)
        else:  # bamindex failed after its first records, and another walk gave the verdict
            try:
                index_bam(out, index, threads)
            except ToolError as exc:
                failed.append(exc)
    walked.unlink(missing_ok=True)
    if records is None or failed:
        out.unlink(missing_ok=True)
        index.unlink(missing_ok=True)
        return None
    return records


def index_bam(bam: Path, index: Path, threads: int, shown: str = "") -> None:
    """samtools index: BAI, or CSI with min_shift 14 when `index` ends in .csi (as sort_bam writes them)."""
    flags = index_flags("csi" if index.suffix == ".csi" else "bai")
    shell.run(["samtools", "index", *flags, "-@", str(threads), str(bam), str(index)],
              context=f"indexing {shown or bam.name}")


def verify_sorted(bam: Path, index: Path, lengths: dict[str, int], source: Path, shown: str, records_in: int,
                  refuse_unreachable: bool = False) -> tuple[int, dict[str, Any] | None]:
    """The output is whole (quickcheck) and holds `records_in` records: those a region query reaches through
    the index plus those it cannot (reads starting past their reference's end, see unreachable_reads).
    Returns the records out and the unreachable ones' summary (None when every read is reachable)."""
    quickcheck(bam, "checking the sorted output")
    records_out = indexed_records(bam, index)
    unreachable = unreachable_reads(bam, index, lengths, source, shown, refuse_unreachable)
    if records_out != records_in:
        raise ToolError(["samtools", "sort"], 0, f"{records_in} records in, {records_out} out",
                        context=f"checking {shown}")
    return records_out, unreachable


_KEY = struct.Struct("<IiIHH")  # refID (unsigned: unplaced last), pos, bin_mq_nl, n_cigar_op, flag
_BLOCK_SIZE = struct.Struct("<i")  # a BAM record starts with its length; refID, pos at +4, +8, flag at +18
_CHUNK, _FIRST_CHUNK = 1 << 22, 1 << 16
_LARGEST_RECORD = 1 << 28  # bytes; an ultra-long read with its qualities and tags is a few MB


def records_in_sort_order(bam: Path, threads: int = 1, in_order_so_far: Callable[[], None] | None = None
                          ) -> int | None:
    """The number of records when the BAM's records are already in `samtools sort` order, else None.

    samtools sort (1.16, bam_sort.c bam1_cmp_core) orders by reference id (unplaced, -1, last), then
    position, then forward before reverse strand, and keeps the input order of ties (a stable merge
    sort). Records whose keys never decrease are therefore exactly what the sort would write. One
    streaming pass over the decompressed records, stopping at the first one out of order; a stream it
    cannot read also gives None, so the sorting path reports it. `in_order_so_far` is called once the
    first block of records has passed. Only the keys are read here: htslib,
    indexing the same records (adopt_if_sorted), validates each one as samtools sort would.
    The walk runs in bamwalk (pipelines.native) where it is built, else in Python, with the same answer.
    """
    try:
        return native.records_in_order(bam, threads, in_order_so_far or (lambda: None))
    except native.Unavailable:
        pass
    proc = subprocess.Popen(shell.tied(["bgzip", "-dc", "-@", str(threads), str(bam)]), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=shell.environment(),
                            start_new_session=True)
    assert proc.stdout is not None
    try:
        with shell.interruptible("checking the record order"):  # a pure-Python loop: stopped at the cap
            found = _walk_records(proc.stdout, in_order_so_far or (lambda: None))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        code = proc.wait()
    return found if code == 0 else None


def _walk_records(stream: IO[bytes], in_order_so_far: Callable[[], None]) -> int | None:
    """records_in_sort_order's pass over an uncompressed BAM stream. The header is gathered into one
    growing buffer, each byte copied once: a 64 MB header is linear work, not 1000 copies of the whole."""
    buf = bytearray()

    def have(size: int) -> bool:
        if len(buf) < size:  # one read for all that is missing (a pipe's read(n) waits for n or the end)
            buf.extend(stream.read(max(size - len(buf), _FIRST_CHUNK)))
        return len(buf) >= size

    if not have(12) or buf[:4] != BAM_MAGIC:
        return None
    at = 12 + int.from_bytes(buf[4:8], "little")  # magic, l_text, the text, n_ref
    if not have(at):
        return None
    refs = int.from_bytes(buf[at - 4:at], "little")
    for _ in range(refs):  # l_name, name, l_ref
        if not have(at + 4) or not have(at + 8 + int.from_bytes(buf[at:at + 4], "little")):
            return None
        at += 8 + int.from_bytes(buf[at:at + 4], "little")
    size_at, count, last, pos = _BLOCK_SIZE.unpack_from, 0, None, at
    while True:
        end, starts = len(buf), list[int]()
        mark = starts.append
        while pos + 36 <= end:  # the chain of block_size fields; the keys are compared vectorised below
            step = 4 + size_at(buf, pos)[0]
            if not 36 <= step <= _LARGEST_RECORD:  # damaged: the sorting path names the problem
                return None
            if pos + step > end:
                break
            mark(pos)
            pos += step
        if starts:
            last = _keys_in_order(buf, starts, last)
            if last is None:
                return None
            if not count:
                in_order_so_far()
            count += len(starts)
        shell.check_time("checking the record order")
        chunk = stream.read(_CHUNK if count else _FIRST_CHUNK)  # a small first look: most unsorted files end here
        if not chunk:
            return count if pos == end else None
        del buf[:pos]
        buf += chunk
        pos = 0


def _keys_in_order(buf: bytes | bytearray, starts: list[int], last: tuple[int, int] | None) -> tuple[int, int] | None:
    """The last (reference, position-and-strand) key when the records at `starts` continue `last` in
    samtools sort order, else None. The reference id is compared as unsigned, so unplaced (-1) sorts last.
    A few records are compared in Python (an unsorted file is usually refused here, without numpy's import)."""
    if len(starts) < 4096:
        for start in starts:
            ref, position, _, _, flag = _KEY.unpack_from(buf, start + 4)
            key = (ref, ((position + 1) & 0xFFFFFFFF) << 1 | (flag >> 4) & 1)
            if last is not None and key < last:
                return None
            last = key
        return last
    with shell.held():  # an import cut in two by the time cap would leave numpy half-initialised
        import numpy as np

    at = np.asarray(starts, dtype=np.int64)

    def field(offset: int, dtype: str) -> Any:
        width = np.dtype(dtype).itemsize
        values = np.empty(len(at), dtype=dtype)
        where = at + offset
        for shift in range(width):  # np.frombuffer needs aligned views: one per alignment
            view = np.frombuffer(buf, dtype=dtype, offset=shift, count=(len(buf) - shift) // width)
            chosen = where % width == shift
            values[chosen] = view[(where[chosen] - shift) // width]
        return values

    ref = field(4, "<u4").astype(np.uint64)
    rest = ((field(8, "<u4").astype(np.uint64) + 1) & 0xFFFFFFFF) << 1 | ((field(18, "<u2") >> 4) & 1)
    if last is not None:
        ref = np.concatenate(([np.uint64(last[0])], ref))
        rest = np.concatenate(([np.uint64(last[1])], rest))
    up, same = ref[1:] > ref[:-1], ref[1:] == ref[:-1]
    if not bool(np.all(up | (same & (rest[1:] >= rest[:-1])))):
        return None
    return int(ref[-1]), int(rest[-1])


def sorted_header(src: Path, workdir: Path) -> Path | None:
    """The header samtools sort would write for a BAM (SO:coordinate), in a SAM file; None when that is
    the BAM's own header already."""
    header = workdir / "input-header.sam"
    made = workdir / "sorted-header.sam"
    if not made.exists():  # asked before: the answer stands (written whole or not at all)
        shell.run(["samtools", "view", "-H", "--no-PG", "-o", str(header), str(src)], context="reading the header")
        part = workdir / "sorted-header.part.sam"
        shell.run(["samtools", "sort", "--no-PG", "-O", "sam", "-o", str(part), str(header)],
                  context="making the sorted header")
        os.replace(part, made)
    return None if made.read_bytes() == header.read_bytes() else made


def adopt_sorted(src: Path, out: Path, workdir: Path) -> None:
    """`out` = the records of a BAM already in sort order, under the header samtools sort would write
    (SO:coordinate); the record blocks are copied as they are, not recompressed (samtools reheader)."""
    header = sorted_header(src, workdir)
    if header is None:
        copy_file(src, out)
        return
    with open(out, "wb") as target:
        proc = subprocess.run(shell.tied(["samtools", "reheader", "--no-PG", str(header), str(src)]),
                              stdout=target, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=shell.environment())
    if proc.returncode != 0:
        raise ToolError(["samtools", "reheader"], proc.returncode, proc.stderr.decode("utf-8", "replace"),
                        context="writing the sorted header")


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


def check_input(path: Path, shown: str) -> tuple[str, dict[str, int]]:
    """The input's kind ("sam" or "bam") and reference lengths; InputError when it is neither SAM nor BAM,
    a damaged BAM (refuse_damaged) or its header unreadable. pysam, which reads the header, loads while
    a BAM's quickcheck runs (its import and the check took 10-14 ms each, one after the other); the
    header is read only once the check has passed: pysam and htslib print errors of their own reading a
    damaged file."""
    kind = sniff(path)
    if kind == "other":
        raise InputError(f"{shown}: not SAM or BAM (neither BGZF-compressed BAM nor SAM text)")
    if kind == "bam":
        damaged: list[BaseException] = []

        def check() -> None:
            try:
                refuse_damaged(path, shown)
            except BaseException as exc:  # re-raised on the building thread
                damaged.append(exc)

        worker = threading.Thread(target=contextvars.copy_context().run, args=(check,), daemon=True)
        worker.start()
        try:
            import pysam  # noqa: F401 - loaded while the check runs, for reference_lengths
        finally:
            worker.join()
        if damaged:
            raise damaged[0]
    return kind, reference_lengths(path, shown)


def quickcheck(path: Path, context: str = "") -> None:
    """samtools quickcheck -u -v: ToolError when a BAM or CRAM is truncated (no EOF block or container) or
    its header unreadable. -u: an unaligned file (no @SQ: PacBio HiFi, GATK uBAM) is valid."""
    shell.run(["samtools", "quickcheck", "-u", "-v", str(path)], context=context)


def refuse_damaged(path: Path, shown: str) -> None:
    """An input BAM or CRAM that fails quickcheck is an InputError; for a BAM it names where the BGZF
    layout breaks, when it does (from the block headers alone)."""
    try:
        quickcheck(path)
    except ToolError:
        with open(path, "rb") as stream:
            cram = stream.read(4) == b"CRAM"
        if cram:
            raise InputError(f"{shown}: CRAM is truncated or corrupt (samtools quickcheck failed: missing EOF "
                             "container, bad header or unreadable)") from None
        fault = bgzf.first_fault(path, inflate=False)
        raise InputError(f"{shown}: BAM is truncated or corrupt (samtools quickcheck failed: "
                         + (f"{fault})" if fault else "missing EOF block, bad header or unreadable)")) from None


def reference_lengths(path: Path, shown: str) -> dict[str, int]:
    """Reference name -> length from a SAM/BAM header; InputError when it cannot be read or an @SQ LN is
    not a positive integer."""
    import pysam

    try:
        with pysam.AlignmentFile(str(path), check_sq=False) as aln:
            text = str(aln.header)
            lengths = {name: int(aln.get_reference_length(name)) for name in aln.references}
    except (ValueError, OSError) as exc:
        raise InputError(f"{shown}: cannot read the SAM/BAM header: {users_terms(str(exc), path, shown)}") from None
    for number, line in enumerate(text.split("\n"), 1):  # htslib reads LN:1000x as 1000, and says nothing
        bad = line.startswith("@SQ\t") and next((f for f in line.split("\t") if f.startswith("LN:")
                                                 and not re.fullmatch(r"LN:[1-9][0-9]*", f)), None)
        if bad:
            raise InputError(f"{shown}: header line {number}: @SQ {bad!r} is not a positive integer length")
    return lengths


UNREACHABLE_NAMED = 5  # how many unreachable reads a manifest names


def unreachable_reads(bam: Path, index: Path, lengths: dict[str, int], source: Path, shown: str,
                      refuse: bool = False) -> dict[str, Any] | None:
    """Reads placed at or past their reference's length: samtools sorts and indexes them, but no region
    query a browser makes reaches them. None when there are none; else {"count": n, "first": the first
    few, each {"read", "at" (1-based), "length"}}, or with `refuse` an InputError naming the first.
    The index statistics count them with the rest; only the bins past each reference's end are read."""
    import pysam

    count, first = 0, list[dict[str, Any]]()
    with pysam.AlignmentFile(str(bam), index_filename=str(index), check_sq=False) as aln:
        for name, length in lengths.items():
            for read in aln.fetch(name, max(0, length - 1), 2**31 - 1):
                if read.reference_start < length:
                    continue
                if refuse:
                    line = _first_line_of_read(source, read.query_name or "")
                    where = f"{shown}: line {line}" if line else f"{shown}: read {read.query_name}"
                    raise InputError(f"{where}: a read at {name}:{read.reference_start + 1} starts past the end of "
                                     f"{name} (length {length} on its @SQ line), where no region query reaches it")
                count += 1
                if len(first) < UNREACHABLE_NAMED:
                    first.append({"read": read.query_name, "at": f"{name}:{read.reference_start + 1}",
                                  "length": length})
    return {"count": count, "first": first} if count else None


def count_records(path: Path, threads: int, context: str, shown: str) -> int:
    """Records in the input; InputError when one is unreadable or names a reference the header lacks."""
    try:
        out, warnings = shell.run_with_stderr(["samtools", "view", "-c", "--no-PG", "-@", str(threads), str(path)],
                                              context=context)
    except ToolError as exc:
        reason = users_terms(exc.stderr_tail, path, shown)
        raise InputError(f"{shown}: unreadable alignment records: {reason}") from None
    unknown = re.search(r"recognized reference name (\S+?);", warnings)
    if unknown:  # htslib would quietly make such a read unmapped
        line = first_line_naming(path, unknown.group(1).strip('"'))
        where = f"{shown}: line {line}" if line else shown
        raise InputError(f"{where}: a record names reference {unknown.group(1)}, which no @SQ line declares")
    return int(out.strip())


def first_line_naming(path: Path, name: str) -> int | None:
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


def _first_line_of_read(path: Path, qname: str) -> int | None:
    """The line number of the first SAM record named `qname`; None for BAM."""
    import gzip

    if sniff(path) != "sam":
        return None
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
    key = qname.encode() + b"\t"
    with (gzip.open(path, "rb") if compressed else open(path, "rb")) as text:
        for number, line in enumerate(text, 1):
            if line.startswith(key):
                return number
    return None


_BGZF_DAMAGE = re.compile(r"checksum mismatch|inflate operation failed", re.I)


def users_terms(text: str, path: Path, shown: str) -> str:
    """A tool's message with the path of our copy of the input replaced by the user's file name; for
    htslib's "CRC32 checksum mismatch" or "Inflate operation failed", the block at fault by its offset."""
    if _BGZF_DAMAGE.search(text):
        fault = bgzf.first_fault(path)
        if fault:
            return fault
    return text.replace(str(path), shown)


def indexed_records(bam: Path, index: Path) -> int:
    """Records reachable through the index: mapped + unmapped per reference + unplaced."""
    import pysam

    try:
        with pysam.AlignmentFile(str(bam), index_filename=str(index), check_sq=False) as aln:
            stats = aln.get_index_statistics()
            return sum(s.mapped + s.unmapped for s in stats) + aln.nocoordinate
    except (ValueError, OSError) as exc:
        raise ToolError(["pysam.AlignmentFile", str(bam)], 1, str(exc), context="opening the new index") from None


def pysam_version() -> str:
    """The pysam in use (a tool version the manifest records)."""
    import pysam

    return pysam.__version__


ALIGNMENTS = AlignmentPipeline()
