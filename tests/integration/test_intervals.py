"""Interval formats through the real sort, bgzip, tabix, gffread and pysam."""

from __future__ import annotations

import gzip
import hashlib
import subprocess
from pathlib import Path

import pysam
import pytest

import preprocess
from preprocess.api import run_many
from tests import samples
from tests.conftest import store_files


def build(path: Path, fmt: str, settings, **kw):
    return preprocess.run({"id": path.name, "access_url": str(path), "format": fmt}, settings=settings, **kw)


def lines(gz: str) -> list[str]:
    with gzip.open(gz, "rt") as stream:
        return stream.read().splitlines()


def assert_sorted(data: list[str], start_col: int) -> None:
    """Each contig is one contiguous block, and starts never decrease within it."""
    seen: list[str] = []
    last = -1
    for line in data:
        cols = line.split("\t")
        if not seen or cols[0] != seen[-1]:
            assert cols[0] not in seen, f"contig {cols[0]} appears in two blocks"
            seen.append(cols[0])
            last = -1
        assert int(cols[start_col]) >= last
        last = int(cols[start_col])


def all_records(result) -> list[str]:
    with pysam.TabixFile(result.artifacts["data"], index=result.artifacts["index"]) as tbx:
        return [row for contig in tbx.contigs for row in tbx.fetch(contig)]


@pytest.mark.parametrize("compress", ["plain", "gzip", "bgzip"])
def test_vcf_header_kept_body_sorted_tbi_whatever_the_compression(data, settings, compress):
    plain = samples.vcf(data / "v.vcf", records=800)
    original = plain.read_text().splitlines()
    path = {"plain": lambda: plain,
            "gzip": lambda: samples.write_gzip(data / "v.vcf.gz", plain.read_bytes()),
            "bgzip": lambda: samples.bgzip(plain, data / "v.vcf.bgz")}[compress]()
    result = build(path, "vcf", settings)
    out = lines(result.artifacts["data"])
    header = [line for line in original if line.startswith("#")]
    assert out[: len(header)] == header  # every header line first, unchanged, in order
    body = out[len(header):]
    assert sorted(body) == sorted(line for line in original if not line.startswith("#"))
    assert_sorted(body, 1)
    assert result.artifacts["data"].endswith(".vcf.gz") and result.artifacts["index"].endswith(".vcf.gz.tbi")
    assert result.records["in"] == result.records["out"] == 800 and result.records["index"] == "tbi"
    assert len(all_records(result)) == 800  # every record is reachable through the index
    with pysam.VariantFile(result.artifacts["data"]) as vcf:
        assert len(list(vcf.fetch("chr1"))) == sum(1 for b in body if b.startswith("chr1\t"))


def test_bed_track_and_browser_lines_blank_lines_and_crlf(data, settings):
    path = data / "t.bed"
    path.write_bytes(b"browser position chr1:1-100\r\ntrack name=x\r\n\r\nchr2\t5\t9\ta\r\nchr1\t30\t40\tb\r\n"
                     b"\r\nchr1\t10\t20\tc\r\nchr1\t10\t15\td\r\n")
    result = build(path, "BED", settings)
    assert lines(result.artifacts["data"]) == [
        "browser position chr1:1-100", "track name=x",
        "chr1\t10\t15\td", "chr1\t10\t20\tc", "chr1\t30\t40\tb", "chr2\t5\t9\ta"]
    assert result.records["dropped"] == {"blank": 2, "track": 2} and result.records["out"] == 4
    assert sorted(all_records(result)) == ["chr1\t10\t15\td", "chr1\t10\t20\tc", "chr1\t30\t40\tb", "chr2\t5\t9\ta"]


