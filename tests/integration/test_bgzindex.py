"""bgzindex (pipelines/bgzindex.c, built by pipelines/native.py; CI installs htslib's headers) against what it
stands in for, `bgzip` then `tabix`: the same compressed bytes and the same index bytes, from the real tools
on the same text; where tabix refuses a text, no index; and every interval path builds the same artifacts
with it as without it (PREPROCESS_BGZINDEX=off)."""

from __future__ import annotations

import logging
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from pipelines import columnar, intervals, native, tabix_index
from tests.integration.test_sorted_inputs import FORMATS, build, sorted_text, unsorted_sample


@pytest.fixture
def program(monkeypatch) -> Path:
    monkeypatch.setenv(native.BGZINDEX_SWITCH, "")
    built = native.bgzindex()
    assert built is not None  # CI installs a compiler and libhts-dev: a missing build is a defect here
    return built


def bed_lines(rng: random.Random, contigs: tuple[str, ...], n: int, extra: int = 0) -> bytes:
    out = []
    for contig in contigs:
        at = 0
        for _ in range(n):
            at += rng.randint(0, 500)
            tail = "\t" + "x" * rng.randint(0, extra) if extra else ""
            out.append(f"{contig}\t{at}\t{at + rng.randint(1, 3000)}{tail}\n")
    return "".join(out).encode()


def vcf(contigs: bytes, records: bytes) -> bytes:
    return b"##fileformat=VCFv4.2\n" + contigs + b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + records


