"""What the genome browsers read: every artifact of a batch in S3 (moto), read over HTTP byte ranges
through signed URLs by the readers JBrowse and IGV.js use (@gmod/bam, @gmod/cram, @gmod/tabix, run by
node), must give back, one whole reference sequence at a time, every record the manifest counts."""

from __future__ import annotations

import collections
import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path

import pysam
import s3fs

import preprocess
from preprocess.api import run_many
from preprocess.config import load_settings
from tests import samples
from tests.integration.test_pins import BIG, _csi_vcf

ROOT = Path(__file__).resolve().parents[2]
READERS = ROOT / ".tools" / "node_modules"
SCRIPT = ROOT / "tests" / "browser_readers.cjs"


def node_readers() -> str:
    """node, with the readers `make test` installs into .tools (npm: @gmod/bam, @gmod/cram, @gmod/tabix)."""
    node = shutil.which("node")
    if node is None or not (READERS / "@gmod" / "cram").is_dir():
        raise RuntimeError("node or the @gmod readers are missing: `make test` installs them into .tools")
    return node


def batch_sources(data: Path, reference_url: str) -> list[dict[str, str]]:
    """One document per built format and index kind: what a catalogue of real files holds."""
    ref_dir = data / "ref"
    ref_dir.mkdir()
    reference = samples.fasta(ref_dir / "ref.fa")
    files = [
        ("bam", "BAM", samples.bam(data / "a.bam", reads=1500), {}),
        ("bam-csi", "SAM", samples.sam(data / "big.sam", reads=400, contigs=BIG), {}),
        ("cram", "CRAM", samples.cram(data / "a.cram", reference, reads=1200), {"reference": reference_url}),
        ("cram-embedded", "CRAM", samples.cram(data / "e.cram", reference, reads=800, embed=True), {}),
        ("vcf", "VCF", samples.vcf(data / "a.vcf", records=400), {}),
        ("vcf-csi", "VCF", _csi_vcf(data / "sv.vcf"), {}),
        ("bed", "BED", samples.bed(data / "a.bed", records=400), {}),
        ("narrowpeak", "narrowPeak", samples.narrowpeak(data / "a.narrowPeak"), {}),
        ("broadpeak", "broadPeak", samples.narrowpeak(data / "a.broadPeak", broad=True), {}),
        ("gff3", "GFF3", samples.gff3(data / "a.gff3"), {}),
        ("gtf", "GTF", samples.gtf(data / "a.gtf"), {}),
        ("bigbed", "bigBed", samples.bigbed(data / "a.bb"), {}),
    ]
    return [{"id": doc_id, "access_url": str(path), "format": fmt, **more} for doc_id, fmt, path, more in files]


def local_counts(path: Path, kind: str, reference: Path) -> tuple[dict[str, int], int]:
    """Records per reference sequence read straight through the file (no index), and unplaced ones."""
    counts: collections.Counter[str] = collections.Counter()
    unplaced = 0
    if kind in ("bam", "cram"):
        with pysam.AlignmentFile(str(path), reference_filename=str(reference), check_sq=False) as aln:
            for record in aln.fetch(until_eof=True):
                if record.reference_id < 0:
                    unplaced += 1
                else:
                    counts[record.reference_name] += 1
        return dict(counts), unplaced
    with gzip.open(path, "rt", encoding="utf-8") as text:
        for line in text:
            if line.strip() and not line.startswith(("#", "track", "browser")):  # what tabix skips
                counts[line.split("\t", 1)[0]] += 1
    return dict(counts), unplaced


