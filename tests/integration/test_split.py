"""A BAM over split.part-size is built in parts (the parted layout): the same key and the same bytes
in this process, on one worker, and on a cluster of 2 or 3 workers, whichever worker sorts which part."""

from __future__ import annotations

import hashlib
import random
import subprocess
from pathlib import Path

import pysam
import pytest

import preprocess
from pipelines import alignments_split, pins
from pipelines.alignments_split import STEPS
from preprocess import split
from preprocess.build import build_doc, build_settings, key_for, open_store
from preprocess.config import Settings, load_settings
from preprocess.model import FileDoc
from preprocess.registry import pipeline_for
from tests import samples
from tests.conftest import md5

PART_SIZE = 20_000  # the sample BAMs here are 60-80 kB: 3 or 4 parts


def tied_bam(path: Path, contigs: dict[str, int], reads: int = 1500, seed: int = 3, unmapped: int = 30) -> Path:
    """Unsorted BAM where many reads share reference, position and strand (ties the sort keeps in input
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
    sam = path.with_suffix(".sam")
    sam.write_text("\n".join(lines + body) + "\n")
    subprocess.run(["samtools", "view", "--no-PG", "-b", "-o", str(path), str(sam)], check=True)
    return path


def doc_for(path: Path, fmt: str = "BAM") -> FileDoc:
    return FileDoc.from_dict({"id": path.stem, "access_url": str(path), "format": fmt, "md5": md5(path)})


def settings_for(tmp_path: Path, store: str, part_size: int = PART_SIZE, **more: object) -> Settings:
    """Settings of a test store, a BAM of more than `part_size` bytes built in parts of that size."""
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    return load_settings(**{"store.url": str(tmp_path / store), "cluster.profile": "sync", "scratch": str(scratch),
                            "split.min-size": part_size, "split.part-size": part_size, **more})


def both_ways(path: Path, tmp_path: Path, groups: int, part_size: int = PART_SIZE
              ) -> tuple[preprocess.RunResult, preprocess.RunResult]:
    """The file built by the single build, and by the split graph's tasks with `groups` route groups
    (in this process), on two fresh stores."""
    doc = doc_for(path)
    whole = build_doc(doc, "BAM", settings_for(tmp_path, f"one-{groups}", part_size))
    many = settings_for(tmp_path, f"many-{groups}", part_size)
    parted = split.build_split(doc, "BAM", many, key_for(pipeline_for("BAM"), md5(path), many), groups)
    assert whole.status == "built" and parted.status == "built", (whole.error, parted.error)
    return whole, parted


def assert_same_bytes(whole: preprocess.RunResult, parted: preprocess.RunResult) -> None:
    assert parted.key == whole.key
    for kind in ("data", "index"):
        assert Path(parted.artifacts[kind]).read_bytes() == Path(whole.artifacts[kind]).read_bytes(), kind
    assert parted.records == whole.records


def assert_index_is_samtools_own(result: preprocess.RunResult, tmp_path: Path) -> None:
    """The index merged from the parts' indexes is the one `samtools index` makes of the output."""
    again = tmp_path / "again.bai"
    subprocess.run(["samtools", "index", "-b", result.artifacts["data"], str(again)], check=True)
    assert again.read_bytes() == Path(result.artifacts["index"]).read_bytes()


def view(path: str | Path) -> str:
    return subprocess.run(["samtools", "view", "--no-PG", str(path)], check=True, capture_output=True,
                          text=True).stdout


