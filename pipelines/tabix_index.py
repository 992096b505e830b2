"""The tabix index of an interval output: its limits, the choice between TBI and CSI, writing it, and the
records per contig htslib counted while indexing (the index's pseudo-bin: TBI and CSI both keep one per
reference), so the records-in == records-out check needs no read-back.

An output is compressed by `compressor`: bgzindex (pipelines/bgzindex.c, built by pipelines/native.py)
where it is built and, checked once a process on a sample, writes bgzip's bytes and tabix's index here;
it then writes the index of the kind guessed beforehand in the same pass, and `write_index` keeps it when
the guess (kind, leading lines skipped) was right. Else `bgzip`, and tabix after it. Same bytes either way.
"""

from __future__ import annotations

import functools
import gzip
import re
import struct
import subprocess
from pathlib import Path

from preprocess import shell
from preprocess.errors import ToolError

from . import native

TBI_MAX = 2**29          # TBI bins address positions below 2^29; beyond that, CSI
TABIX_MAX = 2**32        # the largest end tabix's CSI (min_shift 14) stores; beyond is an input error
CSI_MIN_SHIFT = 14
TBI_META_BIN = 37450  # ((1 << 18) - 1) // 7 + 1, the pseudo-bin of a depth-5 index
REFUSED = 3           # `bgzindex index`: tabix would not index the text either (nothing written)


def record_counts(index: Path) -> dict[str, int]:
    """Contig name -> records indexed under it, from a tabix .tbi or .csi; ValueError if unreadable."""
    data = gzip.decompress(index.read_bytes())
    if data[:4] == b"TBI\1":
        n_ref = struct.unpack_from("<i", data, 4)[0]
        names_length = struct.unpack_from("<i", data, 32)[0]
        names, offset, meta, csi = data[36:36 + names_length], 36 + names_length, TBI_META_BIN, False
    elif data[:4] == b"CSI\1":
        _min_shift, depth, aux_length = struct.unpack_from("<3i", data, 4)
        aux = data[16:16 + aux_length]
        names_length = struct.unpack_from("<i", aux, 24)[0] if aux_length >= 28 else 0
        names, offset, csi = aux[28:28 + names_length], 16 + aux_length, True
        meta = ((1 << (3 * depth + 3)) - 1) // 7 + 1
        n_ref = struct.unpack_from("<i", data, offset)[0]
        offset += 4
    else:
        raise ValueError(f"{index.name} is neither a TBI nor a CSI index")
    contigs = [name.decode("latin-1") for name in names.split(b"\0")[:n_ref]]
    if len(contigs) != n_ref:
        raise ValueError(f"{index.name} names {len(contigs)} contigs but holds {n_ref}")
    counts: dict[str, int] = {}
    for name in contigs:
        mapped = 0
        n_bin = struct.unpack_from("<i", data, offset)[0]
        offset += 4
        for _ in range(n_bin):
            if csi:
                bin_number, _loffset, n_chunk = struct.unpack_from("<IQi", data, offset)
                offset += 16
            else:
                bin_number, n_chunk = struct.unpack_from("<Ii", data, offset)
                offset += 8
            if bin_number == meta and n_chunk == 2:  # (start, end offsets), (mapped, unmapped)
                mapped = struct.unpack_from("<Q", data, offset + 16)[0]
            offset += 16 * n_chunk
        if not csi:
            n_intervals = struct.unpack_from("<i", data, offset)[0]
            offset += 4 + 8 * n_intervals
        counts[name] = mapped
    return counts


def declared_lengths(header: list[str]) -> list[int]:
    """Contig lengths a header declares: VCF ##contig length=, GFF3 ##sequence-region end."""
    found = []
    for line in header:
        match = (re.match(r"##contig=<.*?\blength=(\d+)", line)
                 or re.match(r"##sequence-region\s+\S+\s+\d+\s+(\d+)", line))
        if match:
            found.append(int(match.group(1)))
    return found


