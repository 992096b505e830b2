"""Generated bad files for every format: a valid artifact whose records in = out and that pysam queries,
or an InputError with nothing in the store. Never another error, never half an artifact, never a crash.

Each format has its own real fault kinds (FAULTS): text formats CRLF, mixed line ends, a NUL byte, a
trailing NUL more than 64 KiB in, non-UTF-8 bytes, a huge header line, odd contig names, header-only;
BGZF formats (BAM, bgzipped VCF) a block with a bad CRC or a corrupt deflate stream in the middle, a
plain gzip member after the BGZF blocks, and for BAM CR, mixed line ends and a NUL in its header text;
bigBed a corrupt data block in the middle, CR, mixed line ends and a NUL in its records' fields; and
for all a truncation, flipped bytes, empty. CI builds every (format, kind) once, with fixed seeds;
set PREPROCESS_BAD_FILE_EXAMPLES=N to explore N random (kind, seed) cases per format instead.
"""

from __future__ import annotations

import gzip
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

import pysam
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from preprocess.build import build_doc
from preprocess.config import load_settings
from preprocess.model import FileDoc
from tests import samples
from tests.conftest import store_files
from tests.hostile_samples import HOSTILE

EXAMPLES = int(os.environ.get("PREPROCESS_BAD_FILE_EXAMPLES", "0"))
CLASSIFIED = {"InputError"}  # a bad file is the user's to fix: a ToolError here would blame the tools

MAKERS = {
    "SAM": ("x.sam", lambda d: samples.sam(d / "x.sam", reads=40, unmapped=3)),
    "BAM": ("x.bam", lambda d: samples.bam(d / "x.bam", reads=400, unmapped=3)),  # a few BGZF blocks
    "VCF": ("x.vcf.gz", lambda d: samples.bgzip(samples.vcf(d / "x.vcf", records=3000), d / "x.vcf.gz")),
    "BED": ("x.bed", lambda d: samples.bed(d / "x.bed", records=30)),
    "narrowPeak": ("x.narrowPeak", lambda d: samples.narrowpeak(d / "x.narrowPeak", records=30)),
    "broadPeak": ("x.broadPeak", lambda d: samples.narrowpeak(d / "x.broadPeak", records=30, broad=True)),
    "GFF3": ("x.gff3", lambda d: samples.gff3(d / "x.gff3", genes=4)),
    "GTF": ("x.gtf", lambda d: samples.gtf(d / "x.gtf", genes=4)),
    "bigBed": ("x.bb", lambda d: samples.bigbed(d / "x.bb", records=30)),
}
TEXT = ("SAM", "BED", "narrowPeak", "broadPeak", "GFF3", "GTF")
Fault = Callable[[bytes, random.Random], bytes]  # the original file's bytes, a seeded rng -> the bad file


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("originals")
    return {fmt: make(folder).read_bytes() for fmt, (_, make) in MAKERS.items()}


# -- faults of any file --------------------------------------------------------------------------------
def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data))]


def flip(data: bytes, rng: random.Random) -> bytes:
    raw = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        raw[rng.randrange(len(raw))] ^= rng.randint(1, 255)
    return bytes(raw)


def empty(data: bytes, rng: random.Random) -> bytes:
    return b""


# -- faults of text (for a bgzipped VCF, of its text, written plain) -------------------------------------
def _lines(data: bytes) -> list[bytes]:
    return (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).split(b"\n")


def crlf(data: bytes, rng: random.Random) -> bytes:
    return b"".join(line + b"\r\n" for line in _lines(data) if line)


def mixed_eol(data: bytes, rng: random.Random) -> bytes:  # CRLF, LF and a lone CR, as files edited on two systems are
    return b"".join(line + rng.choice((b"\r\n", b"\n", b"\n", b"\r")) for line in _lines(data) if line)


