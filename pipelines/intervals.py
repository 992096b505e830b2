"""VCF, BED, narrowPeak, broadPeak, GFF3 and GTF -> sorted, bgzipped, tabix-indexed text.

One streaming pass decompresses (by magic bytes), strips CR, splits header from data lines,
validates every data line (columns, integer coordinates, start <= end) and sorts with
`LC_ALL=C sort -s`; a second pass writes header + sorted body through bgzip; then tabix.
Coordinates: BED family 0-based half-open; VCF POS and GFF start/end 1-based closed.
Header lines (VCF/GFF `#`, BED `#`/track/browser) keep their relative order at the top; blank
lines and a GFF3 ##FASTA section are dropped and counted. Nothing else is ever dropped: the
data lines written must equal the data lines read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preprocess import shell
from preprocess.errors import InputError, ToolError

from .base import BuildContext, BuildOutput, BuildSettings

TBI_MAX = 2**29          # TBI bins address positions below 2^29; beyond that, CSI
TABIX_MAX = 2**32        # the largest end tabix's CSI (min_shift 14) stores; beyond is an input error
CSI_MIN_SHIFT = 14
GZIP_MAGIC = b"\x1f\x8b"

# Reads the decompressed text on stdin; data lines to stdout, header lines (prefixed with their
# line number) to $PP_HDR, the first error to $PP_ERR (exit 3), counts and contigs to $PP_STATS.
# mawk and gawk both run it; values arrive through ENVIRON so no path is parsed by awk -v.
VALIDATE_AWK = r"""
BEGIN {
  FS = "\t"; hdr = ENVIRON["PP_HDR"]; err = ENVIRON["PP_ERR"]; stats = ENVIRON["PP_STATS"]
  kind = ENVIRON["PP_KIND"]; mincol = ENVIRON["PP_MINCOL"] + 0; exact = ENVIRON["PP_EXACT"] + 0
  sc = ENVIRON["PP_START"] + 0; ec = ENVIRON["PP_END"] + 0; maxc = ENVIRON["PP_MAX"] + 0
  records = 0; blank = 0; browser = 0; fasta = 0; headers = 0; width = 0; maxend = 0; fail = 0
}
function bad(msg) { printf "line %d: %s\n", NR, msg > err; fail = 1; exit 3 }
{
  sub(/\r$/, "")
  if (infasta) { fasta++; next }
  if ($0 ~ /^[ \t]*$/) { blank++; next }
  if (kind == "gff" && $0 ~ /^##FASTA/) { infasta = 1; fasta++; next }
  if (substr($0, 1, 1) == "#") { headers++; print NR "\t" $0 > hdr; next }
  if (kind == "bed" && ($0 ~ /^track([ \t]|$)/ || $0 ~ /^browser([ \t]|$)/)) {
    browser++; headers++; print NR "\t" $0 > hdr; next
  }
  if (NF < mincol || (exact && NF != exact)) {
    hint = (index($0, " ") > 0) ? " (space-delimited? columns must be separated by tabs)" : ""
    want = exact ? "exactly " exact : "at least " mincol
    bad(sprintf("%d tab-separated column(s), expected %s%s", NF, want, hint))
  }
  if (width == 0) { width = NF; wline = NR }
  else if (NF != width) bad(sprintf("%d columns, but line %d has %d (ragged rows)", NF, wline, width))
  if ($1 == "") bad("empty sequence name in column 1")
  if ($sc !~ /^[0-9]+$/) bad(sprintf("start %s in column %d is not a non-negative integer", q($sc), sc))
  start = $sc + 0
  if (kind == "vcf") {
    end = start + length($4) - 1
    if (end < start) end = start
  } else {
    if ($ec !~ /^[0-9]+$/) bad(sprintf("end %s in column %d is not a non-negative integer", q($ec), ec))
    end = $ec + 0
    if (start > end) bad(sprintf("start %s is greater than end %s", $sc, $ec))
  }
  if (kind == "gff" && start < 1) bad("start 0: GFF coordinates are 1-based")
  if (length($sc) > 15 || length($ec) > 15 || end > maxc)
    bad(sprintf("coordinate %s is beyond what a tabix index can address (%d)", (kind == "vcf" ? $sc : $ec), maxc))
  if (end > maxend) maxend = end
  if (!($1 in seen)) { seen[$1] = 1; contigs[++ncontig] = $1 }
  records++
  print
}
function q(s) { return "'" (length(s) > 40 ? substr(s, 1, 40) "..." : s) "'" }
END {
  if (fail) exit 3
  printf "records\t%d\nblank\t%d\ntrack\t%d\nfasta\t%d\nheaders\t%d\nmaxend\t%d\ncolumns\t%d\n", \
    records, blank, browser, fasta, headers, maxend, width > stats
  for (i = 1; i <= ncontig; i++) print "contig\t" contigs[i] > stats
}
"""

SPLIT_AND_SORT = r"""
src=$1; body=$2; tmpdir=$3; mem=$4; threads=$5; decompress=$6; shift 6
tab=$(printf '\t')
case $decompress in
  bgzf) bgzip -dc -@ "$threads" -- "$src" ;;
  gzip) gzip -dc -- "$src" ;;
  *) cat -- "$src" ;;
