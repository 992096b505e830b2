"""CRAM through the real samtools/htslib: its reference from the document, from the CRAM itself or
from REF_CACHE by M5; a CRAM whose reference is nowhere is an input error that says where it looked."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pysam
import pytest

import preprocess
from preprocess.api import run_many
from preprocess.config import load_settings
from tests import samples
from tests.conftest import md5, store_files
from tests.servers import FileServer


def decoded(path: str, reference: Path | None = None) -> list[tuple[str, int, int, str]]:
    """(name, reference id, position, sequence) of every record; decoding checks every slice's md5."""
    with pysam.AlignmentFile(path, reference_filename=str(reference) if reference else None, check_sq=False) as aln:
        return [(r.query_name, r.reference_id if r.reference_id >= 0 else 1 << 30, r.reference_start,
                 r.query_sequence) for r in aln.fetch(until_eof=True)]


def serve(server: FileServer, reference: Path, name: str = "ref.fa") -> str:
    server.add(name + ".fai", Path(str(reference) + ".fai").read_bytes())
    return server.add(name, reference.read_bytes())


@pytest.fixture
def reference(data: Path) -> Path:
    (data / "made").mkdir()
    return samples.fasta(data / "made" / "ref.fa")


def test_cram_with_the_documents_reference_becomes_sorted_cram_with_crai(data, settings, reference, tmp_path):
    cram = samples.cram(data / "a.cram", reference)
    with FileServer() as server:
        url = serve(server, reference)
        doc = {"id": "a", "access_url": str(cram), "md5": md5(cram), "reference": url}
        result = preprocess.run(doc, settings=settings)
        assert result.status == "built" and result.format == "CRAM" and result.pipeline == "cram"
        out, crai = result.artifacts["data"], result.artifacts["index"]
        assert out.endswith("/sorted.cram") and crai == out + ".crai"
        assert result.records == {"in": 1510, "out": 1510, "index": "crai", "references": 3, "output": "cram",
                                  "reference": "external"}
        records = decoded(out, reference)
        assert len(records) == 1510 and [r[1:3] for r in records] == sorted(r[1:3] for r in records)
        assert sorted(records) == sorted(decoded(str(cram), reference))  # every read, every base kept
        assert Path(out).stat().st_size < 3 * cram.stat().st_size  # still reference-compressed, not embedded
        with pysam.AlignmentFile(out, reference_filename=str(reference)) as aln:
            assert aln.check_index() and len(list(aln.fetch("chr2", 1000, 5000))) > 0
            assert not any("UR" in sq for sq in aln.header.to_dict()["SQ"])  # no path for htslib to follow

        # The reference's md5 is part of the key; given in the document, a cached CRAM needs no fetch.
        again = preprocess.run({**doc, "reference_md5": md5(reference)}, settings=settings)
        assert again.status == "cached" and again.key == result.key
        fetched_before = len(server.requests)
        other = run_many([{**doc, "id": "b", "reference_md5": md5(reference)}], settings=settings).results[0]
        assert other.status == "cached" and len(server.requests) == fetched_before

        # The same CRAM built in another store (another work directory) gives the same bytes.
        elsewhere = preprocess.run(doc, settings=settings, store=str(tmp_path / "other-store"))
        assert elsewhere.status == "built" and elsewhere.key == result.key
        assert _sha(elsewhere.artifacts["data"]) == _sha(out) and _sha(elsewhere.artifacts["index"]) == _sha(crai)


def test_cram_with_embedded_references_needs_none_and_stays_self_contained(data, settings, reference):
    cram = samples.cram(data / "e.cram", reference, embed=True)
    shutil.rmtree(reference.parent)  # nothing outside the CRAM
    result = preprocess.run({"id": "e", "access_url": str(cram)}, settings=settings)
    assert result.status == "built" and result.records["reference"] == "embedded"
    assert result.records["in"] == result.records["out"] == 1510
    records = decoded(result.artifacts["data"])  # readable with no reference at all
    assert len(records) == 1510 and sorted(records) == sorted(decoded(str(cram)))


def test_cram_reference_found_by_m5_in_ref_cache(data, settings, reference, monkeypatch):
    cram = samples.cram(data / "c.cram", reference, reads=400)
    cache = data / "cache"
    for bases in samples.read_sequences(reference).values():
        digest = hashlib.md5(bases.encode()).hexdigest()
        (cache / digest[:2] / digest[2:4]).mkdir(parents=True, exist_ok=True)
        (cache / digest[:2] / digest[2:4] / digest[4:]).write_text(bases)  # htslib's %s: what is left
    monkeypatch.setenv("REF_CACHE", f"{cache}/%2s/%2s/%s")
    result = preprocess.run({"id": "c", "access_url": str(cram)}, settings=settings)
    assert result.status == "built" and result.records["in"] == result.records["out"] == 410
    assert len(decoded(result.artifacts["data"], reference)) == 410


