"""Fetch a document's bytes to the worker's scratch, hashing on the way and checking md5 and size.

Local paths and file:// URLs are read in place (hashed, not copied). http(s) streams with one GET
(requests); s3, az/abfs and gs stream through fsspec; drs://host/id is first resolved through the
GA4GH DRS API. Only known-transient failures are retried (tenacity, jittered backoff), then reported
as SourceError; a missing package is a ConfigError, a full scratch disk a ScratchError, a bug itself.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .config import SourceSettings
from .errors import ConfigError, InputError, PreprocessError, ScratchError, SourceError
from .model import FileDoc
from .shell import check_time
from .urls import Url, scrub

CHUNK = 8 * 2**20


@dataclass(frozen=True)
class Fetched:
    """A source on local disk, with the hashes computed while it was read. `read_in_place`: the user's own
    file (a local source), whose state before it was read is kept, to prove it unchanged after the build."""

    path: Path
    md5: str
    sha256: str
    size: int
    read_in_place: tuple[int, ...] | None = None


def file_state(path: Path) -> tuple[int, ...]:
    """What changes when a file's bytes do: device, inode, size, and modification and change times (ns)."""
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def check_unchanged(doc_id: str, fetched: Fetched, what: str = "source") -> None:
    """SourceError when a file read in place changed since it was hashed: the bytes built would not be the
    bytes the key and the manifest's md5 name. Retried like any SourceError, once the file is still."""
    if fetched.read_in_place is None:
        return
    try:
        now: tuple[int, ...] | None = file_state(fetched.path)
    except OSError:
        now = None
    if now != fetched.read_in_place:
        before = fetched.read_in_place[2]
        after = "gone" if now is None else f"{now[2]} bytes"
        raise SourceError(f"{doc_id}: {what} {fetched.path} changed while it was being built ({before} bytes "
                          f"when hashed, {after} after the build, modified since): nothing was committed")


def is_local(url: str | Url) -> bool:
    return Url(url).scheme in ("", "file")


def local_path(url: str | Url) -> Path:
    url = Url(url)
    return Path(url.path)


def fetch(doc: FileDoc, scratch: Path, settings: SourceSettings) -> Fetched:
    """The document's file on local disk, md5- and size-checked; InputError on a mismatch."""
    shown = str(doc.access_url)
    if is_local(doc.access_url):
        path = local_path(doc.access_url)
        if not path.is_file():
            raise InputError(f"{doc.id}: source {shown} does not exist or is not a file", doc_id=doc.id)
        try:
            fetched = _hash_file(path, file_state(path))
        except OSError as exc:
            raise InputError(f"{doc.id}: cannot read {shown}: {exc}") from None
    else:
        url = doc.access_url.reveal()
        fetched = _with_retries(lambda: _download(url, scratch, settings, doc.size), url, settings, doc.id, shown)
    _check(doc, fetched, shown)
    return fetched


class Hashing:
    """A local source whose document names its md5, hashed on a thread beside the build (hashlib releases
    the GIL): the build starts at once, and `result()` (the Fetched, or the InputError of a mismatch) is
    taken before anything is committed. Saves a serial read of the whole file."""

    def __init__(self, doc: FileDoc) -> None:
        import threading
        from concurrent.futures import Future

        self.path = local_path(doc.access_url)
        shown = str(doc.access_url)
        if not self.path.is_file():
            raise InputError(f"{doc.id}: source {shown} does not exist or is not a file", doc_id=doc.id)
        self.state = state = file_state(self.path)  # before the build or the hash reads a byte

        def read() -> Fetched:
            try:
                fetched = _hash_file(self.path, state)
            except OSError as exc:
                raise InputError(f"{doc.id}: cannot read {shown}: {exc}") from None
            _check(doc, fetched, shown)
            return fetched

        self._future: Future[Fetched] = Future()

        def run() -> None:
            try:
                self._future.set_result(read())
            except BaseException as exc:  # noqa: BLE001 - handed to whoever takes the result
                self._future.set_exception(exc)

        threading.Thread(target=run, name="preprocess-hash", daemon=True).start()

    def result(self) -> Fetched:
        return self._future.result()


def _check(doc: FileDoc, fetched: Fetched, shown: str) -> None:
    if doc.size is not None and doc.size != fetched.size:
        raise InputError(f"{doc.id}: size mismatch for {shown}: document says {doc.size}, file has {fetched.size}")
    if doc.md5 is not None and doc.md5 != fetched.md5:
        raise InputError(f"{doc.id}: md5 mismatch for {shown}: document says {doc.md5}, file has {fetched.md5}")


