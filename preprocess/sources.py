"""Fetch a document's bytes to the worker's scratch, hashing on the way and checking md5 and size.

Local paths and file:// URLs are read in place (hashed, not copied). http(s) streams with one GET
(requests); s3, az/abfs and gs stream through fsspec; drs://host/id is first resolved through the
GA4GH DRS API. Only known-transient failures are retried (tenacity, jittered backoff), then reported
as SourceError; a missing package is a ConfigError, a full scratch disk a ScratchError, a bug itself.
A download must bring source.min-rate bytes a second over each source.timeout seconds (a server that
drips a byte every few seconds trips no read timeout), and an http(s) read never waits past the task's
time cap.
"""

from __future__ import annotations

import errno
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from . import digests
from .config import SourceSettings
from .digests import file_state
from .errors import ConfigError, InputError, PreprocessError, ScratchError, SourceError, scrub
from .model import FileDoc
from .shell import check_time, time_left
from .urls import Url

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
            fetched = _hash_local(path)
        except OSError as exc:
            raise InputError(f"{doc.id}: cannot read {shown}: {exc}", doc_id=doc.id) from None
    else:
        url = doc.access_url.reveal()
        fetched = _with_retries(lambda: _download(url, scratch, settings, doc.size), url, settings, doc.id, shown)
    _check(doc, fetched, shown)
    return fetched


class Hashing:
    """A local source whose document names its md5, hashed on threads beside the build (hashlib releases
    the GIL): the build starts at once, and `result()` (the Fetched, or the InputError of a mismatch) is
    taken before anything is committed. Saves a serial read of the whole file; a hash of the file in
    this very state already begun in this process (digests: the CLI's, the plan's) is reused."""

    def __init__(self, doc: FileDoc) -> None:
        self.path = local_path(doc.access_url)
        self._doc, self._shown = doc, str(doc.access_url)
        found = digests.start(self.path, sha256=True, one_pass=True)
        if found is None:  # missing, or not a regular file
            raise InputError(f"{doc.id}: source {self._shown} does not exist or is not a file", doc_id=doc.id)
        self._found = found
        self.state = found.state  # taken before the build or the hash read a byte

    def result(self) -> Fetched:
        try:
            fetched = _fetched(self._found)
        except OSError as exc:
            raise InputError(f"{self._doc.id}: cannot read {self._shown}: {exc}", doc_id=self._doc.id) from None
        _check(self._doc, fetched, self._shown)
        return fetched


def _check(doc: FileDoc, fetched: Fetched, shown: str) -> None:
    if doc.size is not None and doc.size != fetched.size:
        raise InputError(f"{doc.id}: size mismatch for {shown}: document says {doc.size}, file has {fetched.size}",
                         doc_id=doc.id)
    if doc.md5 is not None and doc.md5 != fetched.md5:
        raise InputError(f"{doc.id}: md5 mismatch for {shown}: document says {doc.md5}, file has {fetched.md5}",
                         doc_id=doc.id)


def _hash_local(path: Path) -> Fetched:
    """A local file's hashes, read in place (or taken already in this state: digests); OSError where it
    cannot be read."""
    found = digests.start(path, sha256=True)
    if found is None:
        raise FileNotFoundError(f"not a regular file: {path}")
    return _fetched(found)


def _fetched(found: digests.Digests) -> Fetched:
    return Fetched(found.path, found.md5.result(), found.want_sha256().result(), found.state[2], found.state)


def fetch_reference(doc: FileDoc, scratch: Path, settings: SourceSettings) -> Fetched:
    """The document's reference FASTA on local disk with its .fai (and .gzi when bgzipped) beside it,
    fetched like a source; InputError when an index is missing or the md5 is not the document's."""
    assert doc.reference is not None
    reference = Url(doc.reference)
    shown = str(reference)
    if is_local(reference):
        path = local_path(reference)
        if not path.is_file():
            raise InputError(f"{doc.id}: reference {shown} does not exist or is not a file", doc_id=doc.id)
        fetched = _hash_local(path)
        for suffix in _index_suffixes(path):
            if not path.with_name(path.name + suffix).is_file():
                raise InputError(f"{doc.id}: reference {shown} has no {suffix} index beside it "
                                 "(make one with samtools faidx)", doc_id=doc.id)
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
                                 "(make one with samtools faidx)", doc_id=doc.id) from None
    if doc.reference_md5 is not None and doc.reference_md5 != fetched.md5:
        raise InputError(f"{doc.id}: md5 mismatch for reference {shown}: document says {doc.reference_md5}, "
                         f"file has {fetched.md5}", doc_id=doc.id)
    return fetched


def _index_suffixes(fasta: Path) -> tuple[str, ...]:
    with open(fasta, "rb") as stream:
        return (".fai", ".gzi") if stream.read(2) == b"\x1f\x8b" else (".fai",)


