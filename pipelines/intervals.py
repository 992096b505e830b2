"""VCF, BED, narrowPeak, broadPeak, GFF3 and GTF -> sorted, bgzipped, tabix-indexed text.

One streaming pipe decompresses (by magic bytes), strips CR, splits header from data lines,
validates every data line (columns, integer coordinates, start <= end), sorts with
`LC_ALL=C sort -s`, puts the header first and bgzips; then tabix, then the records htslib counted
into the index (its per-contig pseudo-bins) must equal the data lines read, and a query for the
first and the last record must return them. Coordinates: BED family 0-based half-open; VCF POS
and GFF start/end 1-based closed. VCF records follow the contig order of the header's ##contig
lines (undeclared contigs last, by name); other formats sort contigs by name. Header lines (VCF/GFF
`#`, BED `#`/track/browser) keep their relative order at the top; blank lines and a GFF3 ##FASTA
section are dropped and counted. Nothing else is ever dropped.

Which path runs depends on the content alone, and every path writes the same bytes as sorting would
(records["path"] names it): "stream" when the validator finds the text already in sort's order with
the header first (no sort; it stops at the first line out of order and the file is sorted instead),
"input" when a BGZF input is moreover canonical (its text is exactly what the output would hold, no
CR, blank or dropped line, newline-terminated, ending with the EOF block): then its bytes are the
output, whatever level they were compressed at; "columnar" when a plain text within the memory budget
has nothing the validator would remark on (pipelines/columnar.py reads, checks and sorts it in one
pass), and "sort" otherwise.
"""

from __future__ import annotations

import re
import shutil
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preprocess import shell
from preprocess.errors import InputError, ToolError

from . import bgzf, columnar, tabix_index
from .base import BuildContext, BuildOutput, BuildSettings

TBI_MAX = 2**29          # TBI bins address positions below 2^29; beyond that, CSI
TABIX_MAX = 2**32        # the largest end tabix's CSI (min_shift 14) stores; beyond is an input error
CSI_MIN_SHIFT = 14
GZIP_MAGIC = b"\x1f\x8b"

SCRIPTS = Path(__file__).with_name("scripts")
VALIDATE_AWK = SCRIPTS / "validate.awk"   # every data line checked; header, blank, track lines counted
PASS_SH = SCRIPTS / "intervals.sh"        # decompress | validate [| sort | header first | bgzip]
# Every record reachable through the index: one `tabix -R` per file of whole-contig regions ($2...),
# in parallel, each printing its count (tabix exits 0 even when it skips a line).
READ_BACK = r"""
pids=()
for regions in "${@:2}"; do tabix -R "$regions" "$1" | wc -l & pids+=($!); done
for pid in "${pids[@]}"; do wait "$pid"; done
"""
SPLIT_MIN = 32 << 20                     # plain texts from this size are validated in two parts at once
READ_BACK_IN_PROCESS = 256 << 10          # smaller outputs are read back through pysam, no processes
UNSORTED = 4                              # intervals.sh check/stream: a line out of sort's order
PATHS = ("input", "stream", "columnar", "sort")  # records["path"]: the input's own bytes, no sort, sorted in
                                                 # memory (pipelines/columnar.py), sorted by the streaming pass


@dataclass(frozen=True)
class IntervalFormat:
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

    def parameters(self, settings: BuildSettings) -> dict[str, Any]:
        return {"compression_level": settings.compression_level, "csi_min_shift": CSI_MIN_SHIFT}

    def build(self, ctx: BuildContext) -> BuildOutput:
        return build_intervals(self, ctx, ctx.source)


# Where a line of the validated file is, in the user's terms: "line 12" of their file, or for a
# converted source (GTF through gffread, bigBed through pipelines/bigbed.py) what it came from.
Where = Callable[[int], str]


def line_of_source(number: int) -> str:
    return f"line {number}"


def converted_line(path: Path, intro: str) -> Where:
    """For a converted source: the record's own text (a line number there would mean nothing to the user)."""
    def where(number: int) -> str:
        text = next((line for n, line in enumerate(_text_lines(path), 1) if n == number), b"")
        shown = text[:80].decode("utf-8", "replace").replace("\t", " ")
        return f"{intro} {shown!r}"
    return where


