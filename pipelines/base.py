"""What a format pipeline is, and what the engine hands it: a source on disk and a work directory.

A pipeline never touches fsspec or Dask: it reads `ctx.source`, writes its artifacts into
`ctx.workdir`, checks them, and returns a BuildOutput. The engine fetches, keys and commits.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class BuildSettings:
    """The knobs a build may read; compression_level and cram_output change output bytes (and so the key)."""

    threads: int = 1
    sort_memory: str = "768M"
    compression_level: int = 6
    cram_output: str = "cram"  # what a CRAM becomes: "cram" or "bam" (changes output bytes, so the key)
    unreachable_reads: str = "build"  # a read past its reference's end: "build" (counted, named) or "refuse"


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


@dataclass
class BuildOutput:
    """Artifacts by kind ("data", "index") as files in the workdir, with counts and tool versions."""

    artifacts: dict[str, Path]
    records: dict[str, Any] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)


class Pipeline(Protocol):
    name: str                              # part of the key, e.g. "alignments"
    version: str                           # bump to rebuild everything this pipeline made
    formats: Mapping[str, tuple[str, ...]]  # canonical format -> file-name suffixes (lower case)
    stage: str                             # Dask task-key prefix, e.g. "sort_bam"
    passthrough: bool                      # True: the artifact is the source's bytes unchanged, so a public
                                           # https source may keep its URL instead (setting keep-public-urls)
    # Optional: `takes_reference = True` makes the engine fetch a document's `reference` into
    # ctx.reference and put its md5 into the key (see preprocess.build.takes_reference).

    def parameters(self, settings: BuildSettings) -> dict[str, Any]:
        """The settings that change output bytes; they enter the derivation key."""
        ...

    def build(self, ctx: BuildContext) -> BuildOutput:
        ...
