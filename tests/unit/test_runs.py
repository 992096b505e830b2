"""Run records keep options without secrets; a key folder's listing decides whether a manifest is read."""

from __future__ import annotations

import json

import pytest

from preprocess.errors import ConfigError, InputError
from preprocess.model import FileDoc
from preprocess.runs import failed_ids, record_name, safe_options, select
from preprocess.stale import folder_shape as _shape


def test_safe_options_drop_userinfo_queries_and_storage_option_values():
    options = safe_options({"store": "s3://AKIA:hunter2@bucket/p?X-Amz-Signature=abc", "workers": 2,
                            "storage_options": {"key": "AKIA", "secret": "hunter2"}, "json": None,
                            "address": "tcp://user:pw@10.0.0.5:8786", "dry_run": False,
                            "manifests": ["https://h/c.csv?sig=zzz"]})
    text = json.dumps(options)
    assert "hunter2" not in text and "AKIA" not in text and "abc" not in text and "pw@" not in text
    assert "zzz" not in text
    assert options == {"store": "s3://bucket/p", "workers": 2, "storage_options": ["key", "secret"],
                       "address": "tcp://10.0.0.5:8786", "dry_run": False, "manifests": ["https://h/c.csv"]}


def test_record_names_sort_in_append_order():
    assert record_name(9) == "000000000009.json" and record_name(9) < record_name(10)


@pytest.mark.parametrize(("files", "shape"), [
    ({}, "absent"),
    ({"sorted.bam": 10, "sorted.bam.bai": 2}, "absent"),                       # a commit cut short
    ({"sorted.bam": 10, "sorted.bam.bai": 2, "manifest.json": 5}, "complete"),
    ({"sorted.vcf.gz": 10, "sorted.vcf.gz.csi": 2, "manifest.json": 5}, "complete"),
    ({"sorted.bam": 10, "manifest.json": 5}, "unsure"),                          # the index is gone
    ({"sorted.bam": 10, ".sorted.bam.1.tmp": 3, "manifest.json": 5}, "unsure"),  # a temp file is not one
    ({"data.csv": 10, "manifest.json": 5}, "complete"),                          # a passthrough: no index
    ({"data.bw": 10, "manifest.json": 5}, "complete"),
    ({"manifest.json": 5}, "unsure"),                                            # the data file is gone
    ({"data.csv": 10, "sorted.bam.bai": 2, "manifest.json": 5}, "unsure"),       # names of two pipelines
    ({"sorted.bam": 10, "sorted.bed.gz.tbi": 2, "manifest.json": 5}, "unsure"),
    ({"sorted.bam": 10, "sorted.bam.bai": 2, "sorted.bam.csi": 2, "manifest.json": 5}, "unsure"),
])
def test_a_listing_settles_a_key_only_when_it_shows_manifest_data_and_index(files, shape):
    assert _shape(files) == shape


def test_retry_failed_selects_the_failed_rows_of_a_report(tmp_path):
    report = tmp_path / "r.json"
    report.write_text(json.dumps({"results": [{"id": "a", "status": "built"}, {"id": "b", "status": "failed"},
                                              {"id": "line 4", "status": "failed"}]}))
    docs = [FileDoc(id="a", access_url="a.sam"), FileDoc(id="b", access_url="b.sam"),
            InputError("m.csv line 4: bad", doc_id="line 4")]
    assert failed_ids(str(report)) == {"b", "line 4"}
    assert select(docs, failed_ids(str(report))) == docs[1:]
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match=r"bad.json: not JSON; give the JSON report"):
        failed_ids(str(tmp_path / "bad.json"))