@pytest.mark.parametrize("columns", [3, 4, 6])
def test_bed3_to_bed6_and_bedgraph_like_columns_are_kept(data, settings, columns):
    path = samples.bed(data / f"b{columns}.bed", records=400, columns=columns, track=False)
    result = build(path, "bed", settings)
    body = lines(result.artifacts["data"])
    assert sorted(body) == sorted(path.read_text().splitlines())
    assert all(len(line.split("\t")) == columns for line in body)
    assert_sorted(body, 1)


def test_bed12_keeps_all_columns(data, settings):
    path = data / "x.bed"
    row = "chr1\t{s}\t{e}\tn\t0\t+\t{s}\t{e}\t0,0,0\t2\t10,10\t0,{o}"
    path.write_text("\n".join(row.format(s=s, e=s + 100, o=90) for s in (500, 100, 300)) + "\n")
    result = build(path, "BED", settings)
    assert [line.split("\t")[1] for line in lines(result.artifacts["data"])] == ["100", "300", "500"]
    assert all(len(line.split("\t")) == 12 for line in lines(result.artifacts["data"]))


@pytest.mark.parametrize("fmt, broad", [("narrowPeak", False), ("broadPeak", True)])
def test_peaks(data, settings, fmt, broad):
    path = samples.narrowpeak(data / f"p.{fmt}", records=300, broad=broad)
    result = build(path, fmt, settings)
    assert result.artifacts["data"].endswith(f".{fmt}.gz")
    assert result.records["out"] == 300 and len(all_records(result)) == 300


def test_gff3_directives_on_top_fasta_dropped_parent_before_child(data, settings):
    path = samples.gff3(data / "a.gff3", genes=60)
    result = build(path, "GFF3", settings)
    out = lines(result.artifacts["data"])
    assert out[0] == "##gff-version 3" and all(not line.startswith(">") for line in out)
    assert "##FASTA" not in out and result.records["dropped"]["fasta"] == 4
    body = [line for line in out if not line.startswith("#")]
    assert len(body) == 240 and result.records["out"] == 240
    assert_sorted(body, 3)
    for i, line in enumerate(body):  # gene, then its mRNA, at the same start: input order kept
        if "\tmRNA\t" in line:
            assert "\tgene\t" in body[i - 1] and body[i - 1].split("\t")[3] == line.split("\t")[3]
    assert len(all_records(result)) == 240


def test_gtf_is_converted_and_dropped_feature_kinds_are_reported(data, settings):
    path = samples.gtf(data / "a.gtf", genes=50)
    result = build(path, "GTF", settings)
    conversion = result.records["conversion"]
    assert conversion["features_in"]["start_codon"] == 50
    assert conversion["dropped"]["start_codon"] == 50  # gffread folds start codons into CDS: counted, not silent
    assert result.records["gtf_records"] == 300
    out = lines(result.artifacts["data"])
    assert out[0] == "##gff-version 3" and not any(line.startswith("# gffread") for line in out)
    assert result.artifacts["data"].endswith(".gff3.gz")
    manifest = Path(result.manifest).read_text()
    assert '"start_codon": 50' in manifest


def test_bigbed_becomes_indexed_bed(data, settings):
    path = samples.bigbed(data / "t.bb", records=250)
    result = build(path, "bigBed", settings)
    assert result.records["out"] == 250 and result.records["conversion"]["records"] == 250
    assert len(all_records(result)) == 250 and result.artifacts["data"].endswith(".bed.gz")


AUTOSQL = b"""table gene
"a gene track with extra fields, as UCSC's own tracks have"
(
string chrom; "Reference"
uint chromStart; "Start"
uint chromEnd; "End"
string name; "Name"
uint score; "Score"
char[1] strand; "Strand"
string description; "Free text, with spaces"
string alias; "May be empty"
)"""
ROWS = [("chr1", 5, 9, b"a\t0\t+\tzinc finger protein\t"), ("chr2", 1, 3, b"b\t0\t-\t\tB1"),
        ("chr1", 2, 4, b"c\t1\t.\tcaf\xc3\xa9\tC1")]


