"""The pipeline contract: what the engine asks of a format pipeline, and what it hands one.

A pipeline reads `ctx.source`, writes its artifacts into `ctx.workdir`, checks them and returns a
BuildOutput; it never touches fsspec or Dask. The engine fetches, keys and commits. Pipelines are
registered by dotted path under the entry-point group `preprocess.pipelines` (registry.py), and the
engine learns what one can do from the members below, never from its name (as fsspec.spec is to
fsspec's backends). docs/architecture.md shows a whole pipeline, registered and built.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import digests


@dataclass(frozen=True)
class BuildSettings:
    """The knobs a build may read; compression_level, cram_output, split_min_size and part_size change output
    bytes (and so the key)."""

    threads: int = 1
    sort_memory: str = "768M"
    compression_level: int = 6
    cram_output: str = "cram"  # what a CRAM becomes: "cram" or "bam" (changes output bytes, so the key)
    unreachable_reads: str = "build"  # a read past its reference's end: "build" (counted, named) or "refuse"
    split_min_size: int = 256 * 2**20  # a bigger BAM is built in parts (the key's)
    part_size: int = 64 * 2**20  # ... of about this many source bytes each (the key's)


@dataclass
class BuildContext:
    source: Path          # the fetched source, read-only
    format: str           # canonical format name, e.g. "BAM"
    workdir: Path         # empty, private to this build, removed afterwards
    settings: BuildSettings
    timings: dict[str, float] = field(default_factory=dict)
    name: str = ""        # the user's file name for messages (a download is `source` on disk)
    reference: Path | None = None  # the document's reference FASTA (.fai beside it), for pipelines that take one

    @property
    def label(self) -> str:
        return self.name or self.source.name

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage; its duration goes into the manifest."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - started, 4)


def copy_file(src: Path, dst: Path) -> None:
    """Copy a file byte for byte (an output that is its source's bytes): the engine then takes the hashes
    it already has of the source for the output instead of reading it again."""
    digests.copy(src, dst)


@dataclass
class BuildOutput:
    """Artifacts by kind ("data", "index") as files in the workdir, with counts and tool versions."""

    artifacts: dict[str, Path]
    records: dict[str, Any] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)


class Pipeline(Protocol):
    """One format pipeline. Required: the first five members, `artifact_names`, `parameters` and `build`;
    the optional capabilities have the defaults of PipelineBase, which a pipeline states when it differs."""

    name: str                              # part of the key, e.g. "alignments"
    version: str                           # bump to rebuild everything this pipeline made
    formats: Mapping[str, tuple[str, ...]]  # canonical format -> file-name suffixes (lower case)
    stage: str                             # Dask task-key prefix, e.g. "sort_bam"
    passthrough: bool                      # True: the artifact is the source's bytes unchanged, so a public
                                           # https source may keep its URL instead (setting keep-public-urls)
    # -- optional capabilities ---------------------------------------------------------------------------
    takes_reference: bool  # the engine fetches a document's `reference` into ctx.reference, its md5 keyed
    split_steps: str | None  # "module:object" of its SplitSteps: one file may be built across workers
    tool_pins: str | None  # "module:object" of a {tool: version} its output pins were made with (doctor)

    def artifact_names(self) -> Mapping[str, tuple[str, ...]]:
        """Kind ("data", "index") -> every file name a build of it may commit under that kind: how a
        key folder's listing is read without opening its manifest (reindex, status)."""
        ...

    def parameters(self, settings: BuildSettings) -> dict[str, Any]:
        """The settings that change output bytes; they enter the derivation key."""
        ...

    def build(self, ctx: BuildContext) -> BuildOutput:
        ...


class PipelineBase:
    """The optional capabilities' defaults: subclass it and state only what differs."""

    takes_reference: bool = False
    split_steps: str | None = None
    tool_pins: str | None = None


class SplitSteps(Protocol):
    """How a pipeline builds one big file in parts that several workers can make (preprocess/split.py
    runs them as route-, sort_part- and merge- tasks meeting in the store's parts area). The parts are
    decided by the content and the key's parameters alone, and the pipeline's single build makes the
    same parts one after another: which worker makes which part never changes a byte."""

    def most_parts(self, fmt: str, size: int, settings: BuildSettings) -> int:
        """The most parts a source of this format and size is built in (1: built whole), before it is read."""
        ...

    def plan(self, source: Path, shown: str, settings: BuildSettings) -> dict[str, Any]:
        """Check the source as the single build does and decide its parts: a JSON-able plan whose
        "parts" is their number (1: it is built whole, by the single build)."""
        ...

    def route(self, source: Path, plan: dict[str, Any], which: list[int], outs: list[Path], threads: int,
              shown: str, compress: bool, group: int = 0, groups: int = 1) -> dict[str, Any]:
        """Write route group `group` of `groups`'s pieces of the parts numbered `which` (unsorted) to `outs`,
        reading about its share of the source, compressed when `compress` (they travel over a network);
        a JSON-able report whose "counts" are the pieces' record counts. Part i is its pieces laid end to
        end in group order, once confirmed() accepts the groups' reports; one group makes whole parts."""
        ...

    def confirmed(self, reports: list[dict[str, Any]]) -> bool:
        """Whether the route groups' reports (in group order) prove their pieces hold every record once:
        if not, each part is routed again from the whole source in one group."""
        ...

    def sort_part(self, pieces: list[Path], out: Path, plan: dict[str, Any], settings: BuildSettings,
                  workdir: Path) -> list[Path]:
        """Sort one part, its unsorted pieces laid end to end in order, into `out`; the sorted part's
        files, `out` first (the rest: what finish may use)."""
        ...

    def finish(self, parts: list[list[Path]], plan: dict[str, Any], records_in: int, settings: BuildSettings,
               workdir: Path, shown: str) -> BuildOutput:
        """The output from the sorted parts' files, indexed and checked as the single build checks it."""
        ...
