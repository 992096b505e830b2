"""The in-memory pass (pipelines/columnar.py) writes the streaming sort's bytes, and leaves every input the
validator would remark on to the streaming pass, which names the first bad line exactly as before."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from pipelines import intervals
from pipelines.base import BuildContext, BuildSettings
from preprocess.errors import InputError
from tests import samples

VCF_HEAD = (b"##fileformat=VCFv4.2\n##contig=<ID=chrB>\n##contig=<ID=chrA>\n"
            b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")


def build(spec: intervals.IntervalFormat, source: Path, work: Path, paths: tuple[str, ...] = intervals.PATHS,
          **settings: object) -> tuple[bytes, bytes, dict[str, object]] | str:
    """(data bytes, index bytes, records) of a build in a fresh folder, or the InputError's message."""
    return stages(spec, source, work, paths, **settings)[0]


def same_as_streaming(spec: intervals.IntervalFormat, source: Path, tmp_path: Path, **settings: object):
    """The default build and the forced streaming sort: equal bytes, index and records (but the path)."""
    auto = build(spec, source, tmp_path / "auto", **settings)
    forced = build(spec, source, tmp_path / "forced", paths=("sort",), **settings)
    if isinstance(auto, str) or isinstance(forced, str):
        assert auto == forced
        return auto
    assert auto[:2] == forced[:2]
    assert {k: v for k, v in auto[2].items() if k != "path"} == {k: v for k, v in forced[2].items() if k != "path"}
    return auto


@pytest.mark.parametrize("name, make", [
    ("bed", lambda p: samples.bed(p, records=5000)),
    ("narrowpeak", lambda p: samples.narrowpeak(p, records=3000)),
    ("broadpeak", lambda p: samples.narrowpeak(p, records=3000, broad=True)),
    ("vcf", lambda p: samples.vcf(p, records=4000, contigs={"chr2": 40_000, "chr10": 30_000, "chr1": 50_000})),
    ("gff3", lambda p: samples.gff3(p, genes=400)),  # with its ##FASTA section, dropped and counted
])
@pytest.mark.parametrize("threads", [1, 2])
def test_an_unsorted_text_is_sorted_in_memory_to_the_streaming_sorts_bytes(tmp_path, name, make, threads):
    spec = {"bed": intervals.BED, "narrowpeak": intervals.NARROWPEAK, "broadpeak": intervals.BROADPEAK,
            "vcf": intervals.VCF, "gff3": intervals.GFF3}[name]
    got = same_as_streaming(spec, make(tmp_path / f"in.{name}"), tmp_path, threads=threads)
    assert not isinstance(got, str) and got[2]["path"] == "columnar" and got[2]["in"] == got[2]["out"] > 0
    if name == "gff3":
        assert got[2]["dropped"]["fasta"] > 0


@pytest.mark.parametrize("text", [
    b"chr1\t5\t9\r\nchr1\t1\t2\r\n",                       # CRLF: stripped and counted by the validator
    b"chr1\t5\t9\n\nchr1\t1\t2\n",                          # a blank line, dropped and counted
    b"chr1\t5\t9\n#late\nchr1\t1\t2\n",                     # a header line after data moves up
    b"chr1\t5\t9\ncaf\xe9\t1\t2\nchr1\t1\t2\n",              # Latin-1 text (a contig htslib refuses)
    b"chr1\t5\t9\tn\xe9\nchr1\t1\t2\tx\n",                    # Latin-1 in a name column: kept as it is
    b"chr1\t5\t9\nchr1\t1\t2",                              # no final newline
    b"chr1 5 9\nchr1 1 2\n",                                # spaces, not tabs
    b"chr1\t5\t9\nchr1\t010\t20\n",                         # a leading zero (octal to htslib)
    b"chr1\t5\t9\nchr1\t9\t5\n",                            # start after end
    b"chr1\t5\t9\nchr1\t1\t2\tx\n",                         # ragged rows
    b"chr1\t5\t9\nchr 1\t1\t2\n",                           # a space in a contig name
    b"chr1\t5\t9\n\t1\t2\n",                                # an empty contig name
    b"chr1\t5\t9\nchr1\t0\t0\n",                            # zero-length at the very start
    b"chr1\t5\t9\nchr1\t1\t99999999999\n",                  # beyond a tabix index
    b"chr1\t5\t9\nchr1\t1\t2\tx\x00y\n",                    # a NUL
    b"chr1\t5\t9\nchr1\t1\t2\tx\x07y\n",                    # a control character
])
def test_whatever_the_validator_remarks_on_takes_the_streaming_pass_with_its_bytes_or_its_message(tmp_path, text):
    source = tmp_path / "in.bed"
    source.write_bytes(text)
    got = same_as_streaming(intervals.BED, source, tmp_path)
    assert isinstance(got, str) or got[2]["path"] == "sort"


