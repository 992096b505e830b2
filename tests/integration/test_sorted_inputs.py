"""Already sorted interval files skip `sort` (or, BGZF and canonical, are their own output), and every
path gives the sorting path's bytes: one key, one set of bytes, whichever path the content takes."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from pipelines import intervals
from pipelines.base import BuildContext, BuildSettings
from preprocess.errors import InputError
from tests import samples

CONTIGS = {"chr2": 40_000, "chr10": 30_000, "chr1": 50_000}  # header order is not name order
FORMATS = {"bed": intervals.BED, "narrowpeak": intervals.NARROWPEAK, "vcf": intervals.VCF, "gff3": intervals.GFF3}


def build(spec: intervals.IntervalFormat, source: Path, work: Path, paths: tuple[str, ...] = intervals.PATHS,
          level: int = 6, threads: int = 1):
    """Build `source` in a fresh work directory: the data and index bytes and the records."""
    work.mkdir()
    settings = BuildSettings(compression_level=level, threads=threads)
    ctx = BuildContext(source=source, format=spec.name, workdir=work, settings=settings)
    output = intervals.build_intervals(spec, ctx, source, paths=paths)
    return output.artifacts["data"].read_bytes(), output.artifacts["index"].read_bytes(), output.records


def unsorted_sample(name: str, path: Path) -> Path:
    return {"bed": lambda: samples.bed(path, records=400),
            "narrowpeak": lambda: samples.narrowpeak(path, records=300),
            "vcf": lambda: samples.vcf(path, records=400, contigs=CONTIGS),
            "gff3": lambda: samples.gff3(path, genes=60)}[name]()


def sorted_text(name: str, tmp_path: Path) -> bytes:
    """What the sorting path writes for a sample of the format, decompressed: a sorted input."""
    source = unsorted_sample(name, tmp_path / f"unsorted.{name}")
    data, _, records = build(FORMATS[name], source, tmp_path / "made", paths=("sort",))
    assert records["path"] == "sort"
    return gzip.decompress(data)


@pytest.mark.parametrize("name", FORMATS)
def test_a_sorted_text_skips_sort_and_gives_the_sorting_paths_bytes(tmp_path, name):
    source = tmp_path / f"in.{name}"
    source.write_bytes(sorted_text(name, tmp_path))
    if name == "vcf":  # records follow the ##contig order, which is not the names' order
        contigs = [line.split(b"\t")[0] for line in source.read_bytes().splitlines() if not line.startswith(b"#")]
        assert list(dict.fromkeys(contigs)) == [b"chr2", b"chr10", b"chr1"]
    skipped = build(FORMATS[name], source, tmp_path / "skip")
    sorted_ = build(FORMATS[name], source, tmp_path / "sort", paths=("sort",))
    assert skipped[2]["path"] == "stream" and sorted_[2]["path"] == "sort"
    assert skipped[:2] == sorted_[:2]  # data and index, byte for byte
    assert skipped[2]["in"] == skipped[2]["out"] == sorted_[2]["out"] > 0


@pytest.mark.parametrize("name", FORMATS)
def test_a_sorted_canonical_bgzf_input_is_its_own_output(tmp_path, name):
    """Compressed at another level than the pipeline's, its bytes are still the output: a function of the input."""
    plain = tmp_path / f"in.{name}"
    plain.write_bytes(sorted_text(name, tmp_path))
    source = tmp_path / f"in.{name}.gz"
    with open(source, "wb") as target:
        subprocess.run(["bgzip", "-c", "-l", "1", str(plain)], stdout=target, check=True)
    data, index, records = build(FORMATS[name], source, tmp_path / "reuse")
    assert records["path"] == "input" and data == source.read_bytes()
    assert records["in"] == records["out"] > 0
    again = build(FORMATS[name], source, tmp_path / "again", level=9)
    assert again[:2] == (data, index)


