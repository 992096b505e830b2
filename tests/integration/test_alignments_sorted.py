"""Already sorted BAMs skip the sort: the order is read from the records, and the output is what the
sorting path (samtools sort) gives for the same input, record for record, header for header."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pysam
import pytest

import preprocess
from pipelines.alignments import adopt_if_sorted, index_kind_for, sort_bam, verify_sorted
from pipelines.base import BuildSettings
from preprocess.api import run_many
from preprocess.config import load_settings
from tests import samples
from tests.conftest import store_files

HEADER = "@HD\tVN:1.6\tSO:{so}\n@SQ\tSN:chr1\tLN:1000\n@SQ\tSN:chr2\tLN:800\n@RG\tID:rg1\tSM:s\n"


def read(name: str, flag: int, ref: str, pos: int, mate: str = "*", mate_pos: int = 0) -> str:
    cigar = "*" if flag & 4 else "4M"
    return f"{name}\t{flag}\t{ref}\t{pos}\t{60 if cigar != '*' else 0}\t{cigar}\t{mate}\t{mate_pos}\t0\tACGT\tIIII\n"


def bam_of(path: Path, records: list[str], so: str = "coordinate") -> Path:
    """A BAM (samtools view -b, level 6 by default) holding `records` in the order given."""
    text = path.with_suffix(".sam")
    text.write_text(HEADER.format(so=so) + "".join(records))
    subprocess.run(["samtools", "view", "--no-PG", "-b", "-o", str(path), str(text)], check=True)
    return path


def view(bam: str | Path, *flags: str) -> str:
    return subprocess.run(["samtools", "view", "--no-PG", *flags, str(bam)], check=True, capture_output=True,
                          text=True).stdout


def plain_sort(bam: Path) -> Path:
    """What samtools sort itself makes of the file: the order the pipeline must reproduce."""
    out = bam.with_name(bam.stem + ".plain.bam")
    subprocess.run(["samtools", "sort", "--no-PG", "-o", str(out), str(bam)], check=True, capture_output=True)
    return out


# (case, records in file order, the path the content must take)
CASES = [
    ("both strands at one position, forward first", [
        read("a", 0, "chr1", 10), read("b", 16, "chr1", 10), read("c", 0, "chr1", 20)], "sorted-input"),
    ("both strands at one position, reverse first", [
        read("b", 16, "chr1", 10), read("a", 0, "chr1", 10), read("c", 0, "chr1", 20)], "sort"),
    ("equal keys keep their file order (stable sort)", [
        read("z", 0, "chr1", 10), read("a", 0, "chr1", 10), read("m", 16, "chr1", 10), read("b", 16, "chr1", 10)],
     "sorted-input"),
    ("unmapped reads placed at their mate", [
        read("p", 65, "chr1", 50, "=", 50), read("p", 133, "chr1", 50, "=", 50), read("q", 0, "chr2", 5)],
     "sorted-input"),
    ("unplaced reads at the end", [
        read("a", 0, "chr1", 10), read("b", 0, "chr2", 10), read("u1", 4, "*", 0), read("u2", 4, "*", 0)],
     "sorted-input"),
    ("an unplaced read before placed ones", [
        read("u1", 4, "*", 0), read("a", 0, "chr1", 10), read("b", 0, "chr2", 10)], "sort"),
    ("references out of header order, each one contiguous", [
        read("b", 0, "chr2", 10), read("a", 0, "chr1", 10)], "sort"),
    ("unplaced reads with positions out of order", [
        read("a", 0, "chr1", 10), read("u1", 4, "*", 7), read("u2", 4, "*", 0)], "sort"),
    ("positions going back", [
        read("a", 0, "chr1", 30), read("b", 0, "chr1", 10)], "sort"),
]


@pytest.mark.parametrize("case, records, path", CASES, ids=[c[0] for c in CASES])
def test_the_output_is_what_samtools_sort_gives_and_the_manifest_says_which_path_ran(data, settings, case, records,
                                                                                      path):
    bam = bam_of(data / "in.bam", records)
    result = preprocess.run({"id": "x", "access_url": str(bam), "format": "BAM"}, settings=settings)
    assert result.records["path"] == path and result.records["in"] == result.records["out"] == len(records)
    expected = plain_sort(bam)
    assert view(result.artifacts["data"]) == view(expected)
    assert view(result.artifacts["data"], "-H") == view(expected, "-H")


def test_both_paths_forced_on_one_sorted_input_give_the_same_records_and_header(data, tmp_path):
    """adopt_if_sorted and sort_bam (the sorting path) on the same sorted file: equal records and header."""
    bam = plain_sort(samples.bam(data / "r.bam", reads=2000))
    relabelled = data / "relabelled.bam"  # the same records under SO:unsorted: the header is rewritten
    header = view(bam, "-H").replace("SO:coordinate", "SO:unsorted")
    (data / "h.sam").write_text(header)
    relabelled.write_bytes(subprocess.run(["samtools", "reheader", "--no-PG", str(data / "h.sam"), str(bam)],
                                          check=True, capture_output=True).stdout)
    lengths = {"chr1": 0, "chr2": 0, "chrX": 0}
    for source in (bam, relabelled):
        outs = {}
        for path in ("sorted-input", "sort"):
            work = tmp_path / f"{source.stem}-{path}"
            work.mkdir()
            out, index = work / "sorted.bam", work / f"sorted.bam.{index_kind_for(lengths)}"
            if path == "sorted-input":
                records_in = adopt_if_sorted(source, out, index, 2, work)
            else:
                records_in = sort_bam(source, out, index, BuildSettings(threads=2), work, source.name)
            assert records_in == 2020
            assert verify_sorted(out, index, {}, source, source.name, records_in) == (2020, None)
            outs[path] = out
        assert view(outs["sorted-input"]) == view(outs["sort"]) and view(outs["sort"]).count("\n") == 2020
        assert view(outs["sorted-input"], "-H") == view(outs["sort"], "-H")
        assert "SO:coordinate" in view(outs["sorted-input"], "-H")


def test_a_file_claiming_so_coordinate_but_unsorted_takes_the_sort_path(data, settings):
    liar = samples.bam(data / "liar.bam", reads=500)  # unsorted records ...
    header = view(liar, "-H").replace("SO:unsorted", "SO:coordinate")  # ... under a header claiming the order
    (data / "h.sam").write_text(header)
    (data / "claims.bam").write_bytes(subprocess.run(["samtools", "reheader", "--no-PG", str(data / "h.sam"),
                                                      str(liar)], check=True, capture_output=True).stdout)
    result = preprocess.run({"id": "liar", "access_url": str(data / "claims.bam")}, settings=settings)
    assert result.records["path"] == "sort" and result.records["out"] == 520
    assert view(result.artifacts["data"]) == view(plain_sort(data / "claims.bam"))


def test_adopting_leaves_nothing_behind_for_an_unsorted_file(data, tmp_path):
    bam = samples.bam(data / "u.bam", reads=300)
    out, index = tmp_path / "sorted.bam", tmp_path / "sorted.bam.bai"
    assert adopt_if_sorted(bam, out, index, 1, tmp_path) is None
    assert not out.exists() and not index.exists()


def _undeclared_reference(data: Path) -> Path:
    """A sorted BAM whose last record names reference id 7 of a 2-reference header (raw bytes patched)."""
    bam = bam_of(data / "ok.bam", [read("a", 0, "chr1", 10), read("last-read", 0, "chr2", 10)])
    raw = bytearray(subprocess.run(["bgzip", "-dc", str(bam)], check=True, capture_output=True).stdout)
    start = raw.rfind(b"last-read\x00") - 36  # block_size and the 32-byte fixed part precede the name
    assert raw[start + 4:start + 8] == (1).to_bytes(4, "little")
    raw[start + 4:start + 8] = (7).to_bytes(4, "little")
    patched = subprocess.run(["bgzip", "-c"], input=bytes(raw), check=True, capture_output=True).stdout
    (data / "undeclared.bam").write_bytes(patched)
    return data / "undeclared.bam"


def _past_the_end(data: Path) -> Path:
    return bam_of(data / "past.bam", [read("a", 0, "chr1", 10), read("b", 0, "chr2", 900)])


@pytest.mark.parametrize("make, words", [
    (_undeclared_reference, "unreadable alignment records"),
    (_past_the_end, "starts past the end of chr2"),
])
def test_a_sorted_input_gets_every_check_of_the_sorting_path(data, store_dir, tmp_path, make, words):
    settings = load_settings(**{"store.url": str(store_dir), "cluster.profile": "sync", "scratch": str(tmp_path),
                                "unreachable-reads": "refuse"})
    path = make(data)
    report = run_many([{"id": "bad", "access_url": str(path), "format": "BAM"}], settings=settings)
    error = report.results[0].error
    assert report.results[0].status == "failed" and error is not None and error.class_ == "InputError"
    assert path.name in error.message and words in error.message
    assert store_files(store_dir) == []


@pytest.mark.parametrize("flip, path", [(None, "sorted-input"), (9001, "sort")])
def test_a_tie_out_of_order_deep_in_a_large_file_is_found(data, settings, flip, path):
    """Past the first block the keys are compared in bulk (numpy): a reverse read before a forward one at
    the same position, 9,000 records in, still sends the file down the sorting path."""
    records = [read(f"r{i}", 16 * (i % 2), "chr1", 1 + i // 2 % 990) if i < 10000 else
               read(f"u{i}", 4, "*", 0) for i in range(10100)]
    records[:10000] = sorted(records[:10000], key=lambda r: (int(r.split("\t")[3]), int(r.split("\t")[1])))
    if flip is not None:  # the first forward-then-reverse pair at one position from `flip` on, swapped
        flag_pos = [tuple(r.split("\t")[1:4:2]) for r in records]
        flip = next(i for i in range(flip, 10000)
                    if flag_pos[i - 1] == ("0", flag_pos[i][1]) and flag_pos[i][0] == "16")
        records[flip - 1], records[flip] = records[flip], records[flip - 1]
    bam = bam_of(data / "big.bam", records)
    result = preprocess.run({"id": "big", "access_url": str(bam), "format": "BAM"}, settings=settings)
    assert result.records["path"] == path and result.records["out"] == 10100
    assert view(result.artifacts["data"]) == view(plain_sort(bam))


def test_a_sorted_bam_with_a_reference_past_2_pow_29_gets_a_csi_index(data, settings):
    big = plain_sort(samples.bam(data / "big.bam", reads=400, contigs={"chr1": 2**29 + 1000, "chr2": 5000}))
    result = preprocess.run({"id": "big", "access_url": str(big), "format": "BAM"}, settings=settings)
    assert result.records["path"] == "sorted-input" and result.artifacts["index"].endswith(".bam.csi")
    with pysam.AlignmentFile(result.artifacts["data"], index_filename=result.artifacts["index"]) as aln:
        tail = [r.query_name for r in aln.fetch(until_eof=True)
                if r.reference_name == "chr1" and r.reference_end and r.reference_end > 2**28]
        assert tail and [r.query_name for r in aln.fetch("chr1", 2**28, 2**29 + 1000)] == tail
