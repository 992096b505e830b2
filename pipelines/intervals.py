"""VCF, BED, narrowPeak, broadPeak, GFF3 and GTF -> sorted, bgzipped, tabix-indexed text.

One streaming pipe decompresses (by magic bytes), strips CR, splits header from data lines,
validates every data line (columns, integer coordinates, start <= end), sorts with
`LC_ALL=C sort -s`, puts the header first and bgzips; then tabix, then every record is read
back through the index. Coordinates: BED family 0-based half-open; VCF POS and GFF start/end
1-based closed. VCF records follow the contig order of the header's ##contig lines (undeclared
contigs last, by name); other formats sort contigs by name. Header lines (VCF/GFF `#`, BED
`#`/track/browser) keep their relative order at the top; blank lines and a GFF3 ##FASTA section
are dropped and counted. Nothing else is ever dropped: the records reachable through the index
must equal the data lines read.
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

# Reads the decompressed text on stdin; data lines to stdout, header lines to $PP_HDR (and their
# line numbers to $PP_HDRNR), the first error to $PP_ERR (exit 3), counts and contigs to $PP_STATS.
# mawk and gawk both run it; values arrive through ENVIRON so no path is parsed by awk -v.
VALIDATE_AWK = r"""
BEGIN {
  FS = "\t"; hdr = ENVIRON["PP_HDR"]; hdrnr = ENVIRON["PP_HDRNR"]; err = ENVIRON["PP_ERR"]
  stats = ENVIRON["PP_STATS"]; kind = ENVIRON["PP_KIND"]; mincol = ENVIRON["PP_MINCOL"] + 0
  exact = ENVIRON["PP_EXACT"] + 0; sc = ENVIRON["PP_START"] + 0; ec = ENVIRON["PP_END"] + 0
  maxc = ENVIRON["PP_MAX"] + 0; OCTAL = " has a leading zero, which htslib reads as octal; write it without"
  isbed = kind == "bed"; isgff = kind == "gff"; isvcf = kind == "vcf"
  records = 0; blank = 0; browser = 0; fasta = 0; headers = 0; width = 0; maxend = 0; fail = 0
  printf "" > hdr; printf "" > hdrnr
}
function bad(msg) { printf "line %d: %s\n", NR, msg > err; fail = 1; exit 3 }
function header() { headers++; print > hdr; print NR > hdrnr }
function q(s) { return "'" (length(s) > 40 ? substr(s, 1, 40) "..." : s) "'" }
# htslib reads coordinates with strtoll(base 0): "010" is octal 8 and "0x10" is 16. Only plain
# decimals without a leading zero mean the same to this validator and to tabix.
function notint(v, what, col) {
  if (v ~ /^0[0-9]+$/)
    bad(sprintf("%s %s in column %d%s", what, q(v), col, OCTAL))
  bad(sprintf("%s %s in column %d is not a non-negative integer", what, q(v), col))
}
# VCF INFO/END, found as htslib finds it (an INFO starting "END=", else the first ";END="); "." is no END.
function info_end(info, pos,   i, v) {
  if (substr(info, 1, 4) == "END=") i = 5
  else { i = index(info, ";END="); if (!i) return -1; i += 5 }
  v = substr(info, i); i = index(v, ";"); if (i) v = substr(v, 1, i - 1)
  if (v == ".") return -1
  if (v !~ /^[1-9][0-9]*$/) {
    if (v ~ /^0[0-9]+$/) bad(sprintf("INFO/END %s%s", q(v), OCTAL))
    bad(sprintf("INFO/END %s in column 8 is not a positive integer", q(v)))
  }
  if (length(v) < length(pos) || (length(v) == length(pos) && v < pos))
    bad(sprintf("INFO/END %s is before POS %s", v, pos))
  return v
}
{
  if (index($0, "\r")) sub(/\r$/, "")
  if (infasta) { fasta++; next }
  # htslib takes text holding control characters for binary and refuses to index it
  if ($0 ~ /[\001-\010\013\014\016-\037\177]/) bad("a control character (a byte below 32 other than tab) in text")
  if (NF <= 1 && $0 ~ /^[ \t]*$/) { blank++; next }
  c = substr($0, 1, 1)
  if (c == "#") {
    if (isgff && $0 ~ /^##FASTA/) { infasta = 1; fasta++; next }
    if (isvcf && $0 ~ /^##contig=<ID=/) {
      id = substr($0, 14); sub(/[,>].*$/, "", id)
      if (!(id in rank)) rank[id] = ++nrank
    }
    header(); next
  }
  if (isbed && (c == "t" || c == "b") && ($0 ~ /^track([ \t]|$)/ || $0 ~ /^browser([ \t]|$)/)) {
    browser++; header(); next
  }
  if (NF != width) {
    if (NF < mincol || (exact && NF != exact)) {
      hint = (index($0, " ") > 0) ? " (space-delimited? columns must be separated by tabs)" : ""
      want = exact ? "exactly " exact : "at least " mincol
      bad(sprintf("%d tab-separated column(s), expected %s%s", NF, want, hint))
    }
    if (width) bad(sprintf("%d columns, but line %d has %d (ragged rows)", NF, wline, width))
    width = NF; wline = NR
  }
  if ($1 == "") bad("empty sequence name in column 1")
  s = $sc
  if (isvcf) {
    if (s !~ /^(0|[1-9][0-9]*)$/) notint(s, "start", sc)
    e = s + length($4) - 1
    if (e < s + 0) e = s + 0
    big = s  # the value the user wrote, for a message
    if (index($8, "END=") && (v = info_end($8, s)) != -1) big = e = v  # the end tabix indexes (SVs, gVCF blocks)
  } else {
    e = $ec
    if ((s "\t" e) !~ /^(0|[1-9][0-9]*)\t(0|[1-9][0-9]*)$/) {  # one match for both: runs millions of times
      if (s !~ /^(0|[1-9][0-9]*)$/) notint(s, "start", sc)
      notint(e, "end", ec)
    }
    if (s + 0 > e + 0) bad(sprintf("start %s is greater than end %s", s, e))
    if (isgff && s + 0 < 1) bad("start 0: GFF coordinates are 1-based")
    if (isbed && e + 0 == 0) bad("start 0 and end 0: tabix cannot index a zero-length interval at the very start")
  }
  if (e + 0 > maxend) {
    if (length(s) > 15 || length(e) > 15 || e + 0 > maxc)
      bad(sprintf("coordinate %s is beyond what a tabix index can address (%d)", (isvcf ? big : e), maxc))
    maxend = e + 0
  }
  if ($1 != last) { last = $1; if (!($1 in seen)) { seen[$1] = 1; contigs[++ncontig] = $1 } }
  records++
  if (isvcf) printf "%d\t%s\n", (($1 in rank) ? rank[$1] : 999999999), $0  # sort in header contig order
  else print
}
END {
  close(hdr); close(hdrnr)  # complete before stdout closes, so the header is whole when sort emits
  if (fail) exit 3
  printf "records\t%d\nblank\t%d\ntrack\t%d\nfasta\t%d\nheaders\t%d\nmaxend\t%d\ncolumns\t%d\n", \
    records, blank, browser, fasta, headers, maxend, width > stats
  for (i = 1; i <= ncontig; i++) print "contig\t" contigs[i] > stats
}
"""

# One pass: decompress | validate | sort | header first | bgzip. The header goes in when sort emits
# its first line (or ends empty): sort emits nothing before its input ends, so awk has finished
# writing the header by then. VCF lines arrive prefixed with their contig's rank in the header
# (the order bcftools and GATK expect), which is cut off again after the sort.
# Both scripts take $1 decompressor, $2 source, $3 output, $4 threads; this prints the source as text.
READ_TEXT = r"""
decompress=$1; src=$2; out=$3; threads=$4
read_text() {
  case $decompress in
    bgzf) bgzip -dc -@ "$threads" -- "$src" ;;
    gzip) gzip -dc -- "$src" ;;
    *) cat -- "$src" ;;
  esac
}
"""

SORT_AND_COMPRESS = READ_TEXT + r"""
tmpdir=$5; mem=$6; level=$7; shift 7
tab=$(printf '\t')
unrank() { if [ "$PP_KIND" = vcf ]; then cut -f2-; else cat; fi; }
read_text | awk "$PP_PROGRAM" \
  | sort -s -t "$tab" -S "$mem" -T "$tmpdir" --parallel="$threads" "$@" \
  | unrank \
  | { if IFS= read -r first; then cat -- "$PP_HDR"; printf '%s\n' "$first"; cat; else cat -- "$PP_HDR"; fi; } \
  | bgzip -c -l "$level" -@ "$threads" > "$out"
