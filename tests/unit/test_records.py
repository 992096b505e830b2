"""Records (preprocess/records.py): what a document, a setting or a manifest read back is checked for,
and what its errors and JSON show."""

import json
import pickle

import pytest

from preprocess.config import Settings, load_settings
from preprocess.errors import ConfigError, InputError
from preprocess.model import Artifact, FileDoc, Manifest, RunResult, ValidationError
from preprocess.urls import Url

SECRET = "https://user:hunter2@host/x.bam?X-Amz-Signature=SECRETSIG"


def _manifest(**changes):
    data = {"key": "a" * 64, "layout": "v1",
            "source": {"url": "https://host/x.bam", "format": "BAM", "md5": "b" * 32, "size": 10},
            "pipeline": {"name": "alignments", "version": "1", "parameters": {"level": 6}},
            "artifacts": [{"kind": "data", "name": "sorted.bam", "size": 5, "sha256": "c" * 64}]}
    data.update(changes)
    return data


def test_a_catalogue_rows_text_becomes_typed_values():
    doc = FileDoc(id=" a ", access_url=" x.bam ", size=" 120 ", md5=" ABCDEF0123456789ABCDEF0123456789 ",
                  format="", filename="")
    assert (doc.id, doc.access_url.reveal(), doc.size, doc.md5) == ("a", "x.bam", 120,
                                                                    "abcdef0123456789abcdef0123456789")
    assert (doc.format, doc.filename, doc.reference) == (None, None, None)
    assert isinstance(doc.access_url, Url)


@pytest.mark.parametrize("field, value, rule", [
    ("size", "12.5", "size: must be a whole number"),
    ("size", -1, "size: must be at least 0"),
    ("size", True, "size: must be a whole number"),
    ("id", "", "id: must not be empty"),
    ("id", 7, "id: must be text"),
    ("access_url", "", "access_url: must not be empty"),
    ("access_url", ["x"], "access_url: must be a URL or path"),
    ("extra", "x", "extra: must be a mapping"),
])
def test_a_bad_field_is_named_with_its_rule(field, value, rule):
    values = {"id": "a", "access_url": "x.bam", field: value}
    with pytest.raises(ValidationError) as caught:
        FileDoc(**values)
    assert str(caught.value) == rule


def test_every_bad_field_and_unknown_key_is_named_at_once():
    with pytest.raises(ValidationError) as caught:
        FileDoc(id="", size=-2, colour="red")
    assert caught.value.reasons == [("id", "must not be empty"), ("access_url", "field required"),
                                    ("size", "must be at least 0"), ("colour", "unknown field")]


@pytest.mark.parametrize("make", [
    lambda: FileDoc(id="a", access_url="x", size=SECRET),
    lambda: FileDoc(id="a", access_url="x", md5=SECRET),
    lambda: FileDoc(id="a", access_url=[SECRET]),
    lambda: Manifest.from_dict(_manifest(key=SECRET)),
    lambda: Manifest.from_dict(_manifest(artifacts=[{"kind": "data", "name": "../" + SECRET, "size": 1,
                                                     "sha256": "c" * 64}])),
    lambda: Manifest.from_json(SECRET),
    lambda: Manifest.from_json(b"\xff" + SECRET.encode()),
])
def test_an_error_never_shows_the_value_given(make):
    with pytest.raises(ValidationError) as caught:
        make()
    shown = str(caught.value) + repr(caught.value) + repr(pickle.loads(pickle.dumps(caught.value)))
    assert "SECRETSIG" not in shown and "hunter2" not in shown, shown


def test_the_md5_rule_names_what_it_wants():
    with pytest.raises(ValidationError, match="md5: md5 must be 32 hexadecimal digits"):
        FileDoc(id="a", access_url="x", md5="not-an-md5")


def test_a_nested_error_names_its_path():
    with pytest.raises(ValidationError) as caught:
        Manifest.from_dict(_manifest(source={"url": "u", "format": "BAM", "size": "big"},
                                     artifacts=[_manifest()["artifacts"][0], {"kind": "data", "name": "a/b",
                                                                              "size": 1, "sha256": "c" * 64}]))
    assert caught.value.reasons == [("source.md5", "field required"), ("source.size", "must be a whole number"),
                                    ("artifacts.1.name", "must be a file name, never a path")]


def test_a_manifest_round_trips_and_a_newer_writers_keys_are_ignored():
    manifest = Manifest.from_dict(_manifest(written_by="a later version"))
    again = Manifest.from_json(manifest.to_json())
    assert again == manifest and again.artifact("data") == Artifact(kind="data", name="sorted.bam", size=5,
                                                                      sha256="c" * 64)
    assert '"written_by"' not in manifest.to_json()


@pytest.mark.parametrize("text, rule", [
    ("not json", "document: invalid JSON: Expecting value at line 1 column 1"),
    ("[1, 2]", "document: must be a mapping"),
    ('{"key": 1}', "key: must be text"),
])
def test_a_manifest_that_is_not_one_says_why(text, rule):
    with pytest.raises(ValidationError) as caught:
        Manifest.from_json(text)
    assert str(caught.value).startswith(rule), str(caught.value)


def test_a_result_keeps_its_exception_through_pickle_and_replace_but_not_json():
    failed = RunResult.failure("a", InputError("bad row"))
    moved = pickle.loads(pickle.dumps(failed)).replace(id="b")
    assert isinstance(moved.exception, InputError) and moved.id == "b"
    assert "exception" not in moved.to_json() and '"class": "InputError"' in moved.to_json()
    with pytest.raises(ValidationError, match="status: must be one of 'built', 'cached'"):
        failed.replace(status="done")