@pytest.mark.parametrize("body, path", [
    (b"chrA\t5\t.\tA\tG\t.\t.\t.\nchrB\t5\t.\tA\tG\t.\t.\t.\nchrC\t9\t.\tAT\tG\t.\t.\t.\n", "columnar"),
    (b"chrA\t5\t.\tA\tG\t.\t.\tEND=90\nchrB\t5\t.\tA\tG\t.\t.\t.\n", "sort"),  # INFO/END: htslib's rules
    (b"chrA\t5\t.\tA\tG\t.\t.\tEND=3\nchrB\t5\t.\tA\tG\t.\t.\t.\n", "error"),
])
def test_vcf_ranks_contigs_by_the_header_and_leaves_info_end_to_the_validator(tmp_path, body, path):
    source = tmp_path / "in.vcf"
    source.write_bytes(VCF_HEAD + body)
    got = same_as_streaming(intervals.VCF, source, tmp_path)
    assert (got == "in.vcf: line 5: INFO/END 3 is before POS 5") if path == "error" else got[2]["path"] == path


def test_a_text_past_the_memory_budget_keeps_the_external_sort(tmp_path):
    source = samples.bed(tmp_path / "in.bed", records=2000)
    got = same_as_streaming(intervals.BED, source, tmp_path, sort_memory="16K")
    assert not isinstance(got, str) and got[2]["path"] == "sort"


@pytest.mark.parametrize("name", ["bed", "vcf"])
def test_a_bgzf_input_is_checked_in_memory_reused_when_canonical_and_sorted_when_not(tmp_path, name):
    """Sorted and canonical: its own bytes (as the streaming check decides); unsorted: sorted in memory to
    the streaming sort's bytes; either way what the streaming passes give."""
    spec = {"bed": intervals.BED, "vcf": intervals.VCF}[name]
    plain = (samples.bed(tmp_path / "in.bed", records=3000) if name == "bed"
             else samples.vcf(tmp_path / "in.vcf", records=3000))
    unsorted = samples.bgzip(plain, tmp_path / f"unsorted.{name}.gz")
    (tmp_path / "unsorted").mkdir()
    got = same_as_streaming(spec, unsorted, tmp_path / "unsorted")
    assert not isinstance(got, str) and got[2]["path"] == "columnar"
    ordered = tmp_path / f"sorted.{name}.gz"
    ordered.write_bytes(got[0])
    reused = build(spec, ordered, tmp_path / "reused")
    checked = build(spec, ordered, tmp_path / "checked", paths=("input", "stream", "sort"))
    assert not isinstance(reused, str) and reused[2]["path"] == "input" and reused[0] == ordered.read_bytes()
    assert reused == checked


