import json

import pytest

from preprocess.model import BatchReport, FileDoc, RunResult, ValidationError, redact_url


def test_md5_is_normalised_and_checked():
    assert FileDoc(id="a", access_url="x.bam", md5="ABCDEF0123456789ABCDEF0123456789").md5 == (
        "abcdef0123456789abcdef0123456789")
    with pytest.raises(ValidationError, match="32 hexadecimal"):
        FileDoc(id="a", access_url="x.bam", md5="not-an-md5")


def test_empty_optional_fields_mean_absent():
    doc = FileDoc(id="a", access_url="x.bam", md5="", size="", format="")
    assert (doc.md5, doc.size, doc.format) == (None, None, None)


def test_negative_size_and_unknown_fields_are_refused():
    with pytest.raises(ValidationError):
        FileDoc(id="a", access_url="x", size=-1)
    with pytest.raises(ValidationError):
        FileDoc(id="a", access_url="x", colour="red")


def test_name_comes_from_filename_else_url_path():
    assert FileDoc(id="a", access_url="https://h/p/x.bam?sig=1").name == "x.bam"
    assert FileDoc(id="a", access_url="drs://h/obj", filename="y.vcf.gz").name == "y.vcf.gz"


@pytest.mark.parametrize("url, shown", [
    ("https://user:secret@host:8443/a/b.bam?X-Amz-Signature=abc", "https://host:8443/a/b.bam"),
    ("s3://bucket/key.bam", "s3://bucket/key.bam"),
    ("/data/x.bam", "/data/x.bam"),
    ("az://c/p.bam?sv=2020&sig=zzz", "az://c/p.bam"),
])
def test_redact_url_drops_credentials_and_query(url, shown):
    assert redact_url(url) == shown


def test_report_json_has_error_class_and_counts():
    report = BatchReport(store="/s", started="t0", finished="t1", results=[
        RunResult(id="a", status="built", key="k" * 64, artifacts={"data": "/s/x.bam"}),
        RunResult.failure("b", {"class": "InputError", "message": "md5 mismatch"}),
    ])
    data = json.loads(report.to_json())
    assert data["counts"] == {"built": 1, "cached": 0, "passthrough": 0, "failed": 1}
    assert data["results"][1]["error"] == {"class": "InputError", "message": "md5 mismatch"}
    assert data["results"][0]["error"] is None
    assert not report.ok


def test_a_dict_document_keeps_unknown_fields_in_extra_and_a_bad_one_is_an_input_error():
    from preprocess.errors import InputError
    from preprocess.plan import coerce

    doc = coerce({"id": "a", "access_url": "x.bam", "project": "P1"})
    assert doc.extra == {"project": "P1"}
    with pytest.raises(InputError, match="b: invalid file document.*access_url"):
        coerce({"id": "b", "format": "BAM"})
