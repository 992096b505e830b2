"""The interval pipelines' in-memory pass: read the text once, check it by columns (polars) and sort it
when it is not already in order.

It replaces `validate.awk | sort` (and validate.awk's check of the order) for a plain or BGZF text that
fits the memory budget and in which nothing is unusual: it writes exactly the lines, in exactly the
order, that the streaming pass would (sort -s: keys compared bytewise and numerically, ties in input
order), so the compressor (bgzip, or bgzindex: tabix_index.compressor) gives the same bytes. Anything
the validator would say something about (a control character or CR, a blank line, a header line after
data, a bad coordinate, ragged rows, a VCF INFO/END, text that is not UTF-8, a damaged block) gives
None, and the caller runs the streaming pass, which names the first such line exactly as it always has.

A text likely in order (its first lines are) has its output's last steps started before the check, on
the guess that the check will find its bytes final (`Ahead`): a plain text is compressed as it is (the
compressor writes of the file what it writes of the same bytes through a pipe, its index with them),
a BGZF one copied and indexed; then the read back through the index. A guess that fails costs the
work done; the bytes are decided by the content alone. Where bgzindex compresses the plain text, or
indexes the BGZF one, it checks the text as it passes (`compressor`, `checking_index`): its "ok" is
this check's verdict (in order, nothing to remark on, the same counts), reached without reading the
text again, and this pass then does not run; its "unsure" (said at the first line it cannot vouch for)
only means this pass runs (or, for a text past the memory budget, which only that check may settle,
the streaming pass).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from preprocess import shell

from . import bgzf, tabix_index
from .tabix_index import TABIX_MAX

if TYPE_CHECKING:
    from .intervals import IntervalFormat

# Peak RSS of the process running the pass, measured (`python -m preprocess run --cluster sync`, 2 threads,
# benchmarks/README.md): 115 MiB for a tiny text; 328-386 MiB for 50 MiB of BED or VCF (47-51 bytes a
# line), 839-904 MiB for 200 MiB, sorted or not; 833 MiB for 100 MiB of 3-column BED (24 bytes a line).
# Fitted: about 150 MiB (the interpreter, polars and the build's other imports) plus 0.4 times the text
# plus 157 bytes a line (the line column's 16-byte views, the key columns, the sort's keys and
# permutation, a slice of the sorted lines): lines cost more than bytes. The pass runs only when
# PEAK_BASE + PEAK_MULTIPLE x the size + PEAK_PER_LINE x the lines (estimated from the first 64 KiB)
# fits the budget: 25-40% above every peak measured.
PEAK_BASE = 256 << 20
PEAK_MULTIPLE = 1
PEAK_PER_LINE = 192
PIECE = 32 << 20            # the text is read and parsed this many bytes at a time (never whole as bytes)
WRITE_ROWS = 1 << 20        # the sorted lines are gathered and written this many at a time
_NUMBER = r"^(0|[1-9][0-9]{0,14})$"  # what validate.awk and htslib read alike, at most 15 digits
# Every byte but the control characters (tab and newline are not): deleting them leaves only those.
_NOT_CONTROL = bytes(b for b in range(256) if b in (9, 10) or 32 <= b < 127 or b > 127)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def budget(sort_memory: str, threads: int) -> int:
    """Bytes the pass may use: what the external sort is given (sort -S per thread, times the threads)."""
    match = re.fullmatch(r"(\d+)([KMGT]?)i?B?", sort_memory.strip().upper())
    return int(match.group(1)) * _UNITS[match.group(2)] * max(1, threads) if match else 0


def text_size(source: Path, compression: str) -> int | None:
    """The decompressed size of a plain or BGZF text (from the block trailers); None for another
    compression or a damaged BGZF file, which the pass does not take."""
    if compression == "plain":
        return source.stat().st_size
    layout = bgzf.blocks(source) if compression == "bgzf" else None
    return sum(block.isize for block in layout) if layout is not None else None


def peak(source: Path, compression: str) -> int | None:
    """The most memory the pass may take on a plain or BGZF text (see PEAK_BASE), None where it cannot
    take it (another compression, a damaged BGZF file)."""
    import zlib

    size = text_size(source, compression)
    if size is None:
        return None
    try:
        head = bgzf.read_head(source, 1 << 16)
    except (OSError, EOFError, zlib.error):
        return None
    lines = -(-size * max(1, head.count(b"\n")) // max(1, len(head)))
    return PEAK_BASE + PEAK_MULTIPLE * size + PEAK_PER_LINE * lines


VOUCH = True  # False: bgzindex does not check the text it compresses or indexes (tests compare both ways)


def compressor(spec: IntervalFormat, out: Path, kind: str, level: int, threads: int) -> tuple[list[str], Path | None]:
    """tabix_index.compressor's command for a plain text likely in order, with bgzindex checking the text as
    it passes where bgzindex runs (and VOUCH holds): the command, and the path its verdict goes to (None:
    no check, this pass judges)."""
    argv = tabix_index.compressor(out, spec.preset, kind, level, threads)
    if argv[0] == "bgzip" or not VOUCH:
        return argv, None
    verdict = _verdict_path(out)
    return [*argv, *_check_arguments(spec, verdict)], verdict


def checking_index(spec: IntervalFormat, out: Path, commands: list[list[str]]) -> tuple[list[list[str]], Path | None]:
    """tabix_index.index_commands for a BGZF text likely in order, with its first, `bgzindex index`, checking
    the text as it reads it (where it is bgzindex and VOUCH holds): the commands and the verdict's path."""
    if len(commands) < 2 or commands[0][1:2] != ["index"] or not VOUCH:
        return commands, None
    verdict = _verdict_path(out)
    return [[*commands[0], *_check_arguments(spec, verdict)], *commands[1:]], verdict


