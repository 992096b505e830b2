"""CSV, TSV and bigWig: already readable by browsers and notebooks as they are, so the build copies the
source's bytes unchanged into the store as `data.<ext>`, content-addressed and with a manifest like
any artifact (signable, mirrorable). Version 2: version 1 committed nothing (the report pointed at the
source itself). A public https source may instead keep its URL: setting keep-public-urls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import BuildContext, BuildOutput, BuildSettings, PipelineBase, copy_file


@dataclass(frozen=True)
class Passthrough(PipelineBase):
    name: str
    formats: dict[str, tuple[str, ...]]
    suffix: str          # the artifact's name is data<suffix>: browsers pick a reader by extension
    version: str = "2"
    stage: str = "copy"
    passthrough: bool = True

    def artifact_names(self) -> dict[str, tuple[str, ...]]:
        return {"data": (f"data{self.suffix}",)}

    def parameters(self, settings: BuildSettings) -> dict[str, Any]:
        return {}

    def build(self, ctx: BuildContext) -> BuildOutput:
        """The source's bytes as they are; the engine commits and hashes them."""
        target = ctx.workdir / f"data{self.suffix}"
        with ctx.stage("copy"):
            copy_file(ctx.source, target)  # a copy: the source may be the user's own file
        return BuildOutput(artifacts={"data": target}, records={"bytes": target.stat().st_size})


CSV = Passthrough("csv", {"CSV": (".csv",)}, ".csv")
TSV = Passthrough("tsv", {"TSV": (".tsv",)}, ".tsv")
BIGWIG = Passthrough("bigwig", {"bigWig": (".bw", ".bigwig")}, ".bw")