def _beside(url: str, suffix: str) -> str:
    """The URL of a file named like `url` plus `suffix`, keeping a signed URL's query string."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path + suffix))


class SlowSource(TimeoutError):
    """A download slower than source.min-rate: transient (retried like a read timeout), then a SourceError."""


class _Pace:
    """A download's floor: each window of `source.timeout` seconds must bring `source.min-rate` bytes a
    second, no read may wait longer than `source.timeout`, and none past the task's time cap."""

    _SLACK = 0.1  # seconds: a socket's timeout may fire a hair before the moment it was set for

    def __init__(self, settings: SourceSettings) -> None:
        self.window, self.min_rate = settings.timeout, settings.min_rate
        self.began, self.got = time.monotonic(), 0

    def _roll(self, now: float) -> None:
        """Close every window ended by `now`; SlowSource for one that brought too little."""
        while now >= self.began + self.window:
            if self.got < self.min_rate * self.window:
                raise SlowSource(f"{self.got} bytes in {self.window:g}s, slower than source.min-rate "
                                 f"({self.min_rate} bytes/s over each source.timeout)")
            self.began, self.got = self.began + self.window, 0

    def wait_allowed(self) -> float:
        """Seconds the next read may block: until a window would end too slow, at most `source.timeout`,
        and no later than the task's time cap."""
        now = time.monotonic()
        self._roll(now)
        fails_at = self.began + self.window * (2 if self.got >= self.min_rate * self.window else 1)
        wait = min(fails_at - now, self.window)
        cap = time_left()
        return max(0.01, wait if cap is None else min(wait, cap))

    def received(self, size: int) -> None:
        """Count a block; TimeLimitError past the task's cap, SlowSource when a window ended too slow."""
        check_time("downloading the source")
        self.got += size
        self._roll(time.monotonic())

    def stalled(self) -> None:
        """A read waited all wait_allowed gave it: the task's cap passed, a window ended too slow, or
        nothing came for `source.timeout` seconds (a read timeout). Raises which."""
        cap = time_left()
        if cap is not None and cap < self._SLACK:
            time.sleep(cap + 0.001)
            check_time("downloading the source")
        self._roll(time.monotonic() + self._SLACK)
        raise SlowSource(f"no byte for {self.window:g}s (source.timeout)")


def _download(url: str, scratch: Path, settings: SourceSettings, expected: int | None,
              name: str = "source") -> Fetched:
    target = scratch / name
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    size = 0
    resolved, headers = resolve(url, settings)
    pace = _Pace(settings)
    with _open(resolved, headers, settings, pace) as (blocks, announced), open(target, "wb") as out:
        expected = expected or announced
        for block in blocks:
            pace.received(len(block))
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
    return Fetched(target, md5.hexdigest(), sha.hexdigest(), size)


def resolve(url: str, settings: SourceSettings) -> tuple[str, dict[str, str]]:
    """The URL to download, with the headers to send; drs:// is resolved to an access URL first."""
    if urlsplit(url).scheme == "drs":
        from .drs import resolve_drs

        return resolve_drs(url, settings)
    return url, {}


@contextmanager
def _open(url: str, headers: dict[str, str], settings: SourceSettings,
          pace: _Pace) -> Iterator[tuple[Iterator[bytes], int | None]]:
    """The URL's bytes as blocks, and its size when the server says: one streaming GET for http(s),
    fsspec for object stores (whose libraries bound their own reads; `pace` checks the rate between blocks)."""
    scheme = urlsplit(url).scheme
    if scheme in ("http", "https"):
        import requests

        # requests, not fsspec's HTTP layer: fsspec reports a 503 as FileNotFoundError, which would
        # turn a passing outage into an input error. requests itself does not retry (urllib3 Retry(0)).
        wait = pace.wait_allowed()
        with requests.get(url, headers=headers, stream=True, timeout=(min(30, wait), wait)) as response:
            if response.status_code in (404, 410):
                raise FileNotFoundError(url)
            response.raise_for_status()
            length = response.headers.get("Content-Length", "")
            yield _paced(response, pace), int(length) if length.isdigit() else None
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
        missing = f" ({exc.name} is missing)" if exc.name else ""  # fsspec's own ImportError names no module
        raise ConfigError(f"{scheme}:// sources need {package}: pip install {package}{missing}") from None


def _paced(response: Any, pace: _Pace) -> Iterator[bytes]:
    """An http(s) body as it arrives (read1: whatever one socket read brings, decoded as requests would),
    each read waiting on the socket only as long as `pace` allows."""
    from urllib3.exceptions import ReadTimeoutError

    raw = response.raw
    sock = getattr(raw.connection, "sock", None)
    while True:
        if sock is not None:
            sock.settimeout(pace.wait_allowed())
        try:
            block = raw.read1(CHUNK, decode_content=True)
        except ReadTimeoutError:
            pace.stalled()
            raise
        if not block:
            return
        yield block


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
    the rest at once (see classify_failure). A bug raises as itself."""
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
        check_time("fetching the source")  # a request cut short by the task's time cap is that cap's
        tries = retrying.statistics.get("attempt_number", 1)
        raise classify_failure(exc, doc_id, shown, tries) from None


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


def classify_failure(exc: Exception, doc_id: str, shown: str, tries: int) -> Exception:
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
