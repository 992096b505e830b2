"""Every classified error keeps its attributes through pickle, and a result carries the real exception."""

from __future__ import annotations

import pickle

import pytest

from preprocess import errors
from preprocess.errors import (
    ConfigError,
    InputError,
    PreprocessError,
    ScratchError,
    SignatureError,
    SourceError,
    StoreError,
    TimeLimitError,
    ToolError,
    portable,
)
from preprocess.model import RunResult

EXAMPLES = [
    PreprocessError("plain"),
    InputError("x.bam: md5 mismatch", doc_id="s1"),
    InputError("no id"),
    SourceError("s1: fetching https://h/x.bam failed"),
    StoreError("uploading s3://b/k failed"),
    ConfigError("store s3://nope: bucket does not exist"),
    ToolError(["samtools", "sort", "-o", "out.bam"], 137, "killed\nout of memory", context="sorting x.bam"),
    ScratchError("/scratch/w1", needed=123456789, detail="No space left on device"),
    TimeLimitError("s1: stopped after 6h (preprocess.task-timeout) while building"),
    SignatureError("s3://b/v1/ab/ab…/manifest.json has no signature"),
]


def fields(exc: BaseException) -> tuple:
    return type(exc), str(exc), exc.args, vars(exc)


def test_every_error_class_is_covered():
    classes = {c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, PreprocessError)}
    assert classes == {type(e) for e in EXAMPLES}


@pytest.mark.parametrize("exc", EXAMPLES, ids=lambda e: type(e).__name__)
def test_each_error_round_trips_through_pickle_with_its_attributes(exc):
    again = pickle.loads(pickle.dumps(exc))
    assert fields(again) == fields(exc)
    assert portable(exc) is exc


def test_tool_error_keeps_argv_returncode_and_stderr_tail():
    exc = pickle.loads(pickle.dumps(EXAMPLES[6]))
    assert (exc.argv, exc.returncode, exc.stderr_tail, exc.context) == (
        ["samtools", "sort", "-o", "out.bam"], 137, "killed\nout of memory", "sorting x.bam")


def test_a_failed_result_carries_the_exception_through_pickle_and_copy():
    result = RunResult.failure("s1", EXAMPLES[6], format="BAM")
    again = pickle.loads(pickle.dumps(result)).replace(id="s2")
    assert isinstance(again.exception, ToolError) and again.exception.argv == EXAMPLES[6].argv
    assert again.error.class_ == "ToolError" and "exception" not in again.to_json()


def test_a_bug_stays_itself_but_a_library_error_holding_a_signed_url_does_not_travel():
    bug = KeyError("missing")
    assert portable(bug) is bug

    class LibraryError(Exception):
        def __init__(self, message: str, request: object) -> None:
            super().__init__(message)
            self.request = request

    leaky = LibraryError("Max retries exceeded with url: /x.bam?X-Amz-Signature=SIGSECRET (Caused by ...)",
                         request={"url": "https://h/x.bam?X-Amz-Signature=SIGSECRET"})
    moved = portable(leaky)
    assert type(moved) is PreprocessError and "SIGSECRET" not in repr(moved)
    assert "SIGSECRET" not in repr(pickle.loads(pickle.dumps(moved)).__dict__)
    assert str(moved).startswith("LibraryError: Max retries exceeded with url: /x.bam?")
    assert "SIGSECRET" not in str(RunResult.failure("a", leaky).error)


def test_a_result_read_back_from_json_rebuilds_its_class_where_it_can():
    stored = RunResult.from_json(RunResult.failure("s1", InputError("bad row")).to_json())
    assert type(stored.exception) is InputError and str(stored.exception) == "bad row"
    tool = RunResult.from_json(RunResult.failure("s1", EXAMPLES[6]).to_json())
    assert type(tool.exception) is PreprocessError and str(tool.exception).startswith("ToolError: sorting x.bam")


def test_a_url_prints_without_userinfo_or_query_in_every_text_form_but_pickles_whole():
    import json

    from preprocess.config import load_settings
    from preprocess.model import FileDoc
    from preprocess.urls import Url

    raw = "https://user:PW-SECRET@host:8443/a/b.bam?X-Amz-Signature=SIG-SECRET"
    url = Url(raw)
    doc = FileDoc(id="a", access_url=raw)
    texts = [str(url), repr(url), f"{url}", "{}".format(url), repr(doc), doc.to_json(),  # noqa: UP032
             json.dumps(doc.to_dict())]
    assert all("SECRET" not in text for text in texts) and str(url) == "https://host:8443/a/b.bam"
    assert pickle.loads(pickle.dumps(doc)).access_url.reveal() == raw
    settings = load_settings(**{"store.url": "s3://b/p", "store.storage-options": {"secret": "OPT-SECRET"}})
    assert "OPT-SECRET" not in repr(settings) + settings.to_json()
    assert b"OPT-SECRET" not in pickle.dumps(settings.for_workers())
    assert settings.store.options() == {"secret": "OPT-SECRET"}


def test_a_classified_error_quoting_a_query_like_text_keeps_its_class():
    exc = InputError("x.vcf: line 3: INFO field 'a?b=c' is malformed", doc_id="v")
    assert portable(exc) is exc
    import preprocess

    assert preprocess.ScratchError is ScratchError


def test_a_validation_error_is_described_by_its_reasons_never_its_input():
    """Issue 20 item 6: pydantic's str() quoted input_value; a report or a worker's error must not."""
    from preprocess.errors import describe, portable
    from preprocess.model import Manifest, ValidationError

    secret = '{"key": "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "layout": 7}'
    with pytest.raises(ValidationError) as caught:
        Manifest.from_json(secret)
    for shown in (str(caught.value), repr(caught.value), describe(caught.value)["message"],
                  str(portable(caught.value))):
        assert "EXAMPLEKEY" not in shown and "key: must be 64 lower-case hexadecimal digits" in shown, shown
        assert "layout: must be text" in shown and "source: field required" in shown, shown
