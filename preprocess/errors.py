"""The error classes every failure is reported as; a batch records the class name and message.

Every class pickles with all its attributes, so the exception a worker raised is the one `run()`
raises on the client (tests/unit/test_errors.py).
"""

from __future__ import annotations

import builtins
import pickle
import re
from collections.abc import Sequence
from typing import Any

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@'\"<>]*@")
_QUERY = re.compile(r"\?[^\s'\"<>)\]]*")


def scrub(text: str) -> str:
    """Text with any URL userinfo and any query string (`?a=b…`) removed, for messages other libraries
    wrote; `?` not followed by `name=` is left alone."""
    text = _USERINFO.sub(lambda m: m.group("scheme"), text)
    return _QUERY.sub(lambda m: "?…" if "=" in m.group(0) else m.group(0), text)


class PreprocessError(Exception):
    """Base of the classified errors; `retry` says whether trying again may help."""

    retry = False

    def info(self) -> dict[str, str]:
        return {"class": type(self).__name__, "message": str(self)}


class InputError(PreprocessError):
    """The file or its document is wrong (bad format, md5 mismatch, malformed row): never retried."""

    def __init__(self, message: str, doc_id: str | None = None) -> None:
        super().__init__(message)
        self.doc_id = doc_id  # for a catalogue row that never became a document

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.doc_id))


class SourceError(PreprocessError):
    """Fetching the source failed for a reason that may pass (network, throttling, 5xx)."""

    retry = True


class StoreError(PreprocessError):
    """The artifact store refused or failed a read or write."""


class SignatureError(StoreError):
    """A manifest's signature is missing or does not verify with the configured verify key."""


class ScratchError(PreprocessError):
    """The worker's scratch folder ran out of space: names the folder and the bytes the build needed."""

    def __init__(self, folder: str, needed: int | None = None, detail: str = "") -> None:
        self.folder = str(folder)
        self.needed = needed
        self.detail = detail
        wanted = f" (about {needed} bytes needed)" if needed else ""
        super().__init__(f"scratch folder {self.folder} is full{wanted}: free space there or set "
                         f"preprocess.scratch to a larger folder{': ' + detail if detail else ''}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.folder, self.needed, self.detail))


class ConfigError(PreprocessError):
    """Configuration or usage is wrong: an unknown key, a missing bucket, a bad profile."""


class TimeLimitError(PreprocessError):
    """A task ran past preprocess.task-timeout; its tools were killed (whole process groups)."""


class ToolError(PreprocessError):
    """An external command failed; carries its argv, exit code and the last lines of its stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr_tail: str, context: str = "") -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        self.context = context
        shown = " ".join(self.argv)
        if len(shown) > 300:
            shown = shown[:300] + "…"
        prefix = f"{context}: " if context else ""
        super().__init__(f"{prefix}{shown} returned with error {returncode}: {stderr_tail.strip()}")

    def __reduce__(self) -> tuple[Any, ...]:  # keep the fields when the error travels from a worker process
        return (type(self), (self.argv, self.returncode, self.stderr_tail, self.context))


def describe(exc: BaseException) -> dict[str, str]:
    """The {class, message} record for any exception; unclassified ones keep their own class name.
    Messages pass through `scrub`: a library may have written a signed URL into its own. (A record's
    ValidationError names fields and rules only, never the value given.)"""
    if isinstance(exc, PreprocessError):
        info = exc.info()
        return {**info, "message": scrub(info["message"])}
    return {"class": type(exc).__name__, "message": scrub(str(exc) or repr(exc))}


def portable(exc: BaseException) -> BaseException:
    """`exc` itself when it can travel from a worker and be raised to the user as it is: a classified
    error that pickles, or a builtin one (a bug) whose arguments are plain text or numbers and hold no secret.
    Anything else (a library's exception, which may carry a request with a signed URL) becomes a
    PreprocessError naming the original class, with a scrubbed message. Either way without its
    traceback and chain."""
    # Cut off what it was raised from: a process that imported tblib.pickling_support (dask and distributed
    # do) pickles an exception with its traceback and its chain, whose library errors hold raw URLs.
    exc.__cause__ = exc.__context__ = exc.__traceback__ = None
    exc.__suppress_context__ = True
    info = describe(exc)
    plain = all(isinstance(arg, str | int | float | type(None)) for arg in exc.args)
    builtin = getattr(builtins, type(exc).__name__, None) is type(exc)
    # Our own messages are built from redacted URLs and scrubbed library text: kept whole. A builtin
    # error is kept only when scrubbing would not change it.
    if isinstance(exc, PreprocessError) or builtin and plain and info["message"] == (str(exc) or repr(exc)):
        try:
            pickle.loads(pickle.dumps(exc))
            return exc
        except Exception:  # noqa: BLE001, S110 - not portable: replaced below
            pass
    return PreprocessError(f"{info['class']}: {info['message']}")


def rebuild(name: str, message: str) -> PreprocessError:
    """An exception for a recorded {class, message} when the original is not at hand (a report read
    back from JSON): the class itself where its message alone builds it, else PreprocessError."""
    cls = globals().get(name)
    if isinstance(cls, type) and issubclass(cls, PreprocessError) and cls not in (ToolError, ScratchError):
        return cls(message)
    return PreprocessError(f"{name}: {message}")
