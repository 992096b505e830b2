"""bamwalk (pipelines/bamwalk.c, built by pipelines/native.py) against the Python walks it stands in for:
the same order verdicts and counts, the same routed parts, the same errors and the same output bytes,
on real BAMs read by real bgzip and samtools. PREPROCESS_BAMWALK=python forces the Python walks."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import preprocess
from pipelines import native
from pipelines.alignments import records_in_sort_order
from preprocess.errors import InputError
from tests import samples
from tests.integration.test_alignments_sorted import bam_of, plain_sort, read, view

WALKS = ["native", "python"]


@pytest.fixture(params=WALKS)
def walk(request, monkeypatch) -> str:
    """Each test runs once with bamwalk (built here: CI installs a C compiler) and once in Python."""
    monkeypatch.setenv(native.SWITCH, "" if request.param == "native" else "python")
    assert (native.program() is not None) == (request.param == "native")
    return str(request.param)


def raw_of(bam: Path) -> bytearray:
    """The uncompressed BAM stream (what bgzip -dc writes)."""
    return bytearray(subprocess.run(["bgzip", "-dc", str(bam)], check=True, capture_output=True).stdout)


def first_record(raw: bytes | bytearray) -> int:
    """Where the first record starts: after the magic, the header text and the references."""
    at = 12 + int.from_bytes(raw[4:8], "little")
    for _ in range(int.from_bytes(raw[at - 4:at], "little")):
        at += 8 + int.from_bytes(raw[at:at + 4], "little")
    return at


def rewritten(path: Path, raw: bytes | bytearray) -> Path:
    path.write_bytes(samples.bgzf_compress(bytes(raw)))
    return path


def deep(data: Path, flip: bool) -> Path:
    """10,100 records in order, or with one forward/reverse tie swapped 9,000 records in."""
    records = sorted((read(f"r{i}", 16 * (i % 2), "chr1", 1 + i // 2 % 990) for i in range(10000)),
                     key=lambda r: (int(r.split("\t")[3]), int(r.split("\t")[1])))
    records += [read(f"u{i}", 4, "*", 0) for i in range(100)]
    if flip:
        at = next(i for i in range(9000, 10000) if records[i - 1].split("\t")[1] == "0"
                  and records[i].split("\t")[1] == "16" and records[i - 1].split("\t")[3] == records[i].split("\t")[3])
        records[at - 1], records[at] = records[at], records[at - 1]
    return bam_of(data / "deep.bam", records)


def truncated(data: Path) -> Path:
    """A whole BGZF file whose BAM stream ends 10 bytes into its last record."""
    raw = raw_of(plain_sort(samples.bam(data / "t.bam", reads=300)))
    return rewritten(data / "truncated.bam", raw[:len(raw) - 40])


def short_record(data: Path) -> Path:
    """A sorted BAM whose second record claims a block_size of 10 bytes (the fixed fields alone are 32)."""
    raw = raw_of(plain_sort(samples.bam(data / "s.bam", reads=300)))
    at = first_record(raw)
    at += 4 + int.from_bytes(raw[at:at + 4], "little")
    raw[at:at + 4] = (10).to_bytes(4, "little")
    return rewritten(data / "short.bam", raw)


def damaged_block(data: Path) -> Path:
    """A sorted BAM with the CRC of its middle BGZF block changed."""
    bam = plain_sort(samples.bam(data / "d.bam", reads=3000))
    damaged, _ = samples.corrupt_bgzf_block(bam.read_bytes(), crc_only=True)
    (data / "damaged.bam").write_bytes(damaged)
    return data / "damaged.bam"


def two(data: Path, *records: str) -> Path:
    return bam_of(data / "two.bam", list(records))


# (case, how to make the BAM, records_in_sort_order's answer)
ORDER_CASES = [
    ("sorted", lambda d: plain_sort(samples.bam(d / "u.bam", reads=3000)), 3020),
    ("unsorted at the first record", lambda d: two(d, read("a", 0, "chr1", 30), read("b", 0, "chr1", 10)), None),
    ("unsorted deep in the file", lambda d: deep(d, True), None),
    ("in order, 10,100 records", lambda d: deep(d, False), 10100),
    ("only a strand tie reversed", lambda d: two(d, read("b", 16, "chr1", 10), read("a", 0, "chr1", 10)), None),
    ("unplaced reads before placed ones", lambda d: two(d, read("u", 4, "*", 0), read("a", 0, "chr1", 10)), None),
    ("header only", lambda d: samples.empty_bam(d / "e.bam"), 0),
    ("empty (the EOF block alone)", lambda d: rewritten(d / "e.bam", b""), None),
    ("truncated in a record", truncated, None),
    ("a record shorter than its fixed fields", short_record, None),
    ("a damaged BGZF block", damaged_block, None),
]


@pytest.mark.parametrize("case, make, expected", ORDER_CASES, ids=[c[0] for c in ORDER_CASES])
def test_the_order_check_answers_alike_in_c_and_in_python(data, walk, case, make, expected):
    bam = make(data)
    told = []
    assert records_in_sort_order(bam, 2, lambda: told.append(True)) == expected
    assert told == [True] if expected else len(told) <= 1  # the adopting thread starts once the first records pass


def test_a_sorted_bam_takes_the_same_path_to_the_same_bytes_either_way(data, store_dir, tmp_path, monkeypatch):
    from preprocess.config import load_settings

    bam = plain_sort(samples.bam(data / "u.bam", reads=3000))
    made = {}
    for walk in WALKS:
        monkeypatch.setenv(native.SWITCH, "" if walk == "native" else "python")
        settings = load_settings(**{"store.url": str(store_dir / walk), "cluster.profile": "sync",
                                    "scratch": str(tmp_path)})
        result = preprocess.run({"id": "s", "access_url": str(bam), "format": "BAM"}, settings=settings)
        assert result.records["path"] == "sorted-input" and result.records["in"] == 3020
        made[walk] = Path(result.artifacts["data"]).read_bytes()
    assert made["native"] == made["python"]


@pytest.mark.parametrize("kind", ["bai", "csi"])
@pytest.mark.parametrize("case, make, expected", ORDER_CASES, ids=[c[0] for c in ORDER_CASES])
def test_bamindex_answers_as_the_order_check_and_writes_samtools_index_bytes(data, kind, case, make, expected):
    """bamindex, the one-pass order check, count and index of a BAM under its own sorted header."""
    bam = make(data)
    index, told = data / f"made.{kind}", []
    assert native.indexed_in_order(bam, index, 2, lambda: told.append(True)) == expected
    assert told == [True] if expected else len(told) <= 1
    if expected is None:
        assert not index.exists()  # no index of a file the sorting path takes
        return
    flags = ["-b"] if kind == "bai" else ["-c", "-m", "14"]
    subprocess.run(["samtools", "index", *flags, str(bam), str(data / f"tools.{kind}")], check=True)
    assert index.read_bytes() == (data / f"tools.{kind}").read_bytes()


def test_bamindex_writes_samtools_csi_for_a_reference_past_2_pow_29(data):
    bam = plain_sort(samples.bam(data / "big.bam", reads=2000, contigs={"chr1": 2**29 + 1000, "chr2": 5000}))
    assert native.indexed_in_order(bam, data / "made.csi", 2, lambda: None) == 2020
    subprocess.run(["samtools", "index", "-c", "-m", "14", str(bam), str(data / "tools.csi")], check=True)
    assert (data / "made.csi").read_bytes() == (data / "tools.csi").read_bytes()


def test_a_sorted_bam_under_its_own_header_is_indexed_by_bamindex(data, store_dir, tmp_path, monkeypatch):
    """Where the file's header is what samtools sort writes, `samtools index` never runs: the index comes
    from bamindex's pass (a `samtools` first on PATH logs what it is asked)."""
    from preprocess.config import load_settings

    bam = plain_sort(samples.bam(data / "u.bam", reads=3000))
    folder, log = tmp_path / "bin", tmp_path / "samtools.log"
    folder.mkdir()
    (folder / "samtools").write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {shutil.which("samtools")} "$@"\n')
    (folder / "samtools").chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    settings = load_settings(**{"store.url": str(store_dir), "cluster.profile": "sync", "scratch": str(tmp_path)})
    result = preprocess.run({"id": "s", "access_url": str(bam), "format": "BAM"}, settings=settings)
    assert result.records["path"] == "sorted-input" and result.records["in"] == 3020
    asked = [line.split()[0] for line in log.read_text().splitlines() if not line.startswith("--version")]
    assert "index" not in asked and "reheader" not in asked, asked
    subprocess.run(["samtools", "index", "-b", str(bam), str(tmp_path / "tools.bai")], check=True)
    assert Path(result.artifacts["index"]).read_bytes() == (tmp_path / "tools.bai").read_bytes()
    assert Path(result.artifacts["data"]).read_bytes() == bam.read_bytes()


