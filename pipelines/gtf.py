"""GTF -> GFF3 with gffread, then the GFF3 pipeline (pipelines/intervals.py); the GTF is validated first
(as GFF, by the streaming pass) and the features the conversion drops or adds are counted."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preprocess import shell
from preprocess.errors import InputError, ToolError

from .base import BuildContext, BuildOutput, BuildSettings, PipelineBase
from .intervals import GFF3, build_intervals, interval_format
from .streaming import converted_line, run_validated

GFFREAD_ARGS = ("--keep-genes", "-F", "--keep-exon-attrs", "-O")
GTF_AS_GFF = interval_format("gtf", {"GTF": (".gtf",)}, "gff", "gff", "gtf", (), 9, exact_columns=9,
                             start_column=4, end_column=5)


@dataclass(frozen=True)
class GtfPipeline(PipelineBase):
    """GTF -> GFF3 with gffread, then the GFF3 pipeline; features the conversion drops are counted."""

    name: str = "gtf"
    version: str = "2"  # as the interval pipelines: zero-padded coordinates refused; its GFF3 is never BGZF
    formats: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"GTF": (".gtf",)})
    stage: str = "sort_gtf"
    passthrough: bool = False
    tool_pins: str | None = "pipelines.pins:TOOLS"  # the tool versions its output pins were made with

    def artifact_names(self) -> dict[str, tuple[str, ...]]:
        return GFF3.artifact_names()  # its output is GFF3's

    def parameters(self, settings: BuildSettings) -> dict[str, Any]:
        return {**GFF3.parameters(settings), "gffread": list(GFFREAD_ARGS)}

    def build(self, ctx: BuildContext) -> BuildOutput:
        body = ctx.workdir / "gtf-body.txt"
        with ctx.stage("validate"):
            run_validated("validate", GTF_AS_GFF, ctx, ctx.source, body, prefix="gtf-")
        converted = ctx.workdir / "converted.gff3"
        with ctx.stage("convert"):
            raw = ctx.workdir / "gffread.gff3"
            try:
                shell.run(["gffread", str(body), *GFFREAD_ARGS, "-o", str(raw)], context=f"converting {ctx.label}")
            except ToolError as exc:  # on validated input, gffread fails only on what it cannot parse
                if "No space left on device" in exc.stderr_tail:
                    raise
                raise InputError(f"{ctx.label}: gffread cannot read it as GTF: {exc.stderr_tail.strip()}") from None
            before = feature_counts(body)
            with open(raw, "rb") as src, open(converted, "wb") as dst:
                for line in src:
                    if not line.startswith(b"# gffread"):  # names temp paths: would break determinism
                        dst.write(line)
            after = feature_counts(converted)
        dropped = {k: n - after.get(k, 0) for k, n in before.items() if n > after.get(k, 0)}
        added = {k: n - before.get(k, 0) for k, n in after.items() if n > before.get(k, 0)}
        tool = shell.version("gffread")
        conversion = {"tool": tool, "features_in": before, "features_out": after, "dropped": dropped, "added": added}
        output = build_intervals(GFF3, ctx, converted, extra_records={"conversion": conversion},
                                 where=converted_line(converted, "in the GFF3 that gffread made of it, the record"))
        output.records["gtf_records"] = sum(before.values())
        output.tools["gffread"] = tool
        return output


def feature_counts(path: Path) -> dict[str, int]:
    """Records per feature type (column 3) of a GFF/GTF file, comments and blanks skipped."""
    counts: dict[str, int] = {}
    with open(path, "rb") as stream:
        for line in stream:
            if line.startswith(b"##FASTA"):
                break
            if line.startswith(b"#") or not line.strip():
                continue
            parts = line.split(b"\t", 3)
            if len(parts) > 2:
                kind = parts[2].decode("utf-8", "replace")
                counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


GTF = GtfPipeline()
