"""Each pipeline version's output bytes are pinned (pipelines/pins.py): same version, same bytes.

A change of output bytes without a version bump would let one key name two sets of bytes in a store;
this fails first, printing the entry to record beside the bumped version.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

import preprocess
from pipelines import pins
from preprocess import registry, shell
from tests import samples

BIG = {"chr1": 2**29 + 1000, "chr2": 150_000}


def _csi_vcf(path: Path) -> Path:
    text = samples.vcf(path.with_suffix(".tmp.vcf"), records=200).read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[1].split("\t")  # a structural variant ending past 2^29
    sv = ["chr1", str(2**29 + 5), "sv1", "A", "<DEL>", ".", "PASS", f"SVTYPE=DEL;END={2**29 + 900}", *last[8:]]
    return _write(path, text + "\t".join(sv) + "\n")


def _sorted_bam(path: Path, label: str) -> Path:
    """A BAM already in samtools sort order (written at level 1, as aligners often do); @HD SO:`label`."""
    unsorted = samples.bam(path.with_suffix(".in.bam"), reads=1500)
    subprocess.run(["samtools", "sort", "--no-PG", "-l", "1", "-o", str(path), str(unsorted)], check=True)
    if label != "coordinate":
        text = subprocess.run(["samtools", "view", "-H", "--no-PG", str(path)], check=True, capture_output=True,
                              text=True).stdout.replace("SO:coordinate", f"SO:{label}")
        header = _write(path.with_suffix(".header.sam"), text)
        relabelled = subprocess.run(["samtools", "reheader", "--no-PG", str(header), str(path)], check=True,
                                    capture_output=True).stdout
        path.write_bytes(relabelled)
    return path


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _cram(folder: Path, embed: bool) -> tuple[Path, dict[str, str]]:
    (folder / "ref").mkdir()
    reference = samples.fasta(folder / "ref" / "ref.fa")
    cram = samples.cram(folder / "a.cram", reference, embed=embed)
    return cram, ({} if embed else {"reference": str(reference)})


# pipeline name -> cases: (case, format, how to make the reference input in a folder: its path, or its
# path and more document fields)
CASES: dict[str, list[tuple[str, str, Callable[[Path], Path | tuple[Path, dict[str, str]]]]]] = {
    "alignments": [("bai", "BAM", lambda d: samples.bam(d / "a.bam", reads=3000)),
                   ("csi", "SAM", lambda d: samples.sam(d / "b.sam", reads=1000, contigs=BIG)),
                   ("sorted", "BAM", lambda d: _sorted_bam(d / "s.bam", "coordinate")),
                   ("sorted-unlabelled", "BAM", lambda d: _sorted_bam(d / "u.bam", "unsorted")),
                   ("parted", "BAM", lambda d: samples.bam(d / "p.bam", reads=3000))],
    "vcf": [("tbi", "VCF", lambda d: samples.vcf(d / "a.vcf", records=600)),
            ("csi", "VCF", lambda d: _csi_vcf(d / "b.vcf"))],
    "bed": [("tbi", "BED", lambda d: samples.bed(d / "a.bed", records=600))],
    "narrowpeak": [("tbi", "narrowPeak", lambda d: samples.narrowpeak(d / "a.narrowPeak"))],
    "broadpeak": [("tbi", "broadPeak", lambda d: samples.narrowpeak(d / "a.broadPeak", broad=True))],
    "gff3": [("tbi", "GFF3", lambda d: samples.gff3(d / "a.gff3"))],
    "gtf": [("tbi", "GTF", lambda d: samples.gtf(d / "a.gtf"))],
    "bigbed": [("tbi", "bigBed", lambda d: samples.bigbed(d / "a.bb"))],
    "cram": [("external", "CRAM", lambda d: _cram(d, embed=False)),
             ("embedded", "CRAM", lambda d: _cram(d, embed=True))],
    "csv": [("copy", "CSV", lambda d: _text(d / "a.csv", "gene,score\nA,1\nB,2\n"))],
    "tsv": [("copy", "TSV", lambda d: _text(d / "a.tsv", "gene\tscore\nA\t1\nB\t2\n"))],
    "bigwig": [("copy", "bigWig", lambda d: samples.bigwig(d / "a.bw"))],
}


# cases built with other settings: "parted" is the bai case's BAM over split.min-size, in 3 parts of
# part-size (both the value of tests/integration/test_split.py's PART_SIZE, whose cluster test checks
# these pins)
PART_SIZE = {"parted": 20_000}


def _text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _built_pipelines() -> dict[str, str]:
    """Every pipeline by name and version: passthrough ones too, since they commit the source's bytes."""
    return {registry.pipeline_for(fmt).name: registry.pipeline_for(fmt).version for fmt in registry.formats()}


def test_the_tools_are_the_ones_the_pins_were_made_with():
    """Output bytes depend on samtools, htslib (and its deflate), gffread and sort: a machine with other
    versions would build other bytes under the same keys. The worker image installs these."""
    assert {tool: shell.version(tool) for tool in pins.TOOLS} == pins.TOOLS


def test_every_built_pipeline_has_reference_inputs():
    assert set(_built_pipelines()) == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_output_bytes_match_the_pins_of_the_pipeline_version(name, tmp_path, settings):
    version = _built_pipelines()[name]
    got = {}
    for case, fmt, make in CASES[name]:
        folder = tmp_path / case
        folder.mkdir()
        made = make(folder)
        source, more = made if isinstance(made, tuple) else (made, {})
        chosen = settings
        if case in PART_SIZE:
            chosen = settings.replace(split=settings.split.replace(
                min_size=PART_SIZE[case], part_size=PART_SIZE[case]))
        result = preprocess.run({"id": case, "access_url": str(source), "format": fmt, **more}, settings=chosen)
        assert result.pipeline == name
        for uri in result.artifacts.values():
            got[f"{case}:{Path(uri).name}"] = hashlib.sha256(Path(uri).read_bytes()).hexdigest()
    entry = f"({name!r}, {version!r}): {json.dumps(got, indent=4, sort_keys=True)},"
    pinned = pins.OUTPUTS.get((name, version))
    assert pinned is not None, f"no pins for {name} version {version}; record in pipelines/pins.py:\n{entry}"
    assert got == pinned, (f"{name} version {version} now makes other bytes: bump its version and record in "
                           f"pipelines/pins.py:\n{entry}")