@pytest.mark.parametrize("groups", [1, 2, 3])
def test_ties_and_unmapped_reads_give_the_same_bytes_whatever_the_route_groups(tmp_path, groups):
    bam = tied_bam(tmp_path / "ties.bam", {"chr1": 5000, "chr2": 4000, "chr3": 3000, "chrM": 600})
    whole, parted = both_ways(bam, tmp_path, groups, part_size=bam.stat().st_size // 4)
    assert_same_bytes(whole, parted)
    assert parted.records["parts"] == 4 and parted.records["path"] == "sort"
    assert_index_is_samtools_own(parted, tmp_path)
    with pysam.AlignmentFile(parted.artifacts["data"]) as aln:
        reads = list(aln)
    assert len(reads) == 1530 and reads[-1].reference_id == -1  # unplaced reads last, as one sort puts them


def test_the_parted_output_holds_the_whole_sorts_records_in_its_order(tmp_path):
    """Read by samtools and pysam: the records of one `samtools sort` of the whole, in the same order,
    the same header; the index answers region queries and idxstats as the whole sort's index does."""
    bam = samples.bam(tmp_path / "r.bam", reads=3000)
    whole, parted = both_ways(bam, tmp_path, 2)
    assert parted.records["parts"] == 3
    assert_index_is_samtools_own(parted, tmp_path)
    reference = tmp_path / "reference.bam"
    subprocess.run(["samtools", "sort", "--no-PG", "--write-index", "-o", f"{reference}##idx##{reference}.bai",
                    str(bam)], check=True)
    out = parted.artifacts["data"]
    assert view(out) == view(reference)
    assert subprocess.run(["samtools", "view", "--no-PG", "-H", out], capture_output=True).stdout == subprocess.run(
        ["samtools", "view", "--no-PG", "-H", str(reference)], capture_output=True).stdout
    stats = [subprocess.run(["samtools", "idxstats", str(p)], check=True, capture_output=True, text=True).stdout
             for p in (out, reference)]
    assert stats[0] == stats[1]
    with pysam.AlignmentFile(out) as aln, pysam.AlignmentFile(str(reference)) as ref:
        assert [r.query_name for r in aln.fetch("chr2", 1000, 90_000)] == [
            r.query_name for r in ref.fetch("chr2", 1000, 90_000)]
        assert aln.mapped == ref.mapped and aln.unmapped == ref.unmapped
    assert subprocess.run(["samtools", "quickcheck", out]).returncode == 0


def test_references_and_a_whole_part_without_reads_get_samtools_own_index(tmp_path):
    contigs = {"chr1": 200_000, "chr2": 150_000, "empty1": 100_000, "empty2": 90_000, "chrX": 100_000}
    bam = samples.bam(tmp_path / "gaps.bam", reads=3000, contigs={k: v for k, v in contigs.items()
                                                                   if not k.startswith("empty")})
    header = subprocess.run(["samtools", "view", "-H", "--no-PG", str(bam)], check=True, capture_output=True,
                            text=True).stdout
    sq = "".join(f"@SQ\tSN:{n}\tLN:{ln}\n" for n, ln in contigs.items())
    new = tmp_path / "header.sam"
    new.write_text("".join(line + "\n" for line in header.splitlines() if not line.startswith("@SQ")) + sq)
    gaps = tmp_path / "gaps-reheadered.bam"  # two references between chr2 and chrX that no read names
    sam = tmp_path / "gaps.sam"
    sam.write_text(new.read_text() + view(bam))
    subprocess.run(["samtools", "view", "--no-PG", "-b", "-o", str(gaps), str(sam)], check=True)
    whole, parted = both_ways(gaps, tmp_path, 2, part_size=gaps.stat().st_size // 5)
    assert_same_bytes(whole, parted)
    assert parted.records["parts"] == 5  # parts 3 and 4 hold no read
    assert_index_is_samtools_own(parted, tmp_path)
    assert view(parted.artifacts["data"]).count("\n") == 3020


def test_a_bam_up_to_part_size_keeps_the_one_pass_sorts_bytes(tmp_path):
    """P == 1: version 3's bytes of a small BAM are version 2's (the pins of the "bai" case)."""
    bam = samples.bam(tmp_path / "a.bam", reads=3000)
    result = build_doc(doc_for(bam), "BAM", settings_for(tmp_path, "store", part_size=bam.stat().st_size))
    assert "parts" not in result.records
    digest = hashlib.sha256(Path(result.artifacts["data"]).read_bytes()).hexdigest()
    assert digest == pins.OUTPUTS[("alignments", "2")]["bai:sorted.bam"] == pins.OUTPUTS[("alignments", "3")][
        "bai:sorted.bam"]


def test_parts_compressed_to_travel_sort_to_the_same_bytes(tmp_path):
    """Over a network store the routed parts are BGZF level 1, not raw: the sorted parts are the same."""
    bam = samples.bam(tmp_path / "a.bam", reads=3000)
    settings = build_settings(settings_for(tmp_path, "s"))
    layout = STEPS.plan(bam, "a.bam", settings)
    made = {}
    for compress in (False, True):
        outs = [tmp_path / f"{compress}-{i}.bam" for i in range(layout["parts"])]
        counts = STEPS.route(bam, layout, list(range(layout["parts"])), outs, 1, "a.bam", compress)["counts"]
        assert sum(counts) == 3020 and layout["parts"] == 3
        assert all(out.read_bytes()[:4] == (b"\x1f\x8b\x08\x04" if compress else b"BAM\x01") for out in outs)
        made[compress] = [STEPS.sort_part([out], out.with_suffix(".sorted"), layout, settings, tmp_path)[0].read_bytes()
                          for out in outs]
    assert made[True] == made[False]


def test_min_size_and_part_size_are_in_the_key(tmp_path):
    bam = samples.bam(tmp_path / "a.bam", reads=300)
    keys = {key_for(pipeline_for("BAM"), md5(bam), settings_for(tmp_path, "s", size, **{"split.min-size": least}))
            for size in (10**6, 10**7) for least in (0, 10**8)}
    assert len(keys) == 4


def test_one_reference_only_is_built_whole(tmp_path):
    bam = tied_bam(tmp_path / "one.bam", {"chr1": 5000})
    whole, parted = both_ways(bam, tmp_path, 3)
    assert_same_bytes(whole, parted)
    assert "parts" not in parted.records


def test_reference_past_2_pow_29_gets_the_same_csi(tmp_path):
    bam = samples.bam(tmp_path / "big.bam", reads=800, contigs={"chr1": 2**29 + 1000, "chr2": 5000, "chr3": 4000})
    whole, parted = both_ways(bam, tmp_path, 2, part_size=bam.stat().st_size // 2)
    assert parted.records["index"] == "csi" and parted.artifacts["index"].endswith(".bam.csi")
    assert parted.records["parts"] == 2
    assert_same_bytes(whole, parted)
    made = Path(parted.artifacts["data"])
    subprocess.run(["samtools", "index", "-c", "-m", "14", str(made), str(tmp_path / "again.csi")], check=True)
    assert (tmp_path / "again.csi").read_bytes() == Path(parted.artifacts["index"]).read_bytes()


def test_a_lost_worker_costs_its_parts_and_a_part_already_there_is_not_made_again(tmp_path):
    bam = samples.bam(tmp_path / "r.bam", reads=3000)
    settings = settings_for(tmp_path, "store")
    doc = doc_for(bam)
    key = key_for(pipeline_for("BAM"), doc.md5 or "", settings)
    area = Path(split.parts_dir(open_store(settings), key))
    routes = [split.route_group(doc, "BAM", settings, key, 2, g) for g in range(2)]
    split.sort_part(doc, "BAM", settings, key, 0, routes)  # a worker sorted part 0, then was lost
    first = area / "0.sorted"
    made = first.stat().st_mtime_ns
    again = [split.route_group(doc, "BAM", settings, key, 2, g) for g in range(2)]  # the graph again
    assert [r["route"] for r in again] == [0.0, 0.0]
    sorts = [split.sort_part(doc, "BAM", settings, key, i, again) for i in range(2)]  # part 2: left to the merge
    assert sorts[0]["sort_part"] == 0.0 and first.stat().st_mtime_ns == made
    result = split.merge(doc, "BAM", settings, key, sorts)
    assert result.status == "built" and result.records["parts"] == 3
    assert not area.exists()
    single = build_doc(doc, "BAM", settings_for(tmp_path, "one"))
    assert Path(result.artifacts["data"]).read_bytes() == Path(single.artifacts["data"]).read_bytes()


def damaged(tmp_path: Path) -> Path:
    """A BAM whose record block in the middle has a CRC32 that does not match its data."""
    bam = samples.bam(tmp_path / "bad.bam", reads=3000)
    data = bytearray(bam.read_bytes())
    from pipelines import bgzf

    blocks = bgzf.blocks(bam)
    assert blocks is not None
    middle = blocks[len(blocks) // 2]
    data[middle.offset + middle.size - 8] ^= 0xFF
    bam.write_bytes(bytes(data))
    return bam


def undeclared_reference(tmp_path: Path) -> Path:
    """A BAM whose header lost its last reference (chrX) while records still name it by id."""
    import gzip
    import struct

    raw = gzip.decompress(samples.bam(tmp_path / "a.bam", reads=3000).read_bytes())
    size = struct.unpack_from("<i", raw, 4)[0]
    text = b"\n".join(line for line in raw[8:8 + size].split(b"\n") if b"SN:chrX" not in line)
    at, refs = 12 + size, []
    for _ in range(struct.unpack_from("<i", raw, 8 + size)[0]):
        name = struct.unpack_from("<i", raw, at)[0]
        refs.append(raw[at:at + 8 + name])
        at += 8 + name
    body = b"BAM\x01" + struct.pack("<i", len(text)) + text + struct.pack("<i", len(refs) - 1) + b"".join(refs[:-1])
    path = tmp_path / "bad.bam"
    path.write_bytes(samples.bgzf_compress(body + raw[at:]))
    return path


@pytest.mark.parametrize("make", [damaged, undeclared_reference])
def test_bad_input_fails_with_the_one_pass_sorts_message(tmp_path, make):
    bam = make(tmp_path)
    doc = doc_for(bam)
    one_pass = build_doc(doc, "BAM", settings_for(tmp_path, "a", part_size=10**9))
    parted = build_doc(doc, "BAM", settings_for(tmp_path, "b"))
    settings = settings_for(tmp_path, "c")
    with pytest.raises(preprocess.InputError) as split_error:
        split.build_split(doc, "BAM", settings, key_for(pipeline_for("BAM"), doc.md5 or "", settings), 2)
    assert one_pass.status == parted.status == "failed"
    assert one_pass.error is not None and parted.error is not None
    assert one_pass.error.message == parted.error.message == str(split_error.value)
    assert one_pass.error.message.startswith("bad.bam: unreadable alignment records: ")
    assert not list(tmp_path.glob("[abc]/*/manifest.json"))


def test_a_source_changed_while_its_parts_are_routed_commits_nothing(tmp_path, monkeypatch):
    bam = samples.bam(tmp_path / "r.bam", reads=3000)
    real = alignments_split.route_share

    def route_then_append(source, *args, **kwargs):  # type: ignore[no-untyped-def]
        counts = real(source, *args, **kwargs)
        with open(source, "ab") as out:
            out.write(b"\0")
        return counts

    monkeypatch.setattr(alignments_split, "route_share", route_then_append)
    settings = settings_for(tmp_path, "store")
    doc = doc_for(bam)
    with pytest.raises(preprocess.SourceError, match="changed while it was being built"):
        split.build_split(doc, "BAM", settings, key_for(pipeline_for("BAM"), doc.md5 or "", settings), 2)
    assert not list((tmp_path / "store").glob("*/manifest.json"))


@pytest.mark.parametrize("workers", [2, 3])
def test_a_cluster_builds_the_parts_in_stage_named_tasks_with_the_in_process_bytes(tmp_path, workers):
    from distributed import Client, LocalCluster

    big = samples.bam(tmp_path / "big.bam", reads=3000)  # the "parted" case of pipelines/pins.py
    small = samples.bam(tmp_path / "small.bam", reads=100)
    settings = load_settings(**{"store.url": str(tmp_path / "store"), "scratch": str(tmp_path),
                                "split.min-size": PART_SIZE, "split.part-size": PART_SIZE})
    docs = [{"id": "big", "access_url": str(big), "md5": md5(big)}, {"id": "small", "access_url": str(small),
                                                                      "md5": md5(small)}]
    with LocalCluster(n_workers=workers, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0",
                      silence_logs=50) as cluster, Client(cluster) as client:
        results = preprocess.run_many(docs, settings=settings, client=client).results
        ran = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    assert [r.status for r in results] == ["built", "built"]
    assert {"route", "sort_part", "merge", "sort_bam"} <= set(ran)
    assert results[0].records["parts"] == 3 and "parts" not in results[1].records
    single = build_doc(doc_for(big), "BAM", load_settings(**{
        "store.url": str(tmp_path / "one"), "cluster.profile": "sync", "scratch": str(tmp_path),
        "split.min-size": PART_SIZE, "split.part-size": PART_SIZE}))
    assert results[0].key == single.key and results[0].records == single.records
    for kind in ("data", "index"):
        assert Path(results[0].artifacts[kind]).read_bytes() == Path(single.artifacts[kind]).read_bytes(), kind
    pinned = pins.OUTPUTS[("alignments", pipeline_for("BAM").version)]
    for uri in results[0].artifacts.values():
        assert hashlib.sha256(Path(uri).read_bytes()).hexdigest() == pinned[f"parted:{Path(uri).name}"]


def test_a_file_goes_across_workers_from_part_size_on_a_cluster_of_two_or_more(tmp_path):
    bam = samples.bam(tmp_path / "r.bam", reads=500)
    size = bam.stat().st_size
    doc = doc_for(bam)

    def parts(workers: int, part_size: int, fmt: str = "BAM") -> int:
        settings = settings_for(tmp_path, "store", part_size)
        return split.parts_for(doc, fmt, key_for(pipeline_for(fmt), doc.md5 or "", settings), settings, workers)

    assert parts(3, size // 3 + 1) == 3 and parts(2, size // 3 + 1) == 3  # parts do not depend on the workers
    assert parts(3, size) == 0 and parts(1, 1000) == 0 and parts(3, 1000, "SAM") == 0
    shipped = load_settings(**{"store.url": "x"}).split
    assert (shipped.min_size, shipped.part_size) == (256 * 2**20, 64 * 2**20)
    assert load_settings(**{"store.url": "x", "split.part-size": "1GiB"}).split.part_size == 2**30


def test_a_bam_is_parted_only_over_min_size_and_then_in_parts_of_part_size(tmp_path):
    """min-size decides whether a BAM is built in parts, part-size how many: a file between the two is
    sorted whole (one pass beats routing it), one over min-size in ceil(size / part-size) parts."""
    bam = samples.bam(tmp_path / "r.bam", reads=3000)
    size = bam.stat().st_size

    def parts(least: int, part_size: int) -> int:
        settings = settings_for(tmp_path, f"s-{least}-{part_size}", part_size, **{"split.min-size": least})
        result = build_doc(doc_for(bam), "BAM", settings)
        assert result.status == "built", result.error
        return int(result.records.get("parts", 1))

    assert parts(size, size // 3) == 1  # not over min-size: whole, however small the parts would be
    assert parts(size - 1, -(-size // 2)) == 2  # over it: ceil(size / part-size) parts
    assert parts(size - 1, size // 3) == min(-(-size // (size // 3)), len(samples.CONTIGS))  # at most one a reference
    assert split.group(8, 2, 0) == [0, 1, 2, 3] and split.group(8, 3, 2) == [6, 7]


def test_an_already_sorted_bam_keeps_its_blocks_however_big(tmp_path):
    """A sorted BAM keeps its own record blocks (records.path "sorted-input") over part-size too: the
    split graph sees the order and hands the file to the single build, one key one set of bytes."""
    unsorted = samples.bam(tmp_path / "u.bam", reads=3000)
    ordered = tmp_path / "sorted.bam"
    subprocess.run(["samtools", "sort", "--no-PG", "-l", "1", "-o", str(ordered), str(unsorted)], check=True)
    whole, parted = both_ways(ordered, tmp_path, 2)
    assert whole.records["path"] == parted.records["path"] == "sorted-input"
    assert_same_bytes(whole, parted)
    assert not list((tmp_path / "many-2").glob("parts/*"))  # nothing left in the parts area


def raw_bam(path: Path) -> tuple[bytes, list[bytes]]:
    """A sample BAM's uncompressed header bytes and its records' bytes."""
    import gzip
    import struct

    raw = gzip.decompress(samples.bam(path, reads=3000).read_bytes())
    at = 12 + struct.unpack_from("<i", raw, 4)[0]
    for _ in range(struct.unpack_from("<i", raw, at - 4)[0]):
        at += 8 + struct.unpack_from("<i", raw, at)[0]
    header, records = raw[:at], []
    while at < len(raw):
        size = 4 + struct.unpack_from("<i", raw, at)[0]
        records.append(raw[at:at + size])
        at += size
    return header, records


def with_tag(record: bytes, payload: bytes) -> bytes:
    """`record` with an XB:B:C array tag holding `payload` appended (any bytes, NULs included)."""
    import struct

    tag = b"XBBC" + struct.pack("<I", len(payload)) + payload
    return struct.pack("<i", len(record) - 4 + len(tag)) + record[4:] + tag


def reblocked(path: Path, raw: bytes) -> Path:
    """`raw` (an uncompressed BAM) BGZF-compressed by bgzip, which cuts a block every 0xff00 bytes
    whatever the records: records cross block boundaries."""
    path.write_bytes(samples.bgzf_compress(raw))
    return path


def routed(bam: Path, groups: int) -> tuple[list[bytes], bool]:
    """Every part of `bam` as its route groups' pieces laid end to end, and whether their seams were confirmed."""
    layout = STEPS.plan(bam, bam.name, build_settings(load_settings()))
    parts = list(range(layout["parts"]))
    outs = [[bam.with_name(f"{groups}-{g}-{i}") for i in parts] for g in range(groups)]
    reports = [STEPS.route(bam, layout, parts, outs[g], 1, bam.name, False, g, groups) for g in range(groups)]
    return [b"".join(outs[g][i].read_bytes() for g in range(groups)) for i in parts], STEPS.confirmed(reports)


@pytest.mark.parametrize("groups", [2, 3])
def test_records_across_bgzf_blocks_route_in_groups_to_the_one_groups_parts(tmp_path, groups):
    header, records = raw_bam(tmp_path / "a.bam")
    bam = reblocked(tmp_path / "spans.bam", header + b"".join(records))
    with open(bam, "rb") as stream:
        from pipelines import bgzf

        assert len(list(bgzf.walk(stream))) >= 5  # records start mid-block, not at a block's start
    whole, _ = routed(bam, 1)
    pieces, confirmed = routed(bam, groups)
    assert confirmed and pieces == whole
    one, parted = both_ways(bam, tmp_path, groups)
    assert Path(one.artifacts["data"]).read_bytes() == Path(parted.artifacts["data"]).read_bytes()


def test_a_block_starting_with_records_inside_a_tag_is_not_taken_for_a_seam(tmp_path):
    """A record whose tag holds copies of other records, the copies starting the second block exactly: the
    second group's guess is those copies; it is not confirmed, and the parts are still exact."""
    header, records = raw_bam(tmp_path / "a.bam")
    k = max(n for n in range(len(records)) if len(header) + sum(map(len, records[:n + 1])) < 0xFF00 - 2000)
    before = len(header) + sum(map(len, records[:k + 1]))
    fake = b"".join(records[k + 1:k + 7])
    records[k] = with_tag(records[k], b"\x01" * (0xFF00 - before - 8) + fake)
    bam = reblocked(tmp_path / "fake.bam", header + b"".join(records))
    from pipelines.alignments_split import shares

    groups = len(shares(bam, 64)) - 1  # enough groups that every block starts one
    whole, _ = routed(bam, 1)
    pieces, confirmed = routed(bam, groups)
    assert not confirmed and pieces != whole  # the guess took the copies for records
    one, parted = both_ways(bam, tmp_path, groups)
    assert parted.status == "built" and parted.records["in"] == one.records["in"] == 3020
    assert Path(one.artifacts["data"]).read_bytes() == Path(parted.artifacts["data"]).read_bytes()


def test_groups_with_no_record_start_in_their_share_still_give_the_exact_parts(tmp_path):
    """A record three blocks long (random bytes: its blocks are as big compressed): the groups that start
    inside it find no record start, and the file is built exactly."""
    header, records = raw_bam(tmp_path / "a.bam")
    records[len(records) // 2] = with_tag(records[len(records) // 2], random.Random(5).randbytes(200_000))
    bam = reblocked(tmp_path / "long.bam", header + b"".join(records))
    whole, _ = routed(bam, 1)
    pieces, confirmed = routed(bam, 40)
    assert not confirmed
    one, parted = both_ways(bam, tmp_path, 40)
    assert parted.status == "built"
    assert Path(one.artifacts["data"]).read_bytes() == Path(parted.artifacts["data"]).read_bytes()


def test_compressed_pieces_of_three_groups_sort_to_the_whole_parts_bytes(tmp_path):
    """Over a network store each group's pieces are BGZF (each with its EOF block): cat into the sort,
    they give the sorted parts of one group's raw parts."""
    header, records = raw_bam(tmp_path / "a.bam")
    bam = reblocked(tmp_path / "spans.bam", header + b"".join(records))
    settings = build_settings(settings_for(tmp_path, "s"))
    layout = STEPS.plan(bam, bam.name, settings)
    parts = list(range(layout["parts"]))
    assert len(parts) == 3
    outs = [[tmp_path / f"z{g}-{i}" for i in parts] for g in range(3)]
    reports = [STEPS.route(bam, layout, parts, outs[g], 1, bam.name, True, g, 3) for g in range(3)]
    assert STEPS.confirmed(reports)
    whole = [tmp_path / f"w-{i}" for i in parts]
    STEPS.route(bam, layout, parts, whole, 1, bam.name, False)
    for i in parts:
        made = STEPS.sort_part([outs[g][i] for g in range(3)], tmp_path / f"z{i}.sorted", layout, settings, tmp_path)
        one = STEPS.sort_part([whole[i]], tmp_path / f"w{i}.sorted", layout, settings, tmp_path)
        assert made[0].read_bytes() == one[0].read_bytes()


def test_a_source_rewritten_between_two_route_groups_commits_nothing(tmp_path, monkeypatch):
    """Only the first route group hashes a local source; a later group that read it in another state (here,
    one byte of a read rewritten between the groups, the size unchanged) must not have its pieces sorted."""
    bam = tied_bam(tmp_path / "ties.bam", {"chr1": 5000, "chr2": 4000, "chr3": 3000})
    real = split.route_group

    def rewrite_after_the_first(doc, fmt, settings, key, groups, g):  # type: ignore[no-untyped-def]
        done = real(doc, fmt, settings, key, groups, g)
        if g == 0:
            data = bytearray(bam.read_bytes())
            data[len(data) // 2] ^= 0xFF
            bam.write_bytes(bytes(data))
        return done

    monkeypatch.setattr(split, "route_group", rewrite_after_the_first)
    settings = settings_for(tmp_path, "store", part_size=bam.stat().st_size // 3)
    doc = doc_for(bam)
    with pytest.raises(preprocess.SourceError, match="changed while it was being built"):
        split.build_split(doc, "BAM", settings, key_for(pipeline_for("BAM"), doc.md5 or "", settings), 2)
    assert not list((tmp_path / "store").glob("**/manifest.json"))


@pytest.mark.parametrize("backend", ["s3", "az"])
def test_a_parted_build_on_an_object_store_gives_the_local_builds_bytes(tmp_path, request, backend):
    """The parts area on S3 (moto) or Azure Blob (Azurite): pieces compressed to travel and uploaded whole,
    two route groups, the parts sorted and merged from there; the same key, bytes and records as the
    single build on a local store, the index samtools' own, and nothing left under parts/ once committed."""
    from preprocess.store import ArtifactStore

    bam = tied_bam(tmp_path / "ties.bam", {"chr1": 5000, "chr2": 4000, "chr3": 3000, "chrM": 600})
    part_size = bam.stat().st_size // 4
    doc = doc_for(bam)
    whole = build_doc(doc, "BAM", settings_for(tmp_path, "local", part_size))
    bucket = request.getfixturevalue("s3_bucket" if backend == "s3" else "az_container")
    url = f"{backend}://{bucket}/store"
    remote = settings_for(tmp_path, "unused", part_size, **{"store.url": url})
    store = ArtifactStore(url)
    assert store.over_network  # the path a cluster's workers take: pieces compressed before they travel
    parted = split.build_split(doc, "BAM", remote, key_for(pipeline_for("BAM"), md5(bam), remote), 2)
    assert parted.status == "built", parted.error
    assert parted.key == whole.key and parted.records == whole.records and parted.records["parts"] == 4
    fetched = tmp_path / "fetched"
    fetched.mkdir()
    for kind in ("data", "index"):
        assert parted.artifacts[kind].startswith(f"{url}/v1/")
        local = fetched / Path(parted.artifacts[kind]).name
        local.write_bytes(store.fs.cat_file(parted.artifacts[kind]))
        assert local.read_bytes() == Path(whole.artifacts[kind]).read_bytes(), kind
    again = tmp_path / "again.bai"
    subprocess.run(["samtools", "index", "-b", str(fetched / "sorted.bam"), str(again)], check=True)
    assert again.read_bytes() == (fetched / "sorted.bam.bai").read_bytes()
    assert not store.fs.exists(split.parts_dir(store, parted.key)) or not store.fs.find(
        split.parts_dir(store, parted.key))


def _ranges_by_scan(lengths: dict[str, int], parts: int) -> list[tuple[int, int]]:
    """part_ranges as it was when the parted layout's bytes were pinned (pipelines/pins.py): a scan for
    the reference boundary nearest each part's share, the first on a tie."""
    import itertools

    count = len(lengths)
    parts = max(1, min(parts, count))
    ends = list(itertools.accumulate(lengths.values()))
    total = ends[-1] if ends else 0
    cuts = [0]
    for share in range(1, parts):
        target = total * share / parts
        cuts.append(min(range(cuts[-1] + 1, count - (parts - share) + 1), key=lambda tid: abs(ends[tid - 1] - target)))
    cuts.append(max(count, 1))
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def test_part_ranges_cut_where_the_pinned_scan_cut():
    """The parts decide a split BAM's bytes: the bisection cuts every reference list where the scan did,
    ties (equal distances, empty references) included."""
    rng = random.Random(5)
    for _ in range(3000):
        kind = rng.random()
        lengths = {f"c{i}": rng.choice([0, 1, 5, 10]) if kind < 0.3 else rng.choice([1, 2, 4, 8]) if kind < 0.6
                   else rng.randint(1, 10**6) for i in range(rng.randint(0, 40))}
        parts = rng.randint(1, 45)
        assert alignments_split.part_ranges(lengths, parts) == _ranges_by_scan(lengths, parts), (lengths, parts)
    human = {f"chr{i}": length for i, length in enumerate([248956422, 242193529, 198295559, 190214555] * 6)}
    assert alignments_split.part_ranges(human, 8) == _ranges_by_scan(human, 8)
    for lengths in [{"a": 1, "b": 1, "c": 2**60}, *({f"c{i}": rng.choice([1, 2**51, 2**62]) for i in range(12)}
                                                   for _ in range(300))]:  # past 2^53 the scan saw float ties
        for parts in (2, 3, 5, 12):
            assert alignments_split.part_ranges(lengths, parts) == _ranges_by_scan(lengths, parts), (lengths, parts)