def _hash_file(path: Path, state: tuple[int, ...] | None = None) -> Fetched:
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    size = 0
    with open(path, "rb") as stream:
        while block := stream.read(CHUNK):
            md5.update(block)
            sha.update(block)
            size += len(block)
    return Fetched(path, md5.hexdigest(), sha.hexdigest(), size, state)


def fetch_reference(doc: FileDoc, scratch: Path, settings: SourceSettings) -> Fetched:
    """The document's reference FASTA on local disk with its .fai (and .gzi when bgzipped) beside it,
    fetched like a source; InputError when an index is missing or the md5 is not the document's."""
    assert doc.reference is not None
    reference = Url(doc.reference)
    shown = str(reference)
    if is_local(reference):
        path = local_path(reference)
        if not path.is_file():
            raise InputError(f"{doc.id}: reference {shown} does not exist or is not a file")
        fetched = _hash_file(path, file_state(path))
        for suffix in _index_suffixes(path):
            if not path.with_name(path.name + suffix).is_file():
                raise InputError(f"{doc.id}: reference {shown} has no {suffix} index beside it "
                                 "(make one with samtools faidx)")
    else:
        raw = reference.reveal()
        fetched = _with_retries(lambda: _download(raw, scratch, settings, None, "reference.fa"), raw, settings,
                                doc.id, shown)
        for suffix in _index_suffixes(fetched.path):
            index_url = _beside(raw, suffix)
            def get_index(u: str = index_url, s: str = suffix) -> Fetched:
                return _download(u, scratch, settings, None, "reference.fa" + s)

            try:
                _with_retries(get_index, index_url, settings, doc.id, f"{shown}{suffix}")
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


def _download(url: str, scratch: Path, settings: SourceSettings, expected: int | None,
              name: str = "source") -> Fetched:
    target = scratch / name
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    size = 0
    resolved, headers = resolve(url, settings)
    with _open(resolved, headers, settings) as (blocks, announced), open(target, "wb") as out:
        expected = expected or announced
        for block in blocks:
            md5.update(block)
            sha.update(block)
            size += len(block)
            try:
                out.write(block)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise ScratchError(str(scratch), needed=expected or None,
                                       detail=f"{size} bytes of the source received when it filled") from None
                raise
            check_time("downloading the source")
    return Fetched(target, md5.hexdigest(), sha.hexdigest(), size)


def resolve(url: str, settings: SourceSettings) -> tuple[str, dict[str, str]]:
    """The URL to download, with the headers to send; drs:// is resolved to an access URL first."""
    if urlsplit(url).scheme == "drs":
        from .drs import resolve_drs

        return resolve_drs(url, settings)
    return url, {}


@contextmanager
def _open(url: str, headers: dict[str, str], settings: SourceSettings) -> Iterator[tuple[Iterator[bytes], int | None]]:
    """The URL's bytes as blocks, and its size when the server says: one streaming GET for http(s),
    fsspec for object stores."""
    scheme = urlsplit(url).scheme
    if scheme in ("http", "https"):
        import requests

        # requests, not fsspec's HTTP layer: fsspec reports a 503 as FileNotFoundError, which would
        # turn a passing outage into an input error. requests itself does not retry (urllib3 Retry(0)).
        with requests.get(url, headers=headers, stream=True, timeout=(30, settings.timeout)) as response:
            if response.status_code in (404, 410):
                raise FileNotFoundError(url)
            response.raise_for_status()
            length = response.headers.get("Content-Length", "")
            yield response.iter_content(CHUNK), int(length) if length.isdigit() else None
        return
    try:
        import fsspec

        fs, path = fsspec.url_to_fs(url, **library_retries(scheme, settings))
        if scheme in ("s3", "s3a"):
            fs.retries = 1  # s3fs's own loop off: botocore's policy makes every try (an instance of our own)
        with fs.open(path, "rb") as stream:
            size = getattr(stream, "size", None)
            yield iter(lambda: stream.read(CHUNK), b""), size if isinstance(size, int) else None
    except ImportError as exc:
        package = {"s3": "s3fs", "az": "adlfs", "abfs": "adlfs", "gs": "gcsfs", "gcs": "gcsfs"}.get(scheme, scheme)
        raise ConfigError(f"{scheme}:// sources need {package}: pip install {package} ({exc.name} is missing)") \
            from None


def library_retries(scheme: str, settings: SourceSettings) -> dict[str, Any]:
    """fsspec options giving an object-store source `attempts` tries in all, made by the library's own
    retry policy (botocore "standard": throttling codes, 5xx, connection errors, jittered backoff),
    with s3fs's own loop off so the two do not multiply. Azure and GCS keep their libraries' policies
    (docs/design-notes.md says how many tries those make); this module adds none on top."""
    if scheme in ("s3", "s3a"):
        return {"config_kwargs": {"retries": {"mode": "standard", "total_max_attempts": settings.attempts}}}
    return {}