RNG = random.Random(7)
BLOCK_LINE = b"chr1\t100\t200\t" + b"y" * 49 + b"\n"  # 64 bytes: every 1,020th line ends on a block's end
MANY_CONTIGS = b"".join(b"##contig=<ID=c%05d,length=1000>\n" % i for i in range(3000))  # a 100 kB header
LONG = b"##contig=<ID=big,length=3000000000>\n"
CASES = {  # name: (text, preset, kind, tabix -S)
    "bed, several blocks": (bed_lines(RNG, ("chr1", "chr2", "chr10"), 20000), "bed", "tbi", 0),
    "bed, wide lines, csi": (bed_lines(RNG, ("chr1", "chrX"), 3000, extra=300), "bed", "csi", 0),
    "empty": (b"", "bed", "tbi", 0),
    "a header only": (b"#a\n#b\n", "bed", "tbi", 0),
    "track lines only": (b"track name=x\n#b\n", "bed", "tbi", 2),
    "track and browser lines": (b"browser position chr1\ntrack name=x\n#c\n" + bed_lines(RNG, ("chr1",), 3000),
                                "bed", "tbi", 3),
    "no final newline": (bed_lines(RNG, ("chr1",), 2000)[:-1], "bed", "tbi", 0),
    "lines ending on block ends": (BLOCK_LINE * 5000, "bed", "tbi", 0),
    "the text ending on a block's end": (BLOCK_LINE * 1020 * 3, "bed", "tbi", 0),
    "a comment after a record ending a block": (BLOCK_LINE * 1020 * 3 + b"#end\n", "bed", "tbi", 0),
    "CRLF line ends (tabix reads without the CR)": (b"chr1\t1\t2\r\nchr1\t5\t6\r\n", "bed", "tbi", 0),
    "blank and comment lines among records": (b"chr1\t1\t2\n\nchr1\t5\t6\n#x\nchr1\t7\t9\n", "bed", "tbi", 0),
    "numbers as strtoll reads them": (b"chr1\t0\t0\nchr1\t010\t0x20\nchr1\t 12\t+40\nchr1\t13\t-\n", "bed", "tbi", 0),
    "a 9 MB line": (b"chr1\t1\t2\t" + b"z" * (9 << 20) + b"\nchr1\t3\t4\n", "bed", "tbi", 0),
    "vcf, a header past one block, INFO/END": (
        vcf(MANY_CONTIGS, b"".join(b"c%05d\t%d\t.\tA\tG\t.\t.\tEND=%d\n" % (i // 10, 10 + i % 10 * 50, 30 + i % 10 * 50)
                                   for i in range(20000))), "vcf", "tbi", 0),
    "vcf, csi for a 3 Gbp contig": (vcf(LONG, b"".join(b"big\t%d\t.\tACGT\tG\t.\t.\t.\n" % (1 + i * 100000)
                                                       for i in range(20000))), "vcf", "csi", 0),
    "vcf, csi, no record": (vcf(LONG, b""), "vcf", "csi", 0),
    "gff3": (b"##gff-version 3\n" + b"".join(b"chr%d\tsrc\tgene\t%d\t%d\t.\t+\t.\tID=g%d\n"
                                             % (i // 1000, 1 + i % 1000 * 100, 50 + i % 1000 * 100, i)
                                             for i in range(30000)), "gff", "tbi", 0),
}
REFUSED = {  # tabix indexes none of these: bgzindex writes the compressed text and no index
    "out of order": (b"chr1\t500\t600\nchr1\t100\t200\n", "bed", "tbi"),
    "a contig in two blocks": (b"chr1\t1\t2\nchr2\t1\t2\nchr1\t5\t6\n", "bed", "tbi"),
    "past what a TBI addresses": (vcf(LONG, b"big\t600000000\t.\tA\tG\t.\t.\t.\n"), "vcf", "tbi"),
    "a 19-digit position": (b"chr1\t1234567890123456789\t1234567890123456790\n", "bed", "tbi"),
}


def with_tools(text: bytes, preset: str, kind: str, skip: int, level: int, folder: Path) -> tuple[bytes, bytes | None]:
    folder.mkdir()
    (folder / "in.txt").write_bytes(text)
    out = folder / "out.gz"
    with open(folder / "in.txt", "rb") as source, open(out, "wb") as target:
        subprocess.run(["bgzip", "-c", "-l", str(level), "-@", "2"], stdin=source, stdout=target, check=True)
    indexed = subprocess.run(tabix_index.index_argv(out, preset, kind, skip), capture_output=True)
    index = tabix_index.index_path(out, kind)
    return out.read_bytes(), index.read_bytes() if indexed.returncode == 0 else None


def with_bgzindex(program: Path, text: bytes, preset: str, kind: str, level: int, threads: int, folder: Path
                  ) -> tuple[bytes, bytes | None, str | None]:
    folder.mkdir()
    (folder / "in.txt").write_bytes(text)
    out, index, report = folder / "out.gz", folder / "out.idx", folder / "out.report"
    with open(folder / "in.txt", "rb") as source, open(out, "wb") as target:
        subprocess.run([str(program), "compress", str(level), str(threads), preset, kind, str(index), str(report)],
                       stdin=source, stdout=target, check=True)
    return (out.read_bytes(), index.read_bytes() if index.exists() else None,
            report.read_text() if report.exists() else None)


@pytest.mark.parametrize("name", CASES)
def test_bgzindex_writes_the_bytes_of_bgzip_then_tabix(tmp_path, program, name):
    text, preset, kind, skip = CASES[name]
    data, index = with_tools(text, preset, kind, skip, -1, tmp_path / "tools")
    assert index is not None
    for threads in (1, 2, 3):
        assert with_bgzindex(program, text, preset, kind, -1, threads, tmp_path / f"made{threads}") == (
            data, index, f"{kind} {skip}\n")


def reindexed(program: Path, data: bytes, preset: str, kind: str, skip: int, folder: Path) -> tuple[int, bytes | None]:
    """`bgzindex index` of a BGZF file holding `data`: its exit status and the index it wrote."""
    folder.mkdir()
    (folder / "out.gz").write_bytes(data)
    index = folder / "out.idx"
    done = subprocess.run([str(program), "index", str(folder / "out.gz"), "2", preset, kind, str(skip), str(index)],
                          capture_output=True)
    return done.returncode, index.read_bytes() if index.exists() else None


@pytest.mark.parametrize("name", CASES)
def test_bgzindex_index_writes_tabix_bytes_for_a_bgzf_file(tmp_path, program, name):
    text, preset, kind, skip = CASES[name]
    data, index = with_tools(text, preset, kind, skip, -1, tmp_path / "tools")
    assert reindexed(program, data, preset, kind, skip, tmp_path / "made") == (0, index)


@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_every_compression_level_gives_bgzips_bytes(tmp_path, program, level):
    text = bed_lines(random.Random(level), ("chr1", "chr2"), 8000)
    data, index = with_tools(text, "bed", "tbi", 0, level, tmp_path / "tools")
    assert with_bgzindex(program, text, "bed", "tbi", level, 2, tmp_path / "made") == (data, index, "tbi 0\n")


@pytest.mark.parametrize("name", REFUSED)
def test_where_tabix_refuses_the_text_no_index_is_written(tmp_path, program, name):
    text, preset, kind = REFUSED[name]
    data, index = with_tools(text, preset, kind, 0, -1, tmp_path / "tools")
    assert index is None
    assert with_bgzindex(program, text, preset, kind, -1, 2, tmp_path / "made") == (data, None, None)
    assert reindexed(program, data, preset, kind, 0, tmp_path / "again") == (tabix_index.REFUSED, None)


def logging_tabix(tmp_path: Path, monkeypatch) -> Path:
    """A `tabix` first on PATH that writes its arguments to a log, then runs the real one."""
    folder, log = tmp_path / "bin", tmp_path / "tabix.log"
    folder.mkdir()
    wrapper = folder / "tabix"
    real = shutil.which("tabix")
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return log


def indexed_outputs(log: Path) -> list[str]:
    """The outputs tabix indexed (not the index reads or the bgzindex check's sample)."""
    lines = log.read_text().splitlines() if log.exists() else []
    return [line.split()[-1] for line in lines if " -p " in f" {line} " and "/sorted." in line]


@pytest.mark.parametrize("name", ["bed", "vcf", "gff3"])
@pytest.mark.parametrize("paths, source", [
    (("sort",), "unsorted"), (intervals.PATHS, "unsorted"), (intervals.PATHS, "sorted"),
    (("stream", "sort"), "sorted"), (("stream", "sort"), "unsorted"), (intervals.PATHS, "sorted, bgzipped"),
    (("input", "sort"), "sorted, bgzipped")])
def test_each_interval_path_builds_the_same_artifacts_with_bgzindex_and_without(
        tmp_path, program, monkeypatch, name, paths, source):
    text = (tmp_path / f"in.{name}")
    if source.startswith("sorted"):
        text.write_bytes(sorted_text(name, tmp_path))
    else:
        unsorted_sample(name, text)
    if source.endswith("bgzipped"):
        with open(text, "rb") as plain, open(tmp_path / f"in.{name}.gz", "wb") as target:
            subprocess.run(["bgzip", "-c"], stdin=plain, stdout=target, check=True)
        text = tmp_path / f"in.{name}.gz"
    log = logging_tabix(tmp_path, monkeypatch)
    made = build(FORMATS[name], text, tmp_path / "bgzindex", paths=paths, threads=2)
    assert indexed_outputs(log) == []  # every index came from bgzindex's own pass
    monkeypatch.setenv(native.BGZINDEX_SWITCH, "off")
    tools = build(FORMATS[name], text, tmp_path / "tools", paths=paths, threads=2)
    assert len(indexed_outputs(log)) == 1
    assert made[:2] == tools[:2] and made[2]["path"] == tools[2]["path"]
    assert sorted(p.name for p in (tmp_path / "bgzindex").glob("sorted.*")) == sorted(
        p.name for p in (tmp_path / "tools").glob("sorted.*"))  # no report or stray index left beside them


def test_a_csi_needed_past_the_guess_is_written_by_reading_the_output_with_tabix_bytes(tmp_path, program,
                                                                                       monkeypatch):
    """The compressor guessed TBI and gave up indexing at the first record past 2^29; the CSI then comes
    from `bgzindex index` of the output, byte for byte tabix's."""
    far = b"".join(b"chr1\t%d\t%d\n" % (600_000_000 + i * 1000, 600_000_100 + i * 1000) for i in range(2000))
    source = tmp_path / "far.bed"
    source.write_bytes(far)
    log = logging_tabix(tmp_path, monkeypatch)
    made = build(intervals.BED, source, tmp_path / "bgzindex", paths=("stream", "sort"))
    assert made[2]["index"] == "csi" and indexed_outputs(log) == []
    monkeypatch.setenv(native.BGZINDEX_SWITCH, "off")
    assert build(intervals.BED, source, tmp_path / "tools", paths=("stream", "sort"))[:2] == made[:2]
    assert len(indexed_outputs(log)) == 1


def test_a_bgzindex_that_writes_other_bytes_than_bgzip_is_not_used(tmp_path, program, monkeypatch, caplog):
    """As one linked with another htslib or deflate library would: a program compressing at level 1
    whatever it is asked."""
    other = tmp_path / "other-bgzindex"
    other.write_text('#!/bin/sh\nexec bgzip -c -l 1\n')
    other.chmod(0o755)
    monkeypatch.setattr(native, "bgzindex", lambda: other)
    with caplog.at_level(logging.WARNING, logger="pipelines.native"):
        assert tabix_index.compressor(tmp_path / "x.bed.gz", "bed", "tbi", 6, 2) == [
            "bgzip", "-c", "-l", "6", "-@", "2"]
    assert "bgzindex writes other bytes than bgzip and tabix here" in caplog.text


def counted_both_ways(program: Path, out: Path, index: Path, regions: Path) -> tuple[int | None, int | None]:
    """`bgzindex count` and `tabix -R | wc -l` of the same output and regions (None: the reader failed)."""
    counted = subprocess.run([str(program), "count", str(out), str(index), str(regions)], capture_output=True)
    listed = subprocess.run(["tabix", "-R", str(regions), str(out)], capture_output=True)
    return (int(counted.stdout) if counted.returncode == 0 else None,
            listed.stdout.count(b"\n") if listed.returncode == 0 else None)


UNREADABLE = {  # a line htslib's reader cannot parse among the records (no output holds one): both fail
    "a comment after a record ending a block", "blank and comment lines among records", "numbers as strtoll reads them"}


@pytest.mark.parametrize("name", [*CASES, "a BED chr1 0 0, indexed but never returned"])
def test_bgzindex_count_returns_what_tabix_returns_for_the_same_regions(tmp_path, program, name):
    """Whole contigs, part of one, one the index does not name: the records htslib's reader returns,
    counted (the read back's reader), as tabix lists them, or a failure where tabix fails."""
    text, preset, kind, skip = CASES.get(name, (b"chr1\t0\t0\nchr1\t5\t6\n", "bed", "tbi", 0))
    with_tools(text, preset, kind, skip, -1, tmp_path / "tools")
    out = tmp_path / "tools" / "out.gz"
    index = tabix_index.index_path(out, kind)
    contigs = list(tabix_index.record_counts(index))
    regions = tmp_path / "regions.bed"
    regions.write_text("".join(f"{contig}\t0\t{tabix_index.TABIX_MAX}\n" for contig in contigs)
                       + "".join(f"{contig}\t150\t2000\n" for contig in contigs[:1]) + "nowhere\t0\t10\n")
    counted, listed = counted_both_ways(program, out, index, regions)
    assert counted == listed
    assert (counted is None) == (name in UNREADABLE)
    if name not in CASES:
        assert tabix_index.record_counts(index) == {"chr1": 2} and counted == 1


def test_bgzindex_count_fails_on_a_damaged_output_as_tabix_does(tmp_path, program):
    text, preset, kind, skip = CASES["bed, several blocks"]
    data, _ = with_tools(text, preset, kind, skip, -1, tmp_path / "tools")
    out = tmp_path / "tools" / "out.gz"
    out.write_bytes(data[: len(data) // 2])  # the index points past the end
    regions = tmp_path / "regions.bed"
    regions.write_text("".join(f"chr{c}\t0\t{tabix_index.TABIX_MAX}\n" for c in (1, 2, 10)))
    counted = subprocess.run([str(program), "count", str(out), str(tabix_index.index_path(out, kind)), str(regions)],
                             capture_output=True, text=True)
    assert counted.returncode == 1 and "bgzindex: reading the records of chr" in counted.stderr
    assert counted.stdout == ""
    assert subprocess.run(["tabix", "-R", str(regions), str(out)], capture_output=True).returncode != 0


def region_reads(log: Path) -> int:
    """The `tabix -R` runs logged."""
    return sum(" -R " in f" {line} " for line in log.read_text().splitlines()) if log.exists() else 0


@pytest.mark.parametrize("name", ["bed", "vcf", "gff3"])
def test_the_read_back_through_processes_counts_alike_with_bgzindex_and_without(tmp_path, program, monkeypatch,
                                                                                 name):
    """Outputs above READ_BACK_IN_PROCESS are read back by a process per contig group: `bgzindex count`
    where it is built, else `tabix -R | wc -l`; the same records out, the same artifacts."""
    from pipelines import interval_checks

    monkeypatch.setattr(interval_checks, "READ_BACK_IN_PROCESS", 0)
    text = tmp_path / f"in.{name}"
    unsorted_sample(name, text)
    log = logging_tabix(tmp_path, monkeypatch)
    made = build(FORMATS[name], text, tmp_path / "bgzindex", threads=2)
    assert region_reads(log) == 0
    monkeypatch.setenv(native.BGZINDEX_SWITCH, "off")
    tools = build(FORMATS[name], text, tmp_path / "tools", threads=2)
    assert region_reads(log) == 2  # a reader per thread
    assert made[:2] == tools[:2] and made[2]["out"] == tools[2]["out"] == tools[2]["in"] > 0


# bgzindex's check of a text as it compresses it (`compress ... CHECK`, a plain text) or indexes it (`index
# ... CHECK`, BGZF) stands in for the columnar pass's check only where it says "ok", and its "ok" must be
# that check's own verdict: in order, nothing to remark on, the same header and counts. Compared on the
# texts below and on a few hundred mutants of sorted samples, plain and bgzipped. It may say "unsure" where
# the columnar check would find the text fine only for a byte outside printable ASCII (it leaves UTF-8 to
# that check).
VCF_RANKED = (b"##fileformat=VCFv4.2\n##contig=<ID=chrB>\n##contig=<ID=chrA,length=9>\n##contig=<ID=chrB>\n"
              b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
VCF_RECORD = b"\t.\tA\tG\t.\t.\t.\n"
CHECKED = {  # name: (format, text)
    "bed": ("bed", b"chr1\t0\t5\nchr1\t0\t5\nchr1\t0\t7\nchr1\t3\t4\nchr10\t1\t2\nchr2\t1\t2\n"),
    "bed, a track line and comments": ("bed", b"track name=x\n#c\nbrowser position chr1\nchr1\t1\t2\tn\t0\t+\n"),
    "bed, ends not in order at one start": ("bed", b"chr1\t0\t7\nchr1\t0\t5\n"),
    "bed, starts out of order": ("bed", b"chr1\t5\t7\nchr1\t4\t9\n"),
    "bed, natural contig order": ("bed", b"chr2\t1\t2\nchr10\t1\t2\n"),
    "bed, a contig in two blocks": ("bed", b"chr1\t1\t2\nchr2\t1\t2\nchr1\t5\t6\n"),
    "bed, a contig a prefix of the next": ("bed", b"chr\t1\t2\nchr1\t1\t2\nchr1_x\t1\t2\n"),
    "bed, a header line after data": ("bed", b"chr1\t1\t2\n#late\nchr1\t3\t4\n"),
    "bed, a track line after data": ("bed", b"chr1\t1\t2\ntrack x\nchr1\t3\t4\n"),
    "bed, 'tracks' is data": ("bed", b"tracks\t1\t2\n"),
    "bed, no data": ("bed", b"#a\ntrack\n"),
    "empty": ("bed", b""),
    "bed, 15 digits (past 2^32)": ("bed", b"chr1\t1\t999999999999999\n"),
    "bed, 16 digits": ("bed", b"chr1\t1\t1000000000000000\n"),
    "bed, 2^32 end": ("bed", b"chr1\t1\t4294967296\n"),
    "bed, past 2^32": ("bed", b"chr1\t1\t4294967297\n"),
    "bed, end 0": ("bed", b"chr1\t0\t0\nchr1\t0\t1\n"),
    "bed, start after end": ("bed", b"chr1\t9\t5\n"),
    "bed, a sign": ("bed", b"chr1\t+1\t5\n"),
    "bed, a leading zero": ("bed", b"chr1\t01\t5\n"),
    "bed, empty coordinate": ("bed", b"chr1\t\t5\n"),
    "bed, empty contig": ("bed", b"\t1\t5\n"),
    "bed, a space in the contig": ("bed", b"chr 1\t1\t5\n"),
    "bed, a space in a name": ("bed", b"chr1\t1\t5\ta b\n"),
    "bed, ragged": ("bed", b"chr1\t1\t5\nchr1\t1\t5\tx\n"),
    "bed, two columns": ("bed", b"chr1\t1\n"),
    "bed, CRLF": ("bed", b"chr1\t1\t5\r\n"),
    "bed, a blank line": ("bed", b"chr1\t1\t5\n\nchr1\t2\t5\n"),
    "bed, no final newline": ("bed", b"chr1\t1\t5\nchr1\t2\t5"),
    "bed, DEL": ("bed", b"chr1\t1\t5\tx\x7f\n"),
    "bed, Latin-1 in a name": ("bed", b"chr1\t1\t5\tn\xe9\n"),
    "bed, UTF-8 in a name": ("bed", b"chr1\t1\t5\tn\xc3\xa9\n"),
    "narrowpeak, ten columns": ("narrowpeak", b"chr1\t1\t5\tp\t0\t.\t1\t2\t3\t4\n"),
    "narrowpeak, eleven columns": ("narrowpeak", b"chr1\t1\t5\tp\t0\t.\t1\t2\t3\t4\t5\n"),
    "vcf, ranked by the header": ("vcf", VCF_RANKED + b"chrB\t5" + VCF_RECORD + b"chrA\t1" + VCF_RECORD
                                  + b"chrC\t1" + VCF_RECORD + b"chrD\t1" + VCF_RECORD),
    "vcf, against the header's rank": ("vcf", VCF_RANKED + b"chrA\t5" + VCF_RECORD + b"chrB\t1" + VCF_RECORD),
    "vcf, undeclared before declared": ("vcf", VCF_RANKED + b"chrC\t5" + VCF_RECORD + b"chrA\t1" + VCF_RECORD),
    "vcf, undeclared out of name order": ("vcf", VCF_RANKED + b"chrD\t5" + VCF_RECORD + b"chrC\t1" + VCF_RECORD),
    "vcf, positions out of order": ("vcf", VCF_RANKED + b"chrB\t5" + VCF_RECORD + b"chrB\t4" + VCF_RECORD),
    "vcf, a long REF sets the end": ("vcf", VCF_RANKED + b"chrB\t5\t.\tACGTACGT\tA\t.\t.\t.\n"),
    "vcf, an empty REF": ("vcf", VCF_RANKED + b"chrB\t5\t.\t\tA\t.\t.\t.\n"),
    "vcf, POS 0": ("vcf", VCF_RANKED + b"chrB\t0" + VCF_RECORD),
    "vcf, INFO/END": ("vcf", VCF_RANKED + b"chrB\t5\t.\tA\tG\t.\t.\tEND=9\n"),
    "vcf, END= in ID": ("vcf", VCF_RANKED + b"chrB\t5\tEND=9\tA\tG\t.\t.\t.\n"),
    "vcf, END= in the header": ("vcf", VCF_RANKED.replace(b"\n", b"\n##note=END=9\n", 1) + b"chrB\t5" + VCF_RECORD),
    "vcf, seven columns": ("vcf", VCF_RANKED + b"chrB\t5\t.\tA\tG\t.\t.\n"),
    "gff3": ("gff3", b"##gff-version 3\nchr1\ts\tgene\t1\t9\t.\t+\t.\tID=a\nchr1\ts\tgene\t1\t5\t.\t+\t.\tID=b\n"),
    "gff3, start 0": ("gff3", b"##gff-version 3\nchr1\ts\tgene\t0\t9\t.\t+\t.\tID=a\n"),
    "gff3, ##FASTA": ("gff3", b"##gff-version 3\nchr1\ts\tgene\t1\t9\t.\t+\t.\tID=a\n##FASTA\n>chr1\nACGT\n"),
    "gff3, a ##FASTA line only": ("gff3", b"##FASTA\n>chr1\nACGT\n"),
    "gff3, records after ##FASTA": ("gff3", b"##gff-version 3\n##FASTA\nchr1\ts\tgene\t1\t9\t.\t+\t.\tID=a\n"),
    "gff3, ten columns": ("gff3", b"chr1\ts\tgene\t1\t9\t.\t+\t.\tID=a\tx\n"),
}


def bgzindex_check(program: Path, spec: intervals.IntervalFormat, source: Path, compression: str) -> str | None:
    """What `bgzindex compress ... CHECK` (plain) or `bgzindex index ... CHECK` (bgzf) says of `source`; None
    where `index` refused the text (tabix would not index it: exit 3, nothing said)."""
    verdict = source.with_name(source.name + ".check")
    check = [str(verdict), spec.kind, str(spec.start_column), str(spec.end_column), str(spec.min_columns),
             str(spec.exact_columns)]
    if compression == "plain":
        with open(source, "rb") as text:
            subprocess.run([str(program), "compress", "6", "2", spec.preset, "tbi", f"{source}.idx",
                            f"{source}.report", *check], stdin=text, stdout=subprocess.DEVNULL, check=True)
    else:
        done = subprocess.run([str(program), "index", str(source), "2", spec.preset, "csi", "0", f"{source}.idx",
                               *check], capture_output=True)
        if done.returncode == tabix_index.REFUSED:  # an "unsure" said before it gave up, or nothing
            said = verdict.read_text() if verdict.exists() else None
            assert said is None or said.startswith("unsure ")
            return said
        assert done.returncode == 0, done.stderr
    said = verdict.read_text()
    assert not verdict.with_name(verdict.name + ".part").exists()
    return said


def columnar_check(spec: intervals.IntervalFormat, source: Path,
                   compression: str) -> tuple[list[str], dict[str, object]] | None:
    """The columnar pass's header and stats for a text it finds in order with nothing to drop, else None."""
    found = columnar._checked_text(spec, source, 1, compression)
    if found is None:
        return None
    header, _, frame, stats = found
    return (header, stats) if columnar._in_order(spec, frame, header, stats["contigs"]) and not stats["fasta"] else None


def agree(program: Path, spec: intervals.IntervalFormat, source: Path, compression: str) -> tuple[object, object]:
    if compression == "bgzf":
        with open(source, "rb") as plain, open(f"{source}.gz", "wb") as target:
            subprocess.run(["bgzip", "-c"], stdin=plain, stdout=target, check=True)
        text, source = source.read_bytes(), Path(f"{source}.gz")
    else:
        text = source.read_bytes()
    said = bgzindex_check(program, spec, source, compression)
    vouched = columnar.vouched(source, said, compression) if said is not None else None
    found = columnar_check(spec, source, compression)
    assert said is None or said.startswith(("ok\n", "unsure "))
    if vouched is None and found is not None:  # unsure where the columnar check is not: only past ASCII
        assert any(byte > 127 for byte in text)
    else:
        assert vouched == found
    return vouched, found


@pytest.mark.parametrize("compression", ["plain", "bgzf"])
@pytest.mark.parametrize("name", CHECKED)
def test_bgzindex_vouches_for_a_text_as_the_columnar_check_does(tmp_path, program, name, compression):
    kind, text = CHECKED[name]
    source = tmp_path / "in.txt"
    source.write_bytes(text)
    vouched, found = agree(program, FORMATS[kind], source, compression)
    fine = {"bed", "bed, a track line and comments", "bed, a contig a prefix of the next", "bed, 'tracks' is data",
            "bed, 2^32 end", "bed, a space in a name",
            "narrowpeak, ten columns", "vcf, ranked by the header", "vcf, a long REF sets the end",
            "vcf, END= in the header",
            "vcf, an empty REF", "vcf, POS 0", "gff3"}
    assert (vouched is not None) == (name in fine)  # the comparison above is not vacuous
    assert (found is not None) == (name in fine or name == "bed, UTF-8 in a name")


def test_a_bgzf_text_without_its_final_newline_is_not_vouched_for_whatever_its_isize_says(tmp_path, program):
    """htslib's reader counts a newline for a last line without one, and reads no ISIZE: a block whose
    ISIZE is one too large would make that count look right. The text's last byte decides."""
    import struct

    from pipelines import bgzf

    source = tmp_path / "in.bed.gz"
    source.write_bytes(subprocess.run(["bgzip", "-c"], input=b"chr1\t1\t2\nchr1\t3\t4", capture_output=True,
                                      check=True).stdout)
    first = bgzf.blocks(source)[0]
    raw = bytearray(source.read_bytes())
    at = first.offset + first.size - 4
    raw[at:at + 4] = struct.pack("<I", first.isize + 1)
    source.write_bytes(bytes(raw))
    assert columnar.text_size(source, "bgzf") == 18  # the 17 bytes and the newline that is not there
    said = bgzindex_check(program, intervals.BED, source, "bgzf")
    assert said is not None and said.startswith("ok\n2 2 0 0 4 3 18\n")  # bgzindex cannot tell
    assert columnar.vouched(source, said, "bgzf") is None
    assert columnar_check(intervals.BED, source, "bgzf") is None


def test_a_verdict_that_cannot_be_written_ends_the_check_not_the_compression(tmp_path, program):
    """Where bgzindex cannot write its verdict, it says nothing (the columnar check then runs): its output
    and index are written as ever, and it exits 0."""
    text = b"".join(b"chr1\t%d\t%d\n" % (i, i + 5) for i in range(1, 5000))
    check = [str(tmp_path / "absent" / "verdict"), "bed", "2", "3", "3", "0"]
    done = subprocess.run([str(program), "compress", "6", "2", "bed", "tbi", str(tmp_path / "out.tbi"),
                           str(tmp_path / "report"), *check], input=text, capture_output=True)
    assert done.returncode == 0 and done.stdout == subprocess.run(["bgzip", "-c"], input=text, capture_output=True,
                                                                 check=True).stdout
    assert (tmp_path / "out.tbi").exists() and not (tmp_path / "absent").exists()


MUTANT_BYTES = (b" ", b"\t", b"0", b"9", b"\r", b"\x00", b"#", b"\xe9", b"-", b"E", b"N", b"D", b"=", b"", b"\n", b">")


def mutant(rng: random.Random, lines: list[bytes]) -> bytes:
    """A sorted text with one or two small changes: lines swapped, copied, dropped or inserted, a byte put
    in, cut or replaced, the final newline cut."""
    lines = list(lines)
    for _ in range(rng.choice((1, 1, 2))):
        at = rng.randrange(len(lines))
        change = rng.randrange(6)
        if change == 0 and at + 1 < len(lines):
            lines[at], lines[at + 1] = lines[at + 1], lines[at]
        elif change == 1:
            lines.insert(at, rng.choice((b"", b"#x", b"track a", b"##FASTA", lines[at], lines[-1], b"chr0\t1\t2",
                                         lines[at].replace(b"chr", b"chrZ", 1))))
        elif change == 2 and len(lines) > 1:
            del lines[at]
        else:
            line = lines[at]
            spot = rng.randrange(len(line) + 1)
            put = rng.choice(MUTANT_BYTES)
            lines[at] = line[:spot] + put + line[spot + (change == 3):]
    text = b"\n".join(lines) + b"\n"
    return text[:-1] if rng.random() < 0.05 else text


@pytest.mark.parametrize("compression", ["plain", "bgzf"])
@pytest.mark.parametrize("name", FORMATS)
def test_bgzindex_vouches_for_mutants_of_a_sorted_text_as_the_columnar_check_does(tmp_path, program, name,
                                                                                  compression):
    spec = FORMATS[name]
    lines = sorted_text(name, tmp_path).splitlines()[:60]
    rng = random.Random(name)
    outcomes = {"ok": 0, "unsure": 0}
    for n in range(80):
        source = tmp_path / f"mutant{n}.txt"
        source.write_bytes(mutant(rng, lines))
        vouched, _ = agree(program, spec, source, compression)
        outcomes["ok" if vouched is not None else "unsure"] += 1
    assert min(outcomes.values()) >= 10, outcomes  # both verdicts are exercised


@pytest.mark.parametrize("compression", ["plain", "bgzf"])
@pytest.mark.parametrize("name", FORMATS)
def test_a_sorted_text_vouched_for_by_bgzindex_is_not_read_again(tmp_path, program, monkeypatch, name, compression):
    """A text in order: bgzindex's check, made as it compresses the text (plain) or indexes it (BGZF), is
    the verdict, and the columnar pass does not read the text; without that check (VOUCH off) it does, with
    the same artifacts and records, and no verdict file is left beside them."""
    source = tmp_path / f"in.{name}"
    source.write_bytes(sorted_text(name, tmp_path))
    if compression == "bgzf":
        with open(source, "rb") as plain, open(tmp_path / f"in.{name}.gz", "wb") as target:
            subprocess.run(["bgzip", "-c"], stdin=plain, stdout=target, check=True)
        source = tmp_path / f"in.{name}.gz"
    reads = []
    checked_text = columnar._checked_text
    monkeypatch.setattr(columnar, "_checked_text", lambda *args: reads.append(args) or checked_text(*args))
    vouched = build(FORMATS[name], source, tmp_path / "vouched", threads=2)
    assert reads == [] and vouched[2]["path"] == ("stream" if compression == "plain" else "input")
    monkeypatch.setattr(columnar, "VOUCH", False)
    read = build(FORMATS[name], source, tmp_path / "read", threads=2)
    assert len(reads) == 1 and read == vouched
    assert [p.name for p in (tmp_path / "vouched").iterdir() if ".check" in p.name] == []


@pytest.mark.parametrize("compression", ["plain", "bgzf"])
@pytest.mark.parametrize("tail", [b"", b"chr2\t9\t5\tx\n"])
def test_a_sorted_text_past_the_memory_budget_is_settled_by_bgzindex_or_left_to_the_streaming_pass(
        tmp_path, program, compression, tail):
    """Past the memory budget the columnar pass cannot run, but bgzindex's check costs no memory: a text it
    finds in order is settled by it (no validate.awk pass); one it is unsure of (a bad last line) goes to the
    streaming pass, which names the line. Either way what the streaming passes alone give."""
    from tests.integration.test_columnar import AWK, stages

    plain = tmp_path / "in.bed"
    plain.write_bytes(b"".join(b"chr1\t%d\t%d\tn%d\n" % (i, i + 5, i) for i in range(1, 20000)) + tail)
    source = plain
    if compression == "bgzf":
        source = tmp_path / "in.bed.gz"
        with open(plain, "rb") as text, open(source, "wb") as target:
            subprocess.run(["bgzip", "-c"], stdin=text, stdout=target, check=True)
    assert columnar.peak(source, compression) > columnar.budget("16K", 1)
    got, ran = stages(intervals.BED, source, tmp_path / "auto", sort_memory="16K", threads=1)
    awk, awk_ran = stages(intervals.BED, source, tmp_path / "awk", paths=AWK, sort_memory="16K", threads=1)
    assert got == awk
    if tail:
        assert got == f"{source.name}: line 20000: start 9 is greater than end 5"
        assert ("check" if compression == "bgzf" else "stream") in ran
    else:
        assert "columnar" in ran and "stream" not in ran and "check" not in ran
        assert ("check" if compression == "bgzf" else "stream") in awk_ran
        assert not isinstance(got, str) and got[2]["path"] == ("stream" if compression == "plain" else "input")


def test_the_time_cap_stops_a_wait_for_bgzindexs_verdict(tmp_path, program):
    """Waiting for the verdict of the compression started early honours the task's time cap: the wait ends
    and the compressor is stopped before it has written the text whole (one thread: seconds of work)."""
    from pipelines import bgzf
    from pipelines.base import BuildContext, BuildSettings
    from preprocess import shell
    from preprocess.errors import TimeLimitError

    source = tmp_path / "in.bed"
    source.write_bytes(b"".join(b"chr1\t%d\t%d\tname%d\n" % (i, i + 5, i) for i in range(1, 4_000_000)))
    (tmp_path / "w").mkdir()
    ctx = BuildContext(source=source, format="bed", workdir=tmp_path / "w",
                       settings=BuildSettings(threads=1, sort_memory="4G"))  # the columnar pass, not streaming
    with pytest.raises(TimeLimitError, match="task time cap"), shell.time_cap(0.3):
        intervals.build_intervals(intervals.BED, ctx, source)
    out = tmp_path / "w" / "sorted.bed.gz"
    layout = bgzf.blocks(out) if out.exists() else None
    assert layout is None or not bgzf.ends_with_eof_block(out, layout)
