"""Url: a URL whose text form never carries credentials or a query string.

`str()`, `repr()`, f-strings, logging and JSON serialization all see the redacted form
(`https://host/path`); only `reveal()` gives the raw value, and only an I/O call should ask for it.
Pickling keeps the raw value, so a document still reaches a worker whole. `scrub()` removes the
same secrets from text a library wrote (urllib3's "Max retries exceeded with url: /x?sig=…").
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema


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
        self._raw = raw._raw if isinstance(raw, Url) else str(raw)

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
        return (Url, (self._raw,))

    def __dask_tokenize__(self) -> str:
        return hashlib.sha256(self._raw.encode()).hexdigest()

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        from_text = core_schema.no_info_after_validator_function(cls, core_schema.str_schema(min_length=1))
        return core_schema.json_or_python_schema(
            json_schema=from_text,
            python_schema=core_schema.union_schema([core_schema.is_instance_schema(cls), from_text]),
            serialization=core_schema.plain_serializer_function_ser_schema(str, when_used="always"),
        )


_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@'\"<>]*@")
_QUERY = re.compile(r"\?[^\s'\"<>)\]]*")


def scrub(text: str) -> str:
    """Text with any URL userinfo and any query string (`?a=b…`) removed, for messages other libraries
    wrote; `?` not followed by `name=` is left alone."""
    text = _USERINFO.sub(lambda m: m.group("scheme"), text)
    return _QUERY.sub(lambda m: "?…" if "=" in m.group(0) else m.group(0), text)