def test_browser_readers_get_every_record_of_every_artifact_over_signed_range_requests(s3_bucket, tmp_path):
    node = node_readers()
    store = f"s3://{s3_bucket}/artifacts"
    settings = load_settings(**{"store.url": store, "cluster.profile": "sync", "scratch": str(tmp_path)})
    data = tmp_path / "data"
    data.mkdir()
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    docs = batch_sources(data, f"s3://{s3_bucket}/refs/ref.fa")
    reference = data / "ref" / "ref.fa"
    fs.put(str(reference), f"{s3_bucket}/refs/ref.fa")  # the document's reference, fetched like a source
    fs.put(str(reference) + ".fai", f"{s3_bucket}/refs/ref.fa.fai")

    report = run_many(docs, settings=settings)
    assert [(r.id, r.status) for r in report.results] == [(d["id"], "built") for d in docs], report.to_json()

    sign = lambda uri: preprocess.sign(uri, expires=900, settings=settings)  # noqa: E731 - one use
    tracks, expected = [], {}
    for result in report.results:
        data_uri, index_uri = result.artifacts["data"], result.artifacts["index"]
        kind = "bam" if data_uri.endswith(".bam") else "cram" if data_uri.endswith(".cram") else "tabix"
        track = {"id": result.id, "kind": kind, "data": sign(data_uri), "index": sign(index_uri),
                 "index_kind": index_uri.rsplit(".", 1)[1]}
        if kind == "cram" and result.records["reference"] == "external":  # a self-contained one is read without
            track.update(fasta=sign(f"s3://{s3_bucket}/refs/ref.fa"), fai=sign(f"s3://{s3_bucket}/refs/ref.fa.fai"))
        tracks.append(track)
        local = tmp_path / "artifacts" / result.id / data_uri.rsplit("/", 1)[1]
        local.parent.mkdir(parents=True)
        fs.get(data_uri, str(local))
        expected[result.id] = (local_counts(local, kind, reference), result.records["out"])
    assert {t["index_kind"] for t in tracks} == {"bai", "csi", "crai", "tbi"}
    (tmp_path / "tracks.json").write_text(json.dumps(tracks))

    env = {**os.environ, "NODE_PATH": str(READERS)}
    out = subprocess.run([node, str(SCRIPT), str(tmp_path / "tracks.json")], capture_output=True, text=True,
                         env=env, timeout=240)
    assert out.returncode == 0, out.stderr
    read = json.loads(out.stdout)
    for doc_id, ((per_sequence, unplaced), manifest_out) in expected.items():
        found = {name: n for name, n in read["counts"][doc_id].items() if n}
        assert found == per_sequence, doc_id  # every placed record, on the sequence it names
        assert sum(found.values()) + unplaced == manifest_out, doc_id  # and the manifest's count
        assert sum(found.values()) > 0
    # data by byte ranges only; only indexes (small) are read whole, as browsers do
    assert read["requests"]["ranged"] > 0
    assert all(name.endswith((".bai", ".csi", ".crai", ".tbi", ".fai")) for name in read["requests"]["whole"])


def test_a_browser_reader_is_refused_without_a_valid_signature(s3_bucket, tmp_path):
    """The check above is not vacuous: the same reader, given an unsigned URL, fails."""
    node = node_readers()
    settings = load_settings(**{"store.url": f"s3://{s3_bucket}/a", "cluster.profile": "sync",
                                "scratch": str(tmp_path)})
    bam = samples.bam(tmp_path / "x.bam", reads=100)
    result = preprocess.run({"id": "x", "access_url": str(bam)}, settings=settings)
    signed = preprocess.sign(result.artifacts["data"], expires=900, settings=settings)
    track = {"id": "x", "kind": "bam", "data": signed.split("?", 1)[0],
             "index": preprocess.sign(result.artifacts["index"], expires=900, settings=settings),
             "index_kind": "bai"}
    (tmp_path / "tracks.json").write_text(json.dumps([track]))
    out = subprocess.run([node, str(SCRIPT), str(tmp_path / "tracks.json")], capture_output=True, text=True,
                         env={**os.environ, "NODE_PATH": str(READERS)}, timeout=120)
    assert out.returncode == 1 and "403" in out.stderr