def test_a_bamindex_failing_after_its_first_records_leaves_the_output_indexed_by_samtools(data, tmp_path,
                                                                                           monkeypatch):
    """bamindex said "go" (the copy of the file started), then failed in a way of its own (killed, out of
    memory): another walk gives the verdict and samtools indexes the copy."""
    from pipelines.alignments import adopt_if_sorted

    failing = data / "failing-bamindex"
    failing.write_text('#!/bin/sh\necho go\nsleep 0.5\nexit 4\n')  # the copy starts meanwhile
    failing.chmod(0o755)
    monkeypatch.setattr(native, "bamindex", lambda: failing)
    monkeypatch.setattr(native, "_bamindex_agrees", lambda indexer, kind: True)
    bam = plain_sort(samples.bam(data / "u.bam", reads=3000))
    work = tmp_path / "work"
    work.mkdir()
    out, index = work / "sorted.bam", work / "sorted.bam.bai"
    assert adopt_if_sorted(bam, out, index, 2, work) == 3020
    subprocess.run(["samtools", "index", "-b", str(out), str(tmp_path / "tools.bai")], check=True)
    assert out.read_bytes() == bam.read_bytes() and index.read_bytes() == (tmp_path / "tools.bai").read_bytes()
    assert sorted(p.name for p in work.iterdir() if p.name.startswith(("sorted.bam", "walked"))) == [
        "sorted.bam", "sorted.bam.bai"]