@pytest.mark.parametrize("damage", ["no final newline", "CRLF", "a blank line", "no EOF block"])
def test_a_sorted_bgzf_input_that_is_not_canonical_is_streamed_to_the_sorting_paths_bytes(tmp_path, damage):
    text = sorted_text("bed", tmp_path)
    text = {"no final newline": text.rstrip(b"\n"), "CRLF": text.replace(b"\n", b"\r\n"),
            "a blank line": text.replace(b"\n", b"\n\n", 1), "no EOF block": text}[damage]
    plain = tmp_path / "in.bed"
    plain.write_bytes(text)
    source = samples.bgzip(plain, tmp_path / "in.bed.gz")
    if damage == "no EOF block":
        source.write_bytes(source.read_bytes()[:-28])
    streamed = build(intervals.BED, source, tmp_path / "stream")
    sorted_ = build(intervals.BED, source, tmp_path / "sort", paths=("sort",))
    # in order with no EOF block: checked and written in memory; the rest the validator remarks on
    assert streamed[2]["path"] == "stream"
    assert streamed[:2] == sorted_[:2]
    assert streamed[0] != source.read_bytes()


@pytest.mark.parametrize("text, path", [
    (b"chr1\t10\t20\ta\nchr1\t10\t15\tb\n", "columnar"),      # a tie on start, ends out of order
    (b"chr1\t10\t15\ta\nchr1\t10\t15\tb\nchr1\t10\t15\t0\n", "stream"),  # full ties keep input order
    (b"10\t5\t9\n9\t1\t2\n", "stream"),                       # contig names compare as text: "10" < "9"
    (b"9\t5\t9\n10\t1\t2\n", "columnar"),
    (b"1\t5\t9\n1.0\t1\t2\n", "stream"),                      # "1" and "1.0" are two contigs
    (b"chr1\t5\t9\nchr2\t1\t2\nchr1\t20\t30\n", "columnar"), # a contig in two blocks
    (b"chr1\t5\t9\n#comment\nchr1\t20\t30\n", "sort"),       # a header line after data moves up (streaming pass)
])
def test_the_order_check_is_sorts_order_exactly(tmp_path, text, path):
    source = tmp_path / "in.bed"
    source.write_bytes(text)
    natural = build(intervals.BED, source, tmp_path / "natural")
    sorted_ = build(intervals.BED, source, tmp_path / "sort", paths=("sort",))
    assert natural[2]["path"] == path and natural[:2] == sorted_[:2]
    assert natural[2]["contigs"] == len({line.split(b"\t")[0] for line in text.splitlines() if b"\t" in line})