esac | awk "$PP_PROGRAM" | if [ $# -eq 0 ]; then cat; else
  sort -s -t "$tab" -S "$mem" -T "$tmpdir" --parallel="$threads" "$@"; fi > "$body"
"""

COMPRESS = r"""
header=$1; body=$2; out=$3; level=$4; threads=$5
cat -- "$header" "$body" | bgzip -c -l "$level" -@ "$threads" > "$out"
"""

COUNT_LINES = r"""bgzip -dc -@ "$2" -- "$1" | wc -l"""


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
    version: str = "1"
    passthrough: bool = False
    stage: str = field(default="")

    def parameters(self, settings: BuildSettings) -> dict[str, Any]:
        return {"compression_level": settings.compression_level, "csi_min_shift": CSI_MIN_SHIFT}

    def build(self, ctx: BuildContext) -> BuildOutput:
        return build_intervals(self, ctx, ctx.source)


def split_lines(spec: IntervalFormat, ctx: BuildContext, source: Path, sort: bool = True,
                prefix: str = "") -> tuple[Path, Path, list[str], dict[str, Any]]:
    """Decompress, validate and (optionally) sort `source`: body file, header file, header lines, stats."""
    work = ctx.workdir
    body, hdr_raw, err, stats_path = (work / f"{prefix}body.txt", work / f"{prefix}header.raw",
                                      work / f"{prefix}errors.txt", work / f"{prefix}stats.tsv")
    hdr_raw.touch()
    with ctx.stage("inspect"):
        decompress = sniff_compression(source)
        _refuse_binary(source, decompress)
    with ctx.stage("sort" if sort else "validate"):
        tmp = work / "sort-tmp"
        tmp.mkdir(exist_ok=True)
        env = {"PP_PROGRAM": VALIDATE_AWK, "PP_HDR": str(hdr_raw), "PP_ERR": str(err),
               "PP_STATS": str(stats_path), "PP_KIND": spec.kind, "PP_MINCOL": str(spec.min_columns),
               "PP_EXACT": str(spec.exact_columns), "PP_START": str(spec.start_column),
               "PP_END": str(spec.end_column), "PP_MAX": str(TABIX_MAX)}
        keys = spec.sort_keys if sort else ()
        try:
            shell.pipe(SPLIT_AND_SORT, source, body, tmp, ctx.settings.sort_memory, ctx.settings.threads,
                       decompress, *keys, env=env, context=f"reading {source.name}")
        except ToolError as exc:
            raise _classify(source, decompress, err, exc) from None
        if err.exists() and err.stat().st_size:
            raise InputError(f"{source.name}: {err.read_text(errors='replace').strip()}")
    header = work / f"{prefix}header.txt"
    header_lines = _clean_header(hdr_raw, header, source.name)
    return body, header, header_lines, _read_stats(stats_path)


def build_intervals(spec: IntervalFormat, ctx: BuildContext, source: Path,
                    extra_records: dict[str, Any] | None = None, lengths: tuple[int, ...] = ()) -> BuildOutput:
    """Validate, sort, compress, index and check `source` as `spec`; the artifacts go in ctx.workdir."""
    work = ctx.workdir
    body, header, header_lines, stats = split_lines(spec, ctx, source)
    csi = stats["maxend"] >= TBI_MAX or any(n >= TBI_MAX for n in (*declared_lengths(header_lines), *lengths))
    out = work / f"sorted.{spec.extension}.gz"
    index = out.with_name(out.name + (".csi" if csi else ".tbi"))
    with ctx.stage("compress"):
        shell.pipe(COMPRESS, header, body, out, ctx.settings.compression_level, ctx.settings.threads,
                   context=f"compressing {source.name}")
    with ctx.stage("index"):
        flags = ["--csi", "-m", str(CSI_MIN_SHIFT)] if csi else []
        skip = ["-S", str(len(header_lines))] if spec.kind == "bed" and stats["track"] else []
        shell.run(["tabix", "-f", "-p", spec.preset, *flags, *skip, str(out)], context=f"indexing {source.name}")
    with ctx.stage("verify"):
        lines = int(shell.pipe(COUNT_LINES, out, ctx.settings.threads, context="counting output").stdout)
        records_out = lines - len(header_lines)
        if records_out != stats["records"]:
            raise ToolError(["bgzip", "-dc", out.name], 0,
                            f"{stats['records']} data lines read, {records_out} written",
                            context=f"checking {source.name}")
        _spot_check(spec, out, index, body, stats["contigs"], source.name)
    records: dict[str, Any] = {
        "in": stats["records"], "out": records_out, "header_lines": len(header_lines),
        "dropped": {k: stats[k] for k in ("blank", "track", "fasta") if stats[k]},
        "index": "csi" if csi else "tbi", "contigs": len(stats["contigs"]),
    }
    if extra_records:
        records.update(extra_records)
    return BuildOutput(artifacts={"data": out, "index": index}, records=records,
                       tools={"htslib": shell.version("tabix"), "sort": shell.version("sort")})


def sniff_compression(path: Path) -> str:
    """"bgzf", "gzip" or "plain", from the magic bytes (BGZF: gzip with a BC extra subfield)."""
    with open(path, "rb") as stream:
        head = stream.read(18)
    if not head.startswith(GZIP_MAGIC):
        return "plain"
    if len(head) >= 16 and head[3] & 4 and head[12:14] == b"BC":
        return "bgzf"
    return "gzip"


def _refuse_binary(path: Path, compression: str) -> None:
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
        raise InputError(f"{path.name}: corrupt or truncated gzip: {exc}") from None
    if b"\0" in head:
        raise InputError(f"{path.name}: binary content (NUL bytes) where text was expected")


_DAMAGED = re.compile(r"unexpected end of file|invalid compressed data|crc error|corrupt|truncated|"
                      r"not in gzip format|format violated|invalid block", re.I)


def _classify(source: Path, decompress: str, err: Path, exc: ToolError) -> Exception:
    # A damaged stream comes first: the validator may also trip over the cut-off last line.
    if decompress != "plain" and _DAMAGED.search(exc.stderr_tail):
        return InputError(f"{source.name}: corrupt or truncated {decompress} input: {exc.stderr_tail.strip()}")
    if err.exists() and err.stat().st_size:
        return InputError(f"{source.name}: {err.read_text(errors='replace').strip()}")
    return exc


def _read_stats(path: Path) -> dict[str, Any]:
    stats: dict[str, Any] = {"contigs": []}
    for line in path.read_text().splitlines():
        name, _, value = line.partition("\t")
        if name == "contig":
            stats["contigs"].append(value)
        else:
            stats[name] = int(value)
    return stats


def _clean_header(raw: Path, out: Path, name: str) -> list[str]:
    """Header lines without their line-number prefix; InputError for one that is not UTF-8."""
    lines: list[str] = []
    with open(raw, "rb") as stream, open(out, "wb") as target:
        for row in stream:
            number, _, text = row.partition(b"\t")
            try:
                lines.append(text.decode("utf-8").rstrip("\n"))
            except UnicodeDecodeError as exc:
                raise InputError(f"{name}: line {int(number)}: header is not valid UTF-8 ({exc.reason} "
                                 f"at byte {exc.start})") from None
            target.write(text)
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


def _spot_check(spec: IntervalFormat, out: Path, index: Path, body: Path, contigs: list[str], name: str) -> None:
    """The index opens, lists every contig, and a query over the first and last record returns them."""
    import pysam

    first, last = _first_and_last_line(body)
    try:
        with pysam.TabixFile(str(out), index=str(index)) as tbx:
            if sorted(tbx.contigs) != sorted(contigs):
                raise ToolError(["tabix", out.name], 0, f"index lists {len(tbx.contigs)} contigs, data has "
                                f"{len(contigs)}", context=f"checking {name}")
            for line in (first, last):
                if line is None:
                    continue
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


def _first_and_last_line(path: Path) -> tuple[str | None, str | None]:
    size = path.stat().st_size
    if size == 0:
        return None, None
    with open(path, "rb") as stream:
        first = stream.readline().decode("utf-8", "replace").rstrip("\n")
        stream.seek(max(0, size - 65536))
        last = stream.read().rstrip(b"\n").rsplit(b"\n", 1)[-1].decode("utf-8", "replace")
    return first, last


def _interval(name: str, formats: dict[str, tuple[str, ...]], kind: str, preset: str, extension: str,
              sort_keys: tuple[str, ...], min_columns: int, **more: Any) -> IntervalFormat:
    return IntervalFormat(name=name, formats=formats, kind=kind, preset=preset, extension=extension,
                          sort_keys=sort_keys, min_columns=min_columns, stage=f"sort_{name}", **more)


BED_KEYS = ("-k1,1", "-k2,2n", "-k3,3n")
VCF = _interval("vcf", {"VCF": (".vcf",)}, "vcf", "vcf", "vcf", ("-k1,1", "-k2,2n"), 8, end_column=2)
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
    version: str = "1"
    formats: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"GTF": (".gtf",)})
    stage: str = "sort_gtf"
    passthrough: bool = False

    def parameters(self, settings: BuildSettings) -> dict[str, Any]:
        return {**GFF3.parameters(settings), "gffread": list(GFFREAD_ARGS)}

    def build(self, ctx: BuildContext) -> BuildOutput:
        body, _, _, _ = split_lines(GTF_AS_GFF, ctx, ctx.source, sort=False, prefix="gtf-")
        converted = ctx.workdir / "converted.gff3"
        with ctx.stage("convert"):
            raw = ctx.workdir / "gffread.gff3"
            shell.run(["gffread", str(body), *GFFREAD_ARGS, "-o", str(raw)], context=f"converting {ctx.source.name}")
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
        output = build_intervals(GFF3, ctx, converted, extra_records={"conversion": conversion})
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