def test_a_bamindex_writing_another_index_than_samtools_is_not_used(data, monkeypatch, caplog):
    """As one linked with another htslib would: a program that writes an index samtools would not."""
    import logging

    other = data / "other-bamindex"
    other.write_text('#!/bin/sh\nprintf "BAI\\1" > "$4"\necho 0\n')
    other.chmod(0o755)
    monkeypatch.setattr(native, "bamindex", lambda: other)
    bam = plain_sort(samples.bam(data / "u.bam", reads=300))
    with caplog.at_level(logging.WARNING, logger="pipelines.native"), pytest.raises(native.Unavailable):
        native.indexed_in_order(bam, data / "made.bai", 2, lambda: None)
    assert "bamindex writes other bytes than samtools index (BAI) here" in caplog.text


def reads_by_reference(bam: Path) -> list[str]:
    return view(bam).splitlines()


@pytest.mark.parametrize("cuts", [[], [1], [1, 3], [0, 2, 5], [3, 3]], ids=str)
def test_route_splits_records_by_reference_range_in_input_order(data, walk, cuts):
    contigs = {"chr1": 5000, "chr2": 4000, "chr3": 3000, "chr4": 2000, "chr5": 1000}
    bam = samples.bam(data / "in.bam", reads=2000, contigs=contigs)
    outs = [data / f"part{k}.bam" for k in range(len(cuts) + 1)]
    counts = native.route(bam, cuts, outs, 2)
    lines, names = reads_by_reference(bam), list(contigs)
    bounds = [0, *cuts, len(names)]
    for k, out in enumerate(outs):
        chosen = set(names[bounds[k]:bounds[k + 1]]) | ({"*"} if k == len(outs) - 1 else set())
        expected = [line for line in lines if line.split("\t")[2] in chosen]  # unplaced reads: the last part
        assert reads_by_reference(out) == expected and counts[k] == len(expected)
        assert view(out, "-H") == view(bam, "-H")
    assert sum(counts) == len(lines) == 2020
    sorted_parts = [plain_sort(out) for out in outs]  # samtools sort reads each raw uncompressed part
    whole = "".join(view(part) for part in sorted_parts)
    assert whole == view(plain_sort(bam))


