"""SAM/BAM through the real samtools and pysam: sorted, indexed, checked, cached, deterministic."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pysam
import pytest

import preprocess
from preprocess.api import run_many
from tests import samples
from tests.conftest import md5, store_files


def positions(bam: str) -> list[tuple[int, int]]:
    with pysam.AlignmentFile(bam) as aln:
        return [(r.reference_id if r.reference_id >= 0 else 1 << 30, r.reference_start) for r in aln]


def test_sam_becomes_sorted_bam_with_bai_then_is_cached(data, settings, store_dir):
    sam = samples.sam(data / "s1.sam", reads=3000)
    doc = {"id": "s1", "access_url": str(sam), "format": "SAM", "md5": md5(sam)}
    result = preprocess.run(doc, settings=settings)
    assert result.status == "built" and result.format == "SAM" and len(result.key) == 64
    bam, bai = result.artifacts["data"], result.artifacts["index"]
    assert bam.endswith(".bam") and bai == bam + ".bai" and Path(bam).is_absolute()
    order = positions(bam)
    assert order == sorted(order) and len(order) == 3020
    with pysam.AlignmentFile(bam) as aln:
        assert aln.header.to_dict()["HD"]["SO"] == "coordinate"
        assert "PG" not in aln.header.to_dict()  # --no-PG: no temp paths or versions in the header
        assert aln.check_index() and aln.mapped == 3000 and aln.unmapped == 20
    assert result.records == {"in": 3020, "out": 3020, "index": "bai", "references": 3, "path": "sort"}
    files_after_build = {p: p.stat().st_mtime_ns for p in store_files(store_dir)}

    again = preprocess.run(doc, settings=settings)
    assert again.status == "cached" and again.key == result.key and again.artifacts == result.artifacts
    assert {p: p.stat().st_mtime_ns for p in store_files(store_dir)} == files_after_build


def test_doc_without_md5_gets_the_same_key_after_hashing(data, settings):
    bam = samples.bam(data / "s2.bam", reads=500)
    first = preprocess.run({"id": "a", "access_url": str(bam), "format": "bam"}, settings=settings)
    second = preprocess.run({"id": "b", "access_url": str(bam), "md5": md5(bam)}, settings=settings)
    assert first.status == "built" and second.status == "cached" and first.key == second.key


def test_reference_of_2_pow_29_or_more_gets_a_csi_index(data, settings):
    big = {"chr1": 2**29 + 1000, "chr2": 5000}
    sam = samples.sam(data / "big.sam", reads=400, contigs=big)
    result = preprocess.run({"id": "big", "access_url": str(sam), "format": "SAM"}, settings=settings)
    assert result.artifacts["index"].endswith(".bam.csi") and result.records["index"] == "csi"
    with pysam.AlignmentFile(result.artifacts["data"], index_filename=result.artifacts["index"]) as aln:
        tail = [r for r in aln.fetch("chr1", 2**29 - 5000, 2**29 + 1000)]
        assert all(r.reference_start >= 2**29 - 5100 for r in tail)


def test_two_builds_in_two_stores_give_identical_bytes(data, settings, tmp_path):
    sam = samples.sam(data / "d.sam", reads=2000)
    doc = {"id": "d", "access_url": str(sam), "format": "SAM"}
    one = preprocess.run(doc, settings=settings)
    two = preprocess.run(doc, settings=settings, store=str(tmp_path / "other-store"))
    assert two.status == "built" and one.key == two.key
    for kind in ("data", "index"):
        assert (hashlib.sha256(Path(one.artifacts[kind]).read_bytes()).digest()
                == hashlib.sha256(Path(two.artifacts[kind]).read_bytes()).digest())


def _truncated_bam(data: Path) -> Path:
    bam = samples.bam(data / "t.bam", reads=2000)
    raw = bam.read_bytes()
    bam.write_bytes(raw[: len(raw) // 2])
    return bam


def _corrupt_bam(data: Path) -> Path:
    bam = samples.bam(data / "c.bam", reads=2000)
    raw = bytearray(bam.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = b"\xff" * 64
    bam.write_bytes(bytes(raw))
    return bam


def _corrupt_header_bam(data: Path) -> Path:
    """A BAM whose first block (its header) does not inflate: quickcheck fails, and so does the header's read
    beside it; the damage is the cause named."""
    bam = samples.bam(data / "ch.bam", reads=2000)
    raw = bytearray(bam.read_bytes())
    raw[40:72] = b"\xff" * 32
    bam.write_bytes(bytes(raw))
    return bam


def _broken_header(data: Path) -> Path:
    path = data / "h.sam"
    path.write_text("@HD\tVN:1.6\n@SQ\tSN:chr1\tLN:notanumber\nr1\t0\tchr1\t1\t60\t4M\t*\t0\t0\tACGT\tIIII\n")
    return path


HEADER = "@HD\tVN:1.6\n@SQ\tSN:chr1\tLN:1000\n"


def _text(name: str, text: str):
    def make(data: Path) -> Path:
        (data / name).write_text(text)
        return data / name
    return make


def _binary_as_sam(data: Path) -> Path:
    path = data / "x.sam"
    path.write_bytes(b"\x00\x01\x02 not sam at all \xff" * 50)
    return path


@pytest.mark.parametrize("make, fmt, cls, words", [
    (lambda d: d / "missing.sam", "SAM", "InputError", "does not exist"),
    (_truncated_bam, "BAM", "InputError", "truncated or corrupt"),
    (_corrupt_bam, "BAM", "InputError", "c.bam"),
    (_corrupt_header_bam, "BAM", "InputError", "BAM is truncated or corrupt (samtools quickcheck failed"),
    (_broken_header, "SAM", "InputError", "header"),
    (_binary_as_sam, "SAM", "InputError", "not SAM or BAM"),
    (_text("empty.sam", ""), "SAM", "InputError", "header"),
    (_text("undeclared.sam", HEADER + "r1\t0\tchrZ\t5\t60\t4M\t*\t0\t0\tACGT\tIIII\n"), "SAM", "InputError",
     'reference "chrZ", which no @SQ line declares'),
    (_text("badcigar.sam", HEADER + "r1\t0\tchr1\t5\t60\t4M\t*\t0\t0\tACG\tIIII\n"), "SAM", "InputError",
     "Parse error at line 3"),
    (lambda d: samples.sam(d / "u.sam", reads=10), "FAST5", "InputError", "unknown format 'FAST5'"),
    (lambda d: samples.sam(d / "s.cram", reads=10), "CRAM", "InputError", "not a CRAM file"),
])
def test_bad_input_fails_classified_naming_the_file_and_leaves_nothing(data, settings, store_dir, make, fmt, cls,
                                                                          words):
    path = make(data)
    good = samples.sam(data / "good.sam", reads=100)
    report = run_many([{"id": "bad", "access_url": str(path), "format": fmt},
                       {"id": "good", "access_url": str(good), "format": "SAM"}], settings=settings)
    bad, ok = report.results
    assert bad.status == "failed" and bad.error.class_ == cls
    assert words in bad.error.message and (path.name in bad.error.message or fmt in bad.error.message)
    assert ok.status == "built"  # the batch went on
    assert all(ok.key in str(p) for p in store_files(store_dir))  # nothing of the bad file in the store


def test_a_bam_with_a_damaged_header_is_named_without_htslibs_own_errors(data, settings, capfd):
    """quickcheck's verdict comes before the header is read: pysam and htslib would print errors of their
    own (a CRC mismatch, an exception ignored in a destructor) before ours."""
    with pytest.raises(preprocess.InputError, match="ch.bam: BAM is truncated or corrupt .samtools quickcheck"):
        preprocess.run({"id": "ch", "access_url": str(_corrupt_header_bam(data)), "format": "BAM"}, settings=settings)
    printed = capfd.readouterr().err
    assert "[E::" not in printed and "Exception ignored" not in printed, printed


def test_header_only_sam_and_gzipped_sam_build(data, settings):
    empty = _text("header.sam", HEADER)(data)
    result = preprocess.run({"id": "h", "access_url": str(empty), "format": "SAM"}, settings=settings)
    assert result.status == "built" and result.records["in"] == result.records["out"] == 0
    zipped = samples.write_gzip(data / "reads.sam.gz", samples.sam(data / "reads.sam", reads=200).read_bytes())
    result = preprocess.run({"id": "z", "access_url": str(zipped)}, settings=settings)  # format from the name
    assert result.format == "SAM" and result.records["out"] == 220


def test_unaligned_bam_and_bam_with_no_records_build_valid_indexed_bams(data, settings):
    """PacBio HiFi and GATK uBAMs have no @SQ lines (samtools quickcheck needs -u for them); a BAM
    may also hold a header and no records. Both become a BAM with its index, counts matching."""
    hifi = samples.unaligned_bam(data / "movie.hifi_reads.bam", reads=300)
    result = preprocess.run({"id": "hifi", "access_url": str(hifi)}, settings=settings)
    assert result.status == "built" and result.records == {"in": 300, "out": 300, "index": "bai", "references": 0,
                                                        "path": "sorted-input"}
    with pysam.AlignmentFile(result.artifacts["data"], index_filename=result.artifacts["index"],
                             check_sq=False) as aln:
        assert aln.nocoordinate == 300 and aln.header.to_dict()["RG"][0]["PL"] == "PACBIO"
        assert [r.query_name for r in aln.fetch(until_eof=True)][:1] == ["m64011_190830_220126/0/ccs"]
    subprocess.run(["samtools", "quickcheck", "-u", result.artifacts["data"]], check=True)

    empty = samples.empty_bam(data / "empty.bam")
    result = preprocess.run({"id": "empty", "access_url": str(empty)}, settings=settings)
    assert result.status == "built" and result.records == {"in": 0, "out": 0, "index": "bai", "references": 3,
                                                        "path": "sorted-input"}
    with pysam.AlignmentFile(result.artifacts["data"], index_filename=result.artifacts["index"]) as aln:
        assert aln.check_index() and list(aln.fetch("chr1")) == [] and aln.references == ("chr1", "chr2", "chrX")


@pytest.mark.parametrize("name, text, words", [
    ("undeclared.sam", HEADER + "r0\t0\tchr1\t5\t60\t4M\t*\t0\t0\tACGT\tIIII\n"
     "r1\t0\tchrZ\t5\t60\t4M\t*\t0\t0\tACGT\tIIII\n", 'line 4: a record names reference "chrZ"'),
    ("badcigar.sam", HEADER + "r1\t0\tchr1\t5\t60\t4M\t*\t0\t0\tACG\tIIII\n", "Parse error at line 3"),
    ("notsam.bam", "just text, no tabs\n", "not SAM or BAM"),
])
def test_an_input_error_names_the_users_file_not_the_downloaded_copy(settings, name, text, words):
    from tests.servers import FileServer

    with FileServer() as server:
        url = server.add(name, text.encode())
        report = run_many([{"id": "x", "access_url": url}], settings=settings)
    error = report.results[0].error
    assert error is not None and error.class_ == "InputError"
    assert error.message.startswith(f"{name}: ") and words in error.message and "source" not in error.message


def test_md5_mismatch_is_an_input_error_and_run_raises_it(data, settings, store_dir):
    sam = samples.sam(data / "m.sam", reads=50)
    with pytest.raises(preprocess.InputError, match="md5 mismatch for .*m.sam"):
        preprocess.run({"id": "m", "access_url": str(sam), "format": "SAM", "md5": "0" * 32}, settings=settings)
    assert store_files(store_dir) == []


def test_a_local_source_hashed_beside_the_build_names_the_mismatch_first_and_records_its_hashes(data, settings,
                                                                                               store_dir):
    """A local document with an md5 is hashed on a thread while it builds: a wrong claim on a file that also
    fails to parse is reported as the md5 mismatch (the cause); a right one records both hashes."""
    bad = data / "bad.sam"
    bad.write_text("@SQ\tSN:chr1\tLN:1000\nr1\t0\tchr1\tx\t60\t4M\t*\t0\t0\tACGT\tIIII\n")
    with pytest.raises(preprocess.InputError, match="md5 mismatch"):
        preprocess.run({"id": "b", "access_url": str(bad), "format": "SAM", "md5": "0" * 32}, settings=settings)
    assert store_files(store_dir) == []
    sam = samples.sam(data / "ok.sam", reads=50)
    built = preprocess.run({"id": "o", "access_url": str(sam), "format": "SAM", "md5": md5(sam)}, settings=settings)
    manifest = json.loads(Path(built.manifest).read_text())
    assert manifest["source"]["sha256"] == hashlib.sha256(sam.read_bytes()).hexdigest()
    assert manifest["source"]["md5"] == md5(sam) and manifest["source"]["size"] == sam.stat().st_size


def test_run_uses_the_notebooks_connected_client_rather_than_starting_a_cluster(data, store_dir, tmp_path):
    from distributed import Client, LocalCluster

    from preprocess.config import load_settings

    settings = load_settings(**{"store.url": str(store_dir), "scratch": str(tmp_path)})  # profile: local
    sam = samples.sam(data / "nb.sam", reads=300)
    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        result = preprocess.run({"id": "nb", "access_url": str(sam), "format": "SAM"}, settings=settings)
        ran = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    assert result.status == "built" and "sort_bam" in ran
