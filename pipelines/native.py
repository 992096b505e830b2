"""The C programs built on first use, and bamwalk's record walks (bamwalk.c) with their Python equivalents.

bamwalk.c walks BAM records at the speed of decompression. Linked with htslib (libhts-dev): bamindex.c
checks a BAM's order, counts its records and writes `samtools index`'s index in one decompression, and
bgzindex.c bgzips a text and writes its tabix index in the same pass (used by pipelines/tabix_index.py).
Each is compiled with the system's C compiler ($CC, else `cc`) into a per-user cache folder, under a
name keyed by its source's sha256. Without a compiler (or htslib's headers), or when the build fails,
what the program does runs another way: bamwalk's walks in Python, bamindex as bamwalk beside `samtools
index`, bgzindex as bgzip then tabix; the same verdicts, counts and output bytes, only slower. The
htslib programs are used only where, checked on a sample once a process, they write the bytes of the
tools they stand in for. PREPROCESS_BAMWALK=python forces the Python walks and samtools index, and
PREPROCESS_BGZINDEX=off bgzip then tabix (the tests compare both ways).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import platform
import select
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from preprocess import shell
from preprocess.errors import InputError, ToolError

from . import bgzf

SOURCE = Path(__file__).with_name("bamwalk.c")
SWITCH = "PREPROCESS_BAMWALK"  # "python": the Python walks even where the program builds
BGZINDEX_SOURCE = SOURCE.with_name("bgzindex.c")
BAMINDEX_SOURCE = SOURCE.with_name("bamindex.c")
BGZINDEX_SWITCH = "PREPROCESS_BGZINDEX"  # "off": bgzip then tabix even where bgzindex builds
UNSORTED, MALFORMED, TRUNCATED = 1, 2, 3  # bamwalk's exit statuses besides 0 (and 4: usage or I/O error)
BAM_MAGIC = b"BAM\x01"
SMALLEST_RECORD, LARGEST_RECORD = 36, 1 << 28  # bytes with the block_size field, as bamwalk.c
_CHUNK = 1 << 22

log = logging.getLogger(__name__)


def program() -> Path | None:
    """The compiled bamwalk, built now if it is not yet; None where PREPROCESS_BAMWALK=python or it
    cannot be built (no compiler, a failed build: logged once)."""
    if os.environ.get(SWITCH, "").lower() == "python":
        return None
    return _program(SOURCE, (), "BAM records are walked in Python")


def bgzindex() -> Path | None:
    """The compiled bgzindex, built now if it is not yet; None where PREPROCESS_BGZINDEX=off or it cannot
    be built (no compiler or no htslib headers and library: logged once)."""
    if os.environ.get(BGZINDEX_SWITCH, "").lower() == "off":
        return None
    return _program(BGZINDEX_SOURCE, ("-lhts",), "texts are indexed by tabix after bgzip")


def _program(source: Path, libraries: tuple[str, ...], otherwise: str) -> Path | None:
    built = _built(source, libraries, otherwise)
    if built is not None and not _trusted(built):  # removed since (a temp folder's cleaner): built again
        _built.cache_clear()
        built = _built(source, libraries, otherwise)
    return built


@functools.cache
def _built(source: Path, libraries: tuple[str, ...], otherwise: str) -> Path | None:
    """`source` compiled and linked with `libraries` into the first trusted cache folder (or found there);
    None, with `otherwise` (what runs instead) logged, where it cannot be."""
    digest = hashlib.sha256(source.read_bytes() + " ".join(libraries).encode()).hexdigest()[:16]
    name = f"{source.stem}-{platform.machine() or 'any'}-{digest}"
    for folder in _cache_folders():
        if _trusted(folder / name):
            return folder / name
    compiler = shlex.split(os.environ.get("CC") or "cc")
    if not compiler or not shutil.which(compiler[0]):
        log.info("no C compiler (%s): %s", compiler[0] if compiler else "$CC empty", otherwise)
        return None
    problem = "no writable cache folder"
    for folder in _cache_folders():
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not _trusted(folder, program=False):
                problem = f"{folder} is not this user's alone"
                continue
            fd, part = tempfile.mkstemp(prefix=f".{name}-", dir=folder)
        except OSError as exc:
            problem = str(exc)
            continue
        os.close(fd)
        try:
            made = subprocess.run([*compiler, "-O2", "-o", part, str(source), *libraries], capture_output=True,
                                  check=False, stdin=subprocess.DEVNULL, env=shell.environment(), timeout=120)
            if made.returncode != 0:
                log.info("building %s failed: %s: %s", source.stem, otherwise,
                         shell.tail(made.stderr.decode("utf-8", "replace"), 5))
                return None
            os.chmod(part, 0o755)
            os.replace(part, folder / name)  # whole or absent: a concurrent worker never runs half a binary
            return folder / name
        except (OSError, subprocess.TimeoutExpired) as exc:
            problem = str(exc)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)
    log.info("cannot build %s (%s): %s", source.stem, problem, otherwise)
    return None


def _trusted(path: Path, program: bool = True) -> bool:
    """`path` is this user's, in a folder of this user's, neither writable by others (a program found
    in a shared temp folder could have been put there by anyone); a program must be executable."""
    try:
        for item in (path, path.parent) if program else (path,):
            found = item.stat()
            if found.st_uid != os.getuid() or found.st_mode & 0o022:
                return False
    except OSError:
        return False
    return not program or os.access(path, os.X_OK)


def _cache_folders() -> list[Path]:
    """Where the program is kept: the user's cache ($XDG_CACHE_HOME or ~/.cache), then a temp folder."""
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    user = os.getuid() if hasattr(os, "getuid") else "user"
    return [Path(home) / "preprocess", Path(tempfile.gettempdir()) / f"preprocess-{user}"]


