"""preprocess: genomic files in; sorted, compressed, indexed, content-addressed artifacts out.

    import preprocess
    result = preprocess.run({"id": "s1", "access_url": "data/s1.sam", "format": "SAM"})

Names are imported on first use, so `import preprocess` stays cheap for a cached re-run.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it; CHANGELOG.md lists it)

__all__ = ["run", "run_many", "sign", "mirror", "FileDoc", "RunResult", "BatchReport", "Manifest", "ArtifactStore",
           "load_settings", "InputError", "SourceError", "ToolError", "StoreError", "ConfigError", "ScratchError",
           "TimeLimitError", "PreprocessError"]

_WHERE = {
    "run": "api", "run_many": "api", "sign": "api", "mirror": "mirror",
    "FileDoc": "model", "RunResult": "model", "BatchReport": "model", "Manifest": "model",
    "ArtifactStore": "store", "load_settings": "config",
    "InputError": "errors", "SourceError": "errors", "ToolError": "errors", "StoreError": "errors",
    "ConfigError": "errors", "ScratchError": "errors", "TimeLimitError": "errors", "PreprocessError": "errors",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        from importlib import import_module

        return getattr(import_module(f"preprocess.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'preprocess' has no attribute {name!r}")
