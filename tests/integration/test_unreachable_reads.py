"""Reads that no region query reaches (a read starting past its reference's end) are built by default:
counted and named in the manifest's records.unreachable, warned of in the batch report and the summary
table; `unreachable-reads: refuse` refuses such a file with the message it got before. The files are
the two kinds seen in the wild, generated from a fixed seed: a header from one assembly with reads
aligned to another, and reads placed past a contig's end."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pysam
import pytest
from click.testing import CliRunner

import preprocess
from preprocess.cli import cli
from preprocess.config import load_settings
from preprocess.errors import InputError
from tests.conftest import store_files

BASES = "ACGT"


def _bam(path: Path, header: dict[str, int], aligned_to: dict[str, int], reads: int, seed: int,
         past_end: dict[str, list[int]] | None = None) -> Path:
    """An unsorted BAM whose @SQ lines are `header` while its reads were placed on `aligned_to`'s lengths
    (another assembly), plus reads at the 1-based positions `past_end` names."""
    rng = random.Random(seed)
    lines = ["@HD\tVN:1.6\tSO:unsorted", *(f"@SQ\tSN:{name}\tLN:{length}" for name, length in header.items())]
    placed = [(name, rng.randint(1, length - 30)) for name, length in aligned_to.items() for _ in range(reads)]
    placed += [(name, pos) for name, positions in (past_end or {}).items() for pos in positions]
    rng.shuffle(placed)
    for i, (name, pos) in enumerate(placed):
        seq = "".join(rng.choice(BASES) for _ in range(30))
        lines.append(f"r{i:05d}\t{rng.choice((0, 16))}\t{name}\t{pos}\t60\t30M\t*\t0\t0\t{seq}\t{'I' * 30}")
    text = path.with_suffix(".sam")
    text.write_text("\n".join(lines) + "\n")
    subprocess.run(["samtools", "view", "--no-PG", "-b", "-o", str(path), str(text)], check=True)
    return path


def mixed_assemblies(data: Path) -> Path:
    """chrM declared as GRCh38's rCRS (16569 bp) with reads aligned to hg19's chrM (16571 bp): the reads
    starting at 16570 and 16571 lie past the declared end; chr21 is the same in both."""
    return _bam(data / "mixed.bam", {"chr21": 40_000, "chrM": 16_569}, {"chr21": 40_000, "chrM": 16_571}, 150, 31,
                past_end={"chrM": [16_570, 16_571, 16_571]})


def past_a_contig_end(data: Path) -> Path:
    """Reads placed past the end of a short contig (an aligner that wraps a circular contig, or a decoy
    contig trimmed after alignment), on two references."""
    return _bam(data / "past.bam", {"chr1": 50_000, "ctg7": 2_000}, {"chr1": 50_000, "ctg7": 2_000}, 200, 32,
                past_end={"ctg7": [2_001, 2_400, 9_000], "chr1": [50_001]})


EXPECTED = {mixed_assemblies: 3, past_a_contig_end: 4}


def _through_regions(bam: str, index: str) -> tuple[int, int, int]:
    """Records a browser's region queries reach (each reference 1..its length) by samtools and by pysam,
    and everything the file holds (samtools view -c)."""
    with pysam.AlignmentFile(bam, index_filename=index) as aln:
        regions = [f"{name}:1-{length}" for name, length in zip(aln.references, aln.lengths, strict=True)]
        by_pysam = sum(aln.count(name, 0, length) for name, length in zip(aln.references, aln.lengths, strict=True))
    by_samtools = int(subprocess.run(["samtools", "view", "-c", "-X", bam, index, *regions], check=True,
                                     capture_output=True, text=True).stdout)
    whole = int(subprocess.run(["samtools", "view", "-c", bam], check=True, capture_output=True, text=True).stdout)
    return by_samtools, by_pysam, whole


@pytest.mark.parametrize("make", [mixed_assemblies, past_a_contig_end], ids=lambda f: f.__name__)
def test_reads_past_the_end_are_built_counted_and_named(data, settings, make):
    source = make(data)
    result = preprocess.run({"id": "f", "access_url": str(source), "format": "BAM"}, settings=settings)
    assert result.status == "built", result.error
    records = result.records
    unreachable = records["unreachable"]
    assert unreachable["count"] == EXPECTED[make]
    with pysam.AlignmentFile(result.artifacts["data"]) as aln:
        lengths = dict(zip(aln.references, aln.lengths, strict=True))
        past = [(r.query_name, f"{r.reference_name}:{r.reference_start + 1}") for r in aln.fetch(until_eof=True)
                if not r.is_unmapped and r.reference_start >= lengths[r.reference_name]]
    assert [(r["read"], r["at"]) for r in unreachable["first"]] == past[:5]
    # samtools and pysam agree on what region queries reach; that plus the named reads is every record
    by_samtools, by_pysam, whole = _through_regions(result.artifacts["data"], result.artifacts["index"])
    assert by_samtools == by_pysam == whole - EXPECTED[make]
    assert records["in"] == records["out"] == whole == by_pysam + unreachable["count"]
    assert int(subprocess.run(["samtools", "view", "-c", str(source)], check=True, capture_output=True,
                              text=True).stdout) == records["in"]


def test_the_batch_report_and_summary_table_warn(data, tmp_path):
    bam, clean = past_a_contig_end(data), _bam(data / "clean.bam", {"chr1": 9_000}, {"chr1": 9_000}, 50, 33)
    manifest = data / "files.csv"
    manifest.write_text(f"id,access_url,format\npast,{bam},BAM\nclean,{clean},BAM\n")
    args = ["batch", str(manifest), "--store", str(tmp_path / "store"), "--cluster", "sync"]
    shown = CliRunner().invoke(cli, args)
    assert shown.exit_code == 0, shown.output
    warning = ("warning: past: 4 read(s) start past the end of their reference, where no region query reaches them "
               "(first: ")
    assert warning in shown.output and "warning: clean" not in shown.output
    as_json = CliRunner().invoke(cli, [*args, "--json", "-"])
    report = json.loads(as_json.output)
    assert [w["id"] for w in report["warnings"]] == ["past"]
    assert report["warnings"][0]["warning"] == shown.output.split("warning: past: ", 1)[1].split("\n", 1)[0]
    assert [r["status"] for r in report["results"]] == ["cached", "cached"]  # the warning comes from the manifest


@pytest.mark.parametrize("make", [mixed_assemblies, past_a_contig_end], ids=lambda f: f.__name__)
def test_the_refuse_setting_refuses_with_the_first_read_named(data, store_dir, tmp_path, make):
    source = make(data)
    settings = load_settings(**{"store.url": str(store_dir), "cluster.profile": "sync", "scratch": str(tmp_path),
                                "unreachable-reads": "refuse"})
    with pytest.raises(InputError) as refused:
        preprocess.run({"id": "f", "access_url": str(source), "format": "BAM"}, settings=settings)
    message = str(refused.value)
    assert message.startswith(f"{source.name}: read r") and "starts past the end of" in message
    assert message.endswith("where no region query reaches it")
    assert store_files(store_dir) == []



@pytest.mark.parametrize("groups", [2, 3])
def test_a_split_build_keeps_and_names_the_same_reads(tmp_path, groups):
    """Built in parts (reference ranges) by the split graph's tasks, the reads past an end land in the output
    and its records as they do in the single build: the same bytes, the same records.unreachable."""
    from tests.integration.test_split import assert_same_bytes, both_ways

    source = past_a_contig_end(tmp_path)
    whole, parted = both_ways(source, tmp_path, groups, part_size=1)  # one part per reference
    assert_same_bytes(whole, parted)
    with pysam.AlignmentFile(str(source)) as aln:
        assert parted.records["parts"] == aln.nreferences > 1
    assert parted.records["unreachable"]["count"] == EXPECTED[past_a_contig_end]