def index_kind(max_end: int, lengths: tuple[int, ...] | list[int]) -> str:
    """"csi" when the records' largest end or a contig length reaches past what TBI bins address, else "tbi"."""
    return "csi" if max_end >= TBI_MAX or any(n >= TBI_MAX for n in lengths) else "tbi"


def index_argv(out: Path, preset: str, kind: str, skip: int) -> list[str]:
    """tabix -p `preset` over `out` (CSI with min_shift 14 for `kind` "csi"), `skip` leading lines not
    indexed (a BED track line)."""
    flags = ["--csi", "-m", str(CSI_MIN_SHIFT)] if kind == "csi" else []
    skipped = ["-S", str(skip)] if skip else []
    return ["tabix", "-f", "-p", preset, *flags, *skipped, str(out)]


def index_path(out: Path, kind: str) -> Path:
    return out.with_name(f"{out.name}.{kind}")


def index_commands(out: Path, preset: str, kind: str, skip: int, threads: int, level: int) -> list[list[str]]:
    """The commands that index `out` as index_argv's tabix does, each run only where the one before it
    exited with REFUSED: `bgzindex index` (tabix's reading with a quicker parse), where it is built and
    agrees with tabix here, then tabix itself (which says why where it cannot index the text either)."""
    program = _bgzindex(level)
    tabix = index_argv(out, preset, kind, skip)
    if program is None:
        return [tabix]
    return [[program, "index", str(out), str(threads), preset, kind, str(skip), str(index_path(out, kind))], tabix]


def write_index(out: Path, preset: str, kind: str, skip: int, label: str, threads: int = 1, level: int = -1) -> Path:
    """Index `out` (see index_commands), unless its compressor wrote that very index already; returns the
    index's path. `level`: the output's compression level, whose bgzindex check stands for both modes."""
    if not made_while_compressed(out, (kind, skip)):
        *first, last = index_commands(out, preset, kind, skip, threads, level)
        for argv in first:
            try:
                shell.run(argv, context=f"indexing {label}")
                break
            except ToolError as exc:
                if exc.returncode != REFUSED:
                    raise
        else:
            shell.run(last, context=f"indexing {label}")
    return index_path(out, kind)


def compressor(out: Path, preset: str, kind: str, level: int, threads: int) -> list[str]:
    """The command compressing a text from stdin to stdout (for `out`) as `bgzip -c -l LEVEL -@ THREADS`
    does: bgzindex, also writing out's `kind` index as tabix would, where it is built and agrees with
    bgzip and tabix here (see made_while_compressed); else bgzip."""
    program = _bgzindex(level)
    _report(out).unlink(missing_ok=True)
    if program is None:
        return ["bgzip", "-c", "-l", str(level), "-@", str(threads)]
    return [program, "compress", str(level), str(threads), preset, kind, str(index_path(out, kind)), str(_report(out))]


def compressor_env(out: Path, preset: str, kind: str, level: int) -> dict[str, str]:
    """compressor's choice for scripts/intervals.sh, whose `compress` runs it: PP_BGZINDEX (empty: bgzip)
    and its arguments."""
    program = _bgzindex(level) or ""
    _report(out).unlink(missing_ok=True)
    return {"PP_BGZINDEX": program, "PP_PRESET": preset, "PP_INDEXKIND": kind,
            "PP_INDEX": str(index_path(out, kind)), "PP_REPORT": str(_report(out))}


def made_while_compressed(out: Path, wanted: tuple[str, int]) -> bool:
    """Whether bgzindex wrote out's index as tabix would write it with `wanted` (kind, leading lines
    skipped); an index it wrote otherwise is removed. Says so once: the report is consumed."""
    report = _report(out)
    try:
        said = report.read_text().split()
    except FileNotFoundError:
        return False
    report.unlink()
    made = (said[0], int(said[1])) if len(said) == 2 and said[1].isdigit() else None
    if made == wanted:
        return True
    if made and made[0] != wanted[0]:
        index_path(out, made[0]).unlink(missing_ok=True)
    return False


