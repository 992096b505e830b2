"""CSV, TSV and bigWig: already readable by browsers and notebooks as they are; nothing is built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import BuildContext, BuildOutput, BuildSettings


@dataclass(frozen=True)
class Passthrough:
    name: str
    formats: dict[str, tuple[str, ...]]
    version: str = "1"
    stage: str = "passthrough"
    passthrough: bool = True

    def parameters(self, settings: BuildSettings) -> dict[str, Any]:
        return {}

    def build(self, ctx: BuildContext) -> BuildOutput:
        raise NotImplementedError("passthrough formats are not built; the engine records the source")


CSV = Passthrough("csv", {"CSV": (".csv",)})
TSV = Passthrough("tsv", {"TSV": (".tsv",)})
BIGWIG = Passthrough("bigwig", {"bigWig": (".bw", ".bigwig")})
