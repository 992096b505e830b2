"""The in-memory pass (pipelines/columnar.py) writes the streaming sort's bytes, and leaves every input the
validator would remark on to the streaming pass, which names the first bad line exactly as before."""

from __future__ import annotations

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
    work.mkdir()
    ctx = BuildContext(source=source, format=spec.name, workdir=work, settings=BuildSettings(**settings))  # type: ignore[arg-type]
    try:
        output = intervals.build_intervals(spec, ctx, source, paths=paths)
    except InputError as exc:
        return str(exc)
    return output.artifacts["data"].read_bytes(), output.artifacts["index"].read_bytes(), output.records


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
