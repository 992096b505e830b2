"""Read a catalogue CSV into FileDocs; a malformed row becomes an InputError naming its line."""

from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import ConfigError, InputError
from .model import FileDoc, ValidationError
from .urls import Url

REQUIRED = ("id", "access_url", "format")
KNOWN = ("id", "access_url", "format", "md5", "size", "filename", "reference", "reference_md5")


def read_catalog(path: str | Path) -> list[FileDoc | InputError]:
    """Each data row as a FileDoc, or an InputError for a malformed one (with its line number).

    Relative local paths in `access_url` are taken relative to the CSV file's directory. A missing
    required column is a ConfigError: the whole file is unusable.
    """
    return list(_rows(Path(path)))


def _rows(path: Path) -> Iterator[FileDoc | InputError]:
    # Bytes that are not UTF-8 are carried through as surrogates, so that they fail their own row and no
    # other: a strict decoder fails a whole read buffer, losing every row in it without a word.
    try:
        handle = open(path, newline="", encoding="utf-8-sig", errors="surrogateescape")
    except OSError as exc:
        raise ConfigError(f"cannot read manifest {path}: {exc.strerror}") from None
    base = path.resolve().parent
    seen: dict[str, int] = {}
    bad_bytes = _BadBytes(path)
    with handle, contextlib.closing(bad_bytes):
        reader = csv.reader(handle)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise ConfigError(f"{path}: empty manifest, expected a header row with {', '.join(REQUIRED)}") from None
        except csv.Error as exc:
            raise ConfigError(f"{path}: unreadable header row: {exc}") from None
        if _undecodable(header):
            raise ConfigError(f"{path}: unreadable header row: {bad_bytes.find(1)}")
        lowered = [h.lower() for h in header]
        missing = [c for c in REQUIRED if c not in lowered]
        if missing:
            raise ConfigError(f"{path}: header lacks required column(s) {', '.join(missing)}")
        if len(set(lowered)) != len(lowered):
            raise ConfigError(f"{path}: header repeats a column name")
        while True:
            first = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield _row_error(path, reader.line_num, f"unreadable row: {exc}")
                continue
            line = reader.line_num
            if _undecodable(row):
                yield _row_error(path, line, f"unreadable row: {bad_bytes.find(first)}")
                continue
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                yield _row_error(path, line, f"has {len(row)} fields, the header has {len(header)}")
                continue
            values = dict(zip(lowered, (cell.strip() for cell in row), strict=True))
            empty = [c for c in ("id", "access_url") if not values[c]]
            if empty:
                yield _row_error(path, line, f"empty required field(s) {', '.join(empty)}", values.get("id"))
                continue
            if values["id"] in seen:
                yield _row_error(path, line, f"id {values['id']!r} repeats line {seen[values['id']]}",
                                 values["id"])
                continue
            seen[values["id"]] = line
            url = values["access_url"]
            if "://" not in url and not os.path.isabs(url):
                url = str(base / url)
            extra = {header[i]: row[i] for i, name in enumerate(lowered) if name not in KNOWN}
            try:
                yield FileDoc(id=values["id"], access_url=Url(url), format=values["format"] or None,
                              md5=values.get("md5") or None, size=values.get("size") or None,  # type: ignore[arg-type]
                              filename=values.get("filename") or None, reference=_url(_reference(values, base)),
                              reference_md5=values.get("reference_md5") or None, extra=extra)
            except ValidationError as exc:
                yield _row_error(path, line, str(exc), values["id"])


def _undecodable(cells: list[str]) -> bool:
    """Whether a cell holds a byte that was not UTF-8 (decoded by surrogateescape to U+DC80-U+DCFF)."""
    return any(not cell.isascii() and any("\udc80" <= ch <= "\udcff" for ch in cell) for cell in cells)


class _BadBytes:
    """Where the first byte that is not UTF-8 lies, at or after a line: read forward only, once in all, so a
    manifest with many such rows (a Latin-1 export) costs one more pass over the file, not one per row."""

    def __init__(self, path: Path) -> None:
        self.path, self.line, self.offset = path, 0, 0
        self.stream: BinaryIO | None = None

    def find(self, first_line: int) -> str:
        if self.stream is None:
            self.stream = open(self.path, "rb")  # noqa: SIM115 - closed by close(), when the rows are done
        for raw in self.stream:  # lines in order: each bad row lies after the last one found
            self.line += 1
            start, self.offset = self.offset, self.offset + len(raw)
            if self.line >= first_line:
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    return (f"byte 0x{raw[exc.start]:02x} at line {self.line}, byte offset {start + exc.start} "
                            "is not UTF-8 (save the manifest as UTF-8)")
        return "a byte that is not UTF-8"

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()


def _reference(values: dict[str, str], base: Path) -> str | None:
    """The `reference` column, a relative path taken relative to the CSV file like `access_url`."""
    url = values.get("reference") or None
    if url and "://" not in url and not os.path.isabs(url):
        url = str(base / url)
    return url


def _url(text: str | None) -> Url | None:
    return Url(text) if text else None


def _row_error(path: Path, line: int, reason: str, doc_id: str | None = None) -> InputError:
    return InputError(f"{path.name} line {line}: {reason}", doc_id=doc_id or f"line {line}")