def _verdict_path(out: Path) -> Path:
    verdict = out.with_name(f"{out.name}.check")
    verdict.unlink(missing_ok=True)
    return verdict


def _check_arguments(spec: IntervalFormat, verdict: Path) -> list[str]:
    return [str(verdict), spec.kind, str(spec.start_column), str(spec.end_column), str(spec.min_columns),
            str(spec.exact_columns)]


def vouched(source: Path, said: str, compression: str = "plain") -> tuple[list[str], dict[str, Any]] | None:
    """The header lines and stats _checked_text gives for a plain or BGZF text in order, from bgzindex's
    "ok" (`said`: the counts, then the contigs in order); None for anything else it said, or a BGZF text
    whose last line has no newline (htslib's reader, and so bgzindex, counts one for every line: the last
    byte tells, and the size must then agree)."""
    import gzip

    lines = said.split("\n")
    if lines[0] != "ok" or len(lines) < 3 or lines[-1] != "":
        return None
    total, records, headers, track, maxend, columns, whole = (int(n) for n in lines[1].split())
    if compression != "plain":
        layout = bgzf.blocks(source)
        if (layout is None or not bgzf.ends_with_newline(source, layout)
                or whole != sum(block.isize for block in layout)):
            return None
    with (open(source, "rb") if compression == "plain" else gzip.open(source, "rb")) as text:
        header = [text.readline().decode("ascii").removesuffix("\n") for _ in range(headers)]
    stats = {"unsorted": 0, "bytes": whole, "cr": 0, "lines": total, "late": 0, "records": records, "blank": 0,
             "track": track, "fasta": 0, "headers": headers, "maxend": maxend, "columns": columns,
             "contigs": lines[2:-1]}
    return header, stats


class Early:
    """A tool started on the output before the check that decides whether its work stands: `finish`
    waits for it (ToolError if it failed), `cancel` kills it (what it wrote is then overwritten or
    removed by the caller)."""

    def __init__(self, argv: list[str], context: str, stdout: Path | None = None, stdin: Path | None = None
                 ) -> None:
        import threading

        self.argv, self.context = argv, context
        shell.require(argv[0])
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - closed by finish or cancel
        self._lock = threading.Lock()  # finish (Ahead's thread) and cancel (the caller's) may meet
        with open(stdout or os.devnull, "wb") as target, open(stdin or os.devnull, "rb") as feed:
            self._proc = subprocess.Popen(shell.tied(argv), stdin=feed, stdout=target,
                                          stderr=self._err, env=shell.environment(), start_new_session=True)

    def finish(self) -> None:
        from preprocess.errors import ToolError

        try:
            code = self._proc.wait()
            with self._lock:
                stderr = "" if self._err.closed else self._tail_and_close()
        except BaseException:
            self.cancel()
            raise
        if code != 0:
            raise ToolError(self.argv, code, shell.tail(stderr), context=self.context)

    def _tail_and_close(self) -> str:
        self._err.seek(0)
        try:
            return self._err.read().decode("utf-8", "replace")
        finally:
            self._err.close()

    def cancel(self) -> None:
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait()
        with self._lock:
            self._err.close()