def discard_index(out: Path, kind: str) -> None:
    """Remove out's `kind` index and what bgzindex said of it: made for an output or a guess now given up."""
    index_path(out, kind).unlink(missing_ok=True)
    _report(out).unlink(missing_ok=True)


def _report(out: Path) -> Path:
    return out.with_name(f"{out.name}.indexed")


def _sample() -> bytes:
    """A deterministic BED text spanning several BGZF blocks and contigs, after a track line, whose last
    line ends on a block's end (where a threaded writer's index entry waits for a block never written)."""
    text = ("track name=sample\n" + "".join(f"chr{c}\t{i * 37}\t{i * 37 + 1 + i % 900}\tf{i}\t{i % 1000}\t+\n"
                                            for c in (1, 2, 10) for i in range(1500))).encode()
    last = b"chr10\t60000\t60001\t"
    room = -(len(text) + len(last) + 1) % 0xFF00
    return text + last + b"p" * room + b"\n"


def counter(level: int) -> str | None:
    """bgzindex, whose `count` gives what `tabix -R REGIONS FILE | wc -l` prints without printing the
    lines, where it is built and agrees here with bgzip and tabix (see _bgzindex); else None."""
    return _bgzindex(level)


def _bgzindex(level: int) -> str | None:
    """bgzindex where it is built and writes, for the sample, bgzip's bytes at `level` and tabix's index of
    them (one linked with another htslib or deflate library than bgzip's and tabix's may not); else None."""
    program = native.bgzindex()
    return None if program is None else _agreeing(program, level)


@functools.cache
def _agreeing(program: Path, level: int) -> str | None:
    def compare(here: Path) -> bool:
        sample, reference, made = here / "sample.bed", here / "reference.bed.gz", here / "made.bed.gz"
        sample.write_bytes(_sample())
        with open(sample, "rb") as text, open(reference, "wb") as target:
            subprocess.run(["bgzip", "-c", "-l", str(level)], stdin=text, stdout=target, check=True,
                           stderr=subprocess.DEVNULL, env=shell.environment(), timeout=60)
        subprocess.run(index_argv(reference, "bed", "tbi", 1), check=True, capture_output=True,
                       env=shell.environment(), timeout=60)
        with open(sample, "rb") as text, open(made, "wb") as target:
            subprocess.run([str(program), "compress", str(level), "2", "bed", "tbi", str(here / "made.tbi"),
                            str(here / "made.report")], stdin=text, stdout=target, check=True,
                           stderr=subprocess.DEVNULL, env=shell.environment(), timeout=60)
        subprocess.run([str(program), "index", str(reference), "2", "bed", "tbi", "1", str(here / "read.tbi")],
                       check=True, capture_output=True, env=shell.environment(), timeout=60)
        regions = here / "regions.bed"  # whole contigs, part of one, one the index does not name
        regions.write_text(f"chr1\t0\t{TABIX_MAX}\nchr10\t100\t20000\nchrX\t0\t10\nchr2\t0\t{TABIX_MAX}\n")
        counted = subprocess.run([str(program), "count", str(reference), str(index_path(reference, "tbi")),
                                  str(regions)], stdin=subprocess.DEVNULL, check=True, capture_output=True,
                                 env=shell.environment(), timeout=60)
        listed = subprocess.run(["tabix", "-R", str(regions), str(reference)], stdin=subprocess.DEVNULL, check=True,
                                capture_output=True, env=shell.environment(), timeout=60)
        tabix = index_path(reference, "tbi").read_bytes()
        return (made.read_bytes() == reference.read_bytes() and (here / "made.tbi").read_bytes() == tabix
                and (here / "made.report").read_text().split() == ["tbi", "1"]
                and (here / "read.tbi").read_bytes() == tabix
                and counted.stdout.split() == [str(listed.stdout.count(b"\n")).encode()])

    return str(program) if native.compared("bgzindex", "bgzip and tabix", "texts are indexed by tabix after bgzip",
                                           compare) else None