def test_a_copy_is_checked_as_a_new_record_is():
    doc = FileDoc(id="a", access_url="x.bam")
    assert doc.replace(size="5").size == 5 and doc.size is None
    with pytest.raises(ValidationError, match="size: must be at least 0"):
        doc.replace(size=-5)


def test_json_shows_a_url_redacted_and_a_secret_hidden():
    doc = FileDoc(id="a", access_url=SECRET)
    assert doc.to_dict()["access_url"] == "https://host/x.bam" and "SECRETSIG" not in repr(doc)
    settings = load_settings(**{"store.url": SECRET, "store.storage-options": {"key": "SECRETKEY"}})
    shown = settings.to_json() + repr(settings)
    assert "SECRETKEY" not in shown and "SECRETSIG" not in shown and "hunter2" not in shown
    assert settings.to_dict()["store"]["storage-options"] == "**********"
    assert settings.store.options() == {"key": "SECRETKEY"}


def test_settings_take_dashed_or_underscored_keys_and_their_units():
    settings = load_settings(**{"store.url": "/s", "cluster.worker-ttl": "2m", "source.min_rate": "1KiB",
                                "task-timeout": "1h", "threads": "3", "split.part-size": "1MiB"})
    assert (settings.cluster.worker_ttl, settings.source.min_rate, settings.task_timeout, settings.threads,
            settings.split.part_size) == (120, 1024, 3600, 3, 2**20)
    assert load_settings(**{"store.url": "/s", "threads": "auto"}).threads == "auto"
    assert Settings.default_of("sort_memory") == "768M"


@pytest.mark.parametrize("key, value, rule", [
    ("threads", 0, "threads: must be at least 1 or must be one of 'auto'"),
    ("cluster.profile", "cloud", "cluster.profile: must be one of 'auto', 'local'"),
    ("cluster.n-workers", "two", "cluster.n-workers: must be a whole number"),
    ("source.timeout", "soon", "source.timeout: must be a number"),
    ("compression-level", 10, "compression-level: must be at most 9"),
    ("sort-memory", "lots", "sort-memory: must look like 768M or 2G"),
    ("keep-public-urls", "maybe", "keep-public-urls: must be true or false"),
    ("cluster.colour", "red", "cluster.colour: unknown field"),
])
def test_a_bad_setting_is_a_config_error_naming_its_key(key, value, rule):
    with pytest.raises(ConfigError) as caught:
        load_settings(**{"store.url": "/s", key: value})
    assert str(caught.value).startswith(f"invalid preprocess configuration: {rule}"), str(caught.value)


@pytest.mark.parametrize("key", ["cluster.worker-ttl", "task-timeout", "source.min-rate", "split.min-size"])
def test_a_bad_duration_or_size_is_named_without_its_value(key):
    with pytest.raises(ConfigError) as caught:
        load_settings(**{"store.url": "/s", key: "SECRETSIG"})
    assert str(caught.value).startswith(f"invalid preprocess configuration: {key}: expected a ")
    assert "SECRETSIG" not in str(caught.value)


def test_a_manifest_with_a_key_named_self_is_read_like_any_other():
    assert Manifest.from_json(Manifest.from_dict({**_manifest(), "self": 1}).to_json()).key == "a" * 64
    with pytest.raises(ValidationError, match="self: unknown field"):
        FileDoc(id="a", access_url="x", **{"self": 1})


@pytest.mark.parametrize("text", [
    '{"key": ' + "[" * 5000 + "]" * 5000 + "}",  # deeper than the parser's stack
    json.dumps(_manifest(records={"x": json.loads("[" * 100 + "]" * 100)})),  # parsed, deeper than a record holds
    json.dumps(_manifest(threads=None)).replace("null", "9" * 5000),  # past int's digit limit
])
def test_a_manifest_nested_too_deep_or_with_an_endless_number_is_a_validation_error(text):
    with pytest.raises(ValidationError):
        Manifest.from_json(text)


def test_a_size_as_a_spreadsheet_or_numpy_writes_it_is_a_whole_number():
    import numpy

    for given in ("12.0", " 12 ", 12.0, numpy.int64(12)):
        assert FileDoc(id="a", access_url="x", size=given).size == 12
    for given in ("12.5", "9" * 5000, float("inf"), True):
        with pytest.raises(ValidationError, match="size: must be a whole number"):
            FileDoc(id="a", access_url="x", size=given)


def test_json_is_always_valid_json():
    result = RunResult(id="a", status="built", timings={"sort": float("nan"), "index": float("inf")})
    assert json.loads(result.to_json())["timings"] == {"sort": None, "index": None}


def test_a_copy_names_a_field_it_does_not_have_and_keeps_what_it_does_not_change():
    doc = FileDoc(id="a", access_url=SECRET, extra={"project": "P"})
    moved = doc.replace(md5="ABCDEF0123456789ABCDEF0123456789")
    assert moved.md5 == "abcdef0123456789abcdef0123456789" and moved.access_url is doc.access_url
    assert moved.extra == {"project": "P"} and doc.md5 is None
    with pytest.raises(ValidationError, match="colour: unknown field"):
        doc.replace(colour="red")


def test_a_subclass_checks_its_own_fields_though_its_parent_was_made_first():
    from preprocess.records import Record

    class Parent(Record):
        size: int

    class Child(Parent):
        name: str = "x"

    assert Parent(size="1").size == 1  # Parent writes its own __init__, which Child inherits until it has one
    child = Child(size="2", name="y")
    assert (type(child), child.size, child.name) == (Child, 2, "y")
    with pytest.raises(ValidationError, match="name: must be text"):
        Child(size=1, name=3)
    assert Parent(size=3).size == 3 and not hasattr(Parent(size=3), "name")