def test_cram_whose_reference_is_nowhere_is_an_input_error_saying_what_was_tried(data, settings, reference,
                                                                                 store_dir, monkeypatch):
    cram = samples.cram(data / "m.cram", reference, reads=300)
    sq = samples.read_sequences(reference)
    with FileServer() as server:
        # htslib would fetch a reference from a URL in REF_PATH (the EBI by default): it must not
        url = server.add(hashlib.md5(sq["chr1"].encode()).hexdigest(), sq["chr1"].encode())
        monkeypatch.setenv("REF_PATH", url.rsplit("/", 1)[0] + "/%s")
        report = run_many([{"id": "m", "access_url": str(cram), "format": "CRAM"}], settings=settings)
        assert server.requests == []
    failed = report.results[0]
    assert failed.status == "failed" and failed.error.class_ == "InputError"
    message = failed.error.message
    assert message.startswith("m.cram: no reference sequence for @SQ SN:chr")
    for words in ("not embedded in the CRAM", "the document gives no reference", "no REF_CACHE",
                  "URLs are never used", "UR file:/generated/ref.fa"):
        assert words in message
    assert store_files(store_dir) == []


def test_the_bytes_of_a_cram_do_not_depend_on_whether_its_ur_path_exists_on_the_worker(data, settings, reference,
                                                                                      tmp_path):
    """The same document, built once with the FASTA at the header's UR path and once without: one key,
    one set of bytes, reference-compressed as the document asks, and labelled so."""
    at_ur = tmp_path / "elsewhere" / "ref.fa"
    at_ur.parent.mkdir()
    shutil.copy(reference, at_ur)  # no .fai: htslib would write one beside it
    cram = samples.cram(data / "u.cram", reference, ur=f"file:{at_ur}")
    doc = {"id": "u", "access_url": str(cram), "md5": md5(cram), "reference": str(reference)}
    present = preprocess.run(doc, settings=settings, store=str(tmp_path / "first"))
    assert sorted(p.name for p in at_ur.parent.iterdir()) == ["ref.fa"]
    shutil.rmtree(at_ur.parent)
    absent = preprocess.run(doc, settings=settings, store=str(tmp_path / "second"))
    assert present.key == absent.key
    assert present.records["reference"] == absent.records["reference"] == "external"
    assert _sha(present.artifacts["data"]) == _sha(absent.artifacts["data"])
    assert sorted(decoded(absent.artifacts["data"], reference)) == sorted(decoded(str(cram), reference))


@pytest.mark.parametrize("where", ["url", "path"])
def test_a_ur_tag_is_never_followed_to_a_url_or_an_unnamed_local_file(data, settings, reference, tmp_path,
                                                                       store_dir, where):
    """A reference is taken from the document, the CRAM or the worker's REF_CACHE/REF_PATH, never from
    a path or URL written inside the input: no request reaches the UR's server, no file appears beside
    the UR's FASTA, and with no reference anywhere the build fails and commits nothing."""
    unnamed = tmp_path / "unnamed"
    unnamed.mkdir()
    shutil.copy(reference, unnamed / "ref.fa")
    with FileServer() as server:
        ur = serve(server, reference) if where == "url" else f"file:{unnamed / 'ref.fa'}"
        cram = samples.cram(data / "x.cram", reference, reads=300, ur=ur)
        report = run_many([{"id": "x", "access_url": str(cram), "format": "CRAM"}], settings=settings)
        assert server.requests == []
    assert sorted(p.name for p in unnamed.iterdir()) == ["ref.fa"]
    failed = report.results[0]
    assert failed.status == "failed" and failed.error.class_ == "InputError"
    assert f"UR {ur} is never followed" in failed.error.message
    assert store_files(store_dir) == []


def test_cram_with_the_wrong_reference_names_the_sequence_that_differs(data, settings, reference):
    cram = samples.cram(data / "w.cram", reference, reads=300)
    other = samples.fasta(data / "other.fa", seed=99)  # same names and lengths, other bases
    with pytest.raises(preprocess.InputError, match=r"w.cram: no reference sequence for @SQ SN:chr\w+ .*"
                       r"the document's reference has chr\w+ with md5 [0-9a-f]{32}, not the M5"):
        preprocess.run({"id": "w", "access_url": str(cram), "reference": str(other)}, settings=settings)


def test_unaligned_cram_builds_with_no_reference(data, settings):
    """Unaligned reads (PacBio HiFi) kept as CRAM: no @SQ, nothing to look up."""
    cram = data / "hifi.cram"
    subprocess.run(["samtools", "view", "--no-PG", "-C", "-o", str(cram),
                    str(samples.unaligned_bam(data / "hifi.bam", reads=200))], check=True)
    result = preprocess.run({"id": "hifi", "access_url": str(cram)}, settings=settings)
    assert result.records == {"in": 200, "out": 200, "index": "crai", "references": 0, "output": "cram",
                              "reference": "embedded"}
    assert len(decoded(result.artifacts["data"])) == 200


