"""Read a catalogue CSV into FileDocs; a malformed row becomes an InputError naming its line."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from .errors import ConfigError, InputError
from .model import FileDoc, validation_reasons

REQUIRED = ("id", "access_url", "format")
KNOWN = ("id", "access_url", "format", "md5", "size", "filename", "reference", "reference_md5")


def read_catalog(path: str | Path) -> list[FileDoc | InputError]:
    """Each data row as a FileDoc, or an InputError for a malformed one (with its line number).

    Relative local paths in `access_url` are taken relative to the CSV file's directory. A missing
    required column is a ConfigError: the whole file is unusable.
    """
    return list(_rows(Path(path)))


def _rows(path: Path) -> Iterator[FileDoc | InputError]:
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read manifest {path}: {exc.strerror}") from None
    base = path.resolve().parent
    seen: dict[str, int] = {}
    with handle:
        reader = csv.reader(handle)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise ConfigError(f"{path}: empty manifest, expected a header row with {', '.join(REQUIRED)}") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: unreadable header row: {exc}") from None
        lowered = [h.lower() for h in header]
        missing = [c for c in REQUIRED if c not in lowered]
        if missing:
            raise ConfigError(f"{path}: header lacks required column(s) {', '.join(missing)}")
        if len(set(lowered)) != len(lowered):
            raise ConfigError(f"{path}: header repeats a column name")
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                yield _row_error(path, reader.line_num, f"unreadable row: {exc}")
                continue
            line = reader.line_num
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
                yield FileDoc(id=values["id"], access_url=url, format=values["format"] or None,
                              md5=values.get("md5") or None, size=values.get("size") or None,  # type: ignore[arg-type]
                              filename=values.get("filename") or None, reference=_reference(values, base),
                              reference_md5=values.get("reference_md5") or None, extra=extra)
            except ValidationError as exc:
                yield _row_error(path, line, validation_reasons(exc), values["id"])


def _reference(values: dict[str, str], base: Path) -> str | None:
    """The `reference` column, a relative path taken relative to the CSV file like `access_url`."""
    url = values.get("reference") or None
    if url and "://" not in url and not os.path.isabs(url):
        url = str(base / url)
    return url


def _row_error(path: Path, line: int, reason: str, doc_id: str | None = None) -> InputError:
    return InputError(f"{path.name} line {line}: {reason}", doc_id=doc_id or f"line {line}")