@pytest.mark.parametrize("order", ["<", ">"])
def test_bigbed_of_either_byte_order_keeps_every_autosql_field_as_stored(data, settings, order):
    """Descriptions with spaces and empty fields stay one field each (pybigtools' reader would split them on
    whitespace and drop the empty ones); a big-endian file reads as its little-endian twin."""
    path = samples.bigbed_raw(data / "genes.bb", {"chr1": 100, "chr2": 50}, ROWS, order=order, autosql=AUTOSQL)
    result = build(path, "bigBed", settings)
    assert result.records["in"] == result.records["out"] == 3
    assert result.records["conversion"]["byte_order"] == ("big-endian" if order == ">" else "little-endian")
    with gzip.open(result.artifacts["data"], "rb") as stream:
        assert stream.read() == (b"chr1\t2\t4\tc\t1\t.\tcaf\xc3\xa9\tC1\n"
                                 b"chr1\t5\t9\ta\t0\t+\tzinc finger protein\t\n"
                                 b"chr2\t1\t3\tb\t0\t-\t\tB1\n")
    twin = samples.bigbed_raw(data / "twin.bb", {"chr1": 100, "chr2": 50}, ROWS, order="<>"[order == "<"],
                              autosql=AUTOSQL)
    assert build(twin, "bigBed", settings).key != result.key  # another file, the same bytes out:
    assert Path(build(twin, "bigBed", settings).artifacts["data"]).read_bytes() == \
        Path(result.artifacts["data"]).read_bytes()


@pytest.mark.parametrize("damage, words", [
    (lambda raw: raw[:-40], "truncated bigBed (a whole file ends with the magic number"),
    (lambda raw: raw[:600] + bytes(800) + raw[1400:], "truncated or corrupt bigBed"),
    (lambda raw: raw[:30], "not a bigBed file (shorter than its 64-byte header)"),
    (lambda raw: b"\x26\xfc\x8f\x88" + raw[4:], "not a bigBed file (its first bytes are not the bigBed magic "
                                                 "number) (it is a bigWig)"),
])
def test_a_damaged_bigbed_is_an_input_error_in_the_users_terms(data, settings, store_dir, damage, words):
    good = samples.bigbed(data / "good.bb", records=200)
    path = data / "bad.bb"
    path.write_bytes(damage(good.read_bytes()))
    result = run_many([{"id": "b", "access_url": str(path), "format": "bigBed"}], settings=settings).results[0]
    assert result.error.class_ == "InputError" and result.error.message.startswith(f"bad.bb: {words}"), result
    assert store_files(store_dir) == []


def test_csi_when_a_coordinate_or_declared_contig_length_reaches_2_pow_29(data, settings):
    far = data / "far.bed"
    far.write_text(f"chr1\t10\t20\nchr1\t{2**29 + 5}\t{2**29 + 50}\n")
    result = build(far, "BED", settings)
    assert result.artifacts["index"].endswith(".csi") and result.records["index"] == "csi"
    assert len(all_records(result)) == 2
    declared = samples.vcf(data / "long.vcf", records=20, contigs={"chr1": 2**30, "chr2": 5000})
    assert build(declared, "VCF", settings).records["index"] == "csi"


def test_same_input_gives_identical_bytes_in_two_stores(data, settings, tmp_path):
    path = samples.vcf(data / "det.vcf", records=500)
    one = build(path, "VCF", settings)
    two = build(path, "VCF", settings, store=str(tmp_path / "second"))
    for kind in ("data", "index"):
        assert hashlib.sha256(Path(one.artifacts[kind]).read_bytes()).hexdigest() == \
            hashlib.sha256(Path(two.artifacts[kind]).read_bytes()).hexdigest()


VCF_HEADER_ONLY = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


@pytest.mark.parametrize("text, fmt", [("", "BED"), (VCF_HEADER_ONLY,
                                                    "VCF"), ("track name=empty\n\n", "BED")])