def _attempts(url: str, settings: SourceSettings) -> int:
    """Tries made here: every configured attempt for http(s) and DRS, which nothing else retries;
    one for object stores, whose libraries retry themselves (see library_retries)."""
    return settings.attempts if urlsplit(url).scheme in ("http", "https", "drs") else 1


def _with_retries(action: Callable[[], Fetched], url: str, settings: SourceSettings, doc_id: str,
                  shown: str) -> Fetched:
    """Run `action`, retrying only known-transient failures with jittered exponential backoff; classify
    the rest at once (see _classify). A bug raises as itself."""
    import tenacity

    attempts = _attempts(url, settings)
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential_jitter(multiplier=settings.backoff, max=max(settings.backoff, 60),
                                              jitter=settings.backoff),
        retry=tenacity.retry_if_exception(transient), reraise=True,
        before_sleep=lambda _: check_time("waiting to retry the source"))
    try:
        return retrying(action)
    except (PreprocessError, tenacity.TryAgain):
        raise
    except Exception as exc:  # noqa: BLE001 - classified below; a bug is re-raised as itself
        tries = retrying.statistics.get("attempt_number", 1)
        raise _classify(exc, doc_id, shown, tries) from None


# Class names, anywhere in an exception's MRO, of failures that may pass: connection resets and
# refusals, timeouts, a connection cut mid-body (requests, urllib3, aiohttp, botocore, azure-core).
_TRANSIENT_CLASSES = {
    "ConnectionError", "Timeout", "TimeoutError", "ChunkedEncodingError", "ProtocolError", "ReadTimeoutError",
    "NewConnectionError", "ClientConnectionError", "ClientPayloadError", "ServerDisconnectedError",
    "IncompleteRead", "EndpointConnectionError", "ConnectionClosedError", "ServiceRequestError",
    "ServiceResponseError", "FSTimeoutError",
}
# Throttling and server-side error codes of S3 and Azure Storage.
_TRANSIENT_CODES = {
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
    "RequestTimeout", "RequestTimeTooSkewed", "InternalError", "ServiceUnavailable", "ServerBusy",
    "OperationTimedOut", "InternalServerError",
}


def transient(exc: BaseException) -> bool:
    """Whether trying again may help: a known-transient class, HTTP 408/429/5xx, or a throttling code."""
    if isinstance(exc, PreprocessError):
        return exc.retry
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"SSLError", "InvalidURL", "InvalidSchema", "MissingSchema"}:  # trying again cannot help
        return False
    if names & _TRANSIENT_CLASSES:
        return True
    if _code(exc) in _TRANSIENT_CODES:
        return True
    status = _status(exc)
    return status is not None and (status in (408, 429) or status >= 500)


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    for value in (getattr(exc, "status_code", None), getattr(exc, "status", None),
                  getattr(response, "status_code", None),
                  (response.get("ResponseMetadata") or {}).get("HTTPStatusCode") if isinstance(response, dict)
                  else None):
        if isinstance(value, int):
            return value
    return None


def _code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return (response.get("Error") or {}).get("Code")
    code = getattr(exc, "error_code", None)
    return str(code) if code else None


def _classify(exc: Exception, doc_id: str, shown: str, tries: int) -> Exception:
    """The classified error for a fetch that failed for good; an unknown builtin error (a bug) as itself."""
    reason = f"{type(exc).__name__}: {scrub(str(exc))}"
    if isinstance(exc, ImportError):
        return ConfigError(f"{doc_id}: fetching {shown} needs a package that is not installed: {exc.name}")
    if isinstance(exc, FileNotFoundError):
        return InputError(f"{doc_id}: source {shown} does not exist", doc_id=doc_id)
    status = _status(exc)
    if isinstance(exc, PermissionError) or status in (401, 403):
        return SourceError(f"{doc_id}: access to {shown} denied: {reason}")
    if transient(exc):
        return SourceError(f"{doc_id}: fetching {shown} failed after {tries} attempt(s): {reason}")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return ScratchError(getattr(exc, "filename", None) or "scratch", detail=scrub(str(exc)))
    if type(exc).__module__ == "builtins" and not isinstance(exc, OSError):
        return exc  # a bug: raised as itself, never retried
    return SourceError(f"{doc_id}: fetching {shown} failed: {reason}")


def scratch_dir(base: str | None) -> Path:
    root = Path(base) if base else Path(os.environ.get("TMPDIR", "/tmp"))
    root.mkdir(parents=True, exist_ok=True)
    return root