@contextlib.contextmanager
def _decompressing(bam: Path, threads: int, walk: list[str], start: int = 0
                   ) -> Iterator[tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]]:
    """`bgzip -dc BAM | walk` as two processes (bgzip's, then the walk's); both are killed on leaving.
    From file byte `start` on (a BGZF block's start) when it is not 0."""
    shell.require("bgzip")
    with contextlib.ExitStack() as opened:
        feed: IO[bytes] | int = subprocess.DEVNULL
        if start:
            compressed = opened.enter_context(open(bam, "rb"))
            compressed.seek(start)
            feed = compressed
        unzip = subprocess.Popen(shell.tied(["bgzip", "-dc", "-@", str(threads), *([] if start else [str(bam)])]),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=feed,
                                 env=shell.environment(), start_new_session=True)
    assert unzip.stdout is not None
    try:
        walker = subprocess.Popen(shell.tied(walk), stdin=unzip.stdout, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=shell.environment(), start_new_session=True)
    except BaseException:
        unzip.kill()
        unzip.wait()
        raise
    finally:
        unzip.stdout.close()
    try:
        yield unzip, walker
    finally:
        for proc in (walker, unzip):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def _finish(proc: subprocess.Popen[bytes], doing: str) -> tuple[bytes, str]:
    """The stdout and stderr of `proc` once it ends; TimeLimitError at the task's time cap."""
    while True:
        left = shell.time_left()
        try:
            out, err = proc.communicate(timeout=None if left is None else left + 0.01)
            return out or b"", (err or b"").decode("utf-8", "replace")
        except subprocess.TimeoutExpired:
            shell.check_time(doing)


class Unavailable(Exception):
    """bamwalk is not built here (no compiler, PREPROCESS_BAMWALK=python) or failed in a way of its own:
    the caller's Python walk answers instead."""


def records_in_order(bam: Path, threads: int, in_order_so_far: Callable[[], None]) -> int | None:
    """records_in_sort_order (pipelines.alignments) through bamwalk: the count when the records are in
    samtools sort order, else None (out of order, truncated, malformed, BGZF damage); `in_order_so_far`
    once the first records have passed. Unavailable where the program is missing or fails otherwise."""
    walk = program()
    if walk is None:
        raise Unavailable("bamwalk is not built")
    doing = "checking the record order"
    with _decompressing(bam, threads, [str(walk), "order"]) as (unzip, walker):
        lines = _lines_saying_go(walker, in_order_so_far, doing)
        _, error = _finish(walker, doing)
        if walker.returncode in (UNSORTED, MALFORMED, TRUNCATED):
            return None
        if walker.returncode == 0 and lines and lines[-1].isdigit():
            _finish(unzip, doing)
            return int(lines[-1]) if unzip.returncode == 0 else None
    raise Unavailable(f"bamwalk order failed ({walker.returncode}): {shell.tail(error, 2)}")