"""

VALIDATE_ONLY = READ_TEXT + r"""
read_text | awk "$PP_PROGRAM" > "$out"
"""

# Every record reachable through the index (one region per contig, $2), counted, with the first and
# the last: tabix exits 0 even when it skips a line, so reading back through the index is the check.
READ_BACK = r"""
tabix -R "$2" "$1" | awk 'NR == 1 { f = $0 } END { print NR; print f; print $0 }'
"""


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
    version: str = "2"               # 2: VCF in header contig order; zero-padded coordinates refused
    passthrough: bool = False
    stage: str = field(default="")

    def parameters(self, settings: BuildSettings) -> dict[str, Any]:
        return {"compression_level": settings.compression_level, "csi_min_shift": CSI_MIN_SHIFT}

    def build(self, ctx: BuildContext) -> BuildOutput:
        return build_intervals(self, ctx, ctx.source)


def run_validated(script: str, spec: IntervalFormat, ctx: BuildContext, source: Path, out: Path,
                  *more: str | Path | int, prefix: str = "") -> tuple[list[str], dict[str, Any]]:
    """Run `script` (VALIDATE_ONLY or SORT_AND_COMPRESS) over `source`: header lines and stats.

    The script gets $1 decompressor, $2 source, $3 output, $4 threads, then `more`.
    """
    work = ctx.workdir
    hdr, hdrnr, err, stats = (work / f"{prefix}header.txt", work / f"{prefix}header.lines",
                              work / f"{prefix}errors.txt", work / f"{prefix}stats.tsv")
    decompress = sniff_compression(source)
    _refuse_binary(source, decompress)
    env = {"PP_PROGRAM": VALIDATE_AWK, "PP_HDR": str(hdr), "PP_HDRNR": str(hdrnr), "PP_ERR": str(err),
           "PP_STATS": str(stats), "PP_KIND": spec.kind, "PP_MINCOL": str(spec.min_columns),
           "PP_EXACT": str(spec.exact_columns), "PP_START": str(spec.start_column),
           "PP_END": str(spec.end_column), "PP_MAX": str(TABIX_MAX)}
    try:
        shell.pipe(script, decompress, source, out, ctx.settings.threads, *more, env=env,
                   context=f"reading {source.name}")
    except ToolError as exc:
        raise _classify(source, decompress, err, exc) from None
    if err.exists() and err.stat().st_size:
        raise InputError(f"{source.name}: {err.read_text(errors='replace').strip()}")
    return _header_lines(hdr, hdrnr, source.name), _read_stats(stats, source.name)


def build_intervals(spec: IntervalFormat, ctx: BuildContext, source: Path,
                    extra_records: dict[str, Any] | None = None, lengths: tuple[int, ...] = ()) -> BuildOutput:
    """Validate, sort, compress, index and check `source` as `spec`; the artifacts go in ctx.workdir."""
    work = ctx.workdir
    out = work / f"sorted.{spec.extension}.gz"
    tmp = work / "sort-tmp"
    tmp.mkdir(exist_ok=True)
    with ctx.stage("sort"):
        header, stats = run_validated(SORT_AND_COMPRESS, spec, ctx, source, out, tmp, ctx.settings.sort_memory,
                                      ctx.settings.compression_level, *spec.sort_keys)
    if spec.preset == "vcf" and not (header and header[0].startswith("##fileformat=VCF")
                                     and header[-1].startswith("#CHROM\t")):
        raise InputError(f"{source.name}: not a VCF: the header must begin with ##fileformat=VCF and end with "
                         "the #CHROM line (VCF readers refuse a file without them)")
    csi = stats["maxend"] >= TBI_MAX or any(n >= TBI_MAX for n in (*declared_lengths(header), *lengths))
    index = out.with_name(out.name + (".csi" if csi else ".tbi"))
    with ctx.stage("index"):
        flags = ["--csi", "-m", str(CSI_MIN_SHIFT)] if csi else []
        skip = ["-S", str(len(header))] if spec.kind == "bed" and stats["track"] else []
        shell.run(["tabix", "-f", "-p", spec.preset, *flags, *skip, str(out)], context=f"indexing {source.name}")
    with ctx.stage("verify"):
        regions = work / "regions.bed"
        regions.write_text("".join(f"{contig}\t0\t{TABIX_MAX}\n" for contig in stats["contigs"]))
        records_out, first, last = 0, "", ""
        if stats["contigs"]:
            back = shell.pipe(READ_BACK, out, regions, context="reading the output back through its index")
            count, first, last = back.stdout.decode("latin-1").split("\n")[:3]  # byte for byte, as checked below
            records_out = int(count)
        if records_out != stats["records"]:
            raise ToolError(["tabix", "-R", regions.name, out.name], 0,
                            f"{stats['records']} data lines read, {records_out} reachable through the index",
                            context=f"checking {source.name}")
        if records_out:
            _spot_check(spec, out, index, (first, last), stats["contigs"], source.name)
    records: dict[str, Any] = {
        "in": stats["records"], "out": records_out, "header_lines": len(header),
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


def _read_stats(path: Path, source: str) -> dict[str, Any]:
    """The validator's counts and contig names; a contig name that is not ASCII is the input's fault."""
    stats: dict[str, Any] = {"contigs": []}
    for line in path.read_bytes().splitlines():
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


def _header_lines(hdr: Path, numbers: Path, name: str) -> list[str]:
    """The header lines as text; InputError naming the line when one is not valid UTF-8."""
    raw = hdr.read_bytes().split(b"\n")[:-1] if hdr.exists() else []
    line_numbers = numbers.read_text().split() if numbers.exists() else []
    lines = []
    for number, row in zip(line_numbers, raw, strict=True):
        try:
            lines.append(row.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InputError(f"{name}: line {number}: header is not valid UTF-8 ({exc.reason} at byte {exc.start})") \
                from None
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
        with pysam.TabixFile(str(out), index=str(index), encoding="latin-1") as tbx:  # any bytes a column holds
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
    version: str = "2"  # as the interval pipelines: zero-padded coordinates refused
    formats: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"GTF": (".gtf",)})
    stage: str = "sort_gtf"
    passthrough: bool = False

    def parameters(self, settings: BuildSettings) -> dict[str, Any]:
        return {**GFF3.parameters(settings), "gffread": list(GFFREAD_ARGS)}

    def build(self, ctx: BuildContext) -> BuildOutput:
        body = ctx.workdir / "gtf-body.txt"
        with ctx.stage("validate"):
            run_validated(VALIDATE_ONLY, GTF_AS_GFF, ctx, ctx.source, body, prefix="gtf-")
        converted = ctx.workdir / "converted.gff3"
        with ctx.stage("convert"):
            raw = ctx.workdir / "gffread.gff3"
            try:
                shell.run(["gffread", str(body), *GFFREAD_ARGS, "-o", str(raw)],
                          context=f"converting {ctx.source.name}")
            except ToolError as exc:  # on validated input, gffread fails only on what it cannot parse
                if "No space left on device" in exc.stderr_tail:
                    raise
                raise InputError(f"{ctx.source.name}: gffread cannot read it as GTF: {exc.stderr_tail.strip()}") \
                    from None
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
