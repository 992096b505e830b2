"""One SAM/BAM split across workers: the merged BAM and its index are byte-identical to one worker's."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pysam
import pytest

import preprocess
from preprocess import split
from preprocess.build import build_doc, key_for
from preprocess.config import load_settings
from preprocess.model import FileDoc
from preprocess.registry import pipeline_for
from tests import samples
from tests.conftest import md5


def tied_sam(path: Path, contigs: dict[str, int], reads: int = 1500, seed: int = 3, unmapped: int = 30) -> Path:
    """Unsorted SAM where many reads share reference, position and strand (ties the sort keeps in input
    order), some unmapped reads placed at their mate's position, and unplaced ones."""
    rng = random.Random(seed)
    lines = ["@HD\tVN:1.6\tSO:unsorted"] + [f"@SQ\tSN:{n}\tLN:{ln}" for n, ln in contigs.items()]
    names = list(contigs)
    spots = [(rng.choice(names), rng.randint(1, 500)) for _ in range(40)]  # few spots: many ties
    body = []
    for i in range(reads):
        ref, pos = rng.choice(spots)
        flag = rng.choice((0, 16, 4 | 8)) if i % 7 else 4  # flag 4 with a position: placed, unmapped
        seq = "".join(rng.choice("ACGT") for _ in range(30))
        cigar = "*" if flag & 4 else "30M"
        body.append(f"t{rng.randint(0, 10**6):07d}_{i}\t{flag}\t{ref}\t{pos}\t{60 if cigar != '*' else 0}\t{cigar}"
                    f"\t*\t0\t0\t{seq}\t{'I' * 30}")
    for i in range(unmapped):
        body.append(f"u{i:05d}\t4\t*\t0\t0\t*\t*\t0\t0\t{'A' * 30}\t{'I' * 30}")
    rng.shuffle(body)
    path.write_text("\n".join(lines + body) + "\n")
    return path


def doc_for(path: Path, fmt: str) -> FileDoc:
    return FileDoc.model_validate({"id": path.stem, "access_url": str(path), "format": fmt, "md5": md5(path)})


def both_ways(path: Path, fmt: str, tmp_path: Path, parts: int) -> tuple[preprocess.RunResult, preprocess.RunResult]:
    """The file built on one worker, and split into `parts` (in-process), on two fresh stores."""
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    one = load_settings(**{"store.url": str(tmp_path / "one"), "cluster.profile": "sync", "scratch": str(scratch)})
    many = load_settings(**{"store.url": str(tmp_path / "many"), "cluster.profile": "sync", "scratch": str(scratch)})
    doc = doc_for(path, fmt)
    whole = build_doc(doc, fmt, one)
    key = key_for(pipeline_for(fmt), md5(path), many)
    parted = split.build_split(doc, fmt, many, key, parts)
    assert whole.status == "built" and parted.status == "built", (whole.error, parted.error)
    return whole, parted


def assert_same_bytes(whole: preprocess.RunResult, parted: preprocess.RunResult) -> None:
    assert parted.key == whole.key
    for kind in ("data", "index"):
        assert Path(parted.artifacts[kind]).read_bytes() == Path(whole.artifacts[kind]).read_bytes(), kind
    assert parted.records == {**whole.records, "parts": parted.records["parts"], "merge": "blocks",
                              "blocks_recompressed": parted.records["blocks_recompressed"]}


@pytest.mark.parametrize("parts", [2, 3, 5])
def test_ties_and_unmapped_reads_over_several_references_give_the_same_bytes(tmp_path, parts):
    sam = tied_sam(tmp_path / "ties.sam", {"chr1": 5000, "chr2": 4000, "chr3": 3000, "chrM": 600})
    whole, parted = both_ways(sam, "SAM", tmp_path, parts)
    assert_same_bytes(whole, parted)
    assert parted.records["parts"] == min(parts, 4)
    with pysam.AlignmentFile(parted.artifacts["data"]) as aln:
        reads = list(aln)
    assert len(reads) == 1530 and reads[-1].reference_id == -1  # unplaced reads last, as one worker puts them


def test_bam_input_of_sample_reads_gives_the_same_bytes(tmp_path):
    bam = samples.bam(tmp_path / "r.bam", reads=4000)
    whole, parted = both_ways(bam, "BAM", tmp_path, 2)
    assert_same_bytes(whole, parted)


