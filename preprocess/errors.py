"""The error classes every failure is reported as; a batch records the class name and message."""

from __future__ import annotations

from collections.abc import Sequence


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

    def __reduce__(self):
        return (type(self), (str(self), self.doc_id))


class SourceError(PreprocessError):
    """Fetching the source failed for a reason that may pass (network, throttling, 5xx)."""

    retry = True


class StoreError(PreprocessError):
    """The artifact store refused or failed a read or write."""


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

    def __reduce__(self):  # keep the fields when the error travels from a worker process
        return (type(self), (self.argv, self.returncode, self.stderr_tail, self.context))


def describe(exc: BaseException) -> dict[str, str]:
    """The {class, message} record for any exception; unclassified ones keep their own class name."""
    if isinstance(exc, PreprocessError):
        return exc.info()
    return {"class": type(exc).__name__, "message": str(exc) or repr(exc)}
