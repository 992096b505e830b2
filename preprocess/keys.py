"""The derivation key: which artifacts a source and a pipeline produce, as one sha256.

key = sha256(canonical JSON of {source hash, pipeline name, pipeline version, parameters, layout}).
Canonical JSON: sorted keys, no whitespace, ASCII only. The source hash is written "md5:<hex>" (or
"sha256:<hex>"). Nothing machine- or release-specific enters, so a key is the same everywhere;
tests/unit/test_keys.py pins known values so a change here cannot pass unnoticed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

LAYOUT = "v1"
_SOURCE = re.compile(r"^(md5:[0-9a-f]{32}|sha256:[0-9a-f]{64})$")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def derive_key(source_hash: str, pipeline: str, version: str, parameters: Mapping[str, Any]) -> str:
    """The 64-hex-digit key of a build; `source_hash` is "md5:<32 hex>" or "sha256:<64 hex>"."""
    if not _SOURCE.match(source_hash):
        raise ValueError(f"source hash must be 'md5:<hex>' or 'sha256:<hex>', got {source_hash!r}")
    body = {
        "layout": LAYOUT,
        "parameters": dict(parameters),
        "pipeline": pipeline,
        "source": source_hash,
        "version": version,
    }
    return hashlib.sha256(canonical_json(body).encode("ascii")).hexdigest()


def is_key(text: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-f]{64}", text))


def task_key(stage: str, key: str) -> str:
    """The Dask task key: a readable stage name the dashboard groups by, then the derivation key."""
    return f"{stage}-{key}"
