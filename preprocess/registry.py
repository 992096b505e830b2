"""Pipelines by format, found through the entry-point group `preprocess.pipelines`.

An entry point's name is a format in lower case; its value a dotted path to a pipeline object.
Loading one imports only that pipeline's module, so the engine never names a format module. What a
pipeline declares by dotted path (its split steps, its tool pins) is loaded here too, when first used:
this module is the only one of the engine that imports pipeline code.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, InputError

if TYPE_CHECKING:
    from .contract import Pipeline, SplitSteps

GROUP = "preprocess.pipelines"


@cache
def _entry_points() -> dict[str, EntryPoint]:
    found = {ep.name.lower(): ep for ep in entry_points(group=GROUP)}
    if not found:
        raise ConfigError(f"no pipelines registered under {GROUP!r}: is preprocess installed (pip install -e .)?")
    return found


@cache
def _load(name: str) -> Pipeline:
    return _entry_points()[name].load()


def formats() -> list[str]:
    """Every registered format, canonical spelling."""
    return sorted({canonical_format(name) for name in _entry_points()})


def canonical_format(name: str) -> str:
    pipeline = pipeline_for(name)
    for fmt in pipeline.formats:
        if fmt.lower() == name.lower():
            return fmt
    return name


def pipeline_for(fmt: str) -> Pipeline:
    """The pipeline for a format name (case-insensitive); InputError for an unknown one."""
    key = fmt.strip().lower()
    if key not in _entry_points():
        raise InputError(f"unknown format {fmt!r}; known: {', '.join(sorted(_entry_points()))}")
    return _load(key)


def infer_format(filename: str) -> str:
    """The format whose file-name suffix matches (after an optional .gz/.bgz); InputError if none."""
    name = filename.lower()
    for suffix in (".gz", ".bgz"):
        if name.endswith(suffix) and not name.endswith(".tar.gz"):
            name = name[: -len(suffix)]
            break
    best: tuple[int, str] | None = None
    for entry in _entry_points():
        pipeline = _load(entry)
        for fmt, suffixes in pipeline.formats.items():
            for suffix in suffixes:
                if name.endswith(suffix) and (best is None or len(suffix) > best[0]):
                    best = (len(suffix), fmt)
    if best is None:
        raise InputError(f"cannot infer a format from the file name {filename!r}: give a format")
    return best[1]


def split_steps(pipeline: Pipeline) -> SplitSteps | None:
    """The steps that build one file of this pipeline across workers; None when it cannot be split."""
    return None if pipeline.split_steps is None else _load_path(pipeline.split_steps)


def pinned_tools() -> dict[str, str]:
    """Tool -> the version the registered pipelines' output pins were made with (`doctor` compares)."""
    found: dict[str, str] = {}
    for name in sorted(_entry_points()):
        path = _load(name).tool_pins
        if path is not None:
            found.update(_load_path(path))
    return found


@cache
def artifact_kinds() -> dict[str, str]:
    """File name -> artifact kind ("data", "index"), over every registered pipeline's declared names:
    how a key folder's listing is read without its manifest."""
    return {name: kind for layout in artifact_layouts() for name, kind in layout.items()}


def artifact_layouts() -> list[dict[str, str]]:
    """Each registered pipeline's declared artifacts, file name -> kind (a BAM: sorted.bam "data",
    sorted.bam.bai and sorted.bam.csi "index"; a passthrough CSV: data.csv "data" alone): what a key
    folder it committed holds beside its manifest, one name per kind."""
    return [{name: kind for kind, names in _load(entry).artifact_names().items() for name in names}
            for entry in sorted(_entry_points())]


@cache
def _load_path(path: str) -> Any:
    """The object a "module:attribute" path names, imported on first use."""
    return EntryPoint(name=path, value=path, group=GROUP).load()