class Ahead:
    """The output's last steps, started on the guess that the check will find `out` final: the step
    making it (`make`: the compressor of a plain text as it is, reading `source`; None where the caller
    copied a BGZF one), then the index with the options `guess`ed from the first lines (`index`: the
    commands of tabix_index.index_commands) unless the compressor wrote that index already, then the
    read back through the index (verify_output's reads),
    one after another in a thread of their own while the text is checked. `verdict`: where bgzindex, as
    `make` (a plain text) or as the first index command (BGZF), writes its check of the text (`vouched`).
    `result` waits for them all; `stop` stops them (with `keep_output`, once `out` is made)."""

    def __init__(self, out: Path, make: list[str] | None, source: Path, index: list[list[str]],
                 guess: tuple[str, int], threads: int, level: int, label: str, verdict: Path | None = None) -> None:
        import threading
        from concurrent.futures import ThreadPoolExecutor

        self.made = threading.Event()
        self._checked = threading.Event()  # the step checking the text has ended (or none will run)
        self._out, self._kind, self._source, self._verdict = out, guess[0], source, verdict
        self._lock = threading.Lock()
        self._current: Early | None = None
        self._stopped = False
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ahead")
        self._future = self._pool.submit(self._run, out, make, source, index, guess, threads, level, label)

    def _step(self, argv: list[str], context: str, stdout: Path | None = None, stdin: Path | None = None) -> None:
        with self._lock:
            if self._stopped:
                raise _Stopped
            self._current = Early(argv, context, stdout, stdin)
        self._current.finish()

    def _run(self, out: Path, make: list[str] | None, source: Path, index: list[list[str]],
             guess: tuple[str, int], threads: int, level: int, label: str) -> tuple[dict[str, int], int]:
        from preprocess.errors import ToolError

        from . import interval_checks

        try:
            if make:
                self._step(make, "compressing the text as it is", out, source)
                self._checked.set()
            self.made.set()
            if not (make and tabix_index.made_while_compressed(out, guess)):
                for number, argv in enumerate(index):
                    try:
                        self._step(argv, f"indexing {label}")
                        break
                    except ToolError as exc:  # bgzindex refused: tabix, next, says why
                        if exc.returncode != tabix_index.REFUSED or number == len(index) - 1:
                            raise
        finally:
            self._checked.set()
        return interval_checks.read_back(out, tabix_index.index_path(out, guess[0]), threads, level, label)

    def vouched(self, compression: str) -> tuple[list[str], dict[str, Any]] | None:
        """The header and stats of the text bgzindex checked, where it found it in order with nothing to
        remark on; None where it did not say so (or did not check), once that is known."""
        if self._verdict is None:
            return None
        try:
            while not self._checked.wait(0.02):  # "unsure" comes as soon as a line says so; "ok" at the end
                if self._future.done() or _said(self._verdict).startswith("unsure"):
                    return None  # (the first: a step failed, and result() says how)
                shell.check_time("checking the text")  # the caller's except stops the steps
            return vouched(self._source, _said(self._verdict), compression)
        finally:
            self._verdict.unlink(missing_ok=True)

    @property
    def stopped(self) -> bool:
        return self._stopped

    def result(self, doing: str) -> tuple[dict[str, int], int]:
        """The index's counts and the records read back (ToolError where a step failed; TimeLimitError,
        the steps stopped, at the task's time cap)."""
        import concurrent.futures

        try:
            return self._future.result(timeout=shell.time_left())
        except concurrent.futures.TimeoutError:
            self.stop()
            shell.check_time(doing)
            raise
        finally:
            self._pool.shutdown()

    def stop(self, keep_output: bool = False) -> None:
        """Stop the steps left (a read back under way runs to its end) and remove the index they made; with
        `keep_output`, only once the step making `out` has ended, and ToolError where it failed."""
        import concurrent.futures

        if keep_output:
            while not self.made.is_set() and not self._future.done():
                self.made.wait(0.05)
            if not self.made.is_set():
                self._future.result()  # raises what making it raised
        with self._lock:
            first, self._stopped, current = not self._stopped, True, self._current
        if current is not None and (self.made.is_set() or not keep_output):
            current.cancel()
        concurrent.futures.wait([self._future])
        self._pool.shutdown()
        if first:  # the index made on the guess is not the output's (nor, without keep_output, its data)
            tabix_index.discard_index(self._out, self._kind)