def test_a_corrupt_bgzf_block_is_named_by_the_streaming_pass(tmp_path):
    plain = samples.bed(tmp_path / "in.bed", records=20000)
    source = samples.bgzip(plain, tmp_path / "in.bed.gz")
    raw = bytearray(source.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # a byte inside a middle block's deflate data
    source.write_bytes(bytes(raw))
    got = same_as_streaming(intervals.BED, source, tmp_path)
    assert isinstance(got, str) and got.startswith("in.bed.gz: ")


# A text already in order (the first lines are) is checked in memory while bgzip compresses the file as it is
# (plain), or while tabix indexes a copy of it (BGZF): that work stands when the check finds the text in
# order with nothing to drop, and is thrown away otherwise. Same bytes, index, records and messages as
# validate.awk's streaming pass (paths without "columnar").
AWK = ("input", "stream", "sort")
SORTED = {"bed": (intervals.BED, lambda p: samples.bed(p, records=4000)),
          "narrowpeak": (intervals.NARROWPEAK, lambda p: samples.narrowpeak(p, records=3000)),
          "vcf": (intervals.VCF, lambda p: samples.vcf(p, records=3000, contigs={"chr2": 40_000, "chr1": 50_000})),
          "gff3": (intervals.GFF3, lambda p: samples.gff3(p, genes=300, fasta=False))}


def stages(spec: intervals.IntervalFormat, source: Path, work: Path, paths: tuple[str, ...] = intervals.PATHS,
           **settings: object) -> tuple[tuple[bytes, bytes, dict[str, object]] | str, dict[str, float]]:
    """build()'s outcome and the stages that ran (ctx.timings), which say which pass checked the text."""
    work.mkdir()
    ctx = BuildContext(source=source, format=spec.name, workdir=work, settings=BuildSettings(**settings))  # type: ignore[arg-type]
    try:
        output = intervals.build_intervals(spec, ctx, source, paths=paths)
    except InputError as exc:
        return str(exc), ctx.timings
    return (output.artifacts["data"].read_bytes(), output.artifacts["index"].read_bytes(), output.records), ctx.timings


def in_order(spec: intervals.IntervalFormat, make, tmp_path: Path) -> bytes:
    """A sample of the format as the pipeline orders it: a sorted input."""
    got = build(spec, make(tmp_path / "unsorted.txt"), tmp_path / "sorting", paths=("sort",))
    assert not isinstance(got, str)
    return gzip.decompress(got[0])


@pytest.mark.parametrize("name", SORTED)
@pytest.mark.parametrize("threads", [1, 2])
def test_a_sorted_text_is_checked_in_memory_while_bgzip_compresses_it_to_the_streaming_passes_bytes(
        tmp_path, name, threads):
    spec, make = SORTED[name]
    source = tmp_path / f"in.{name}"
    source.write_bytes(in_order(spec, make, tmp_path))
    got, ran = stages(spec, source, tmp_path / "auto", threads=threads)
    awk, awk_ran = stages(spec, source, tmp_path / "awk", paths=AWK, threads=threads)
    assert "columnar" in ran and "stream" not in ran and "stream" in awk_ran
    assert not isinstance(got, str) and got == awk and got[2]["path"] == "stream" and got[2]["in"] == got[2]["out"] > 0
    assert got[0] == subprocess.run(["bgzip", "-c", "-l", "6", str(source)], capture_output=True, check=True).stdout


@pytest.mark.parametrize("tail, message", [
    (b"chr2\t9\t5\n", "start 9 is greater than end 5"),
    (b"chr2\t5\t9\tx\n", "4 columns, but line 1 has 3 (ragged rows)"),
    (b"chr2\t5\t09\n", "end '09' in column 3 has a leading zero, which htslib reads as octal; write it without"),
    (b"chr2\t5\t9\x07\n", "column 3: a control character (byte 0x07) in text, where only tab may be"),
    (b"chr2 5 9\n", "1 tab-separated column(s), expected at least 3 (space-delimited? columns must be separated "
                    "by tabs)"),
    (b"chr2\t5\t9\r\nchr2\t0\t0\n", "start 0 and end 0: tabix cannot index a zero-length interval at the very start"),
])
@pytest.mark.parametrize("compress", ["plain", "bgzf"])
def test_a_bad_line_after_sorted_lines_is_named_as_the_streaming_pass_names_it(tmp_path, tail, message, compress):
    """The first lines are in order, so the output's work starts early; the bad line sends the text to
    validate.awk, which names it: the same message as with the streaming pass alone, nothing kept."""
    text = b"".join(b"chr1\t%d\t%d\n" % (i, i + 5) for i in range(1, 3000)) + tail
    plain = tmp_path / "in.bed"
    plain.write_bytes(text)
    source = plain if compress == "plain" else samples.bgzip(plain, tmp_path / "in.bed.gz")
    line = 3000 + tail.count(b"\n") - 1
    got, _ = stages(intervals.BED, source, tmp_path / "auto")
    awk, _ = stages(intervals.BED, source, tmp_path / "awk", paths=AWK)
    assert got == awk == f"{source.name}: line {line}: {message}"


def test_a_text_read_in_many_pieces_gives_the_same_bytes_and_findings(tmp_path, monkeypatch):
    """The text is read a piece at a time (PIECE bytes, cut after a newline): a blank line or a ##FASTA
    section at a piece's edge is still found."""
    from pipelines import columnar

    monkeypatch.setattr(columnar, "PIECE", 100)
    bed = tmp_path / "in.bed"
    bed.write_bytes(b"".join(b"chr1\t%d\t%d\tname%d\n" % (i, i + 5, i) for i in range(1, 400)))
    got, ran = stages(intervals.BED, bed, tmp_path / "bed")
    assert "columnar" in ran and got == build(intervals.BED, bed, tmp_path / "bed-awk", paths=AWK)
    blank = tmp_path / "blank.bed"  # a blank line after every 7th: some begin a piece, some are inside one
    lines = bed.read_bytes().splitlines(keepends=True)
    blank.write_bytes(b"".join(line + (b"\n" if n % 7 == 0 else b"") for n, line in enumerate(lines, 1)))
    (tmp_path / "blank").mkdir()
    got = same_as_streaming(intervals.BED, blank, tmp_path / "blank")
    assert not isinstance(got, str) and got[2]["dropped"] == {"blank": len(lines) // 7}
    gff = samples.gff3(tmp_path / "in.gff3", genes=80)  # with its ##FASTA section: dropped and counted
    (tmp_path / "gff").mkdir()
    got = same_as_streaming(intervals.GFF3, gff, tmp_path / "gff")
    assert not isinstance(got, str) and got[2]["path"] == "columnar" and got[2]["dropped"]["fasta"] > 0


@pytest.mark.parametrize("compress", ["plain", "bgzf"])
def test_an_output_indexed_on_a_wrong_guess_is_indexed_again(tmp_path, compress):
    """tabix starts on the output made early with options guessed from the first lines (TBI here); an
    end past TBI's reach makes the index CSI: the output stands, the guessed index is dropped and the
    index is the streaming pass's."""
    plain = tmp_path / "in.bed"
    plain.write_bytes(b"".join(b"chr1\t%d\t%d\n" % (i, i + 5) for i in range(1, 3000)) + b"chr1\t5000\t600000000\n")
    source = plain if compress == "plain" else samples.bgzip(plain, tmp_path / "in.bed.gz")
    got, ran = stages(intervals.BED, source, tmp_path / "auto")
    awk, _ = stages(intervals.BED, source, tmp_path / "awk", paths=AWK)
    assert "columnar" in ran and got == awk
    assert not isinstance(got, str) and got[2]["path"] == ("stream" if compress == "plain" else "input")
    assert got[2]["index"] == "csi" and not list((tmp_path / "auto").glob("*.tbi"))


@pytest.mark.parametrize("order", ["sorted", "unsorted"])
def test_the_budget_decides_in_memory_or_streaming_with_the_same_bytes(tmp_path, monkeypatch, order):
    """The pass runs when the most it may take (columnar.peak) fits sort-memory x threads; past that
    the streaming passes run (validate.awk, then sort if need be), with the same output. (bgzindex's check
    off: where it runs, it settles a sorted text past the budget too; tests/integration/test_bgzindex.py.)"""
    from pipelines import columnar

    monkeypatch.setattr(columnar, "VOUCH", False)
    spec, make = SORTED["bed"]
    source = tmp_path / "in.bed"
    source.write_bytes(in_order(spec, make, tmp_path) if order == "sorted" else make(source).read_bytes())
    fitting = columnar.peak(source, "plain")  # bytes the pass may need, shared by 2 threads
    assert fitting is not None and fitting > columnar.PEAK_BASE + source.stat().st_size
    within, ran = stages(spec, source, tmp_path / "within", sort_memory=str(-(-fitting // 2)), threads=2)
    over, ran_over = stages(spec, source, tmp_path / "over", sort_memory=str(fitting // 2 - 1), threads=2)
    assert isinstance(within, tuple) and isinstance(over, tuple) and within[:2] == over[:2]
    assert "columnar" in ran and within[2]["path"] == ("stream" if order == "sorted" else "columnar")
    assert "columnar" not in ran_over and over[2]["path"] == ("stream" if order == "sorted" else "sort")


def test_the_time_cap_stops_the_work_started_early(tmp_path):
    """Waiting for the output's early steps (bgzip, tabix, the read back) honours the task's time cap."""
    from preprocess import shell
    from preprocess.errors import TimeLimitError

    source = tmp_path / "in.bed"
    source.write_bytes(b"".join(b"chr1\t%d\t%d\n" % (i, i + 5) for i in range(1, 200_000)))
    (tmp_path / "w").mkdir()
    ctx = BuildContext(source=source, format="bed", workdir=tmp_path / "w", settings=BuildSettings())
    with pytest.raises(TimeLimitError, match="task time cap"), shell.time_cap(0.01):
        intervals.build_intervals(intervals.BED, ctx, source)
