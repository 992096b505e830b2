"""The interval pipelines' streaming pass: runs scripts/intervals.sh (decompress | validate.awk [| sort |
header first | bgzip]) and reads what it leaves (header lines, counts and contig names, the first
finding), and says in the user's terms why it failed: a line placed in their file, a damaged stream."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from preprocess import shell
from preprocess.errors import InputError, ToolError

from . import bgzf
from .tabix_index import TABIX_MAX

if TYPE_CHECKING:
    from .base import BuildContext
    from .intervals import IntervalFormat

SCRIPTS = Path(__file__).with_name("scripts")
VALIDATE_AWK = SCRIPTS / "validate.awk"   # every data line checked; header, blank, track lines counted
PASS_SH = SCRIPTS / "intervals.sh"        # decompress | validate [| sort | header first | bgzip]
UNSORTED = 4                              # intervals.sh check/stream: a line out of sort's order

# Where a line of the validated file is, in the user's terms: "line 12" of their file, or for a
# converted source (GTF through gffread, bigBed through pipelines/bigbed.py) what it came from.
Where = Callable[[int], str]


def line_of_source(number: int) -> str:
    return f"line {number}"


def converted_line(path: Path, intro: str) -> Where:
    """For a converted source: the record's own text (a line number there would mean nothing to the user)."""
    def where(number: int) -> str:
        text = next((line for n, line in enumerate(bgzf.text_lines(path), 1) if n == number), b"")
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
    decompress = bgzf.sniff_compression(source)
    refuse_binary(source, label, where)
    env = {"PP_AWK": str(VALIDATE_AWK), "PP_HDR": str(hdr), "PP_HDRNR": str(hdrnr), "PP_ERR": str(err),
           "PP_STATS": str(stats), "PP_KIND": spec.kind, "PP_MINCOL": str(spec.min_columns),
           "PP_EXACT": str(spec.exact_columns), "PP_START": str(spec.start_column),
           "PP_END": str(spec.end_column), "PP_MAX": str(TABIX_MAX), **(extra_env or {})}
    try:
        shell.script(PASS_SH, mode, decompress, source, out, ctx.settings.threads, *more, env=env,
                     context=f"reading {label}")
    except ToolError as exc:
        if exc.returncode == UNSORTED and stats.exists() and stats.read_bytes().startswith(b"unsorted\t"):
            return [], read_stats(stats, label)
        raise classify(label, source, decompress, err, exc, where) from None
    if err.exists() and err.stat().st_size:
        raise placed(label, err.read_text(errors="replace").strip(), where)
    return header_lines(hdr, hdrnr, label, where), read_stats(stats, label)


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
              sorting: tuple[Path, str, int], where: Where, extra_env: dict[str, str] | None = None
              ) -> tuple[list[str], dict[str, Any]] | None:
    """The sorting pass with the text validated in two parts at once (intervals.sh SPLIT): the header
    lines and merged stats, or None where the parts' findings need the whole file in one validator (a
    bad line, rows of another width in the second part, a ##contig line after data): then the caller
    runs it unsplit, which says what the file's first finding is, exactly as it always would."""
    work = ctx.workdir
    names = {"PP_HDR2": "header.txt", "PP_HDRNR2": "header.lines", "PP_ERR2": "errors.txt", "PP_STATS2": "stats.tsv"}
    env = {**(extra_env or {}), **{name: str(work / f"sort2-{file}") for name, file in names.items()}}
    ranks = work / "sort2-ranks.txt"
    ranks.write_text(leading_contigs(source) if spec.kind == "vcf" else "", encoding="latin-1")
    env["PP_RANKS"] = str(ranks)
    try:
        header, stats = run_validated("sort", spec, ctx, source, out, *sorting, split, *spec.sort_keys,
                                      where=where, extra_env=env)
    except (InputError, ToolError):
        return None
    offset = stats["lines"]
    second = read_stats(Path(env["PP_STATS2"]), ctx.label)
    if stats["late"] or second["late"] or (stats["columns"] and second["columns"]
                                           and stats["columns"] != second["columns"]):
        return None
    header += header_lines(Path(env["PP_HDR2"]), Path(env["PP_HDRNR2"]), ctx.label, lambda n: where(n + offset))
    for name in ("records", "blank", "track", "fasta", "headers", "bytes", "cr", "lines"):
        stats[name] += second[name]
    stats["maxend"] = max(stats["maxend"], second["maxend"])
    stats["columns"] = stats["columns"] or second["columns"]
    stats["contigs"] = list(dict.fromkeys([*stats["contigs"], *second["contigs"]]))
    return header, stats


_LINE = re.compile(r"\bline (\d+)\b")


def placed(label: str, text: str, where: Where) -> InputError:
    """The validator's "line N: rule" as an InputError naming the user's file, each line placed by `where`."""
    return InputError(f"{label}: {_LINE.sub(lambda m: where(int(m.group(1))), text)}")


def refuse_binary(path: Path, label: str, where: Where) -> None:
    """InputError for a NUL in the first 64 KiB (a binary file given as text), or a gzip stream that cannot be read."""
    import zlib

    try:
        head = bgzf.read_head(path, 65536)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{label}: corrupt or truncated gzip: {exc}") from None
    at = head.find(b"\0")
    if at >= 0:  # placed as validate.awk places a control character further in (it would read the same)
        lines = head[:at].split(b"\n")
        column = lines[-1].count(b"\t") + 1
        raise placed(label, f"line {len(lines)}: column {column}: a NUL byte: binary content where text was expected",
                     where)


_DAMAGED = re.compile(r"unexpected end of file|invalid compressed data|crc error|corrupt|truncated|"
                      r"not in gzip format|format violated|invalid block", re.I)
# htslib's words for a block it could not decompress ("CRC32 checksum mismatch", "Inflate operation failed"),
# or for a gzip member that is not BGZF, which bgzip -d -@ N ends with "Close failed: Error N"
_BGZF_DAMAGE = re.compile(r"checksum mismatch|inflate operation failed|close failed|error \d+ in block|bgzf_read", re.I)


def classify(label: str, source: Path, decompress: str, err: Path, exc: ToolError, where: Where) -> Exception:
    """Why the pass failed, in the user's terms: a damaged stream (the block at fault, where it is BGZF),
    else the validator's finding, else the tool's own error."""
    # A damaged stream comes first: the validator may also trip over the cut-off last line.
    if decompress == "bgzf" and (_BGZF_DAMAGE.search(exc.stderr_tail) or _DAMAGED.search(exc.stderr_tail)):
        fault = bgzf.first_fault(source)  # where, in the user's file: htslib names no offset of theirs
        if fault:
            return InputError(f"{label}: {fault}")
    if decompress != "plain" and _DAMAGED.search(exc.stderr_tail):
        return InputError(f"{label}: corrupt or truncated {decompress} input: {exc.stderr_tail.strip()}")
    if err.exists() and err.stat().st_size:
        return placed(label, err.read_text(errors="replace").strip(), where)
    return exc


def read_stats(path: Path, source: str) -> dict[str, Any]:
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


def header_lines(hdr: Path, numbers: Path, name: str, where: Where) -> list[str]:
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