def _said(verdict: Path) -> str:
    try:
        return verdict.read_text()
    except FileNotFoundError:
        return ""


class _Stopped(Exception):
    """Raised in Ahead's thread when it was stopped between steps."""


def sort_text(spec: IntervalFormat, source: Path, out: Path, threads: int, level: int, compression: str,
              reuse: bool, early: Any = None, in_memory: bool = True) -> tuple[list[str], dict[str, Any], str] | None:
    """Sort and bgzip a plain or BGZF text `source` whose `peak` fits the memory budget into `out` as the
    sorting pass would: (header lines, stats in validate.awk's terms, path), or None, leaving `out` to
    be overwritten, when the streaming pass must run instead. The path is "stream" for a text in order
    (no sort: its lines compressed as they are, as the streaming pass would), "columnar" for one sorted
    here, and with `reuse` "input" for a BGZF input in order whose text is exactly the output's (as
    the streaming check decides it): then `out` is left as the caller made it, a copy of `source`.

    `early`: the caller's work making `out` from `source` as it is (a plain text: bgzip of it; BGZF: a
    copy) and going on with it; it stands when the check finds that output final (plain: in order with
    nothing to drop; BGZF: path "input"), and is stopped (`early.stop()`) before `out` is written
    otherwise. Where bgzindex checked the text for it (Ahead.vouched), its "ok" settles the text; without
    it, a text past the memory budget (not `in_memory`) gets None: the streaming pass runs."""
    keep = False
    try:
        said = early.vouched(compression) if early is not None else None
        if said is not None and compression == "plain":
            keep = True  # its bgzip of the file is the output, found in order as it was made
            return *said, "stream"
        if said is not None and reuse and compression == "bgzf" and _is_whole_bgzf(source):
            keep = True
            return *said, "input"
        if not in_memory:
            return None
        found = _checked_text(spec, source, threads, compression)
        if found is None:
            return None
        header, data, frame, stats = found
        if _in_order(spec, frame, header, stats["contigs"]) and not stats["fasta"]:
            if compression == "plain" and early is not None:
                keep = True  # its bgzip of the file is the output
                return header, stats, "stream"
            if reuse and compression == "bgzf" and _is_whole_bgzf(source):
                keep = True
                return header, stats, "input"
            permutation = None
        else:
            permutation = _sort_order(spec, frame, header, stats["contigs"])
        if early is not None:
            early.stop()
        kind = tabix_index.index_kind(stats["maxend"], tabix_index.declared_lengths(header))
        _write(spec, out, header, data, permutation, kind, threads, level)
        return header, stats, "stream" if permutation is None else "columnar"
    finally:
        if early is not None and not keep:
            early.stop()  # a second time does nothing


def _is_whole_bgzf(source: Path) -> bool:
    layout = bgzf.blocks(source)
    return layout is not None and bgzf.ends_with_eof_block(source, layout)


def _pieces(stream: IO[bytes]) -> Iterator[bytes]:
    """The stream's bytes in pieces of about PIECE bytes, each ending just after a newline (the last
    as the stream ends)."""
    rest = b""
    while True:
        chunk = stream.read(PIECE)
        if not chunk:
            if rest:
                yield rest
            return
        chunk = rest + chunk
        cut = chunk.rfind(b"\n") + 1
        if cut:
            yield chunk[:cut]
        rest = chunk[cut:]