def test_empty_and_header_only_files_build_empty_indexed_artifacts(data, settings, text, fmt):
    path = data / f"empty.{fmt.lower()}"
    path.write_text(text)
    result = build(path, fmt, settings)
    assert result.status == "built" and result.records["in"] == result.records["out"] == 0
    assert all_records(result) == []


def _gz_truncated(data: Path) -> Path:
    raw = samples.write_gzip(data / "tr.bed.gz", samples.bed(data / "src.bed", records=3000).read_bytes())
    raw.write_bytes(raw.read_bytes()[:-200])
    return raw


@pytest.mark.parametrize("name, content, fmt, words", [
    ("space.bed", b"chr1 10 20\n", "BED", "line 1: 1 tab-separated column(s), expected at least 3 (space-delimited"),
    ("ragged.bed", b"chr1\t1\t5\tx\nchr1\t2\t6\n", "BED", "line 2: 3 columns, but line 1 has 4"),
    ("order.bed", b"chr1\t1\t5\nchr1\t9\t6\n", "BED", "line 2: start 9 is greater than end 6"),
    ("nonnum.bed", b"track x\nchr1\t1\t5\nchr1\tten\t20\n", "BED", "line 3: start 'ten' in column 2"),
    ("neg.bed", b"chr1\t-1\t5\n", "BED", "line 1: start '-1'"),
    ("zero.bed", b"chr1\t5\t6\nchr1\t0\t0\n", "BED", "line 2: start 0 and end 0: tabix cannot index"),
    ("few.narrowPeak", b"chr1\t1\t5\tp\t0\t.\t1\t1\t1\n", "narrowPeak",
     "9 tab-separated column(s), expected exactly 10"),
    ("pos.vcf", b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchr1\tX\t.\tA\tC\t1\t.\t.\n", "VCF",
     "line 2: start 'X' in column 2"),
    ("zero.gff3", b"##gff-version 3\nchr1\t.\tgene\t0\t10\t.\t+\t.\tID=a\n", "GFF3", "line 2: start 0"),
    ("huge.bed", f"chr1\t1\t{2**33}\n".encode(), "BED", "beyond what a tabix index can address"),
    # Where htslib's strtoll(base 0) and a plain reading of the digits disagree, refuse: "010" is octal 8
    # to tabix, so chr1:18-20 would find nothing while every count matched.
    ("octal.bed", b"chr1\t5\t9\nchr1\t010\t020\n", "BED", "line 2: start '010' in column 2 has a leading zero"),
    ("octal-end.bed", b"chr1\t10\t020\n", "BED", "line 1: end '020' in column 3 has a leading zero"),
    ("octal.gff3", b"##gff-version 3\nchr1\t.\tgene\t1\t0100\t.\t+\t.\tID=a\n", "GFF3",
     "line 2: end '0100' in column 5 has a leading zero"),
    ("octal.vcf", b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchr1\t012\t.\tA\tC\t1\t.\t.\n", "VCF",
     "line 2: start '012' in column 2 has a leading zero"),
    ("hex.bed", b"chr1\t0x10\t20\n", "BED", "line 1: start '0x10' in column 2 is not a non-negative integer"),
    ("plus.bed", b"chr1\t+10\t20\n", "BED", "line 1: start '+10' in column 2 is not a non-negative integer"),
    ("space-num.bed", b"chr1\t 10\t20\n", "BED", "line 1: start ' 10' in column 2 is not"),
    ("trailing.gff3", b"chr1\t.\tgene\t1\t10 \t.\t+\t.\tID=a\n", "GFF3", "line 1: end '10 ' in column 5 is not"),
    ("long.bed", b"chr1\t1\t" + b"9" * 30 + b"\n", "BED", "beyond what a tabix index can address"),
    ("end-octal.vcf", b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchr1\t5\t.\tA\t<DEL>\t1\t.\tSVLEN=5;END=010\n",
     "VCF", "line 2: INFO/END '010' has a leading zero"),
    ("end-text.vcf", b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchr1\t5\t.\tA\t<DEL>\t1\t.\tEND=ten\n",
     "VCF", "line 2: INFO/END 'ten' in column 8 is not a positive integer"),
    ("end-before.vcf", b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchr1\t50\t.\tA\t<DEL>\t1\t.\tEND=9\n",
     "VCF", "line 2: INFO/END 9 is before POS 50"),
    ("end-huge.vcf", b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchr1\t5\t.\tA\t<DEL>\t1\t.\tEND=9" +
     b"0" * 12 + b"\n", "VCF", "coordinate 9000000000000 is beyond what a tabix index can address"),
    ("utf8.vcf", b"##fileformat=VCFv4.2\n##x=\xff\xfe\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n", "VCF",
     "line 2: header is not valid UTF-8"),
    ("binary.bed", b"chr1\t1\t2\n\x00\x00\x00", "BED", "binary content"),
])
def test_bad_text_fails_with_the_line_and_rule_and_leaves_nothing(data, settings, store_dir, name, content, fmt,
                                                                  words):
    path = data / name
    path.write_bytes(content)
    report = run_many([{"id": "bad", "access_url": str(path), "format": fmt}], settings=settings)
    result = report.results[0]
    assert result.status == "failed" and result.error.class_ == "InputError", result
    assert words in result.error.message and name in result.error.message
    assert store_files(store_dir) == []