def run_validated(mode: str, spec: IntervalFormat, ctx: BuildContext, source: Path, out: Path,
                  *more: str | Path | int, prefix: str = "", where: Where = line_of_source,
                  extra_env: dict[str, str] | None = None) -> tuple[list[str], dict[str, Any]]:
    """Run intervals.sh in `mode` ("validate" or "sort") over `source`: header lines and stats.

    The script gets the mode, decompressor, source, output and threads, then `more`. Errors name the
    user's file (ctx.label) and place the line with `where`. In "check" and "stream" mode, a text not
    in sort's order gives no header and stats {"unsorted": line}.
    """
    work = ctx.workdir
    prefix = prefix or f"{mode}-"
    label = ctx.label
    hdr, hdrnr, err, stats = (work / f"{prefix}header.txt", work / f"{prefix}header.lines",
                              work / f"{prefix}errors.txt", work / f"{prefix}stats.tsv")
    for stale in (err, stats):
        stale.unlink(missing_ok=True)  # from a split run that is now run whole
    decompress = sniff_compression(source)
    _refuse_binary(source, decompress, label)
    env = {"PP_AWK": str(VALIDATE_AWK), "PP_HDR": str(hdr), "PP_HDRNR": str(hdrnr), "PP_ERR": str(err),
           "PP_STATS": str(stats), "PP_KIND": spec.kind, "PP_MINCOL": str(spec.min_columns),
           "PP_EXACT": str(spec.exact_columns), "PP_START": str(spec.start_column),
           "PP_END": str(spec.end_column), "PP_MAX": str(TABIX_MAX), **(extra_env or {})}
    try:
        shell.script(PASS_SH, mode, decompress, source, out, ctx.settings.threads, *more, env=env,
                     context=f"reading {label}")
    except ToolError as exc:
        if exc.returncode == UNSORTED and stats.exists() and stats.read_bytes().startswith(b"unsorted\t"):
            return [], _read_stats(stats, label)
        raise _classify(label, decompress, err, exc, where) from None
    if err.exists() and err.stat().st_size:
        raise _placed(label, err.read_text(errors="replace").strip(), where)
    return _header_lines(hdr, hdrnr, label, where), _read_stats(stats, label)