def test_one_reference_only_gives_the_same_bytes(tmp_path):
    sam = tied_sam(tmp_path / "one.sam", {"chr1": 5000})
    whole, parted = both_ways(sam, "SAM", tmp_path, 3)
    assert_same_bytes(whole, parted)
    assert parted.records["parts"] == 1


def test_reference_past_2_pow_29_gets_the_same_csi(tmp_path):
    sam = samples.sam(tmp_path / "big.sam", reads=800, contigs={"chr1": 2**29 + 1000, "chr2": 5000, "chr3": 4000})
    whole, parted = both_ways(sam, "SAM", tmp_path, 2)
    assert parted.records["index"] == "csi" and parted.artifacts["index"].endswith(".bam.csi")
    assert_same_bytes(whole, parted)


def test_the_parts_area_is_empty_after_the_merge_and_a_sorted_part_is_not_sorted_again(tmp_path):
    bam = samples.bam(tmp_path / "r.bam", reads=3000)
    settings = load_settings(**{"store.url": str(tmp_path / "store"), "cluster.profile": "sync",
                                "scratch": str(tmp_path)})
    doc = doc_for(bam, "BAM")
    key = key_for(pipeline_for("BAM"), doc.md5 or "", settings)
    store = preprocess.build.open_store(settings)
    done = [split.split_part(doc, "BAM", settings, key, 2, i) for i in range(2)]
    split.sort_part(doc, settings, key, 2, 0, done[0])  # a worker sorted part 0, then was lost
    first = Path(split.parts_dir(store, key)) / "2-0.sorted.bam"
    made = first.stat().st_mtime_ns
    first_again = split.sort_part(doc, settings, key, 2, 0, split.split_part(doc, "BAM", settings, key, 2, 0))
    assert first_again["sort_part"] == 0.0 and first_again["split"] == 0.0 and first.stat().st_mtime_ns == made
    second = split.sort_part(doc, settings, key, 2, 1, done[1])
    result = split.merge(doc, "BAM", settings, key, 2, [first_again, second])
    assert result.status == "built" and result.records["parts"] == 2
    assert not Path(split.parts_dir(store, key)).exists()
    single = build_doc(doc, "BAM", load_settings(**{"store.url": str(tmp_path / "one"), "cluster.profile": "sync",
                                                    "scratch": str(tmp_path)}))
    assert Path(result.artifacts["data"]).read_bytes() == Path(single.artifacts["data"]).read_bytes()


def test_a_bad_record_fails_the_split_file_as_one_worker_fails_it(tmp_path):
    sam = samples.sam(tmp_path / "bad.sam", reads=200)
    with open(sam, "a") as out:
        out.write("x1\t0\tchr9\t5\t60\t10M\t*\t0\t0\tACGTACGTAC\tIIIIIIIIII\n")  # no @SQ for chr9
    settings = load_settings(**{"store.url": str(tmp_path / "store"), "cluster.profile": "sync",
                                "scratch": str(tmp_path)})
    doc = doc_for(sam, "SAM")
    key = key_for(pipeline_for("SAM"), doc.md5 or "", settings)
    with pytest.raises(preprocess.InputError, match="names reference"):
        split.build_split(doc, "SAM", settings, key, 2)


def test_two_workers_split_a_big_file_into_stage_named_tasks_and_skip_a_small_one(tmp_path):
    from distributed import Client, LocalCluster

    big = samples.bam(tmp_path / "big.bam", reads=6000)
    small = samples.sam(tmp_path / "small.sam", reads=100)
    size = big.stat().st_size
    settings = load_settings(**{"store.url": str(tmp_path / "store"), "scratch": str(tmp_path),
                                "split.min-size": size})
    docs = [{"id": "big", "access_url": str(big), "md5": md5(big)}, {"id": "small", "access_url": str(small),
                                                                      "md5": md5(small)}]
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0",
                      silence_logs=50) as cluster, Client(cluster) as client:
        results = preprocess.run_many(docs, settings=settings, client=client).results
        ran = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    assert [r.status for r in results] == ["built", "built"]
    assert {"split", "sort_part", "merge", "sort_bam"} <= set(ran)
    assert results[0].records["parts"] == 2 and "parts" not in results[1].records
    single = build_doc(doc_for(big, "BAM"), "BAM", load_settings(**{
        "store.url": str(tmp_path / "one"), "cluster.profile": "sync", "scratch": str(tmp_path)}))
    assert Path(results[0].artifacts["data"]).read_bytes() == Path(single.artifacts["data"]).read_bytes()
    assert subprocess.run(["samtools", "quickcheck", results[0].artifacts["data"]]).returncode == 0