def test_a_cached_reference_with_other_bases_is_an_input_error_not_a_silent_misread(data, settings, reference,
                                                                                   monkeypatch):
    cram = samples.cram(data / "s.cram", reference, reads=300, ordered=True)  # one reference per slice: md5s
    edited = data / "edited"
    edited.mkdir()
    for bases in samples.read_sequences(reference).values():  # filed under the right M5, one base changed
        middle = len(bases) // 2
        (edited / hashlib.md5(bases.encode()).hexdigest()).write_text(bases[:middle] + "N" + bases[middle + 1:])
    monkeypatch.setenv("REF_PATH", f"{edited}/%s")
    with pytest.raises(preprocess.InputError, match=r"s.cram: the reference sequence found for @SQ SN:chr\w+ "
                       r".*has other bases than the CRAM was encoded against"):
        preprocess.run({"id": "s", "access_url": str(cram)}, settings=settings)


def test_cram_to_bam_by_the_cram_output_setting_gets_its_own_key(data, settings, reference, store_dir, tmp_path):
    cram = samples.cram(data / "b.cram", reference, reads=500)
    doc = {"id": "b", "access_url": str(cram), "reference": str(reference)}
    as_cram = preprocess.run(doc, settings=settings)
    bam_settings = load_settings(**{"store.url": str(store_dir), "cluster.profile": "sync",
                                    "scratch": str(tmp_path / "scratch"), "cram-output": "bam"})
    as_bam = preprocess.run(doc, settings=bam_settings)
    assert as_bam.key != as_cram.key and as_bam.records["output"] == "bam"
    assert as_bam.artifacts["data"].endswith("/sorted.bam") and as_bam.artifacts["index"].endswith(".bam.bai")
    with pysam.AlignmentFile(as_bam.artifacts["data"]) as aln:
        assert aln.check_index() and aln.mapped == 500 and aln.unmapped == 10
    assert sorted(decoded(as_bam.artifacts["data"])) == sorted(decoded(as_cram.artifacts["data"], reference))


def test_a_reference_without_its_fai_or_a_truncated_cram_is_an_input_error(data, settings, reference):
    cram = samples.cram(data / "t.cram", reference, reads=200)
    bare = data / "bare.fa"
    bare.write_bytes(reference.read_bytes())
    with pytest.raises(preprocess.InputError, match=r"reference .*bare.fa has no .fai index beside it"):
        preprocess.run({"id": "t", "access_url": str(cram), "reference": str(bare)}, settings=settings)
    cut = data / "cut.cram"
    cut.write_bytes(cram.read_bytes()[:-200])
    with pytest.raises(preprocess.InputError, match="cut.cram: CRAM is truncated or corrupt"):
        preprocess.run({"id": "u", "access_url": str(cut), "reference": str(reference)}, settings=settings)


def _sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.parametrize("embed", [False, True])
def test_threads_and_sort_memory_do_not_change_cram_bytes(data, tmp_path, embed):
    """Many ties and a tiny sort buffer force temp files and merges; CRAM containers must not move."""
    (data / "small").mkdir()
    reference = samples.fasta(data / "small" / "ref.fa", contigs={"chr1": 400, "chr2": 400})
    cram = samples.cram(data / "ties.cram", reference, reads=20000, embed=embed)
    doc = {"id": "ties", "access_url": str(cram), "reference": str(reference)}
    built = []
    for name, threads, memory in (("a", 1, "768M"), ("b", 3, "1M")):
        settings = load_settings(**{"store.url": str(tmp_path / name), "cluster.profile": "sync",
                                    "scratch": str(tmp_path), "threads": threads, "sort-memory": memory})
        built.append(preprocess.run(doc, settings=settings))
    one, two = built
    assert one.key == two.key and one.records["out"] == 20010
    assert {k: _sha(v) for k, v in one.artifacts.items()} == {k: _sha(v) for k, v in two.artifacts.items()}


def test_a_cached_cram_with_its_reference_md5_is_answered_without_pysam_dask_or_the_reference(
        data, settings, reference, store_dir):
    cram = samples.cram(data / "k.cram", reference, reads=200)
    doc = {"id": "k", "access_url": str(cram), "md5": md5(cram), "reference": str(reference),
           "reference_md5": md5(reference)}
    assert preprocess.run(doc, settings=settings).status == "built"
    reference.unlink()  # not needed to find the artifacts again
    code = ("import json, sys, preprocess; r = preprocess.run(json.loads(sys.argv[1]), store=sys.argv[2]); "
            "print(r.status, 'pysam' in sys.modules, 'distributed' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(doc), str(store_dir)], capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stdout.split() == ["cached", "False", "False"]