def nul(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    at = rng.randrange(len(lines) - 1)
    cut = rng.randint(0, len(lines[at]))
    lines[at] = lines[at][:cut] + b"\0" + lines[at][cut:]
    return b"\n".join(lines)


def trailing_nul(data: bytes, rng: random.Random) -> bytes:
    """Issue 20: a NUL in the last line, more than 64 KiB in (a comment line pads the file past the quick look)."""
    lines = [line for line in _lines(data) if line]
    last = next((i for i, line in enumerate(lines) if line.startswith(b"##FASTA")), len(lines)) - 1  # a record
    lines[last] += b"\0x"
    pad = b"@CO\t" if lines[0].startswith(b"@") else b"##pad=" if lines[0].startswith(b"##") else b"#"
    lines.insert(1, pad + b"x" * 70_000)
    return b"\n".join(lines) + b"\n"


def non_utf8(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    at = rng.randrange(len(lines))
    lines[at] = lines[at][: rng.randint(0, len(lines[at]))] + b"\xff\xfe\xc3" + lines[at][len(lines[at]) // 2:]
    return b"\n".join(lines)


def header_only(data: bytes, rng: random.Random) -> bytes:
    return b"\n".join(line for line in _lines(data) if line.startswith((b"#", b"@", b"track", b"browser"))) + b"\n"


def huge_header(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    return (b"@CO\t" if lines[0].startswith(b"@") else b"#") + b"x" * 300_000 + b"\n" + b"\n".join(lines)


def odd_contig(data: bytes, rng: random.Random) -> bytes:
    name = rng.choice([b"chr 1", b"chr1:2-3", b"*", b"=", b"chr\xc3\xa9", b"-1", b"chr1\t"])
    return b"\n".join(line.replace(b"chr1\t", name + b"\t") for line in _lines(data))


TEXT_FAULTS: dict[str, Fault] = {"crlf": crlf, "mixed-eol": mixed_eol, "nul": nul, "trailing-nul": trailing_nul,
                                 "non-utf8": non_utf8, "header-only": header_only, "huge-header": huge_header,
                                 "odd-contig": odd_contig}


# -- faults of BGZF (BAM, bgzipped VCF) ----------------------------------------------------------------
def bad_crc(data: bytes, rng: random.Random) -> bytes:
    return samples.corrupt_bgzf_block(data, crc_only=True)[0]


def bad_block(data: bytes, rng: random.Random) -> bytes:
    return samples.corrupt_bgzf_block(data, crc_only=False)[0]


def bgzf_then_gzip(data: bytes, rng: random.Random) -> bytes:
    tail = gzip.decompress(data)[-200:]  # records again, in a plain gzip member: readable, but not BGZF
    return samples.bgzf_then_gzip(data, tail[tail.find(b"\n") + 1:])[0]  # whole lines of text


BGZF_FAULTS: dict[str, Fault] = {"bad-crc": bad_crc, "bad-block": bad_block, "gzip-after-bgzf": bgzf_then_gzip}


def _bam_header(edit: Callable[[bytes, random.Random], bytes]) -> Fault:
    return lambda data, rng: samples.bam_header_edited(data, lambda text: edit(text, rng))


BAM_FAULTS: dict[str, Fault] = {
    "header-crlf": _bam_header(lambda text, rng: text.replace(b"\n", b"\r\n")),
    "header-mixed-eol": _bam_header(lambda text, rng: text.replace(b"\n", b"\r\n", 1)),
    "header-nul": _bam_header(lambda text, rng: text.replace(b"sample1", b"sam\0le1")),
}


# -- faults of bigBed: its records' fields as a bad BED would have left them, a bad block -----------------
def _bigbed(rest: Callable[[int, random.Random], bytes]) -> Fault:
    def make(data: bytes, rng: random.Random) -> bytes:
        import tempfile
        from pathlib import Path

        rows = [("chr1", 100 * i, 100 * i + 50, rest(i, rng)) for i in range(1, 40)]
        with tempfile.TemporaryDirectory() as folder:
            return samples.bigbed_raw(Path(folder) / "x.bb", {"chr1": 10_000}, rows, order="<").read_bytes()
    return make


def bigbed_bad_block(data: bytes, rng: random.Random) -> bytes:
    """A byte flipped in the middle of the records' zlib data (between fullDataOffset and the R-tree)."""
    start, end = int.from_bytes(data[16:24], "little") + 8, int.from_bytes(data[24:32], "little")
    raw = bytearray(data)
    raw[(start + end) // 2] ^= 0x55
    return bytes(raw)


BIGBED_FAULTS: dict[str, Fault] = {
    "bad-block": bigbed_bad_block,
    "crlf": _bigbed(lambda i, rng: f"item{i}\t{i}\t+\r".encode()),
    "mixed-eol": _bigbed(lambda i, rng: f"item{i}\t{i}\t+".encode() + rng.choice((b"\r", b""))),
    "nul": _bigbed(lambda i, rng: f"item{i}\t{i}\t+".encode() + (b"\0x" if i == 20 else b"")),
}

ANY_FILE: dict[str, Fault] = {"truncate": truncate, "flip": flip, "empty": empty}
FAULTS: dict[str, dict[str, Fault]] = {
    **{fmt: {**ANY_FILE, **TEXT_FAULTS} for fmt in TEXT},
    "VCF": {**ANY_FILE, **BGZF_FAULTS, **TEXT_FAULTS},
    "BAM": {**ANY_FILE, **BGZF_FAULTS, **BAM_FAULTS},
    "bigBed": {**ANY_FILE, **BIGBED_FAULTS},
}
# Kinds that must be refused (a wrong byte no reader may take), not merely built whole or refused.
REFUSED = {"nul", "trailing-nul", "bad-crc", "bad-block", "header-nul"}
# Kinds made in other modules (a self-referential bigBed index, a zlib bomb, a huge BAM header...), one line
# each: (format, kind, fault, whether it must be refused).
def hostile(kind: str) -> Fault:
    """tests/hostile_samples.py's file of this kind (made whole, not derived from the original)."""
    def fault(_original: bytes, _rng: random.Random) -> bytes:
        with tempfile.TemporaryDirectory() as folder:
            return HOSTILE[kind][2](Path(folder)).read_bytes()
    return fault


ADDED: list[tuple[str, str, Fault, bool]] = [
    ("bigBed", "self-referential-index", hostile("self-referential-index"), True),
    ("bigBed", "decompression-bomb", hostile("decompression-bomb"), True),
    ("BAM", "huge-header", hostile("huge-header"), False),  # valid, 64 MB of header: built, in linear time
]
for _fmt, _kind, _fault, _refused in ADDED:
    FAULTS[_fmt][_kind] = _fault
    REFUSED.update({_kind} if _refused else set())
CASES = [(fmt, kind) for fmt, kinds in FAULTS.items() for kind in kinds]


def count_through_index(result) -> int:
    data, index = result.artifacts["data"], result.artifacts["index"]
    if data.endswith(".bam"):  # by reference id, so that no name is parsed as a region
        with pysam.AlignmentFile(data, index_filename=index) as aln:
            placed = sum(1 for tid, length in enumerate(aln.lengths) for _ in aln.fetch(tid=tid, start=0, stop=length))
            return placed + sum(1 for read in aln.fetch(until_eof=True) if read.reference_id < 0)
    # latin-1: a free-text column may hold any bytes (they are the user's); pysam's default ASCII would choke
    with pysam.TabixFile(data, index=index, encoding="latin-1") as tbx:
        return sum(1 for contig in tbx.contigs for _ in tbx.fetch(contig, 0, 2**31 - 1))


def check_bad_file(fmt: str, kind: str, bad: bytes, work) -> None:
    """Build `bad` as `fmt`: built whole (records in = out = what pysam reads through the index) or an
    InputError with nothing in the store; refused for the kinds in REFUSED."""
    text_of_bgzf = fmt == "VCF" and kind in TEXT_FAULTS
    path = work / ("x.vcf" if text_of_bgzf else MAKERS[fmt][0])
    path.write_bytes(bad)
    store = work / "store"
    settings = load_settings(**{"store.url": str(store), "cluster.profile": "sync", "scratch": str(work),
                                "threads": 2})
    result = build_doc(FileDoc(id="bad", access_url=str(path), format=fmt), fmt, settings)
    if result.status == "built":
        assert kind not in REFUSED, (fmt, kind, result.records)
        records = result.records
        unreachable = records.get("unreachable", {"count": 0})["count"]  # reads past a reference's end
        assert records["in"] == records["out"] == count_through_index(result) + unreachable, (kind, records)
        if fmt == "VCF":  # and a VCF reader accepts it
            with pysam.VariantFile(result.artifacts["data"]) as vcf:
                assert sum(1 for _ in vcf) == records["out"]
    else:
        assert result.error.class_ in CLASSIFIED, (fmt, kind, result.error)
        assert store_files(store) == []


@pytest.mark.parametrize("fmt, kind", CASES)
def test_a_generated_bad_file_is_built_whole_or_refused_classified(fmt, kind, originals, tmp_path):
    check_bad_file(fmt, kind, FAULTS[fmt][kind](originals[fmt], random.Random(f"{fmt}-{kind}")), tmp_path)


if EXAMPLES:  # exploring (defined only then, so CI shows no skip): random kinds and seeds per format
    @pytest.mark.parametrize("fmt", list(MAKERS))
    def test_random_bad_files_are_built_whole_or_refused_classified(fmt, originals, tmp_path_factory):
        @hsettings(max_examples=EXAMPLES, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
        @given(kind=st.sampled_from(sorted(FAULTS[fmt])), seed=st.integers(0, 2**32 - 1))
        def check(kind: str, seed: int) -> None:
            check_bad_file(fmt, kind, FAULTS[fmt][kind](originals[fmt], random.Random(seed)),
                           tmp_path_factory.mktemp(f"bad-{fmt}"))

        check()


@pytest.mark.parametrize("length, words", [
    ("1000x", "past.sam: header line 2: @SQ 'LN:1000x' is not a positive integer length"),  # htslib reads 1000
    ("1000", "past.sam: line 5: a read at chr1:5000 starts past the end of chr1 (length 1000 on its @SQ line)"),
])
def test_reads_past_the_declared_reference_length_are_refused(tmp_path, length, words):
    """Found by the test above: samtools keeps reads placed past their reference's length (and reads a
    malformed LN:1000x as 1000); no region query a browser makes reaches them. Such reads are refused
    with `unreachable-reads: refuse` (built by default: tests/integration/test_unreachable_reads.py)."""
    sam = tmp_path / "past.sam"
    sam.write_text(f"@HD\tVN:1.6\n@SQ\tSN:chr1\tLN:{length}\n"
                   + "".join(f"r{i}\t0\tchr1\t{pos}\t60\t4M\t*\t0\t0\tACGT\tIIII\n"
                             for i, pos in enumerate((10, 997, 5000, 9000))))
    settings = load_settings(**{"store.url": str(tmp_path / "store"), "cluster.profile": "sync",
                                "scratch": str(tmp_path), "unreachable-reads": "refuse"})
    result = build_doc(FileDoc(id="past", access_url=str(sam), format="SAM"), "SAM", settings)
    assert result.status == "failed" and result.error.class_ == "InputError", result
    assert result.error.message.startswith(words), result.error.message
    assert store_files(tmp_path / "store") == []


def test_a_bigbed_that_aborts_its_reader_fails_classified_and_the_process_lives_on(originals, tmp_path):
    # Found by the test above: on this file pybigtools aborted the process (SIGABRT), taking the worker (or a
    # notebook's own process, in profile sync) with it; the reader that replaced it read a corrupt block size
    # as a request for gigabytes (MemoryError).
    path = tmp_path / "aborts.bb"
    path.write_bytes(flip(originals["bigBed"], random.Random(72)))
    settings = load_settings(**{"store.url": str(tmp_path / "store"), "cluster.profile": "sync",
                                "scratch": str(tmp_path)})
    result = build_doc(FileDoc(id="bb", access_url=str(path), format="bigBed"), "bigBed", settings)
    assert result.status == "failed" and result.error.class_ == "InputError"
    assert "aborts.bb: truncated or corrupt bigBed" in result.error.message
    assert store_files(tmp_path / "store") == []


def _build(path, fmt, tmp_path, threads: int = 2):
    store = tmp_path / "store"
    settings = load_settings(**{"store.url": str(store), "cluster.profile": "sync", "scratch": str(tmp_path),
                                "threads": threads})
    result = build_doc(FileDoc(id="x", access_url=str(path), format=fmt), fmt, settings)
    assert result.status == "failed" and result.error.class_ == "InputError", result
    assert store_files(store) == []
    return result.error.message


@pytest.mark.parametrize("path_taken", ["stream", "input", "sort", "split", "gtf"])
def test_a_nul_past_the_first_64_kib_is_refused_by_line_and_column(tmp_path, path_taken, monkeypatch):
    """Issue 20 item 3: a BED whose last line is `chr0\\t1\\t2\\tn\\0x`, more than 64 KiB in, was built (pysam and
    tabix then cut that record at the NUL). Every path a text takes validates the whole of it: sorted ("stream"),
    sorted BGZF ("input"), unsorted ("sort"), split in two validators (from 32 MiB; here from 64 KiB, so the test
    stays small), GTF before gffread."""
    from pipelines import intervals

    monkeypatch.setattr(intervals, "SPLIT_MIN", 1 << 16 if path_taken == "split" else intervals.SPLIT_MIN)
    bed = samples.bed_with_late_nul(tmp_path / "late.bed", at_least=200_000 if path_taken == "split" else 70_000)
    lines = bed.read_bytes().split(b"\n")[:-1]
    name, fmt, column = "late.bed", "BED", 4
    if path_taken == "input":
        name = samples.bgzip(bed, tmp_path / "late.bed.gz").name
    elif path_taken in ("sort", "split"):
        lines[0], lines[1] = lines[1], lines[0]  # out of order: sorted, not streamed
        bed.write_bytes(b"\n".join(lines) + b"\n")
    elif path_taken == "gtf":
        name, fmt, column = "late.gtf", "GTF", 9
        text = [b"chr0\tsrc\texon\t%d\t%d\t.\t+\t.\tgene_id \"g\"; transcript_id \"t\";" % (i, i + 1)
                for i in range(1, len(lines))]
        (tmp_path / name).write_bytes(b"\n".join(text) + b"\0x\n")
        lines = text
    message = _build(tmp_path / name, fmt, tmp_path)
    assert message == (f"{name}: line {len(lines)}: column {column}: a control character (byte 0x00) in text, "
                       "where only tab may be"), message


def test_a_nul_in_the_first_64_kib_is_placed_too(tmp_path):
    path = tmp_path / "early.bed"
    path.write_bytes(b"chr1\t1\t2\ta\nchr1\t3\t4\tb\0\n")
    message = _build(path, "BED", tmp_path)
    assert message == "early.bed: line 2: column 4: a NUL byte: binary content where text was expected", message


BGZF_INPUTS = {
    "BED": ("b.bed.gz", lambda d: samples.bgzip(samples.bed(d / "b.bed", records=20_000, track=False), d / "b.bed.gz")),
    "VCF": ("v.vcf.gz", lambda d: samples.bgzip(samples.vcf(d / "v.vcf", records=5000), d / "v.vcf.gz")),
    "BAM": ("x.bam", lambda d: samples.bam(d / "x.bam", reads=5000)),
}


@pytest.mark.parametrize("fmt", list(BGZF_INPUTS))
def test_a_bgzf_file_followed_by_a_plain_gzip_member_is_an_input_error(tmp_path, fmt):
    """Issue 20 item 9: a BGZF member and then a plain gzip member (`cat more.gz >> x.gz`) was a ToolError
    ("Close failed: Error 39025"). htslib reads such a file whole only with one thread; with more it stops."""
    name, make = BGZF_INPUTS[fmt]
    good = make(tmp_path).read_bytes()
    more = b"\x00" * 100 if fmt == "BAM" else gzip.decompress(good).split(b"\n")[-2] + b"\n"
    data, at = samples.bgzf_then_gzip(good, more)
    (tmp_path / name).write_bytes(data)
    message = _build(tmp_path / name, fmt, tmp_path)
    words = f"a plain gzip member at offset {at}, not a BGZF block: the file is not BGZF throughout"
    assert message.startswith(f"{name}: ") and words in message, message


@pytest.mark.parametrize("crc_only", [True, False], ids=["bad-crc", "corrupt-deflate"])
@pytest.mark.parametrize("fmt", list(BGZF_INPUTS))
def test_a_damaged_bgzf_block_is_named_by_its_offset(tmp_path, fmt, crc_only):
    """Issue 20 item 9: a block with a bad CRC, or a corrupt middle block, was reported as "line 5000:
    1 column"; htslib's "CRC32 checksum mismatch" / "Inflate operation failed" now name the block."""
    name, make = BGZF_INPUTS[fmt]
    data, at = samples.corrupt_bgzf_block(make(tmp_path).read_bytes(), crc_only)
    (tmp_path / name).write_bytes(data)
    message = _build(tmp_path / name, fmt, tmp_path)
    assert message.startswith(f"{name}: ") and f"corrupt compressed block at offset {at} (" in message, message