def test_truncated_gzip_fails_as_input_error(data, settings, store_dir):
    doc = {"id": "t", "access_url": str(_gz_truncated(data)), "format": "BED"}
    result = run_many([doc], settings=settings).results[0]
    assert result.error.class_ == "InputError" and "truncated" in result.error.message
    assert store_files(store_dir) == []


@pytest.mark.parametrize("name, fmt, artifact", [("t.csv", "CSV", "data.csv"), ("t.tsv", "tsv", "data.tsv"),
                                                 ("t.bw", "bigWig", "data.bw")])
def test_csv_tsv_bigwig_are_committed_to_the_store_unchanged(data, settings, store_dir, name, fmt, artifact):
    path = samples.bigwig(data / name) if fmt == "bigWig" else (data / name)
    if fmt != "bigWig":
        path.write_text("a,b\n1,2\n")
    result = build(path, fmt, settings)
    assert result.status == "built" and result.key and list(result.artifacts) == ["data"]
    stored = Path(result.artifacts["data"])
    assert stored.name == artifact and stored.is_relative_to(store_dir) and stored.read_bytes() == path.read_bytes()
    assert Path(result.manifest).is_file() and path.exists()  # the user's file is copied, never moved
    assert build(path, fmt, settings).status == "cached"


def test_a_batch_of_every_format_builds_then_is_all_cached(tmp_path, settings):
    from preprocess.catalog import read_catalog

    manifest = samples.demo(tmp_path / "demo", reads=500, broken=False)
    first = run_many(read_catalog(manifest), settings=settings)
    assert {r.id: r.status for r in first.results if r.status != "built"} == {}
    assert {r.format for r in first.results} == {"SAM", "BAM", "VCF", "BED", "narrowPeak", "broadPeak", "GFF3", "GTF",
                                                 "bigBed", "bigWig", "TSV"}
    second = run_many(read_catalog(manifest), settings=settings)
    assert second.counts == {"built": 0, "cached": 11, "passthrough": 0, "failed": 0}
    assert [r.artifacts for r in second.results] == [r.artifacts for r in first.results]


