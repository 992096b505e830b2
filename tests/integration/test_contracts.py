"""Contracts the key relies on: bytes depend only on what the key covers, and racing builds agree."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pysam
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from preprocess.build import build_doc
from preprocess.config import load_settings
from preprocess.model import FileDoc
from preprocess.store import ArtifactStore
from tests import samples


def digests(result) -> dict[str, str]:
    return {kind: hashlib.sha256(Path(uri).read_bytes()).hexdigest() for kind, uri in result.artifacts.items()}


def settings_with(tmp_path: Path, name: str, **more):
    return load_settings(**{"store.url": str(tmp_path / name), "cluster.profile": "sync", "scratch": str(tmp_path),
                            **more})


def test_threads_and_sort_memory_do_not_change_bytes(tmp_path):
    # Many ties (300 positions for 20000 reads) and a tiny sort buffer force temp files and merges.
    bam = samples.bam(tmp_path / "ties.bam", reads=20000, contigs={"chr1": 200, "chr2": 200})
    bed = samples.bed(tmp_path / "ties.bed", records=20000, contigs={"chr1": 1100, "chr2": 1100}, track=False)
    for path, fmt in ((bam, "BAM"), (bed, "BED")):
        doc = FileDoc(id=path.name, access_url=str(path), format=fmt)
        one = build_doc(doc, fmt, settings_with(tmp_path, f"a-{fmt}", threads=1, **{"sort-memory": "768M"}))
        two = build_doc(doc, fmt, settings_with(tmp_path, f"b-{fmt}", threads=2, **{"sort-memory": "1M"}))
        assert one.status == two.status == "built" and one.key == two.key
        assert digests(one) == digests(two)


def test_racing_builds_of_one_key_leave_one_consistent_commit(tmp_path):
    sam = samples.sam(tmp_path / "race.sam", reads=5000)
    doc = FileDoc(id="race", access_url=str(sam), format="SAM")
    settings = settings_with(tmp_path, "store")
    results = []
    threads = [threading.Thread(target=lambda: results.append(build_doc(doc, "SAM", settings))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {r.status for r in results} <= {"built", "cached"} and len({r.key for r in results}) == 1
    store = ArtifactStore(str(tmp_path / "store"))
    manifest = store.lookup(results[0].key)
    for art in manifest.artifacts:
        data = Path(store.path(manifest.key, art.name)).read_bytes()
        assert hashlib.sha256(data).hexdigest() == art.sha256 and len(data) == art.size
    names = sorted(p.name for p in Path(store.key_dir(manifest.key)).iterdir())
    assert names == ["manifest.json", "sorted.bam", "sorted.bam.bai"]  # no temp files left by the losers


bed_rows = st.lists(
    st.tuples(st.sampled_from(["chr1", "chr2", "chrX", "scaffold_10"]), st.integers(0, 10**6), st.integers(0, 5000),
              st.text(alphabet="abcXYZ_.0123", min_size=1, max_size=8)),
    min_size=0, max_size=200)


# derandomize: the same 25 examples on every run (CI reproduces what it found); a random run once spun
# for minutes inside hypothesis's own mutation step (6.170), never reaching the test body
@hsettings(max_examples=25, deadline=None, derandomize=True, database=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=bed_rows, crlf=st.booleans(), blank_every=st.integers(0, 7))
def test_any_valid_bed_loses_no_record_and_comes_out_sorted(tmp_path_factory, rows, crlf, blank_every):
    work = tmp_path_factory.mktemp("bed")
    lines = [f"{c}\t{s}\t{s + w}\t{name}" for c, s, w, name in rows]
    text, numbers = "", []
    for i, line in enumerate(lines):
        if blank_every and i % blank_every == 0:
            text += "\n"
        text += line + ("\r\n" if crlf else "\n")
        numbers.append(text.count("\n"))
    path = work / "random.bed"
    path.write_text(text)
    result = build_doc(FileDoc(id="r", access_url=str(path), format="BED"), "BED", settings_with(work, "store"))
    unindexable = [numbers[i] for i, (_, s, w, _) in enumerate(rows) if s == 0 and w == 0]
    if unindexable:  # tabix would silently drop chr 0 0: refused, naming the line
        assert result.status == "failed" and f"line {unindexable[0]}: start 0 and end 0" in result.error.message
        return
    assert result.status == "built", result.error
    assert result.records["in"] == result.records["out"] == len(lines)
    with pysam.TabixFile(result.artifacts["data"], index=result.artifacts["index"]) as tbx:
        fetched = [row for contig in tbx.contigs for row in tbx.fetch(contig)]
        assert sorted(fetched) == sorted(lines)
        for contig in tbx.contigs:
            starts = [int(row.split("\t")[1]) for row in tbx.fetch(contig)]
            assert starts == sorted(starts)


def test_hostile_file_names_are_data_never_code(tmp_path):
    folder = tmp_path / "we$(touch pwned)ird dir; rm -rf x"
    folder.mkdir()
    sam = samples.sam(folder / "a 'quoted' $(touch pwned2) `id`.sam", reads=200)
    bed = samples.bed(folder / '-n "b"; touch pwned3.bed', records=50)
    for path, fmt in ((sam, "SAM"), (bed, "BED")):
        result = build_doc(FileDoc(id=path.name, access_url=str(path), format=fmt), fmt,
                           settings_with(tmp_path, f"store {fmt} $(touch pwned4)"))
        assert result.status == "built", result.error
    assert not any(p.name.startswith("pwned") for p in tmp_path.rglob("*"))
    assert not any(Path.cwd().glob("pwned*"))