def test_route_writes_the_same_bytes_in_c_and_in_python(data, monkeypatch):
    bam = samples.bam(data / "in.bam", reads=1500)
    made = {}
    for walk in WALKS:
        monkeypatch.setenv(native.SWITCH, "" if walk == "native" else "python")
        outs = [data / f"{walk}-{k}.bam" for k in range(2)]
        made[walk] = (native.route(bam, [1], outs, 1), [out.read_bytes() for out in outs])
    assert made["native"] == made["python"]


def undeclared(data: Path, mate: bool) -> Path:
    bam = bam_of(data / "ok.bam", [read("a", 0, "chr1", 10), read("last-read", 0, "chr2", 10)])
    raw = raw_of(bam)
    start = raw.rfind(b"last-read\x00") - 36
    field = start + (24 if mate else 4)
    raw[field:field + 4] = (7).to_bytes(4, "little")
    return rewritten(data / "undeclared.bam", raw)


ROUTE_ERRORS = [
    ("truncated", truncated, "truncated.bam: unreadable alignment records: the input ends in record 320"),
    ("short record", short_record, "short.bam: unreadable alignment records: record 2 (at uncompressed byte {at}) "
                                   "is 14 bytes long, outside 36 to 2^28"),
    ("undeclared reference", lambda d: undeclared(d, False),
     "undeclared.bam: unreadable alignment records: record 2 names reference id 7, which the header's 2 references "
     "do not include"),
    ("undeclared mate reference", lambda d: undeclared(d, True),
     "undeclared.bam: unreadable alignment records: record 2 names reference id 7, which the header's 2 references "
     "do not include"),
    ("damaged block", damaged_block, "damaged.bam: unreadable alignment records: corrupt compressed block at offset "
                                     "{block} (its data does not match its size and"),
    ("not BAM", lambda d: rewritten(d / "text.bam", b"@HD\tVN:1.6\n"),
     "text.bam: unreadable alignment records: not an uncompressed BAM (no BAM magic)"),
]