def test_vcf_records_follow_the_header_contig_order_then_undeclared_by_name(data, settings):
    head = ["##fileformat=VCFv4.2", "##contig=<ID=chr2,length=1000>", "##contig=<ID=chr10,length=1000>",
            "##contig=<ID=chr1,length=1000>", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    body = [f"{c}\t{p}\t.\tA\tC\t.\t.\t." for c, p in
            [("chrZ", 5), ("chr1", 9), ("chr10", 3), ("chrA", 1), ("chr2", 7), ("chr1", 2), ("chr2", 1)]]
    path = data / "order.vcf"
    path.write_text("\n".join(head + body) + "\n")
    result = build(path, "VCF", settings)
    out = [line for line in lines(result.artifacts["data"]) if not line.startswith("#")]
    assert [tuple(line.split("\t")[:2]) for line in out] == [
        ("chr2", "1"), ("chr2", "7"), ("chr10", "3"), ("chr1", "2"), ("chr1", "9"), ("chrA", "1"), ("chrZ", "5")]
    assert lines(result.artifacts["data"])[: len(head)] == head


SV_HEAD = ("##fileformat=VCFv4.2\n##contig=<ID=chr1>\n##INFO=<ID=END,Number=1,Type=Integer,"
           "Description=\"End\">\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")


def test_structural_variants_are_indexed_by_info_end_with_csi_beyond_2_pow_29(data, settings):
    """A deletion's end is INFO/END, as htslib reads it: an END past 2^29 needs CSI, and a query inside the
    deleted span, far from POS, finds the record (the browser shows the whole deletion)."""
    path = data / "sv.vcf"
    path.write_text(SV_HEAD +
                    "chr1\t100\tdel1\tA\t<DEL>\t.\tPASS\tSVTYPE=DEL;END=5000\n"
                    "chr1\t200\tsnv\tA\tC\t.\tPASS\tSVEND=9;DP=3\n")
    small = build(path, "vcf", settings)
    assert small.artifacts["index"].endswith(".tbi")
    with pysam.TabixFile(small.artifacts["data"], index=small.artifacts["index"]) as tbx:
        assert [row.split("\t")[2] for row in tbx.fetch("chr1", 3000, 3001)] == ["del1"]
        assert [row.split("\t")[2] for row in tbx.fetch("chr1", 199, 200)] == ["del1", "snv"]  # SVEND is not END
    big = data / "sv-big.vcf"
    big.write_text(SV_HEAD + f"chr1\t100\tdel2\tA\t<DEL>\t.\tPASS\tEND={2**29 + 10}\n")
    result = build(big, "vcf", settings)
    assert result.artifacts["index"].endswith(".csi") and result.records["out"] == 1
    with pysam.TabixFile(result.artifacts["data"], index=result.artifacts["index"]) as tbx:
        assert [row.split("\t")[2] for row in tbx.fetch("chr1", 2**29, 2**29 + 1)] == ["del2"]


def test_gff3_attributes_in_utf8_and_other_bytes_are_kept_byte_for_byte(data, settings):
    """FlyBase writes en dashes and accents in attributes; other files carry Latin-1. Text is bytes."""
    rows = [b"##gff-version 3", b"chr1\t.\tgene\t1\t100\t.\t+\t.\tID=g1;Note=caf\xc3\xa9 \xe2\x80\x93 kinase",
            b"chr1\t.\tgene\t50\t300\t.\t-\t.\tID=g2;Note=Latin-1 \xe9", b"chr2\t.\tgene\t7\t9\t.\t+\t.\tID=g3"]
    path = data / "utf8.gff3"
    path.write_bytes(b"\n".join(rows) + b"\n")
    result = build(path, "GFF3", settings)
    assert result.records["in"] == result.records["out"] == 3
    with gzip.open(result.artifacts["data"], "rb") as stream:
        assert stream.read().split(b"\n")[:-1] == rows
    with pysam.TabixFile(result.artifacts["data"], index=result.artifacts["index"], encoding="utf-8") as tbx:
        assert [row.split("\t")[8] for row in tbx.fetch("chr1", 0, 10)] == ["ID=g1;Note=café – kinase"]


def test_an_error_in_a_downloaded_file_names_the_users_file_and_line(tmp_path, settings):
    from tests.servers import FileServer

    with FileServer() as server:
        url = server.add("peaks.bed", b"chr1\t5\t9\nchr1\t7\t3\n")
        result = run_many([{"id": "d", "access_url": url + "?sig=x", "format": "BED"}], settings=settings).results[0]
    assert result.error.class_ == "InputError"
    assert result.error.message.startswith("peaks.bed: line 2: start 7 is greater than end 3"), result.error.message


def test_a_bigbed_record_tabix_cannot_index_is_named_by_its_content_not_an_intermediate(data, settings):
    import pybigtools

    path = data / "ragged.bb"
    pybigtools.open(str(path), "w").write({"chr1": 1000}, [("chr1", 5, 9, "a\t1"), ("chr1", 10, 20, "b")])
    result = run_many([{"id": "z", "access_url": str(path), "format": "bigBed"}], settings=settings).results[0]
    assert result.error.class_ == "InputError"
    assert result.error.message == ("ragged.bb: the bigBed record 'chr1 10 20 b': 4 columns, but the bigBed record "
                                    "'chr1 5 9 a 1' has 5 (ragged rows)")


def test_a_record_the_index_does_not_reach_is_named_by_its_line_in_the_users_file(data, tmp_path):
    """The last guard behind the validator: when htslib reads a record otherwise (as it did `010`), the count
    through the index falls short and the error names the first record missing and its line."""
    from pipelines.interval_checks import unreachable as _unreachable

    source = data / "src.bed"
    source.write_text("track name=x\nchr2\t1\t5\nchr1\t1\t5\nchr2\t9\t12\n")
    out = tmp_path / "sorted.bed.gz"
    plain = tmp_path / "sorted.bed"
    plain.write_text("track name=x\nchr1\t1\t5\nchr2\t1\t5\nchr2\t9\t12\n")
    samples.bgzip(plain, out)
    subprocess.run(["tabix", "-p", "bed", "-S", "1", str(out)], check=True)
    # as if chr2's records were out of the index's reach
    error = _unreachable(source, out, ["chr1"], 1, 3, 1, "src.bed", lambda n: f"line {n}")
    assert str(error) == ("src.bed: line 2: not reachable through the tabix index, which reads it otherwise "
                          "('chr2\\t1\\t5'); 3 records read, 1 reachable through the tabix index")


def test_the_validator_script_runs_on_its_own(tmp_path):
    """pipelines/scripts/validate.awk is a program of its own: data lines through, header and counts aside."""
    from pipelines.streaming import VALIDATE_AWK
    from pipelines.tabix_index import TABIX_MAX

    env = {"PP_HDR": tmp_path / "h", "PP_HDRNR": tmp_path / "n", "PP_ERR": tmp_path / "e", "PP_STATS": tmp_path / "s",
           "PP_KIND": "bed", "PP_MINCOL": 3, "PP_EXACT": 0, "PP_START": 2, "PP_END": 3, "PP_MAX": TABIX_MAX}
    run = subprocess.run(["awk", "-f", str(VALIDATE_AWK)], input=b"track x\nchr2\t5\t9\n\nchr1\t1\t2\r\n",
                         capture_output=True, env={"LC_ALL": "C", **{k: str(v) for k, v in env.items()}}, check=True)
    assert run.stdout == b"chr2\t5\t9\nchr1\t1\t2\n"
    assert (tmp_path / "h").read_bytes() == b"track x\n" and (tmp_path / "n").read_text() == "1\n"
    assert "records\t2\nblank\t1\ntrack\t1\n" in (tmp_path / "s").read_text()
    bad = subprocess.run(["awk", "-f", str(VALIDATE_AWK)], input=b"chr1\t010\t20\n", capture_output=True,
                         env={k: str(v) for k, v in env.items()}, check=False)
    assert bad.returncode == 3 and (tmp_path / "e").read_text().startswith("line 1: start '010' in column 2 has")
