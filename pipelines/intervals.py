"""VCF, BED, narrowPeak, broadPeak, GFF3 -> sorted, bgzipped, tabix-indexed text: the formats, and the build
that picks the path a text takes (GTF and bigBed are converted, then built here: pipelines/gtf.py, bigbed.py).

One streaming pipe decompresses (by magic bytes), strips CR, splits header from data lines,
validates every data line (columns, integer coordinates, start <= end), sorts with
`LC_ALL=C sort -s`, puts the header first and bgzips, writing tabix's index in the same pass where
bgzindex runs (tabix_index.compressor; else tabix after bgzip); then the records htslib counted
into the index (its per-contig pseudo-bins) must equal the data lines read, and a query for the
first and the last record must return them. Coordinates: BED family 0-based half-open; VCF POS
and GFF start/end 1-based closed. VCF records follow the contig order of the header's ##contig
lines (undeclared contigs last, by name); other formats sort contigs by name. Header lines (VCF/GFF
`#`, BED `#`/track/browser) keep their relative order at the top; blank lines and a GFF3 ##FASTA
section are dropped and counted. Nothing else is ever dropped.

Which path runs depends on the content alone, and every path writes the same bytes as sorting would
(records["path"] names it): "stream" when the text is already in sort's order with the header first
(no sort: checked in memory when it fits the memory budget, a plain text bgzipped as it is meanwhile;
else by the validator as it streams, which stops at the first line out of order, and the file is
sorted instead), "input" when a BGZF input is moreover canonical (its text is exactly what the output
would hold, no CR, blank or dropped line, newline-terminated, ending with the EOF block): then its
bytes are the output, whatever level they were compressed at (indexed and read back while it is
checked); "columnar" when a text within the memory budget with nothing the validator would remark on
is sorted in memory (pipelines/columnar.py reads, checks and sorts it in one pass), and "sort"
otherwise.

Where the rest is: the streaming pass and its error diagnosis in pipelines/streaming.py (with
scripts/intervals.sh and scripts/validate.awk), the in-memory pass in columnar.py, the tabix index in
tabix_index.py, the checks of the output in interval_checks.py, compression sniffing in bgzf.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preprocess import shell
from preprocess.errors import InputError

from . import bgzf, columnar, interval_checks, streaming, tabix_index
from .base import BuildContext, BuildOutput, BuildSettings, PipelineBase, copy_file
from .streaming import Where, line_of_source
from .tabix_index import CSI_MIN_SHIFT

SPLIT_MIN = 32 << 20                     # plain texts from this size are validated in two parts at once
PATHS = ("input", "stream", "columnar", "sort")  # records["path"]: the input's own bytes, no sort, sorted in
                                                 # memory (pipelines/columnar.py), sorted by the streaming pass


@dataclass(frozen=True)
class IntervalFormat(PipelineBase):
    """How one text format is validated, sorted and indexed."""

    name: str
    formats: dict[str, tuple[str, ...]]
    kind: str                       # "vcf" | "bed" | "gff": header rules and coordinate columns
    preset: str                     # tabix -p
    extension: str                  # artifact name: sorted.<extension>.gz
    sort_keys: tuple[str, ...]
    min_columns: int
    exact_columns: int = 0
    start_column: int = 2
    end_column: int = 3
    version: str = "3"               # 3: a sorted, canonical BGZF input is its own output (path "input")
    passthrough: bool = False
    stage: str = field(default="")
    tool_pins: str | None = "pipelines.pins:TOOLS"  # the tool versions its output pins were made with

    def artifact_names(self) -> dict[str, tuple[str, ...]]:
        data = f"sorted.{self.extension}.gz"
        return {"data": (data,), "index": (f"{data}.tbi", f"{data}.csi")}

    def parameters(self, settings: BuildSettings) -> dict[str, Any]:
        return {"compression_level": settings.compression_level, "csi_min_shift": CSI_MIN_SHIFT}

    def build(self, ctx: BuildContext) -> BuildOutput:
        return build_intervals(self, ctx, ctx.source)

    def region(self, line: str) -> tuple[str, int, int]:
        """A data line's contig and 0-based half-open [start, end) (VCF: POS and the REF's length; BED: at
        least one base, as a query needs)."""
        cols = line.split("\t")
        start = int(cols[self.start_column - 1])
        if self.kind == "vcf":
            return cols[0], start - 1, start - 1 + max(1, len(cols[3]))
        end = int(cols[self.end_column - 1])
        if self.kind == "gff":
            return cols[0], start - 1, end
        return cols[0], start, max(end, start + 1)


def interval_format(name: str, formats: dict[str, tuple[str, ...]], kind: str, preset: str, extension: str,
                    sort_keys: tuple[str, ...], min_columns: int, **more: Any) -> IntervalFormat:
    """An IntervalFormat whose Dask stage is sort_<name>."""
    return IntervalFormat(name=name, formats=formats, kind=kind, preset=preset, extension=extension,
                          sort_keys=sort_keys, min_columns=min_columns, stage=f"sort_{name}", **more)


BED_KEYS = ("-k1,1", "-k2,2n", "-k3,3n")
# VCF lines carry their header contig rank in front while sorting: rank, then name (contigs the
# header does not declare come last, by name), then POS.
VCF = interval_format("vcf", {"VCF": (".vcf",)}, "vcf", "vcf", "vcf", ("-k1,1n", "-k2,2", "-k3,3n"), 8, end_column=2)
BED = interval_format("bed", {"BED": (".bed", ".bedgraph")}, "bed", "bed", "bed", BED_KEYS, 3)
NARROWPEAK = interval_format("narrowpeak", {"narrowPeak": (".narrowpeak",)}, "bed", "bed", "narrowPeak",
                             BED_KEYS, 10, exact_columns=10)
BROADPEAK = interval_format("broadpeak", {"broadPeak": (".broadpeak",)}, "bed", "bed", "broadPeak",
                            BED_KEYS, 9, exact_columns=9)
GFF3 = interval_format("gff3", {"GFF3": (".gff3", ".gff")}, "gff", "gff", "gff3", ("-k1,1", "-k4,4n"), 9,
                       exact_columns=9, start_column=4, end_column=5)


def build_intervals(spec: IntervalFormat, ctx: BuildContext, source: Path,
                    extra_records: dict[str, Any] | None = None, lengths: tuple[int, ...] = (),
                    where: Where = line_of_source, paths: tuple[str, ...] = PATHS) -> BuildOutput:
    """Validate, sort, compress, index and check `source` as `spec`; the artifacts go in ctx.workdir.

    `source` is the user's file or one converted from it; `where` says where its line N came from.
    `paths` are the shortcuts the content may take ("input", "stream", "columnar"): fewer only to prove,
    in tests, that each gives the sorting path's bytes.
    """
    shell.ask_version("tabix", "sort")  # for the manifest, asked beside the work
    work = ctx.workdir
    label = ctx.label
    out = work / f"sorted.{spec.extension}.gz"
    tmp = work / "sort-tmp"
    tmp.mkdir(exist_ok=True)
    settings = ctx.settings
    sorting = (tmp, settings.sort_memory, settings.compression_level)
    # a shortcut's attempt would stop within its first lines: skip its processes (same bytes either way)
    unsorted = paths != ("sort",) and plainly_unsorted(source, spec)
    path = "stream" if "stream" in paths and not unsorted else "sort"
    compression = bgzf.sniff_compression(source)
    memory = columnar.budget(settings.sort_memory, settings.threads)
    found = ahead = guess = None
    compress: dict[str, str] = {}
    try:
        need = columnar.peak(source, compression) if "columnar" in paths and spec.sort_keys else None
        in_memory = need is not None and need <= memory  # checked (and sorted if need be) in memory
        if need is not None and not unsorted and (compression == "plain"
                                                  or ("input" in paths and compression == "bgzf")):
            # likely in order: its output made, indexed and read back meanwhile (kept if the check says so)
            guess = index_options(spec, leading_header(source, spec), 0, lengths)
            make, verdict = (columnar.compressor(spec, out, guess[0], settings.compression_level,
                                                 settings.threads) if compression == "plain" else (None, None))
            index_commands = tabix_index.index_commands(out, spec.preset, *guess, settings.threads,
                                                        settings.compression_level)
            if make is None:  # its index command checks the text as it reads it
                index_commands, verdict = columnar.checking_index(spec, out, index_commands)
            if in_memory or verdict is not None:  # past the budget, only bgzindex's check can settle it
                if make is None:
                    copy_file(source, out)
                ahead = columnar.Ahead(out, make, source, index_commands, guess, settings.threads,
                                       settings.compression_level, label, verdict)
        if in_memory or ahead is not None:
            with ctx.stage("columnar"):
                found = columnar.sort_text(spec, source, out, settings.threads, settings.compression_level,
                                           compression, reuse="input" in paths, early=ahead, in_memory=in_memory)
            if found is not None:
                header, stats, path = found
                if path == "input" and ahead is None:
                    copy_file(source, out)
            if ahead is not None and ahead.stopped:  # the check did not find the output final
                ahead = None
        if found is None and "input" in paths and not unsorted and compression == "bgzf":
            with ctx.stage("check"):
                header, stats = streaming.run_validated("check", spec, ctx, source, out, where=where)
            if stats["unsorted"]:
                path = "sort"
            elif canonical_bgzf(source, stats):
                path = "input"
                copy_file(source, out)
        if path in ("stream", "sort") and found is None:  # compressed by bgzindex with the index guessed
            kind_guess = index_options(spec, leading_header(source, spec), 0, lengths)[0]
            compress = tabix_index.compressor_env(out, spec.preset, kind_guess, settings.compression_level)
        if path == "stream" and found is None:
            with ctx.stage("stream"):
                header, stats = streaming.run_validated("stream", spec, ctx, source, out, *sorting, where=where,
                                                        extra_env=compress)
            if stats["unsorted"]:
                path = "sort"
        if path == "sort":
            with ctx.stage("sort"):
                split = split_point(source, spec, settings.threads)
                parts = (streaming.run_split(spec, ctx, source, out, split, sorting, where, compress)
                         if split else None)
                if parts is None:
                    header, stats = streaming.run_validated("sort", spec, ctx, source, out, *sorting, 0,
                                                            *spec.sort_keys, where=where, extra_env=compress)
                else:
                    header, stats = parts
        if spec.preset == "vcf" and not (header and header[0].startswith("##fileformat=VCF")
                                         and header[-1].startswith("#CHROM\t")):
            raise InputError(f"{label}: not a VCF: the header must begin with ##fileformat=VCF and end with "
                             "the #CHROM line (VCF readers refuse a file without them)")
        kind, skip = index_options(spec, header, stats["maxend"], lengths)
        with ctx.stage("index"):
            if ahead and guess == (kind, skip):
                read_back = ahead.result(f"indexing {label}")  # ToolError where a step failed
                index = tabix_index.index_path(out, kind)
            else:
                read_back = None
                if ahead:
                    ahead.stop(keep_output=True)  # a guess gone wrong: the output stands, not its index
                index = tabix_index.write_index(out, spec.preset, kind, skip, label, settings.threads,
                                                settings.compression_level)
    except BaseException:
        if ahead:
            ahead.stop()
        raise
    with ctx.stage("verify"):
        records_out = interval_checks.verify_output(spec, source, out, index, header, stats, settings.threads,
                                                    settings.compression_level, label, where, read_back)
    records: dict[str, Any] = {
        "in": stats["records"], "out": records_out, "header_lines": len(header),
        "dropped": {k: stats[k] for k in ("blank", "track", "fasta") if stats[k]},
        "index": kind, "contigs": len(stats["contigs"]), "path": path,
    }
    if extra_records:
        records.update(extra_records)
    return BuildOutput(artifacts={"data": out, "index": index}, records=records,
                       tools={"htslib": shell.version("tabix"), "sort": shell.version("sort")})


def index_options(spec: IntervalFormat, header: list[str], maxend: int, lengths: tuple[int, ...]) -> tuple[str, int]:
    """The output's index kind ("tbi" or "csi") and the leading lines tabix skips (a BED track line's header)."""
    kind = tabix_index.index_kind(maxend, (*tabix_index.declared_lengths(header), *lengths))
    track = spec.kind == "bed" and any(not line.startswith("#") for line in header)
    return kind, len(header) if track else 0


def leading_header(source: Path, spec: IntervalFormat) -> list[str]:
    """The header lines at the top of the first 64 KiB of a text (a guess at its header, for work started
    before it is read whole)."""
    import zlib

    try:
        head = bgzf.read_head(source, PREFIX_BYTES)
    except (OSError, EOFError, zlib.error):
        return []
    found = []
    for line in head.split(b"\n")[:-1]:
        if not (line.startswith(b"#") or (spec.kind == "bed" and re.match(rb"(track|browser)([ \t]|$)", line))):
            break
        found.append(line.decode("utf-8", "replace"))
    return found


def split_point(source: Path, spec: IntervalFormat, threads: int) -> int:
    """Where a plain text is cut in two for two validators at once (the byte after a newline near the
    middle), or 0: one validator. Not GFF3, whose ##FASTA section would make the second part's lines
    sequence; the bytes are the same either way."""
    size = source.stat().st_size
    if threads < 2 or size < SPLIT_MIN or spec.kind == "gff" or bgzf.sniff_compression(source) != "plain":
        return 0
    with open(source, "rb") as stream:
        stream.seek(size // 2)
        stream.readline()
        cut = stream.tell()
    return cut if cut < size else 0


def canonical_bgzf(source: Path, stats: dict[str, Any]) -> bool:
    """A BGZF input, found in order by the check pass, whose text is byte for byte what the output would
    hold: nothing stripped or dropped, newline-terminated, well-formed blocks ending with the EOF block."""
    if stats["cr"] or stats["blank"] or stats["fasta"]:
        return False
    layout = bgzf.blocks(source)
    return (layout is not None and bgzf.ends_with_eof_block(source, layout)
            and sum(block.isize for block in layout) == stats["bytes"])


PREFIX_BYTES = 1 << 16
VCF_UNDECLARED = 999999999  # validate.awk's rank for a contig no ##contig line declares: after every declared one


def plainly_unsorted(source: Path, spec: IntervalFormat) -> bool:
    """Whether the data lines in the first 64 KiB of `source`, or (a plain text) one line at each of
    SAMPLES points across it, already break `sort`'s order (bytewise contig, then the numeric keys; VCF
    by header contig rank first): a BED in natural contig order (chr2 before chr10) looks sorted in its
    first 64 KiB, and the early bgzip of it would be wasted. False when unsure: a line this quick look
    cannot read is the validator's to judge."""
    import zlib

    try:
        head = bgzf.read_head(source, PREFIX_BYTES)
    except (OSError, EOFError, zlib.error):
        return False
    ranks: dict[bytes, int] = {}
    previous: tuple[Any, ...] | None = None
    for raw in head.split(b"\n")[:-1]:  # the last line may be cut short
        key = _sort_key(raw, spec, ranks)
        if key is None:
            return False
        if key == ():
            continue
        if previous is not None and key < previous:
            return True
        previous = key
    if previous is None or bgzf.sniff_compression(source) != "plain":
        return False
    size = source.stat().st_size
    with open(source, "rb") as stream:
        for point in range(1, SAMPLES + 1):
            stream.seek(max(PREFIX_BYTES, size * point // (SAMPLES + 1)))
            stream.readline()  # the rest of the line the point fell in
            raw = stream.readline()
            if not raw.endswith(b"\n"):
                return False
            key = _sort_key(raw[:-1], spec, ranks)
            if key is None:
                return False
            if key == ():
                continue
            if key < previous:
                return True
            previous = key
    return False


SAMPLES = 16


def _sort_key(raw: bytes, spec: IntervalFormat, ranks: dict[bytes, int]) -> tuple[Any, ...] | None:
    """A data line's sort key; () for a line that is no record (a header, track or blank line: a
    ##contig line is ranked on the way), None for one the quick look cannot read."""
    line = raw.removesuffix(b"\r")
    if not line.strip(b" \t"):
        return ()
    if line.startswith(b"#"):
        if line.startswith(b"##FASTA"):
            return None
        if line.startswith(b"##contig=<ID="):
            ranks.setdefault(re.split(rb"[,>]", line[13:], maxsplit=1)[0], len(ranks) + 1)
        return ()
    if spec.kind == "bed" and (line.startswith(b"track") or line.startswith(b"browser")):
        return ()
    cols = line.split(b"\t")
    numbers = [cols[i - 1] for i in ((spec.start_column, spec.end_column) if spec.kind == "bed"
                                     else (spec.start_column,))] if len(cols) >= spec.min_columns else []
    if not numbers or not all(n.isdigit() and (n == b"0" or n[:1] != b"0") for n in numbers):
        return None
    if spec.kind == "vcf":
        return (ranks.get(cols[0], VCF_UNDECLARED), cols[0], int(numbers[0]))
    return (cols[0], *map(int, numbers))