def varied_sam(path: Path, reads: int = 20000, seed: int = 5) -> Path:
    """Unsorted SAM with reads of many lengths, as real runs have (trimmed reads, varied names and tags)."""
    rng = random.Random(seed)
    contigs = {"chr1": 90_000, "chr2": 60_000, "chr3": 30_000}
    lines = ["@HD\tVN:1.6"] + [f"@SQ\tSN:{n}\tLN:{ln}" for n, ln in contigs.items()]
    for i in range(reads):
        ref = rng.choice(list(contigs))
        size = rng.randint(30, 150)
        seq = "".join(rng.choice("ACGT") for _ in range(size))
        lines.append(f"read{rng.randint(0, 10**rng.randint(1, 9))}_{i}\t{rng.choice((0, 16))}\t{ref}\t"
                     f"{rng.randint(1, contigs[ref] - 200)}\t60\t{size}M\t*\t0\t0\t{seq}\t{'F' * size}\t"
                     f"NM:i:{rng.randint(0, 9)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_varied_reads_give_the_same_bytes_and_the_first_parts_blocks_are_copied(tmp_path):
    sam = varied_sam(tmp_path / "varied.sam")
    whole, parted = both_ways(sam, "SAM", tmp_path, 3)
    assert_same_bytes(whole, parted)
    with open(whole.artifacts["data"], "rb") as stream:
        total = stream.read().count(b"\x1f\x8b\x08\x04")  # about one magic per block
    assert parted.records["blocks_recompressed"] < total - 10  # the first part has ~20 of ~60: copied


def test_parts_whose_blocks_never_meet_are_re_encoded_by_samtools_with_the_same_bytes(tmp_path, monkeypatch):
    from pipelines import alignments_split

    monkeypatch.setattr(alignments_split, "SYNC_LIMIT", 1)  # reads of one size: packings that never meet
    bam = samples.bam(tmp_path / "r.bam", reads=20000)
    whole, parted = both_ways(bam, "BAM", tmp_path, 3)
    assert_same_bytes(whole, parted)


def test_a_file_splits_only_from_min_size_on_a_cluster_of_two_or_more_workers(tmp_path):
    bam = samples.bam(tmp_path / "r.bam", reads=500)
    size = bam.stat().st_size
    doc = doc_for(bam, "BAM")

    def parts(workers: int, **overrides: object) -> int:
        settings = load_settings(**{"store.url": str(tmp_path / "store"), **overrides})
        return split.parts_for(doc, "BAM", key_for(pipeline_for("BAM"), doc.md5 or "", settings), settings, workers)

    assert parts(3, **{"split.min-size": size}) == 3 and parts(3, **{"split.min-size": size, "split.parts": 2}) == 2
    assert parts(3, **{"split.min-size": size + 1}) == 0 and parts(1, **{"split.min-size": 0}) == 0
    assert parts(4) == 0  # the shipped min-size
    assert load_settings(**{"store.url": "x", "split.min-size": "2GiB"}).split.min_size == 2 * 2**30


def test_an_already_sorted_bam_is_not_split_and_gives_the_single_builds_bytes(tmp_path):
    """A sorted BAM keeps its own record blocks on one worker (records.path "sorted-input"); split, it would
    be re-encoded: the split graph sees the order and hands the file to the single build, one key one set."""
    unsorted = samples.bam(tmp_path / "u.bam", reads=3000)
    ordered = tmp_path / "sorted.bam"
    subprocess.run(["samtools", "sort", "--no-PG", "-l", "1", "-o", str(ordered), str(unsorted)], check=True)
    whole, parted = both_ways(ordered, "BAM", tmp_path, 2)
    assert whole.records["path"] == parted.records["path"] == "sorted-input"
    for kind in ("data", "index"):
        assert Path(parted.artifacts[kind]).read_bytes() == Path(whole.artifacts[kind]).read_bytes(), kind
    assert not list((tmp_path / "many").glob("parts/*"))  # nothing left in the parts area
