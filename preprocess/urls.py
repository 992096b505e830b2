"""Url: a URL whose text form never carries credentials or a query string.

`str()`, `repr()`, f-strings, logging and JSON serialization all see the redacted form
(`https://host/path`); only `reveal()` gives the raw value, and only an I/O call should ask for it.
Pickling seals a URL that has secrets (userinfo, query, fragment): the pickle holds its redacted text
and the raw value encrypted (Fernet) with the seal key, so a task's arguments never carry the secret
in clear whatever logs them (distributed at debug prints messages with their pickled bytes). A
process that holds the key (the client, the workers of a cluster it started, a worker told the key)
unpickles the URL whole; another keeps it sealed and refuses `reveal()`. `errors.scrub()` removes the same
secrets from text a library wrote (urllib3's "Max retries exceeded with url: /x?sig=…").
"""

from __future__ import annotations

import hmac
import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigError


def redact(url: str) -> str:
    """The URL without userinfo or query string (or fragment); a local path is returned as it is."""
    parts = urlsplit(url)
    if not parts.scheme or len(parts.scheme) == 1:  # a local path (or a Windows drive letter)
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class Url:
    """A URL (or local path) that prints redacted; `reveal()` is for the I/O call alone."""

    __slots__ = ("_raw",)
    _raw: str

    def __init__(self, raw: str | Url) -> None:
        self._raw = raw.reveal() if isinstance(raw, Url) else str(raw)  # a SealedUrl refuses: never a silent copy

    def reveal(self) -> str:
        """The raw URL, credentials and query included: pass it to the I/O call, never to a message."""
        return self._raw

    @property
    def scheme(self) -> str:
        """The lower-case scheme; "" for a local path (a Windows drive letter counts as a path)."""
        scheme = urlsplit(self._raw).scheme.lower()
        return "" if len(scheme) == 1 else scheme

    @property
    def path(self) -> str:
        return urlsplit(self._raw).path if self.scheme else self._raw

    def __str__(self) -> str:
        return redact(self._raw)

    def __repr__(self) -> str:
        return f"Url({redact(self._raw)!r})"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __eq__(self, other: object) -> bool:  # equal to its raw text too: comparing reveals nothing
        if isinstance(other, Url):
            return other._raw == self._raw
        return isinstance(other, str) and other == self._raw

    def __hash__(self) -> int:
        return hash(self._raw)

    def __reduce__(self) -> tuple[Any, ...]:
        shown = redact(self._raw)
        if shown == self._raw:
            return (Url, (self._raw,))  # nothing to hide: a local path, a plain URL
        return (_unseal, (shown, _fernet(seal_key()).encrypt(self._raw.encode()).decode("ascii")))

    def __dask_tokenize__(self) -> str:
        """A keyed hash (HMAC with the seal key): a task key names equal work alike, and a weak password
        in the URL cannot be guessed from it offline."""
        return hmac.new(seal_key(), self._raw.encode(), "sha256").hexdigest()

    @classmethod
    def coerce(cls, value: Any) -> Url:
        """A record field's check (records.py): a Url as it is, else non-empty text as a Url."""
        if isinstance(value, Url):
            return value
        if not isinstance(value, str):
            raise ValueError("must be a URL or path")
        if not value:
            raise ValueError("must not be empty")
        return cls(value)


class SealedUrl(Url):
    """A URL unpickled where its seal key is unknown (the scheduler, a worker not told the key): it
    prints redacted like any Url, pickles sealed as it came, and `reveal()` raises ConfigError."""

    __slots__ = ("_token",)
    _token: str

    def __init__(self, shown: str, token: str) -> None:
        self._raw = shown
        self._token = token

    def reveal(self) -> str:
        raise ConfigError(f"cannot open {self}: its secrets were sealed with a key this process lacks (a worker "
                          f"of a cluster not started by this run gets it from the client that sent the task, "
                          f"or from the configuration key {SEAL_CONFIG!r}, which must be the same on both sides)")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_unseal, (self._raw, self._token))


# The seal key: this config key when set (the same on client and workers: then nothing but ciphertext
# travels), else one made at random for this process and handed to the clusters it uses.
SEAL_CONFIG = "preprocess-seal-key"
_KEYS: dict[str, bytes] = {}  # every key this process can open with, by fingerprint
_LOCK = threading.Lock()


def seal_key() -> bytes:
    """The key this process seals with: the configured one, else this process's own (made once)."""
    import dask.config

    configured = dask.config.get(SEAL_CONFIG, default=None)
    if configured:
        return add_key(str(configured).encode("ascii"))
    with _LOCK:
        own = _KEYS.get("own")
        if own is None:
            from cryptography.fernet import Fernet

            own = _KEYS["own"] = Fernet.generate_key()
    return own


def add_key(key: bytes) -> bytes:
    """Let this process open what `key` sealed (a worker told the key by its client); returns it."""
    with _LOCK:
        _KEYS.setdefault(hmac.new(key, b"fingerprint", "sha256").hexdigest(), key)
    return key


def _fernet(key: bytes) -> Any:
    from cryptography.fernet import Fernet

    return Fernet(key)


def _unseal(shown: str, token: str) -> Url:
    """The Url a sealed pickle holds: opened with any key this process has, else still sealed."""
    import dask.config
    from cryptography.fernet import InvalidToken

    configured = dask.config.get(SEAL_CONFIG, default=None)
    if configured:
        add_key(str(configured).encode("ascii"))
    with _LOCK:
        keys = list(_KEYS.values())
    for key in keys:
        try:
            return Url(_fernet(key).decrypt(token.encode("ascii")).decode())
        except (InvalidToken, ValueError):
            continue
    return SealedUrl(shown, token)