def split_point(source: Path, spec: IntervalFormat, threads: int) -> int:
    """Where a plain text is cut in two for two validators at once (the byte after a newline near the
    middle), or 0: one validator. Not GFF3, whose ##FASTA section would make the second part's lines
    sequence; the bytes are the same either way."""
    size = source.stat().st_size
    if threads < 2 or size < SPLIT_MIN or spec.kind == "gff" or sniff_compression(source) != "plain":
        return 0
    with open(source, "rb") as stream:
        stream.seek(size // 2)
        stream.readline()
        cut = stream.tell()
    return cut if cut < size else 0


def leading_contigs(source: Path) -> str:
    """The ##contig IDs of the header lines at the top of a plain VCF, as validate.awk reads them, one a line."""
    ids = []
    with open(source, "rb") as stream:
        for raw in stream:
            line = raw.rstrip(b"\n").removesuffix(b"\r")
            if not line.strip(b" \t"):
                continue
            if not line.startswith(b"#"):
                break
            if line.startswith(b"##contig=<ID="):
                ids.append(re.sub(rb"[,>].*$", b"", line[13:]).decode("latin-1"))
    return "".join(f"{contig}\n" for contig in ids)


def run_split(spec: IntervalFormat, ctx: BuildContext, source: Path, out: Path, split: int,
              sorting: tuple[Path, str, int], where: Where) -> tuple[list[str], dict[str, Any]] | None:
    """The sorting pass with the text validated in two parts at once (intervals.sh SPLIT): the header
    lines and merged stats, or None where the parts' findings need the whole file in one validator (a
    bad line, rows of another width in the second part, a ##contig line after data): then the caller
    runs it unsplit, which says what the file's first finding is, exactly as it always would."""
    work = ctx.workdir
    names = {"PP_HDR2": "header.txt", "PP_HDRNR2": "header.lines", "PP_ERR2": "errors.txt", "PP_STATS2": "stats.tsv"}
    env = {name: str(work / f"sort2-{file}") for name, file in names.items()}
    ranks = work / "sort2-ranks.txt"
    ranks.write_text(leading_contigs(source) if spec.kind == "vcf" else "", encoding="latin-1")
    env["PP_RANKS"] = str(ranks)
    try:
        header, stats = run_validated("sort", spec, ctx, source, out, *sorting, split, *spec.sort_keys,
                                      where=where, extra_env=env)
    except (InputError, ToolError):
        return None
    offset = stats["lines"]
    second = _read_stats(Path(env["PP_STATS2"]), ctx.label)
    if stats["late"] or second["late"] or (stats["columns"] and second["columns"]
                                           and stats["columns"] != second["columns"]):
        return None
    header += _header_lines(Path(env["PP_HDR2"]), Path(env["PP_HDRNR2"]), ctx.label, lambda n: where(n + offset))
    for name in ("records", "blank", "track", "fasta", "headers", "bytes", "cr", "lines"):
        stats[name] += second[name]
    stats["maxend"] = max(stats["maxend"], second["maxend"])
    stats["columns"] = stats["columns"] or second["columns"]
    stats["contigs"] = list(dict.fromkeys([*stats["contigs"], *second["contigs"]]))
    return header, stats


_LINE = re.compile(r"\bline (\d+)\b")


def _placed(label: str, text: str, where: Where) -> InputError:
    """The validator's "line N: rule" as an InputError naming the user's file, each line placed by `where`."""
    return InputError(f"{label}: {_LINE.sub(lambda m: where(int(m.group(1))), text)}")


def build_intervals(spec: IntervalFormat, ctx: BuildContext, source: Path,
                    extra_records: dict[str, Any] | None = None, lengths: tuple[int, ...] = (),
                    where: Where = line_of_source, paths: tuple[str, ...] = PATHS) -> BuildOutput:
    """Validate, sort, compress, index and check `source` as `spec`; the artifacts go in ctx.workdir.

    `source` is the user's file or one converted from it; `where` says where its line N came from.
    `paths` are the shortcuts the content may take ("input", "stream"): fewer only to prove, in tests,
    that each gives the sorting path's bytes.
    """
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
    if "input" in paths and not unsorted and sniff_compression(source) == "bgzf":
        with ctx.stage("check"):
            header, stats = run_validated("check", spec, ctx, source, out, where=where)
        if stats["unsorted"]:
            path = "sort"
        elif canonical_bgzf(source, stats):
            path = "input"
            shutil.copyfile(source, out)
    if path == "stream":
        with ctx.stage("stream"):
            header, stats = run_validated("stream", spec, ctx, source, out, *sorting, where=where)
        if stats["unsorted"]:
            path = "sort"
    if path == "sort" and "columnar" in paths and sniff_compression(source) == "plain":
        with ctx.stage("sort"):
            found = columnar.sort_text(spec, source, out, settings.threads, settings.compression_level,
                                       columnar.budget(settings.sort_memory, settings.threads))
        if found is not None:
            header, stats = found
            path = "columnar"
    if path == "sort":
        with ctx.stage("sort"):
            split = split_point(source, spec, settings.threads)
            parts = run_split(spec, ctx, source, out, split, sorting, where) if split else None
            if parts is None:
                header, stats = run_validated("sort", spec, ctx, source, out, *sorting, 0, *spec.sort_keys,
                                              where=where)
            else:
                header, stats = parts
    if spec.preset == "vcf" and not (header and header[0].startswith("##fileformat=VCF")
                                     and header[-1].startswith("#CHROM\t")):
        raise InputError(f"{label}: not a VCF: the header must begin with ##fileformat=VCF and end with "
                         "the #CHROM line (VCF readers refuse a file without them)")
    csi = stats["maxend"] >= TBI_MAX or any(n >= TBI_MAX for n in (*declared_lengths(header), *lengths))
    index = out.with_name(out.name + (".csi" if csi else ".tbi"))
    with ctx.stage("index"):
        flags = ["--csi", "-m", str(CSI_MIN_SHIFT)] if csi else []
        skip = ["-S", str(len(header))] if spec.kind == "bed" and stats["track"] else []
        shell.run(["tabix", "-f", "-p", spec.preset, *flags, *skip, str(out)], context=f"indexing {label}")
    with ctx.stage("verify"):
        try:
            counts = tabix_index.record_counts(index)
        except (ValueError, struct.error, OSError, EOFError) as exc:
            raise ToolError(["tabix", out.name], 0, f"cannot read the index it wrote: {exc}",
                            context=f"checking {label}") from None
        records_out = sum(counts.values())
        if records_out == stats["records"] and sorted(counts) == sorted(stats["contigs"]):
            # indexed is not yet reachable (a BED `chr 0 0` is counted in its bin but no query returns it)
            records_out = _reachable(out, index, counts, ctx.settings.threads)
        if records_out != stats["records"] or sorted(counts) != sorted(stats["contigs"]):
            raise _unreachable(source, out, stats["contigs"], len(header), stats["records"], records_out, label, where)
        if records_out:
            _spot_check(spec, out, index, _first_and_last(out, len(header)), stats["contigs"], label)
    records: dict[str, Any] = {
        "in": stats["records"], "out": records_out, "header_lines": len(header),
        "dropped": {k: stats[k] for k in ("blank", "track", "fasta") if stats[k]},
        "index": "csi" if csi else "tbi", "contigs": len(stats["contigs"]), "path": path,
    }
    if extra_records:
        records.update(extra_records)
    return BuildOutput(artifacts={"data": out, "index": index}, records=records,
                       tools={"htslib": shell.version("tabix"), "sort": shell.version("sort")})


def _reachable(out: Path, index: Path, counts: dict[str, int], threads: int) -> int:
    """How many records whole-contig queries through the index return: contigs shared among `threads`
    readers by their record counts; a small output is read in this process."""
    if out.stat().st_size < READ_BACK_IN_PROCESS:
        import pysam

        with pysam.TabixFile(str(out), index=str(index), encoding="latin-1") as tbx:
            return sum(sum(1 for _ in tbx.fetch(contig, 0, TABIX_MAX)) for contig in counts)
    groups: list[list[str]] = [[] for _ in range(max(1, min(threads, len(counts))))]
    loads = [0] * len(groups)
    for contig, n in sorted(counts.items(), key=lambda item: -item[1]):
        lightest = loads.index(min(loads))
        groups[lightest].append(contig)
        loads[lightest] += n
    files = []
    for number, group in enumerate(groups):
        regions = out.with_name(f"regions-{number}.bed")
        regions.write_text("".join(f"{contig}\t0\t{TABIX_MAX}\n" for contig in group))
        files.append(regions)
    back = shell.pipe(READ_BACK, out, *files, context="reading the output back through its index")
    return sum(int(n) for n in back.stdout.split())


def canonical_bgzf(source: Path, stats: dict[str, Any]) -> bool:
    """A BGZF input, found in order by the check pass, whose text is byte for byte what the output would
    hold: nothing stripped or dropped, newline-terminated, well-formed blocks ending with the EOF block."""
    if stats["cr"] or stats["blank"] or stats["fasta"]:
        return False
    layout = bgzf.blocks(source)
    return (layout is not None and bgzf.ends_with_eof_block(source, layout)
            and sum(block.isize for block in layout) == stats["bytes"])


def _first_and_last(out: Path, header_lines: int) -> tuple[str, str]:
    """The output's first and last record, read from its first and its last blocks alone."""
    import gzip

    with gzip.open(out, "rb") as stream:
        for _ in range(header_lines):
            stream.readline()
        first = stream.readline().rstrip(b"\n")
    layout = bgzf.blocks(out)
    last = bgzf.last_line(out, layout) if layout else b""
    return first.decode("latin-1"), last.decode("latin-1")  # bytes as they are: text is bytes


PREFIX_BYTES = 1 << 16


def plainly_unsorted(source: Path, spec: IntervalFormat) -> bool:
    """Whether the data lines in the first 64 KiB of `source` already break `sort`'s order (bytewise
    contig, then the numeric keys; VCF by header contig rank first). False when unsure: a line this
    quick look cannot read is the validator's to judge."""
    import gzip
    import zlib

    try:
        if sniff_compression(source) == "plain":
            with open(source, "rb") as stream:
                head = stream.read(PREFIX_BYTES)
        else:
            with gzip.open(source, "rb") as stream:
                head = stream.read(PREFIX_BYTES)
    except (OSError, EOFError, zlib.error):
        return False
    ranks: dict[bytes, int] = {}
    previous: tuple[Any, ...] | None = None
    for raw in head.split(b"\n")[:-1]:  # the last line may be cut short
        line = raw.removesuffix(b"\r")
        if not line.strip(b" \t"):
            continue
        if line.startswith(b"#"):
            if line.startswith(b"##FASTA"):
                return False
            if line.startswith(b"##contig=<ID="):
                ranks.setdefault(re.split(rb"[,>]", line[13:], maxsplit=1)[0], len(ranks) + 1)
            continue
        if spec.kind == "bed" and (line.startswith(b"track") or line.startswith(b"browser")):
            continue
        cols = line.split(b"\t")
        numbers = [cols[i - 1] for i in ((spec.start_column, spec.end_column) if spec.kind == "bed"
                                         else (spec.start_column,))] if len(cols) >= spec.min_columns else []
        if not numbers or not all(n.isdigit() and (n == b"0" or n[:1] != b"0") for n in numbers):
            return False
        key: tuple[Any, ...] = (ranks.get(cols[0], VCF_UNDECLARED), cols[0], int(numbers[0])) if spec.kind == "vcf" \
            else (cols[0], *map(int, numbers))
        if previous is not None and key < previous:
            return True
        previous = key
    return False


VCF_UNDECLARED = 999999999  # validate.awk's rank for a contig no ##contig line declares: after every declared one


def sniff_compression(path: Path) -> str:
    """"bgzf", "gzip" or "plain", from the magic bytes (BGZF: gzip with a BC extra subfield)."""
    with open(path, "rb") as stream:
        head = stream.read(18)
    if not head.startswith(GZIP_MAGIC):
        return "plain"
    if len(head) >= 16 and head[3] & 4 and head[12:14] == b"BC":
        return "bgzf"
    return "gzip"


def _refuse_binary(path: Path, compression: str, label: str) -> None:
    import gzip
    import zlib

    try:
        if compression == "plain":
            with open(path, "rb") as stream:
                head = stream.read(65536)
        else:
            with gzip.open(path, "rb") as stream:
                head = stream.read(65536)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{label}: corrupt or truncated gzip: {exc}") from None
    if b"\0" in head:
        raise InputError(f"{label}: binary content (NUL bytes) where text was expected")


_DAMAGED = re.compile(r"unexpected end of file|invalid compressed data|crc error|corrupt|truncated|"
                      r"not in gzip format|format violated|invalid block", re.I)


def _classify(label: str, decompress: str, err: Path, exc: ToolError, where: Where) -> Exception:
    # A damaged stream comes first: the validator may also trip over the cut-off last line.
    if decompress != "plain" and _DAMAGED.search(exc.stderr_tail):
        return InputError(f"{label}: corrupt or truncated {decompress} input: {exc.stderr_tail.strip()}")
    if err.exists() and err.stat().st_size:
        return _placed(label, err.read_text(errors="replace").strip(), where)
    return exc


def _text_lines(path: Path) -> Any:
    """The lines of a plain, gzip or BGZF text file as bytes, without line ends."""
    import gzip

    opened = open(path, "rb") if sniff_compression(path) == "plain" else gzip.open(path, "rb")  # noqa: SIM115
    with opened as stream:
        for line in stream:
            yield line.rstrip(b"\n").removesuffix(b"\r")


def _unreachable(source: Path, out: Path, contigs: list[str], header_lines: int, records_in: int,
                 records_out: int, label: str, where: Where) -> InputError:
    """Records the index does not reach are a file htslib reads otherwise than the validator: name the first.

    Only on this failure path: read everything back again, find the first output record that did
    not come back, and its line in the source.
    """
    regions = out.with_name("regions.bed")  # one region per contig, the whole of it
    regions.write_text("".join(f"{contig}\t0\t{TABIX_MAX}\n" for contig in contigs))
    back = shell.pipe('tabix -R "$2" "$1"', out, regions, context="reading the output back through its index")
    reached = Counter(back.stdout.split(b"\n")[:-1])
    missing = None
    for number, line in enumerate(_text_lines(out), 1):
        if number <= header_lines:
            continue
        if reached[line]:
            reached[line] -= 1
        else:
            missing = line
            break
    summary = f"{records_in} records read, {records_out} reachable through the tabix index"
    if missing is None:
        return InputError(f"{label}: {summary}")
    number = next((n for n, line in enumerate(_text_lines(source), 1) if line == missing), 0)
    place = where(number) if number else "a record"
    shown = missing[:80].decode("utf-8", "replace")
    return InputError(f"{label}: {place}: not reachable through the tabix index, which reads it otherwise "
                      f"({shown!r}); {summary}")


def _read_stats(path: Path, source: str) -> dict[str, Any]:
    """The validator's counts and contig names; a contig name htslib cannot take is the input's fault."""
    stats: dict[str, Any] = {"contigs": []}
    for line in path.read_bytes().split(b"\n")[:-1]:  # not splitlines(): a name may hold a CR, which it splits on
        name, _, value = line.partition(b"\t")
        if name == b"contig":
            if not value.isascii():  # htslib and pysam read contig names as ASCII; VCF allows no other
                raise InputError(f"{source}: contig name {value[:100]!r} is not ASCII")
            if any(c <= 0x20 or c == 0x7F for c in value):  # no format allows them; tabix splits or chokes
                raise InputError(f"{source}: contig name {value[:100]!r} contains whitespace or a control character")
            stats["contigs"].append(value.decode("ascii"))
        else:
            stats[name.decode("ascii")] = int(value)
    return stats


def _header_lines(hdr: Path, numbers: Path, name: str, where: Where) -> list[str]:
    """The header lines as text; InputError naming the line when one is not valid UTF-8."""
    raw = hdr.read_bytes().split(b"\n")[:-1] if hdr.exists() else []
    line_numbers = numbers.read_text().split() if numbers.exists() else []
    lines = []
    for number, row in zip(line_numbers, raw, strict=True):
        try:
            lines.append(row.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InputError(f"{name}: {where(int(number))}: header is not valid UTF-8 ({exc.reason} at byte "
                             f"{exc.start})") from None
    return lines


def declared_lengths(header: list[str]) -> list[int]:
    """Contig lengths a header declares: VCF ##contig length=, GFF3 ##sequence-region end."""
    found = []
    for line in header:
        match = (re.match(r"##contig=<.*?\blength=(\d+)", line)
                 or re.match(r"##sequence-region\s+\S+\s+\d+\s+(\d+)", line))
        if match:
            found.append(int(match.group(1)))
    return found


def _spot_check(spec: IntervalFormat, out: Path, index: Path, ends: tuple[str, str], contigs: list[str],
                name: str) -> None:
    """The index opens, lists every contig, and a query over the first and last record returns them."""
    import pysam

    try:
        with pysam.TabixFile(str(out), index=str(index), encoding="latin-1") as tbx:  # bytes as they are
            if sorted(tbx.contigs) != sorted(contigs):
                raise ToolError(["tabix", out.name], 0, f"index lists {len(tbx.contigs)} contigs, data has "
                                f"{len(contigs)}", context=f"checking {name}")
            for line in ends:
                contig, start, end = _region(spec, line)
                found = {row for row in tbx.fetch(contig, max(0, start - 1), end + 1)}
                if line not in found:
                    raise ToolError(["tabix", out.name, f"{contig}:{start}-{end}"], 0,
                                    "query did not return the record", context=f"checking {name}")
    except (OSError, ValueError) as exc:
        raise ToolError(["pysam.TabixFile", out.name], 1, str(exc), context=f"opening the index of {name}") from None


def _region(spec: IntervalFormat, line: str) -> tuple[str, int, int]:
    cols = line.split("\t")
    start = int(cols[spec.start_column - 1])
    if spec.kind == "vcf":
        return cols[0], start - 1, start - 1 + max(1, len(cols[3]))
    end = int(cols[spec.end_column - 1])
    if spec.kind == "gff":
        return cols[0], start - 1, end
    return cols[0], start, max(end, start + 1)


def _interval(name: str, formats: dict[str, tuple[str, ...]], kind: str, preset: str, extension: str,
              sort_keys: tuple[str, ...], min_columns: int, **more: Any) -> IntervalFormat:
    return IntervalFormat(name=name, formats=formats, kind=kind, preset=preset, extension=extension,
                          sort_keys=sort_keys, min_columns=min_columns, stage=f"sort_{name}", **more)


BED_KEYS = ("-k1,1", "-k2,2n", "-k3,3n")
# VCF lines carry their header contig rank in front while sorting: rank, then name (contigs the
# header does not declare come last, by name), then POS.
VCF = _interval("vcf", {"VCF": (".vcf",)}, "vcf", "vcf", "vcf", ("-k1,1n", "-k2,2", "-k3,3n"), 8, end_column=2)
BED = _interval("bed", {"BED": (".bed", ".bedgraph")}, "bed", "bed", "bed", BED_KEYS, 3)
NARROWPEAK = _interval("narrowpeak", {"narrowPeak": (".narrowpeak",)}, "bed", "bed", "narrowPeak",
                       BED_KEYS, 10, exact_columns=10)
BROADPEAK = _interval("broadpeak", {"broadPeak": (".broadpeak",)}, "bed", "bed", "broadPeak",
                      BED_KEYS, 9, exact_columns=9)
GFF3 = _interval("gff3", {"GFF3": (".gff3", ".gff")}, "gff", "gff", "gff3", ("-k1,1", "-k4,4n"), 9,
                 exact_columns=9, start_column=4, end_column=5)


GFFREAD_ARGS = ("--keep-genes", "-F", "--keep-exon-attrs", "-O")
GTF_AS_GFF = _interval("gtf", {"GTF": (".gtf",)}, "gff", "gff", "gtf", (), 9, exact_columns=9,
                       start_column=4, end_column=5)


@dataclass(frozen=True)
class GtfPipeline:
    """GTF -> GFF3 with gffread, then the GFF3 pipeline; features the conversion drops are counted."""

    name: str = "gtf"
    version: str = "2"  # as the interval pipelines: zero-padded coordinates refused; its GFF3 is never BGZF
    formats: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"GTF": (".gtf",)})
    stage: str = "sort_gtf"
    passthrough: bool = False

    def parameters(self, settings: BuildSettings) -> dict[str, Any]:
        return {**GFF3.parameters(settings), "gffread": list(GFFREAD_ARGS)}

    def build(self, ctx: BuildContext) -> BuildOutput:
        body = ctx.workdir / "gtf-body.txt"
        with ctx.stage("validate"):
            run_validated("validate", GTF_AS_GFF, ctx, ctx.source, body, prefix="gtf-")
        converted = ctx.workdir / "converted.gff3"
        with ctx.stage("convert"):
            raw = ctx.workdir / "gffread.gff3"
            try:
                shell.run(["gffread", str(body), *GFFREAD_ARGS, "-o", str(raw)], context=f"converting {ctx.label}")
            except ToolError as exc:  # on validated input, gffread fails only on what it cannot parse
                if "No space left on device" in exc.stderr_tail:
                    raise
                raise InputError(f"{ctx.label}: gffread cannot read it as GTF: {exc.stderr_tail.strip()}") from None
            before = feature_counts(body)
            with open(raw, "rb") as src, open(converted, "wb") as dst:
                for line in src:
                    if not line.startswith(b"# gffread"):  # names temp paths: would break determinism
                        dst.write(line)
            after = feature_counts(converted)
        dropped = {k: n - after.get(k, 0) for k, n in before.items() if n > after.get(k, 0)}
        added = {k: n - before.get(k, 0) for k, n in after.items() if n > before.get(k, 0)}
        tool = shell.version("gffread")
        conversion = {"tool": tool, "features_in": before, "features_out": after, "dropped": dropped, "added": added}
        output = build_intervals(GFF3, ctx, converted, extra_records={"conversion": conversion},
                                 where=converted_line(converted, "in the GFF3 that gffread made of it, the record"))
        output.records["gtf_records"] = sum(before.values())
        output.tools["gffread"] = tool
        return output


def feature_counts(path: Path) -> dict[str, int]:
    """Records per feature type (column 3) of a GFF/GTF file, comments and blanks skipped."""
    counts: dict[str, int] = {}
    with open(path, "rb") as stream:
        for line in stream:
            if line.startswith(b"##FASTA"):
                break
            if line.startswith(b"#") or not line.strip():
                continue
            parts = line.split(b"\t", 3)
            if len(parts) > 2:
                kind = parts[2].decode("utf-8", "replace")
                counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


GTF = GtfPipeline()
