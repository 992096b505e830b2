"""Fetch a document's bytes to the worker's scratch, hashing on the way and checking md5 and size.

Local paths and file:// URLs are read in place (hashed, not copied). http(s) streams with one GET
(requests); s3, az/abfs and gs stream through fsspec; drs://host/id is first resolved through the
GA4GH DRS API. Transient failures are retried with backoff, then reported as SourceError.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .config import SourceSettings
from .errors import InputError, SourceError, TimeLimitError
from .model import FileDoc, redact_url
from .shell import check_time

CHUNK = 8 * 2**20


@dataclass(frozen=True)
class Fetched:
    """A source on local disk, with the hashes computed while it was read."""

    path: Path
    md5: str
    sha256: str
    size: int


def is_local(url: str) -> bool:
    scheme = urlsplit(url).scheme
    return scheme in ("", "file") or len(scheme) == 1


def local_path(url: str) -> Path:
    if url.startswith("file://"):
        return Path(urlsplit(url).path)
    return Path(url)


def fetch(doc: FileDoc, scratch: Path, settings: SourceSettings) -> Fetched:
    """The document's file on local disk, md5- and size-checked; InputError on a mismatch."""
    shown = redact_url(doc.access_url)
    if is_local(doc.access_url):
        path = local_path(doc.access_url)
        if not path.is_file():
            raise InputError(f"{doc.id}: source {shown} does not exist or is not a file")
        try:
            fetched = _hash_file(path)
        except OSError as exc:
            raise InputError(f"{doc.id}: cannot read {shown}: {exc}") from None
    else:
        fetched = _with_retries(lambda: _download(doc.access_url, scratch, settings), settings, doc.id, shown)
    _check(doc, fetched, shown)
    return fetched


def _check(doc: FileDoc, fetched: Fetched, shown: str) -> None:
    if doc.size is not None and doc.size != fetched.size:
        raise InputError(f"{doc.id}: size mismatch for {shown}: document says {doc.size}, file has {fetched.size}")
    if doc.md5 is not None and doc.md5 != fetched.md5:
        raise InputError(f"{doc.id}: md5 mismatch for {shown}: document says {doc.md5}, file has {fetched.md5}")


def _hash_file(path: Path) -> Fetched:
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    size = 0
    with open(path, "rb") as stream:
        while block := stream.read(CHUNK):
            md5.update(block)
            sha.update(block)
            size += len(block)
    return Fetched(path, md5.hexdigest(), sha.hexdigest(), size)


def fetch_reference(doc: FileDoc, scratch: Path, settings: SourceSettings) -> Fetched:
    """The document's reference FASTA on local disk with its .fai (and .gzi when bgzipped) beside it,
    fetched like a source; InputError when an index is missing or the md5 is not the document's."""
    assert doc.reference is not None
    shown = redact_url(doc.reference)
    if is_local(doc.reference):
        path = local_path(doc.reference)
        if not path.is_file():
            raise InputError(f"{doc.id}: reference {shown} does not exist or is not a file")
        fetched = _hash_file(path)
        for suffix in _index_suffixes(path):
            if not path.with_name(path.name + suffix).is_file():
                raise InputError(f"{doc.id}: reference {shown} has no {suffix} index beside it "
                                 "(make one with samtools faidx)")
    else:
        fetched = _with_retries(lambda: _download(doc.reference or "", scratch, settings, "reference.fa"),
                                settings, doc.id, shown)
        for suffix in _index_suffixes(fetched.path):
            index_url = _beside(doc.reference, suffix)
            try:
                _with_retries(lambda u=index_url, s=suffix: _download(u, scratch, settings, "reference.fa" + s),
                              settings, doc.id, f"{shown}{suffix}")
            except InputError:
                raise InputError(f"{doc.id}: reference {shown} has no {suffix} index beside it "
                                 "(make one with samtools faidx)") from None
    if doc.reference_md5 is not None and doc.reference_md5 != fetched.md5:
        raise InputError(f"{doc.id}: md5 mismatch for reference {shown}: document says {doc.reference_md5}, "
                         f"file has {fetched.md5}")
    return fetched


def _index_suffixes(fasta: Path) -> tuple[str, ...]:
    with open(fasta, "rb") as stream:
        return (".fai", ".gzi") if stream.read(2) == b"\x1f\x8b" else (".fai",)


def _beside(url: str, suffix: str) -> str:
    """The URL of a file named like `url` plus `suffix`, keeping a signed URL's query string."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path + suffix))


def _download(url: str, scratch: Path, settings: SourceSettings, name: str = "source") -> Fetched:
    target = scratch / name
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    size = 0
    resolved, headers = resolve(url, settings)
    with _open(resolved, headers, settings) as blocks, open(target, "wb") as out:
        for block in blocks:
            md5.update(block)
            sha.update(block)
            size += len(block)
            out.write(block)
            check_time("downloading the source")
    return Fetched(target, md5.hexdigest(), sha.hexdigest(), size)


def resolve(url: str, settings: SourceSettings) -> tuple[str, dict[str, str]]:
    """The URL to download, with the headers to send; drs:// is resolved to an access URL first."""
    if urlsplit(url).scheme == "drs":
        from .drs import resolve_drs

        return resolve_drs(url, settings)
    return url, {}


@contextmanager
def _open(url: str, headers: dict[str, str], settings: SourceSettings) -> Iterator[Iterator[bytes]]:
    """The URL's bytes as blocks: one streaming GET for http(s), fsspec for object stores."""
    if urlsplit(url).scheme in ("http", "https"):
        import requests

        # requests, not fsspec's HTTP layer: fsspec reports a 503 as FileNotFoundError, which would
        # turn a passing outage into an input error.
        with requests.get(url, headers=headers, stream=True, timeout=(30, settings.timeout)) as response:
            if response.status_code in (404, 410):
                raise FileNotFoundError(url)
            response.raise_for_status()
            yield response.iter_content(CHUNK)
        return
    import fsspec

    with fsspec.open(url, "rb") as stream:
        yield iter(lambda: stream.read(CHUNK), b"")


def _with_retries(action: Any, settings: SourceSettings, doc_id: str, shown: str) -> Fetched:
    delay = settings.backoff
    for attempt in range(1, settings.attempts + 1):
        try:
            return action()
        except (InputError, SourceError, TimeLimitError):
            raise
        except FileNotFoundError:
            raise InputError(f"{doc_id}: source {shown} does not exist") from None
        except PermissionError as exc:
            raise SourceError(f"{doc_id}: access to {shown} denied: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - network stacks raise many kinds; all may pass
            if not _transient(exc) or attempt == settings.attempts:
                raise SourceError(f"{doc_id}: fetching {shown} failed after {attempt} attempt(s): "
                                  f"{type(exc).__name__}: {_redact_message(str(exc), doc_id)}") from None
            time.sleep(delay)
            delay *= 2
            check_time("waiting to retry the source")
    raise AssertionError("unreachable")


def _transient(exc: BaseException) -> bool:
    response = getattr(exc, "response", None)
    status = getattr(exc, "status", None) or getattr(response, "status_code", None)
    if isinstance(status, int) and 400 <= status < 500 and status not in (408, 429):
        return False
    return True


def _redact_message(message: str, doc_id: str) -> str:
    # Library messages can echo a signed URL, whole or as a path ("Max retries exceeded with url:
    # /x.bam?sig=…" from urllib3); keep only what precedes any query string.
    return " ".join(redact_url(word) if "://" in word else word.split("?", 1)[0] for word in message.split())