def test_gff_ties_on_start_keep_input_order_and_vcf_header_order_decides(tmp_path):
    gff = tmp_path / "in.gff3"
    gff.write_bytes(b"##gff-version 3\nc1\t.\tgene\t5\t90\t.\t+\t.\tID=g\nc1\t.\tmRNA\t5\t20\t.\t+\t.\tParent=g\n")
    assert build(intervals.GFF3, gff, tmp_path / "gff")[2]["path"] == "stream"  # sort's key is the start alone
    head = (b"##fileformat=VCFv4.2\n##contig=<ID=chrB>\n##contig=<ID=chrA>\n"
            b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
    vcf = tmp_path / "in.vcf"
    for order, path in (((b"chrB", b"chrA"), "stream"), ((b"chrA", b"chrB"), "columnar")):
        vcf.write_bytes(head + b"".join(c + b"\t5\t.\tA\tG\t.\t.\t.\n" for c in order))
        got = build(intervals.VCF, vcf, tmp_path / f"vcf-{path}")
        assert got[2]["path"] == path
        assert got[:2] == build(intervals.VCF, vcf, tmp_path / f"vcf-{path}-sort", paths=("sort",))[:2]


@pytest.mark.parametrize("compress", ["plain", "bgzf"])
def test_a_bad_line_after_the_order_breaks_is_named_as_the_sorting_path_names_it(tmp_path, compress):
    """Each path stops at its first finding; the first bad line is named whichever path found it."""
    plain = tmp_path / "in.bed"
    plain.write_bytes(b"chr2\t1\t5\nchr1\t1\t5\nchr1\tx\t9\n")
    source = plain if compress == "plain" else samples.bgzip(plain, tmp_path / "in.bed.gz")
    with pytest.raises(InputError, match=r"in\.bed(\.gz)?: line 3: start 'x' in column 2 is not a non-negative"):
        build(intervals.BED, source, tmp_path / "w")


def test_the_manifest_says_which_path_ran(tmp_path, settings):
    import preprocess

    source = tmp_path / "in.bed"
    source.write_bytes(b"chr1\t1\t5\nchr1\t3\t9\n")
    result = preprocess.run({"id": "in", "access_url": str(source), "format": "BED"}, settings=settings)
    assert result.records["path"] == "stream"


# Two validators at once on the halves of a plain text (threads >= 2, forced here on small files by
# SPLIT_MIN = 0): the same bytes and the same first finding as one validator on the whole file.
VCF_HEAD = (b"##fileformat=VCFv4.2\n##contig=<ID=chrB>\n##contig=<ID=chrA>\n"
            b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")


def split_and_whole(spec, source: Path, tmp_path: Path, monkeypatch):
    """The build with the text split in two, then with one validator (threads 1), as (bytes, records) or errors."""
    monkeypatch.setattr(intervals, "SPLIT_MIN", 0)
    assert intervals.split_point(source, spec, 2) > 0
    results = []
    for threads in (2, 1):
        try:
            data, index, records = build(spec, source, tmp_path / f"t{threads}", paths=("sort",), threads=threads)
            results.append((data, index, records))
        except InputError as exc:
            results.append(str(exc))
    return results


@pytest.mark.parametrize("name", ["bed", "narrowpeak", "vcf"])
def test_a_text_validated_in_two_parts_gives_the_same_bytes(tmp_path, monkeypatch, name):
    source = unsorted_sample(name, tmp_path / f"in.{name}")
    split, whole = split_and_whole(FORMATS[name], source, tmp_path, monkeypatch)
    assert split == whole and split[2]["in"] > 0


@pytest.mark.parametrize("lines, found", [
    ([b"chr1\t5\t9\n"] * 6 + [b"chr1\t9\t5\n"], "line 7: start 9 is greater than end 5"),
    ([b"chr1\t5\t9\n"] * 6 + [b"chr1\t1\t2\tx\n"], "line 7: 4 columns, but line 1 has 3 (ragged rows)"),
    ([b"chr1\t5\t9\tx\n"] * 3 + [b"chr1\t5\t9\n"] * 4, "line 4: 3 columns, but line 1 has 4 (ragged rows)"),
])
def test_a_bad_line_in_either_part_is_named_by_its_line_in_the_file(tmp_path, monkeypatch, lines, found):
    source = tmp_path / "in.bed"
    source.write_bytes(b"".join(lines))
    split, whole = split_and_whole(intervals.BED, source, tmp_path, monkeypatch)
    assert split == whole == f"in.bed: {found}"


def test_header_lines_in_the_second_part_keep_their_order_and_a_late_contig_line_is_found(tmp_path, monkeypatch):
    bed = tmp_path / "in.bed"
    bed.write_bytes(b"#top\nchr2\t5\t9\nchr1\t5\t9\nchr1\t1\t2\n#late comment\nchr1\t3\t4\nchr2\t1\t2\n")
    (tmp_path / "bed").mkdir()
    split, whole = split_and_whole(intervals.BED, bed, tmp_path / "bed", monkeypatch)
    assert split == whole and gzip.decompress(split[0]).startswith(b"#top\n#late comment\nchr1\t1\t2\n")
    vcf = tmp_path / "in.vcf"  # a ##contig line after data: the second part does not rank by it alone
    vcf.write_bytes(VCF_HEAD + b"chrC\t5\t.\tA\tG\t.\t.\t.\nchrA\t5\t.\tA\tG\t.\t.\t.\n##contig=<ID=chrC>\n"
                    b"chrC\t7\t.\tA\tG\t.\t.\t.\nchrB\t9\t.\tA\tG\t.\t.\t.\nchrC\t1\t.\tA\tG\t.\t.\t.\n")
    (tmp_path / "vcf").mkdir()
    split, whole = split_and_whole(intervals.VCF, vcf, tmp_path / "vcf", monkeypatch)
    assert split == whole == "in.vcf: not a VCF: the header must begin with ##fileformat=VCF and end with the " \
        "#CHROM line (VCF readers refuse a file without them)"



@pytest.mark.parametrize("name", FORMATS)
def test_a_plainly_unsorted_start_goes_straight_to_the_sort_with_the_same_bytes(tmp_path, name):
    """First lines already out of order: the sorting path (in memory, for a plain text) runs without a
    streaming attempt (fewer processes for a small file) and gives what the forced streaming sort gives;
    a sorted start is left to the streaming check."""
    source = unsorted_sample(name, tmp_path / f"in.{name}")
    assert intervals.plainly_unsorted(source, FORMATS[name])
    auto = build(FORMATS[name], source, tmp_path / "auto")
    forced = build(FORMATS[name], source, tmp_path / "sort", paths=("sort",))
    assert auto[2]["path"] == "columnar" and auto[:2] == forced[:2]
    assert {k: v for k, v in auto[2].items() if k != "path"} == {k: v for k, v in forced[2].items() if k != "path"}
    ordered = tmp_path / f"sorted.{name}"
    ordered.write_bytes(sorted_text(name, tmp_path))
    assert not intervals.plainly_unsorted(ordered, FORMATS[name])


@pytest.mark.parametrize("text", [b"chr1\t010\t20\nchr1\t5\t9\n", b"chr1\t+10\t20\nchr1\t5\t9\n",
                                  b"chr1\t10\n", b"chr1 10 20\nchr1 5 9\n"])
def test_the_quick_look_does_not_judge_what_the_validator_refuses(tmp_path, text):
    """A line it cannot read as the validator would (octal-looking, signed, short, space-separated) leaves
    the decision, and the error message, to the validator."""
    source = tmp_path / "odd.bed"
    source.write_bytes(text)
    assert not intervals.plainly_unsorted(source, intervals.BED)
    with pytest.raises(InputError):
        build(intervals.BED, source, tmp_path / "work")


def test_a_text_in_natural_contig_order_is_seen_unsorted_past_its_first_lines(tmp_path):
    """chr1 ... chr2 ... chr10: in order for a person, not for `sort` (chr10 before chr2), and its first
    64 KiB are all chr1. Lines sampled across a plain text find it, so no early compression of a text
    that must be sorted; the bytes are the sorting path's either way. A sorted text, and one whose
    sampled lines fall in a GFF3 ##FASTA section, are not called unsorted."""
    rows = [f"chr{c}\t{p * 100}\t{p * 100 + 50}\tf{c}.{p}\n" for c in (1, 2, 10) for p in range(4000)]
    natural = tmp_path / "natural.bed"
    natural.write_text("".join(rows))
    assert intervals.plainly_unsorted(natural, intervals.BED)
    auto = build(intervals.BED, natural, tmp_path / "auto")
    forced = build(intervals.BED, natural, tmp_path / "sort", paths=("sort",))
    assert auto[2]["path"] == "columnar" and auto[:2] == forced[:2]
    ordered = tmp_path / "ordered.bed"
    ordered.write_text("".join(sorted(rows, key=lambda row: (row.split("\t")[0].encode(), int(row.split("\t")[1])))))
    assert not intervals.plainly_unsorted(ordered, intervals.BED)
    gff = tmp_path / "tail.gff3"
    gff.write_text("##gff-version 3\n" + "".join(f"chr1\t.\tgene\t{p * 10 + 1}\t{p * 10 + 5}\t.\t+\t.\tID=g{p}\n"
                                                  for p in range(3000))
                   + "##FASTA\n>chr1\n" + "ACGT" * 60 * 2000)
    assert not intervals.plainly_unsorted(gff, intervals.GFF3)
