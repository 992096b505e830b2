from pathlib import Path

import pytest

from preprocess.catalog import read_catalog
from preprocess.errors import ConfigError, InputError
from preprocess.model import FileDoc


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "manifest.csv"
    path.write_text(text)
    return path


def test_rows_become_docs_with_extra_columns_kept_and_relative_paths_resolved(tmp_path):
    path = write(tmp_path, "id,access_url,format,md5,size,project\n"
                           "s1,data/s1.sam,SAM,,12,P1\n"
                           "s2,s3://bucket/s2.bam,bam,0123456789abcdef0123456789abcdef,,P2\n")
    first, second = read_catalog(path)
    assert isinstance(first, FileDoc) and isinstance(second, FileDoc)
    assert first.access_url == str(tmp_path / "data" / "s1.sam")
    assert first.size == 12 and first.md5 is None and first.extra == {"project": "P1"}
    assert second.access_url == "s3://bucket/s2.bam" and second.format == "bam"


def test_malformed_rows_are_errors_with_line_numbers_and_the_rest_still_parse(tmp_path):
    path = write(tmp_path, "id,access_url,format,md5\n"
                           "ok1,a.bam,BAM,\n"
                           "bad1,b.bam,BAM\n"                    # line 3: too few fields
                           "bad2,c.bam,BAM,nothex\n"             # line 4: bad md5
                           ",d.bam,BAM,\n"                       # line 5: empty id
                           "ok1,e.bam,BAM,\n"                    # line 6: repeated id
                           "\n"
                           "ok2,f.vcf,,\n")
    rows = read_catalog(path)
    errors = [r for r in rows if isinstance(r, InputError)]
    assert [str(e).split(":")[0] for e in errors] == [
        "manifest.csv line 3", "manifest.csv line 4", "manifest.csv line 5", "manifest.csv line 6"]
    assert "2 fields" not in str(errors[0]) and "has 3 fields, the header has 4" in str(errors[0])
    assert "md5" in str(errors[1]) and "repeats line 2" in str(errors[3])
    assert [r.id for r in rows if isinstance(r, FileDoc)] == ["ok1", "ok2"]


@pytest.mark.parametrize("text, message", [
    ("", "empty manifest"),
    ("id,access_url\ns1,a.bam\n", r"lacks required column\(s\) format"),
    ("id,id,access_url,format\n", "repeats a column"),
])
def test_unusable_manifest_is_a_config_error(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        read_catalog(write(tmp_path, text))


def test_missing_manifest_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read manifest"):
        read_catalog(tmp_path / "nope.csv")


def test_a_reference_column_is_a_cram_reference_relative_to_the_csv(tmp_path):
    path = write(tmp_path, "id,access_url,format,reference,reference_md5\n"
                           "c1,data/c1.cram,CRAM,refs/GRCh38.fa,0123456789ABCDEF0123456789ABCDEF\n"
                           "c2,s3://b/c2.cram,CRAM,https://h/GRCh38.fa,\n"
                           "c3,s3://b/c3.cram,CRAM,,\n")
    first, second, third = read_catalog(path)
    assert isinstance(first, FileDoc) and isinstance(second, FileDoc) and isinstance(third, FileDoc)
    assert first.reference == str(tmp_path / "refs" / "GRCh38.fa")
    assert first.reference_md5 == "0123456789abcdef0123456789abcdef" and first.extra == {}
    assert (second.reference, second.reference_md5) == ("https://h/GRCh38.fa", None)
    assert third.reference is None


@pytest.mark.parametrize("wide", [0, 10_000], ids=["short-rows", "a-10kB-column-first"])
def test_a_byte_that_is_not_utf8_fails_its_own_row_and_every_other_row_parses(tmp_path, wide):
    """One Latin-1 byte in a row: that row is an error naming its line and the byte's offset; the rows
    before and after it (also in the same read buffer as the bad byte) are documents."""
    first = b"ok1,b1.bed,BED," + b"x" * wide + b"\n"
    raw = b"id,access_url,format,note\n" + first + b"bad\xff,b1.bed,BED,\nok2,p1.narrowPeak,narrowPeak,\n"
    path = tmp_path / "manifest.csv"
    path.write_bytes(raw)
    rows = read_catalog(path)
    assert [r.id for r in rows if isinstance(r, FileDoc)] == ["ok1", "ok2"]
    (error,) = [r for r in rows if isinstance(r, InputError)]
    assert error.doc_id == "line 3"
    offset = len(b"id,access_url,format,note\n") + len(first) + len(b"bad")
    assert str(error) == (f"manifest.csv line 3: unreadable row: byte 0xff at line 3, byte offset {offset} "
                          "is not UTF-8 (save the manifest as UTF-8)")


def test_a_header_byte_that_is_not_utf8_is_a_config_error_naming_its_offset(tmp_path):
    path = tmp_path / "manifest.csv"
    path.write_bytes(b"\xef\xbb\xbfid,access_url,form\xe9t\nok1,b1.bed,BED\n")  # a BOM, then Latin-1
    with pytest.raises(ConfigError, match=r"unreadable header row: byte 0xe9 at line 1, byte offset 21 "):
        read_catalog(path)


def test_every_row_of_a_latin1_export_is_named_with_its_own_offset(tmp_path):
    """A manifest saved as Latin-1: each row with an accent fails on its own line and offset (the bytes are
    found reading forward once), the others parse."""
    rows = [b"id,access_url,format\n", b"caf\xe9,a.bed,BED\n", b"ok,b.bed,BED\n", b"na\xefve,c.bed,BED\n"]
    path = tmp_path / "manifest.csv"
    path.write_bytes(b"".join(rows))
    first, ok, second = read_catalog(path)
    assert isinstance(ok, FileDoc) and ok.id == "ok"
    assert "byte 0xe9 at line 2, byte offset 24 " in str(first)
    assert f"byte 0xef at line 4, byte offset {len(b''.join(rows[:3])) + 2} " in str(second)
