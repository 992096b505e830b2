"""The interval pipelines' output checks, after tabix: the records htslib counted into the index are the
records read, every one comes back through a whole-contig query, the first and last come back through a
query of their own; when some do not, the first missing one is named by its line in the user's file."""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from preprocess import shell
from preprocess.errors import InputError, ToolError

from . import bgzf, tabix_index
from .streaming import Where
from .tabix_index import TABIX_MAX

if TYPE_CHECKING:
    from .intervals import IntervalFormat

# Every record reachable through the index ($2) of the output ($1): one reader per file of whole-contig
# regions ($4...), in parallel, each printing its count: `bgzindex count` ($3: htslib's iterator, counting)
# or, where it is not built ($3 empty), `tabix -R | wc -l` (tabix exits 0 even when it skips a line).
READ_BACK = r"""
pids=()
for regions in "${@:4}"; do
    if [ -n "$3" ]; then "$3" count "$1" "$2" "$regions" & else tabix -R "$regions" "$1" | wc -l & fi
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
"""
READ_BACK_IN_PROCESS = 256 << 10          # smaller outputs are read back through pysam, no processes


def verify_output(spec: IntervalFormat, source: Path, out: Path, index: Path, header: list[str],
                  stats: dict[str, Any], threads: int, level: int, label: str, where: Where,
                  read_back: tuple[dict[str, int], int] | None = None) -> int:
    """Check `out` and its `index` against what the validator read (stats); return the records out.
    ToolError when the index cannot be read or a query misses; InputError naming the first record the
    index does not reach (htslib read the file otherwise than the validator). `read_back`: what
    read_back() gave for this very output and index, when it ran beside the check."""
    counts, reached = read_back or (index_counts(out, index, label), None)
    records_out = sum(counts.values())
    if records_out == stats["records"] and sorted(counts) == sorted(stats["contigs"]):
        # indexed is not yet reachable (a BED `chr 0 0` is counted in its bin but no query returns it)
        records_out = reachable(out, index, counts, threads, level) if reached is None else reached
    if records_out != stats["records"] or sorted(counts) != sorted(stats["contigs"]):
        raise unreachable(source, out, stats["contigs"], len(header), stats["records"], records_out, label, where)
    if records_out:
        spot_check(spec, out, index, first_and_last(out, len(header)), stats["contigs"], label)
    return records_out


def index_counts(out: Path, index: Path, label: str) -> dict[str, int]:
    """The records per contig htslib counted into the index; ToolError when it cannot be read."""
    try:
        return tabix_index.record_counts(index)
    except (ValueError, struct.error, OSError, EOFError) as exc:
        raise ToolError(["tabix", out.name], 0, f"cannot read the index it wrote: {exc}",
                        context=f"checking {label}") from None


def read_back(out: Path, index: Path, threads: int, level: int, label: str) -> tuple[dict[str, int], int]:
    """The index's counts per contig and the records whole-contig queries return (verify_output's two
    reads of the output), for running beside other work."""
    counts = index_counts(out, index, label)
    return counts, reachable(out, index, counts, threads, level)


def reachable(out: Path, index: Path, counts: dict[str, int], threads: int, level: int) -> int:
    """How many records whole-contig queries through the index return: contigs shared among `threads`
    readers by their record counts; a small output is read in this process. `level`: the output's
    compression level, at which tabix_index.counter is checked."""
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
    back = shell.pipe(READ_BACK, out, index, tabix_index.counter(level) or "", *files,
                      context="reading the output back through its index")
    return sum(int(n) for n in back.stdout.split())


def first_and_last(out: Path, header_lines: int) -> tuple[str, str]:
    """The output's first and last record, read from its first and its last blocks alone."""
    import gzip

    with gzip.open(out, "rb") as stream:
        for _ in range(header_lines):
            stream.readline()
        first = stream.readline().rstrip(b"\n")
    layout = bgzf.blocks(out)
    last = bgzf.last_line(out, layout) if layout else b""
    return first.decode("latin-1"), last.decode("latin-1")  # bytes as they are: text is bytes


def spot_check(spec: IntervalFormat, out: Path, index: Path, ends: tuple[str, str], contigs: list[str],
               name: str) -> None:
    """The index opens, lists every contig, and a query over the first and last record returns them."""
    import pysam

    try:
        with pysam.TabixFile(str(out), index=str(index), encoding="latin-1") as tbx:  # bytes as they are
            if sorted(tbx.contigs) != sorted(contigs):
                raise ToolError(["tabix", out.name], 0, f"index lists {len(tbx.contigs)} contigs, data has "
                                f"{len(contigs)}", context=f"checking {name}")
            for line in ends:
                contig, start, end = spec.region(line)
                found = {row for row in tbx.fetch(contig, max(0, start - 1), end + 1)}
                if line not in found:
                    raise ToolError(["tabix", out.name, f"{contig}:{start}-{end}"], 0,
                                    "query did not return the record", context=f"checking {name}")
    except (OSError, ValueError) as exc:
        raise ToolError(["pysam.TabixFile", out.name], 1, str(exc), context=f"opening the index of {name}") from None


def unreachable(source: Path, out: Path, contigs: list[str], header_lines: int, records_in: int,
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
    for number, line in enumerate(bgzf.text_lines(out), 1):
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
    number = next((n for n, line in enumerate(bgzf.text_lines(source), 1) if line == missing), 0)
    place = where(number) if number else "a record"
    shown = missing[:80].decode("utf-8", "replace")
    return InputError(f"{label}: {place}: not reachable through the tabix index, which reads it otherwise "
                      f"({shown!r}); {summary}")