def _lines_saying_go(proc: subprocess.Popen[bytes], in_order_so_far: Callable[[], None], doing: str) -> list[bytes]:
    """The lines `proc` prints until its stdout ends, `in_order_so_far` called at its "go" (the first
    records have passed in order); TimeLimitError at the task's time cap."""
    assert proc.stdout is not None
    lines, pending = list[bytes](), b""
    while True:
        left = shell.time_left()
        ready, _, _ = select.select([proc.stdout], [], [], 1.0 if left is None else min(1.0, left + 0.01))
        shell.check_time(doing)
        chunk = os.read(proc.stdout.fileno(), 4096) if ready else None
        if chunk == b"":
            return lines
        *done, pending = (pending + (chunk or b"")).split(b"\n")
        for line in done:
            if line == b"go":
                in_order_so_far()
            lines.append(line)


def indexed_in_order(bam: Path, index: Path, threads: int, in_order_so_far: Callable[[], None],
                     meanwhile: Callable[[], None] = lambda: None) -> int | None:
    """bamindex: in one decompression, the record count when the BAM's records are in samtools sort order
    (`index` then written: the bytes `samtools index` writes, BAI or, for a .csi name, CSI with min_shift
    14), else None with no index (out of order, a record htslib cannot read or index, damage);
    `in_order_so_far` once the first records have passed, after `meanwhile` (the caller's work that only
    a file in order needs: an unsorted file, often told in its first block, never waits for it).
    Unavailable where bamindex is not built, or here writes other index bytes than samtools index (checked
    once the file is seen in order, the index then being wanted)."""
    indexer = bamindex()
    if indexer is None:
        raise Unavailable("bamindex is not built")
    kind = "csi" if index.suffix == ".csi" else "bai"
    doing = "checking the record order"
    proc = subprocess.Popen(shell.tied([str(indexer), str(bam), str(threads), kind, str(index)]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env=shell.environment(), start_new_session=True)
    trusted = list[bool]()

    def in_order(said_go: bool = False) -> None:  # beside bamindex's reading of the rest
        if not trusted:
            trusted.append(True)
            if not _bamindex_agrees(indexer, kind):  # cached after the first file
                raise Unavailable("bamindex does not write samtools index's bytes here")
            meanwhile()
        if said_go:
            in_order_so_far()

    try:
        lines = _lines_saying_go(proc, lambda: in_order(said_go=True), doing)
        _, error = _finish(proc, doing)
        if proc.returncode == 0:
            in_order()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            index.unlink(missing_ok=True)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    if proc.returncode == 0 and lines and lines[-1].isdigit():
        return int(lines[-1])
    index.unlink(missing_ok=True)
    if proc.returncode in (UNSORTED, MALFORMED, TRUNCATED):
        return None
    raise Unavailable(f"bamindex failed ({proc.returncode}): {shell.tail(error, 2)}")


def bamindex() -> Path | None:
    """The compiled bamindex (needs htslib's headers and library: libhts-dev), built now if it is not yet;
    None where PREPROCESS_BAMWALK=python (the walks and indexes are then those of the tools) or it cannot
    be built."""
    if os.environ.get(SWITCH, "").lower() == "python":
        return None
    return _program(BAMINDEX_SOURCE, ("-lhts",), "sorted BAMs are indexed by samtools index")


def _sample_sam() -> str:
    """A deterministic coordinate-sorted SAM: two references, both strands, unplaced reads at the end."""
    placed = "".join(f"r{i}\t{16 * (i % 2)}\tchr{1 + i // 1500}\t{1 + i % 1500 * 37}\t60\t50M\t*\t0\t0\t"
                     f"{'ACGT' * 12}AC\t*\n" for i in range(3000))
    return ("@HD\tVN:1.6\tSO:coordinate\n@SQ\tSN:chr1\tLN:100000\n@SQ\tSN:chr2\tLN:60000\n" + placed
            + "".join(f"u{i}\t4\t*\t0\t0\t*\t*\t0\t0\tACGT\t*\n" for i in range(20)))


@functools.cache
def _bamindex_agrees(indexer: Path, kind: str) -> bool:
    """Whether bamindex writes, for a sample BAM, the `kind` index samtools index writes (one linked with
    another htslib than samtools' may not)."""
    flags = ["-b"] if kind == "bai" else ["-c", "-m", "14"]

    def compare(here: Path) -> bool:
        (here / "sample.sam").write_text(_sample_sam())
        for argv in (["samtools", "view", "--no-PG", "-b", "-o", here / "sample.bam", here / "sample.sam"],
                     ["samtools", "index", *flags, here / "sample.bam", here / f"tools.{kind}"],
                     [indexer, here / "sample.bam", "1", kind, here / f"made.{kind}"]):
            subprocess.run([str(arg) for arg in argv], check=True, capture_output=True, stdin=subprocess.DEVNULL,
                           env=shell.environment(), timeout=60)
        return (here / f"made.{kind}").read_bytes() == (here / f"tools.{kind}").read_bytes()

    return compared("bamindex", f"samtools index ({kind.upper()})", "sorted BAMs are indexed by samtools index",
                    compare)


def compared(program: str, tools: str, otherwise: str, compare: Callable[[Path], bool]) -> bool:
    """Whether `program` writes here the bytes of the `tools` it stands in for: `compare(folder)` runs both
    on a sample in a fresh temporary folder and says whether their bytes are equal. Said once where they
    are not (a warning) or cannot be compared (an info line), with `otherwise`, what runs instead."""
    with tempfile.TemporaryDirectory(prefix=f"{program}-check-") as folder:
        try:
            same = compare(Path(folder))
        except (OSError, subprocess.SubprocessError) as exc:
            log.info("%s could not be compared with %s (%s): %s", program, tools, exc, otherwise)
            return False
    if not same:
        log.warning("%s writes other bytes than %s here (another htslib or deflate library): %s", program, tools,
                    otherwise)
    return same


def route(source: Path, cuts: list[int], outs: list[Path], threads: int, shown: str | None = None) -> list[int]:
    """Split a BAM's records by reference id: output k holds those with cuts[k-1] <= refID < cuts[k]
    (the first from 0, the last to the end, with the unplaced reads, refID -1), in input order, each an
    uncompressed BAM under the input's header bytes (samtools reads it as any BAM). Returns each
    output's record count. InputError for an unreadable input: BGZF damage, a malformed or truncated
    record, a reference id (or mate's) the header does not declare."""
    if len(outs) != len(cuts) + 1 or cuts != sorted(cuts) or min(cuts, default=0) < 0:
        raise ValueError(f"route: {len(outs)} outputs need {len(outs) - 1} increasing cuts, not {cuts}")
    shown = shown or source.name
    walk = program()
    if walk is None:
        return _route_in_python(source, cuts, outs, threads, shown)
    doing = f"splitting {shown}"
    with _decompressing(source, threads, [str(walk), "route", ",".join(map(str, cuts)), *map(str, outs)]
                        ) as (unzip, walker):
        out, error = _finish(walker, doing)
        _, unzipped = _finish(unzip, doing)
    if unzip.returncode > 0 and walker.returncode in (0, TRUNCATED):  # bgzip stopped at damage (not a SIGPIPE)
        raise InputError(f"{shown}: unreadable alignment records: {_bgzf_reason(source, unzipped, shown)}")
    if walker.returncode in (MALFORMED, TRUNCATED):
        reason = shell.tail(error, 1).removeprefix("bamwalk route: ")
        raise InputError(f"{shown}: unreadable alignment records: {reason}")
    if walker.returncode != 0:
        raise ToolError([str(walk), "route"], walker.returncode, shell.tail(error), context=doing)
    return [int(n) for n in out.split()]


def route_range(source: Path, cuts: list[int], outs: list[Path], threads: int, references: int | None,
                start: int, limit: int, shown: str) -> tuple[int, int, list[int]] | None:
    """One route group's share (bamwalk range): the source decompressed from file byte `start` (a block's
    start), its records routed as `route` does until the first one starting at or after uncompressed
    byte `limit` (of this stream). With `references` None the stream starts with the header (file byte
    0) and the outputs get it; else they get records only, from the first record start found by checks
    over several records (a guess). (first record's offset, where the last ended, counts), offsets in
    this stream; None when no record start was found or the walk failed (a wrong guess reads garbage:
    the caller routes that share again from a known record start, which reports bad input as `route`).
    InputError, as `route`, only for a group that starts with the header. Unavailable without bamwalk."""
    if len(outs) != len(cuts) + 1 or cuts != sorted(cuts) or min(cuts, default=0) < 0:
        raise ValueError(f"route_range: {len(outs)} outputs need {len(outs) - 1} increasing cuts, not {cuts}")
    walk = program()
    if walk is None:
        raise Unavailable("bamwalk is not built")
    doing = f"splitting {shown}"
    argv = [str(walk), "range", str(-1 if references is None else references), str(limit), ",".join(map(str, cuts)),
            *map(str, outs)]
    with _decompressing(source, threads, argv, start) as (unzip, walker):
        out, error = _finish(walker, doing)
        _, unzipped = _finish(unzip, doing)
    lines = out.decode().split("\n")
    stopped = walker.returncode == 0 and len(lines) >= 2 and lines[0] != "none"
    if references is not None:
        if not stopped:
            return None
    elif walker.returncode in (MALFORMED, TRUNCATED) or (unzip.returncode > 0 and walker.returncode != 0):
        if unzip.returncode > 0 and walker.returncode in (0, TRUNCATED):
            raise InputError(f"{shown}: unreadable alignment records: {_bgzf_reason(source, unzipped, shown)}")
        reason = shell.tail(error, 1).removeprefix("bamwalk range: ")
        raise InputError(f"{shown}: unreadable alignment records: {reason}")
    elif walker.returncode == 0 and unzip.returncode > 0 and stopped and int(lines[0].split()[1]) < limit:
        raise InputError(f"{shown}: unreadable alignment records: {_bgzf_reason(source, unzipped, shown)}")
    elif walker.returncode != 0:
        raise ToolError([str(walk), "range"], walker.returncode, shell.tail(error), context=doing)
    first, end = map(int, lines[0].split())
    return first, end, [int(n) for n in lines[1].split()]


def _bgzf_reason(source: Path, stderr: str, shown: str) -> str:
    """Why bgzip could not decompress `source`: where its BGZF layout or data first breaks, or bgzip's words."""
    return bgzf.first_fault(source) or shell.tail(stderr, 2).replace(str(source), shown) or "bgzip failed"


class _Stream:
    """An uncompressed BAM stream read record by record, with bamwalk.c's checks and messages."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream, self.buf, self.at, self.offset = stream, bytearray(), 0, 0

    def have(self, size: int) -> bool:
        """At least `size` unread bytes in buf[at:] (False at the end of the input)."""
        while len(self.buf) - self.at < size:
            if self.at:
                del self.buf[:self.at]
                self.offset += self.at
                self.at = 0
            chunk = self.stream.read(max(size - len(self.buf), _CHUNK))
            if not chunk:
                return False
            self.buf += chunk
        return True

    def header(self) -> tuple[bytes, int]:
        """The header's bytes (magic to the last reference) and its number of references."""
        if not self.have(4):
            raise _Bad(TRUNCATED, "no input" if not self.buf else "the input ends in the BAM magic")
        if self.buf[:4] != BAM_MAGIC:
            raise _Bad(MALFORMED, "not an uncompressed BAM (no BAM magic)")
        if not self.have(12):
            raise _Bad(TRUNCATED, "the input ends in the header")
        text = int.from_bytes(self.buf[4:8], "little")
        if text > 0x7FFFFFFF:
            raise _Bad(MALFORMED, "a header text length over 2^31")
        at = 12 + text
        if not self.have(at):
            raise _Bad(TRUNCATED, "the input ends in the header text")
        count = int.from_bytes(self.buf[at - 4:at], "little")
        if count > 0x7FFFFFFF:
            raise _Bad(MALFORMED, "a reference count over 2^31")
        for ref in range(count):
            if not self.have(at + 4):
                raise _Bad(TRUNCATED, "the input ends in the header's references")
            name = int.from_bytes(self.buf[at:at + 4], "little")
            if name > 0x7FFFFFFF:
                raise _Bad(MALFORMED, f"reference {ref}: a name length over 2^31")
            if not self.have(at + 8 + name):
                raise _Bad(TRUNCATED, "the input ends in the header's references")
            at += 8 + name
        head = bytes(self.buf[:at])
        self.at = at
        return head, count

    def records(self) -> Iterator[memoryview]:
        """Each record, block_size field first (a view valid until the next one)."""
        number = 0
        while True:
            if not self.have(4):
                if len(self.buf) > self.at:
                    raise _Bad(TRUNCATED, f"the input ends in record {number + 1}'s length")
                return
            size = 4 + int.from_bytes(self.buf[self.at:self.at + 4], "little", signed=True)
            if not SMALLEST_RECORD <= size <= LARGEST_RECORD:
                raise _Bad(MALFORMED, f"record {number + 1} (at uncompressed byte {self.offset + self.at}) is "
                                      f"{size} bytes long, outside 36 to 2^28")
            if not self.have(size):
                raise _Bad(TRUNCATED, f"the input ends in record {number + 1}")
            with memoryview(self.buf) as whole:
                record = whole[self.at:self.at + size]
                try:
                    yield record
                finally:
                    record.release()
            self.at += size
            number += 1


class _Bad(Exception):
    """An unreadable stream: bamwalk's exit status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _route_in_python(source: Path, cuts: list[int], outs: list[Path], threads: int, shown: str) -> list[int]:
    """route without the program: the same outputs, counts and messages."""
    doing = f"splitting {shown}"
    shell.require("bgzip")
    proc = subprocess.Popen(shell.tied(["bgzip", "-dc", "-@", str(threads), str(source)]), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=shell.environment(),
                            start_new_session=True)
    assert proc.stdout is not None and proc.stderr is not None
    bad: _Bad | None = None
    counts = [0] * len(outs)
    try:
        with contextlib.ExitStack() as files:
            targets = [files.enter_context(open(out, "wb")) for out in outs]
            try:
                stream = _Stream(proc.stdout)
                head, references = stream.header()
                part_of = [sum(ref >= cut for cut in cuts) for ref in range(references)] + [len(outs) - 1]
                for target in targets:
                    target.write(head)
                checked = time.monotonic()
                for number, record in enumerate(stream.records(), 1):
                    ref = int.from_bytes(record[4:8], "little", signed=True)
                    mate = int.from_bytes(record[24:28], "little", signed=True)
                    if not (-1 <= ref < references and -1 <= mate < references):
                        raise _Bad(MALFORMED, f"record {number} names reference id "
                                              f"{ref if not -1 <= ref < references else mate}, which the header's "
                                              f"{references} references do not include")
                    part = part_of[ref]
                    targets[part].write(record)
                    counts[part] += 1
                    if time.monotonic() - checked > 1:
                        shell.check_time(doing)
                        checked = time.monotonic()
            except _Bad as exc:
                bad = exc
    finally:
        if bad is not None and bad.status == MALFORMED:
            proc.kill()
        proc.stdout.close()
        unzipped = proc.stderr.read().decode("utf-8", "replace")
        proc.stderr.close()
        code = proc.wait()
    if code > 0 and (bad is None or bad.status == TRUNCATED):  # bgzip stopped at damage
        raise InputError(f"{shown}: unreadable alignment records: {_bgzf_reason(source, unzipped, shown)}")
    if bad is not None:
        raise InputError(f"{shown}: unreadable alignment records: {bad}")
    return counts
