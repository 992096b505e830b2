"""Only known-transient failures are retried; the rest are classified at once, and a bug is itself."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import requests

from preprocess.config import load_settings
from preprocess.errors import ConfigError, InputError, ScratchError, SourceError
from preprocess.model import FileDoc
from preprocess.sources import classify_failure as _classify
from preprocess.sources import fetch, transient


def http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"{status} for url: https://h/x.bam?sig=SECRET", response=response)


def client_error(code: str, status: int):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "GetObject")


@pytest.mark.parametrize("make, retried", [
    (lambda: requests.ConnectionError("Max retries exceeded with url: /x?X-Amz-Signature=S"), True),
    (lambda: requests.ReadTimeout("read timed out"), True),
    (lambda: ConnectionResetError(104, "Connection reset by peer"), True),
    (lambda: TimeoutError("timed out"), True),
    (lambda: http_error(503), True),
    (lambda: http_error(429), True),
    (lambda: http_error(408), True),
    (lambda: http_error(404), False),
    (lambda: http_error(403), False),
    (lambda: requests.exceptions.SSLError("certificate verify failed"), False),
    (lambda: client_error("SlowDown", 503), True),
    (lambda: client_error("ThrottlingException", 400), True),
    (lambda: client_error("AccessDenied", 403), False),
    (lambda: __import__("azure.core.exceptions", fromlist=["x"]).ServiceRequestError("connection reset"), True),
    (lambda: ModuleNotFoundError("No module named 's3fs'", name="s3fs"), False),
    (lambda: OSError(28, "No space left on device"), False),
    (lambda: KeyError("a bug"), False),
    (lambda: TypeError("a bug"), False),
])
def test_only_known_transient_failures_are_retried(make, retried):
    assert transient(make()) is retried


def test_failures_are_classified_at_once():
    assert isinstance(_classify(ModuleNotFoundError("x", name="gcsfs"), "d", "gs://b/x", 1), ConfigError)
    assert isinstance(_classify(http_error(403), "d", "https://h/x", 1), SourceError)
    assert isinstance(_classify(FileNotFoundError("x"), "d", "https://h/x", 1), InputError)
    bug = KeyError("a bug")
    assert _classify(bug, "d", "https://h/x", 1) is bug
    exhausted = _classify(http_error(503), "d", "https://h/x.bam", 4)
    assert isinstance(exhausted, SourceError) and "after 4 attempt(s)" in str(exhausted)
    assert "SECRET" not in str(exhausted)


def settings(tmp_path: Path, **more):
    return load_settings(**{"store.url": str(tmp_path / "s"), "scratch": str(tmp_path), "source.backoff": 0.01,
                            **more}).source


def test_a_missing_optional_package_is_a_config_error_without_retries(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # as if not installed, whatever this machine has
    doc = FileDoc(id="g", access_url="gs://bucket/x.bam")
    with pytest.raises(ConfigError, match="gcsfs"):
        fetch(doc, tmp_path, settings(tmp_path, **{"source.attempts": 50}))


def test_a_full_scratch_disk_names_the_folder_and_the_bytes_needed(tmp_path):
    from tests.servers import FileServer

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    os.symlink("/dev/full", scratch / "source")  # the kernel answers every write with ENOSPC
    with FileServer() as server:
        url = server.add("x.sam", b"@HD\tVN:1.6\n" * 1000)
        doc = FileDoc(id="x", access_url=url, size=11000)
        with pytest.raises(ScratchError) as caught:
            fetch(doc, scratch, settings(tmp_path, **{"source.attempts": 3}))
        gets = [p for m, p, _ in server.requests if m == "GET"]
    assert caught.value.folder == str(scratch) and caught.value.needed == 11000
    assert str(scratch) in str(caught.value) and "11000 bytes" in str(caught.value)
    assert gets == ["/files/x.sam"]  # not retried


def test_a_refused_connection_is_retried_then_a_source_error_without_the_query(tmp_path):
    from tests.servers import free_port

    doc = FileDoc(id="r", access_url=f"http://127.0.0.1:{free_port()}/x.bam?X-Amz-Signature=SIGSECRET")
    with pytest.raises(SourceError, match=r"after 3 attempt\(s\): ConnectionError") as caught:
        fetch(doc, tmp_path, settings(tmp_path, **{"source.attempts": 3}))
    assert "SIGSECRET" not in str(caught.value) and "Max retries exceeded" in str(caught.value)
