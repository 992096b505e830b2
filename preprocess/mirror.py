"""Copy committed artifacts from one store to another, verifying each against its manifest.

With `store.verify-key` set, each manifest's signature is checked on both sides (a key whose
signature is missing or fails is refused, named in the report); the manifest's exact bytes travel
with their signature, or are signed again by the destination when `store.signing-key` is set."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import field
from pathlib import Path

from .build import open_store
from .config import Settings, load_settings
from .errors import ConfigError, describe
from .records import Record


class MirrorReport(Record):
    source: str
    destination: str
    created: bool = False  # --create made the destination's bucket or container
    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)   # the destination already had them
    refused: dict[str, str] = field(default_factory=dict)  # key -> why (a sha256 mismatch, a failed read)


def mirror(source: str, destination: str, *, settings: Settings | None = None, create: bool = False) -> MirrorReport:
    """Copy every key the destination lacks; artifacts first, each verified, the manifest last.
    `create`: make the destination's bucket or container first when it does not exist."""
    settings = settings or load_settings()
    src, dst = open_store(settings, source), open_store(settings, destination)
    src.check()
    created = dst.create_bucket() if create else False
    try:
        dst.check()
    except ConfigError as exc:
        if "does not exist" not in str(exc):
            raise
        raise ConfigError(f"{exc}: create it, or give mirror --create") from None
    report = MirrorReport(source=src.url, destination=dst.url, created=created)
    scratch = Path(tempfile.mkdtemp(prefix="preprocess-mirror-", dir=settings.scratch))
    try:
        for key in sorted(src.keys()):
            try:
                if dst.lookup(key) is not None:
                    report.skipped.append(key)
                    continue
                found = src.lookup_signed(key)
                if found is None:
                    continue  # removed while we listed
                manifest, body, signature = found
                files = {}
                for art in manifest.artifacts:
                    local = scratch / art.name
                    digest = src.download(src.path(key, art.name), local)
                    if digest != art.sha256:
                        raise ValueError(f"{src.uri(key, art.name)}: sha256 {digest} differs from its manifest's")
                    files[art.name] = local
                dst.commit(manifest, files, body=body, signature=signature)
                report.copied.append(key)
            except Exception as exc:  # noqa: BLE001 - one bad key is reported; the rest are copied
                info = describe(exc)
                report.refused[key] = f"{info['class']}: {info['message']}"
            finally:
                for item in scratch.iterdir():
                    item.unlink()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return report