def _ahead(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """The pieces, each read while the one before is parsed (a thread reads them: a decompressor writing
    into a pipe would otherwise wait while the text it gave is parsed)."""
    import queue
    import threading

    ready: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def give(item: bytes | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for piece in pieces:
                if not give(piece):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, which raises it
            give(exc)
            return
        give(None)

    threading.Thread(target=read, name="columnar-read-ahead", daemon=True).start()
    try:
        while (item := ready.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def _checked_text(spec: IntervalFormat, source: Path, threads: int,
                  compression: str) -> tuple[list[str], Any, Any, dict[str, Any]] | None:
    """Read the text and check it: the header lines, the data lines, their key columns, and the stats;
    None for anything unusual (the streaming pass then says what)."""
    if compression == "plain":
        with open(source, "rb") as stream:
            read = _lines(spec, stream)
    else:
        argv = ["bgzip", "-dc", "-@", str(threads), "--", str(source)]
        with subprocess.Popen(shell.tied(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, env=shell.environment(), start_new_session=True) as proc:
            assert proc.stdout is not None
            read = None
            try:
                read = _lines(spec, proc.stdout, ahead=True)
            finally:
                if proc.poll() is None and (read is None or sys.exc_info()[0]):
                    proc.kill()  # given up on: nothing more is wanted
        if proc.returncode != 0:
            return None  # a damaged stream (the streaming pass names the block), or given up on
    if read is None:
        return None
    lines, whole, fasta = read
    found = _checked(spec, lines)
    if found is not None:
        found[3].update(fasta=fasta, lines=found[3]["lines"] + fasta, bytes=whole)
    return found


def _lines(spec: IntervalFormat, stream: IO[bytes], ahead: bool = False) -> tuple[Any, int, int] | None:
    """The text's lines (before a GFF3 ##FASTA section) as one polars column, its size and the lines of
    that section; None where the streaming pass must judge (a control character or CR, a blank line,
    no final newline, text that is not UTF-8). Read a piece at a time: the text is never held whole as
    bytes beside its column; `ahead`: each piece read while the one before is parsed."""
    import polars as pl

    parts, whole, fasta, infasta, last = [], 0, 0, False, b"\n"
    for piece in _ahead(_pieces(stream)) if ahead else _pieces(stream):
        whole += len(piece)
        if infasta:
            fasta += piece.count(b"\n")
            last = piece[-1:]
            continue
        if piece.translate(None, _NOT_CONTROL):  # what is left of it is its control characters, CR included
            return None
        if spec.kind == "gff":  # a GFF3 ##FASTA section ends the records: its lines are dropped and counted
            cut = 0 if piece.startswith(b"##FASTA") else piece.find(b"\n##FASTA") + 1
            if cut > 0 or piece.startswith(b"##FASTA"):
                infasta, fasta = True, piece.count(b"\n", cut)
                piece = piece[:cut]
        last = piece[-1:] or last
        if piece:
            try:
                part = pl.read_csv(piece, has_header=False, separator="\x01", quote_char=None,
                                   new_columns=["line"], infer_schema=False)["line"]
            except pl.exceptions.ComputeError:  # text that is not UTF-8: the validator's to judge
                return None
            if part.null_count() or len(part) != piece.count(b"\n"):  # a blank line reads as null
                return None
            parts.append(part)
    if not parts or last != b"\n":
        return None
    lines = parts[0] if len(parts) == 1 else pl.concat(parts, rechunk=False)
    return lines, whole, fasta


def _checked(spec: IntervalFormat, lines: Any) -> tuple[list[str], Any, Any, dict[str, Any]] | None:
    """The header lines, the data lines, their key columns (contig, start, end) and the stats; None for
    anything unusual."""
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
    wanted = max(spec.start_column, spec.end_column, 4 if spec.kind == "vcf" else 0)
    field = pl.col("fields").struct.field
    contig, start = field("field_0"), field(f"field_{spec.start_column - 1}")
    begin = start.cast(pl.Int64, strict=False)
    # a line the validator would remark on: a contig name empty, not ASCII or with whitespace; a coordinate
    # not in canonical decimal; a VCF INFO/END (htslib's rules); start after end; GFF start 0; BED end 0
    odd = contig.str.contains(r"^$|[^\x21-\x7e]") | ~start.str.contains(_NUMBER)
    if spec.kind == "vcf":
        end = pl.max_horizontal(begin + field("field_3").str.len_bytes().cast(pl.Int64) - 1, begin)
        odd = odd | pl.col("line").str.contains("END=", literal=True)
    else:
        stop = field(f"field_{spec.end_column - 1}")
        end = stop.cast(pl.Int64, strict=False)
        odd = odd | ~stop.str.contains(_NUMBER) | (begin > end)
        odd = odd | (begin < 1) if spec.kind == "gff" else odd | (end == 0)
    # every thread at once, a slice of the lines at a time: only the key columns are kept (never the
    # lines again: selecting them with the keys would copy them into one chunk)
    frame = (pl.LazyFrame({"line": data})
             .with_columns(fields=pl.col("line").str.split_exact("\t", wanted - 1))
             .select(pl.col("line").str.count_matches("\t", literal=True).alias("tabs"), odd.alias("odd"),
                     contig.alias("contig"), begin.alias("start"), end.alias("end"))
             .collect(engine="streaming"))
    tabs = frame.get_column("tabs")
    width = int(tabs[0]) + 1
    if (int(tabs.min()) != int(tabs.max()) or width < spec.min_columns  # type: ignore[arg-type]
            or (spec.exact_columns and width != spec.exact_columns) or bool(frame.get_column("odd").any())):
        return None
    frame = frame.drop("tabs", "odd")
    maxend = max(0, int(frame.get_column("end").max()))  # type: ignore[arg-type]
    if maxend > TABIX_MAX:
        return None
    stats = {"unsorted": 0, "bytes": 0, "cr": 0, "lines": len(lines), "late": 0, "records": len(data), "blank": 0,
             "track": sum(1 for line in header if not line.startswith("#")), "fasta": 0, "headers": headers,
             "maxend": maxend, "columns": width,
             "contigs": frame.get_column("contig").unique(maintain_order=True).to_list()}
    return header, data, frame, stats


def _ranked(spec: IntervalFormat, header: list[str], contigs: list[str]) -> list[Any]:
    """The integer sort keys of a data line, in order: its contig's rank (VCF: by the header's ##contig
    lines, then by name; others bytewise by name, as LC_ALL=C compares) with the start, then (BED) the end."""
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
    return [first, pl.col("end")] if spec.kind == "bed" else [first]


def _in_order(spec: IntervalFormat, frame: Any, header: list[str], contigs: list[str]) -> bool:
    """Whether the data lines are already in `sort -s` order (each key at least the one before)."""

    keys = _ranked(spec, header, contigs)
    step = keys[0].diff()
    ok = step >= 0 if len(keys) == 1 else (step > 0) | ((step == 0) & (keys[1].diff() >= 0))
    return bool(frame.select(ok.fill_null(True).all()).item())


def _sort_order(spec: IntervalFormat, frame: Any, header: list[str], contigs: list[str]) -> Any:
    """The permutation that puts the data lines in `sort -s` order for spec.sort_keys: by the integer
    keys, ties in input order (a stable sort; one on strings is several times slower)."""
    import polars as pl

    keys = _ranked(spec, header, contigs)
    return frame.select(pl.arg_sort_by(keys, maintain_order=True)).to_series()


def _write(spec: IntervalFormat, out: Path, header: list[str], lines: Any, permutation: Any, kind: str, threads: int,
           level: int) -> None:
    """Header, then the lines (in the order of `permutation`, unless None), through the compressor (the
    bytes the sorting pass's bgzip writes; with bgzindex, `kind`'s index too); gathered and written
    WRITE_ROWS at a time, so the sorted lines are never held whole beside the lines read."""
    from preprocess.errors import ToolError

    argv = tabix_index.compressor(out, spec.preset, kind, level, threads)
    shell.require(argv[0])
    with open(out, "wb") as target, subprocess.Popen(shell.tied(argv), stdin=subprocess.PIPE, stdout=target,
                                                     stderr=subprocess.PIPE, env=shell.environment(),
                                                     start_new_session=True) as proc:
        assert proc.stdin is not None and proc.stderr is not None
        try:
            proc.stdin.write("".join(f"{line}\n" for line in header).encode("utf-8"))
            for at in range(0, len(lines), WRITE_ROWS):
                rows = (lines.slice(at, WRITE_ROWS) if permutation is None
                        else lines.gather(permutation.slice(at, WRITE_ROWS)))
                rows.to_frame().write_csv(proc.stdin, include_header=False, quote_style="never")
            proc.stdin.close()
        except BaseException:
            proc.kill()
            raise
        stderr = proc.stderr.read()
    if proc.returncode != 0:
        raise ToolError(argv, proc.returncode, stderr.decode("utf-8", "replace")[-2000:],
                        context="compressing the sorted text")
