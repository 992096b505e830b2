"""The interval pipelines' in-memory pass: read the text once, check it and sort it by columns (polars).

It replaces `validate.awk | sort` (and, for a BGZF input, validate.awk's check of the order) for a
plain or BGZF text that fits the memory budget and in which nothing is unusual: it writes exactly the
lines, in exactly the order, that the streaming pass would (sort -s: keys compared bytewise and
numerically, ties in input order), so bgzip gives the same bytes. Anything the validator would say
something about (a control character or CR, a blank line, a header line after data, a bad coordinate,
ragged rows, a VCF INFO/END, text that is not UTF-8, a damaged block) gives None, and the caller runs
the streaming pass, which names the first such line exactly as it always has.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from preprocess import shell

from . import bgzf
from .tabix_index import TABIX_MAX

if TYPE_CHECKING:
    from .intervals import IntervalFormat

# Peak memory of the pass over the size of the text, measured: 953 MiB for a 200 MiB BED (4.6x): the
# bytes, the line column, the key columns, the permutation and the sorted copy (make bench records it).
PEAK_MULTIPLE = 5
_NUMBER = r"^(0|[1-9][0-9]{0,14})$"  # what validate.awk and htslib read alike, at most 15 digits
# Every control character but tab and newline maps to NUL, the rest to themselves: one C-speed pass finds any.
_CONTROLS = bytes(0 if (b < 32 and b not in (9, 10)) or b == 127 else b for b in range(256))
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def budget(sort_memory: str, threads: int) -> int:
    """Bytes the pass may use: what the external sort is given (sort -S per thread, times the threads)."""
    match = re.fullmatch(r"(\d+)([KMGT]?)i?B?", sort_memory.strip().upper())
    return int(match.group(1)) * _UNITS[match.group(2)] * max(1, threads) if match else 0


def sort_text(spec: IntervalFormat, source: Path, out: Path, threads: int, level: int, memory: int,
              compression: str, reuse: bool) -> tuple[list[str], dict[str, Any], str] | None:
    """Sort and bgzip a plain or BGZF text `source` into `out` as the sorting pass would: (header lines,
    stats in validate.awk's terms, path), or None, writing nothing, when the streaming pass must run
    instead. With `reuse`, a BGZF input already in order whose text is exactly the output's is copied
    as it is (path "input", as the streaming check decides it); otherwise the path is "columnar"."""
    if not spec.sort_keys:
        return None
    layout = bgzf.blocks(source) if compression == "bgzf" else None
    if compression == "bgzf" and layout is None:
        return None
    size = sum(block.isize for block in layout) if layout is not None else source.stat().st_size
    if size * PEAK_MULTIPLE > memory:
        return None
    data = source.read_bytes() if compression == "plain" else _decompressed(source, threads)
    if not data or not data.endswith(b"\n") or data.startswith(b"\n") or b"\n\n" in data:
        return None
    whole, fasta = len(data), 0
    if spec.kind == "gff":  # a GFF3 ##FASTA section ends the records: its lines are dropped and counted
        cut = 0 if data.startswith(b"##FASTA") else data.find(b"\n##FASTA") + 1
        if cut > 0 or data.startswith(b"##FASTA"):
            fasta = data.count(b"\n", cut)
            data = data[:cut]
            if not data:
                return None
    if 0 in data.translate(_CONTROLS):  # bytes: `0 in` is a C-speed search for NUL
        return None
    import polars as pl

    try:
        lines = pl.read_csv(data, has_header=False, separator="\x01", quote_char=None, new_columns=["line"],
                            infer_schema=False)["line"]
    except Exception:  # noqa: BLE001 - text polars cannot read as UTF-8: the validator's to judge
        return None
    del data
    found = _checked(spec, lines)
    if found is None:
        return None
    header, frame, stats = found
    stats["fasta"], stats["lines"], stats["bytes"] = fasta, stats["lines"] + fasta, whole
    permutation = _sort_order(spec, frame, header, stats["contigs"])
    in_order = bool((permutation == pl.int_range(len(permutation), eager=True)).all())
    if in_order and reuse and layout is not None and not fasta and bgzf.ends_with_eof_block(source, layout):
        shutil.copyfile(source, out)
        return header, stats, "input"
    ordered = frame.select("line") if in_order else frame.select(pl.col("line").gather(permutation))
    _write(out, header, ordered, threads, level)
    return header, stats, "columnar"


def _decompressed(source: Path, threads: int) -> bytes:
    """A BGZF file's text, or b"" where bgzip cannot read it (the streaming pass then says why)."""
    done = subprocess.run(["bgzip", "-dc", "-@", str(threads), str(source)], capture_output=True,
                          env=shell.environment(), start_new_session=True)
    return done.stdout if done.returncode == 0 else b""


def _checked(spec: IntervalFormat, lines: Any) -> tuple[list[str], Any, dict[str, Any]] | None:
    """The header lines, the data lines with their key columns, and the stats; None for anything unusual."""
    import polars as pl

    text = lines.str
    is_header = text.starts_with("#")
    if spec.kind == "bed":
        is_header = is_header | text.contains(r"^(track|browser)([ \t]|$)")
    headers = int(is_header.sum())
    if bool(is_header.slice(headers).any()) or headers == len(lines):  # a header line after data; no data
        return None
    header = lines.slice(0, headers).to_list()
    data = lines.slice(headers)
    widths = data.str.count_matches("\t", literal=True)
    width = int(widths[0]) + 1
    if (int(widths.min()) != int(widths.max()) or width < spec.min_columns
            or (spec.exact_columns and width != spec.exact_columns)):
        return None
    wanted = max(spec.start_column, spec.end_column, 8 if spec.kind == "vcf" else 0)
    fields = data.str.splitn("\t", wanted + 1).struct.unnest()
    contig, start = fields["field_0"], fields[f"field_{spec.start_column - 1}"]
    if bool(contig.str.contains(r"^$|[^\x21-\x7e]").any()):  # empty, not ASCII, or whitespace: the validator says
        return None
    if not bool(start.str.contains(_NUMBER).all()):
        return None
    begin = start.cast(pl.Int64)
    if spec.kind == "vcf":
        if bool(fields["field_7"].str.contains("END=", literal=True).any()):  # htslib's INFO/END: the validator's
            return None
        end = pl.select(pl.max_horizontal(begin + fields["field_3"].str.len_bytes() - 1, begin)).to_series()
    else:
        stop = fields[f"field_{spec.end_column - 1}"]
        if not bool(stop.str.contains(_NUMBER).all()):
            return None
        end = stop.cast(pl.Int64)
        if bool((begin > end).any()):
            return None
        if spec.kind == "gff" and bool((begin < 1).any()):
            return None
        if spec.kind == "bed" and bool((end == 0).any()):
            return None
    maxend = max(0, int(end.max()))  # type: ignore[arg-type]
    if maxend > TABIX_MAX:
        return None
    frame = pl.DataFrame({"line": data, "contig": contig, "start": begin, "end": end})
    stats = {"unsorted": 0, "bytes": 0, "cr": 0, "lines": len(lines), "late": 0, "records": len(data), "blank": 0,
             "track": sum(1 for line in header if not line.startswith("#")), "fasta": 0, "headers": headers,
             "maxend": maxend, "columns": width, "contigs": contig.unique(maintain_order=True).to_list()}
    return header, frame, stats


def _sort_order(spec: IntervalFormat, frame: Any, header: list[str], contigs: list[str]) -> Any:
    """The permutation that puts the data lines in `sort -s` order for spec.sort_keys: contigs ranked
    (VCF: by the header's ##contig lines, then by name; others bytewise by name, as LC_ALL=C compares),
    then the numeric keys, then the input order, all as integers (a sort on strings with kept order is
    several times slower)."""
    import polars as pl

    if spec.kind == "vcf":
        declared: dict[str, int] = {}
        for line in header:
            if line.startswith("##contig=<ID="):
                declared.setdefault(re.sub(r"[,>].*$", "", line[13:]), len(declared))
        order = sorted(contigs, key=lambda name: (declared.get(name, len(declared)), name.encode()))
    else:
        order = sorted(contigs, key=lambda name: name.encode())
    rank = pl.col("contig").replace_strict({name: i for i, name in enumerate(order)}, return_dtype=pl.Int64)
    first = rank * (1 << 34) + pl.col("start")  # starts are below 2^33 (ends at most TABIX_MAX, checked)
    keys = [first, pl.col("end")] if spec.kind == "bed" else [first]
    return frame.select(pl.arg_sort_by([*keys, pl.int_range(pl.len())])).to_series()


def _write(out: Path, header: list[str], lines: Any, threads: int, level: int) -> None:
    """Header, then the sorted lines, through bgzip (the bytes the sorting pass's bgzip writes)."""
    from preprocess.errors import ToolError

    argv = ["bgzip", "-c", "-l", str(level), "-@", str(threads)]
    shell.require("bgzip")
    with open(out, "wb") as target, subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=target,
                                                     stderr=subprocess.PIPE, env=shell.environment(),
                                                     start_new_session=True) as proc:
        assert proc.stdin is not None and proc.stderr is not None
        try:
            proc.stdin.write("".join(f"{line}\n" for line in header).encode("utf-8"))
            lines.write_csv(proc.stdin, include_header=False, quote_style="never")
            proc.stdin.close()
        except BaseException:
            proc.kill()
            raise
        stderr = proc.stderr.read()
    if proc.returncode != 0:
        raise ToolError(argv, proc.returncode, stderr.decode("utf-8", "replace")[-2000:],
                        context="compressing the sorted text")