@pytest.mark.parametrize("case, make, message", ROUTE_ERRORS, ids=[c[0] for c in ROUTE_ERRORS])
def test_route_refuses_an_unreadable_bam_alike_in_c_and_in_python(data, walk, case, make, message):
    bam = make(data)
    with pytest.raises(InputError) as caught:
        native.route(bam, [1], [data / "p0.bam", data / "p1.bam"], 2)
    if case == "short record":  # the second record's offset in the uncompressed stream
        raw = raw_of(bam)
        at = first_record(raw) + 4 + int.from_bytes(raw[first_record(raw):first_record(raw) + 4], "little")
        assert str(caught.value) == message.format(at=at)
    elif case == "damaged block":
        block = samples.bgzf_offsets(bam.read_bytes())[(len(samples.bgzf_offsets(bam.read_bytes())) - 1) // 2]
        assert str(caught.value).startswith(message.format(block=block))
    else:
        assert str(caught.value) == message


def unsorted_with(data: Path, damage: str) -> Path:
    """An unsorted BAM (the sorting path) whose BGZF is whole but whose records are not: a record naming
    an undeclared reference, one shorter than its fixed fields, or a stream ending inside a record."""
    bam = samples.bam(data / "u.bam", reads=3000)
    raw = raw_of(bam)
    at = first_record(raw)
    at += 4 + int.from_bytes(raw[at:at + 4], "little")  # the second record
    if damage == "undeclared":
        raw[at + 4:at + 8] = (99).to_bytes(4, "little")
    elif damage == "short":
        raw[at:at + 4] = (10).to_bytes(4, "little")
    else:
        raw = raw[:len(raw) - 40]
    return rewritten(data / f"{damage}.bam", raw)


BAD_FOR_THE_SORT = {
    "undeclared": lambda d: unsorted_with(d, "undeclared"),
    "short": lambda d: unsorted_with(d, "short"),
    "truncated": lambda d: unsorted_with(d, "truncated"),
    "damaged block": lambda d: samples.bam(d / "damaged.bam", reads=3000),
}


@pytest.mark.parametrize("case", list(BAD_FOR_THE_SORT))
def test_the_sorting_path_names_bad_records_in_the_same_words_either_way(data, store_dir, tmp_path, monkeypatch,
                                                                         case):
    from preprocess.api import run_many
    from preprocess.config import load_settings

    bam = BAD_FOR_THE_SORT[case](data)
    if case == "damaged block":
        bam.write_bytes(samples.corrupt_bgzf_block(bam.read_bytes(), crc_only=False)[0])
    messages = {}
    for walk in WALKS:
        monkeypatch.setenv(native.SWITCH, "" if walk == "native" else "python")
        settings = load_settings(**{"store.url": str(store_dir), "cluster.profile": "sync", "scratch": str(tmp_path)})
        result = run_many([{"id": "bad", "access_url": str(bam), "format": "BAM"}], settings=settings).results[0]
        assert result.status == "failed" and result.error is not None and result.error.class_ == "InputError"
        messages[walk] = result.error.message
    assert messages["native"] == messages["python"]
    assert messages["native"].startswith(f"{bam.name}: unreadable alignment records: ")


def test_an_unsorted_bam_sorts_to_the_same_bytes_with_one_decompression_or_two(data, store_dir, tmp_path,
                                                                                monkeypatch):
    from preprocess.config import load_settings

    bam = samples.bam(data / "u.bam", reads=5000)
    made = {}
    for walk in WALKS:
        monkeypatch.setenv(native.SWITCH, "" if walk == "native" else "python")
        settings = load_settings(**{"store.url": str(store_dir / walk), "cluster.profile": "sync",
                                    "scratch": str(tmp_path), "threads": 2})
        result = preprocess.run({"id": "u", "access_url": str(bam), "format": "BAM"}, settings=settings)
        assert result.records["path"] == "sort" and result.records["in"] == result.records["out"] == 5020
        made[walk] = [Path(result.artifacts[name]).read_bytes() for name in ("data", "index")]
    assert made["native"] == made["python"]
    assert view(Path(result.artifacts["data"])) == view(plain_sort(bam))


@pytest.fixture
def fresh_build(tmp_path, monkeypatch):
    """No bamwalk built yet: an empty user cache and temp folder, and the process's memo cleared."""
    import tempfile

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    native._built.cache_clear()
    yield tmp_path
    native._built.cache_clear()


def test_bamwalk_is_built_once_into_the_user_cache_under_its_source_hash(fresh_build, monkeypatch):
    import hashlib

    monkeypatch.setenv(native.SWITCH, "")
    built = native.program()
    digest = hashlib.sha256(native.SOURCE.read_bytes()).hexdigest()[:16]
    assert built is not None and built.parent == fresh_build / "cache" / "preprocess" and digest in built.name
    assert [p.name for p in built.parent.iterdir()] == [built.name]  # no half-written build left beside it
    native._built.cache_clear()
    assert native.program() == built and built.stat().st_mtime_ns == built.stat().st_mtime_ns


def test_an_unwritable_cache_builds_into_a_temp_folder(fresh_build, monkeypatch):
    (fresh_build / "cache").write_text("a file where the cache folder would be")
    monkeypatch.setenv(native.SWITCH, "")
    built = native.program()
    assert built is not None and built.parent.parent == fresh_build / "tmp"


def test_workers_building_at_once_each_run_a_whole_program(fresh_build, data):
    import os
    import sys

    bam = plain_sort(samples.bam(data / "u.bam", reads=500))
    code = ("import sys; from pathlib import Path; from pipelines.alignments import records_in_sort_order; "
            "print(records_in_sort_order(Path(sys.argv[1])))")
    env = {**os.environ, native.SWITCH: "", "XDG_CACHE_HOME": str(fresh_build / "cache")}
    workers = [subprocess.Popen([sys.executable, "-c", code, str(bam)], stdout=subprocess.PIPE, text=True, env=env)
               for _ in range(4)]
    assert [w.communicate()[0] for w in workers] == ["520\n"] * 4 and [w.returncode for w in workers] == [0] * 4
    assert len(list((fresh_build / "cache" / "preprocess").iterdir())) == 1


def test_without_a_compiler_the_python_walks_answer_and_say_so_once(fresh_build, data, monkeypatch, caplog):
    import logging

    monkeypatch.setenv(native.SWITCH, "")
    monkeypatch.setenv("CC", "no-such-compiler")
    bam = plain_sort(samples.bam(data / "u.bam", reads=500))
    with caplog.at_level(logging.INFO, logger="pipelines.native"):
        assert native.program() is None
        assert records_in_sort_order(bam) == 520
        first = sum(line.split("\t")[2] in ("chr1", "chr2") for line in view(bam).splitlines())
        assert native.route(bam, [2], [data / "a.bam", data / "b.bam"], 1) == [first, 520 - first]
    assert [r.getMessage() for r in caplog.records] == [
        "no C compiler (no-such-compiler): BAM records are walked in Python"]


def test_a_program_planted_in_a_shared_temp_folder_is_never_run(fresh_build, data, monkeypatch):
    import hashlib
    import os
    import platform

    (fresh_build / "cache").write_text("a file where the cache folder would be")
    shared = fresh_build / "tmp" / f"preprocess-{os.getuid()}"
    shared.mkdir()
    shared.chmod(0o777)  # anyone may write here
    digest = hashlib.sha256(native.SOURCE.read_bytes()).hexdigest()[:16]
    planted = shared / f"bamwalk-{platform.machine()}-{digest}"
    planted.write_text("#!/bin/sh\necho go; echo 1\n")
    planted.chmod(0o755)
    monkeypatch.setenv(native.SWITCH, "")
    assert native.program() is None
    assert records_in_sort_order(plain_sort(samples.bam(data / "u.bam", reads=200))) == 220


def test_a_program_removed_after_its_build_is_built_again(fresh_build, monkeypatch):
    monkeypatch.setenv(native.SWITCH, "")
    built = native.program()
    assert built is not None
    built.unlink()
    assert native.program() == built and built.is_file()


def test_range_routes_one_share_of_the_blocks_from_a_found_record_start_to_the_limit(data):
    """bamwalk range: the first share under the header, the next from a record start found inside a block
    (bgzip's blocks cut records), both ending where a record starts past their limit; the two shares'
    pieces, laid end to end, are route's parts."""
    from pipelines import bgzf

    raw = bytes(raw_of(samples.bam(data / "in.bam", reads=3000)))
    bam = data / "spans.bam"
    bam.write_bytes(samples.bgzf_compress(raw))  # a block every 0xff00 bytes, records across the cuts
    with open(bam, "rb") as stream:
        blocks = list(bgzf.walk(stream))
    whole = [data / f"whole{k}.bam" for k in range(2)]
    counts = native.route(bam, [1], whole, 1)
    cut = blocks[2].offset  # share 0: blocks 0 and 1; share 1: the rest
    limit = blocks[0].isize + blocks[1].isize
    first = [data / f"a{k}.bam" for k in range(2)]
    found = native.route_range(bam, [1], first, 1, None, 0, limit, "spans.bam")
    assert found is not None
    start, end, first_counts = found
    assert start == first_record(raw) and limit <= end < limit + 0xFF00
    rest = [data / f"b{k}.bam" for k in range(2)]
    found = native.route_range(bam, [1], rest, 1, 3, cut, len(raw) - limit, "spans.bam")
    assert found is not None
    assert found[0] == end - limit and found[1] == len(raw) - limit  # the guess is the true seam
    assert [a + b for a, b in zip(first_counts, found[2], strict=True)] == counts
    assert [a.read_bytes() + b.read_bytes() for a, b in zip(first, rest, strict=True)] == [
        out.read_bytes() for out in whole]


def test_range_finds_no_record_start_in_bytes_that_are_no_records(data):
    bam = data / "noise.bam"
    bam.write_bytes(samples.bgzf_compress(bytes(range(256)) * 1000))
    assert native.route_range(bam, [], [data / "out.bam"], 1, 5, 0, 256_000, "noise.bam") is None
