"""Run external tools: argv lists directly, shell pipelines under `bash -o pipefail`.

A pipeline script is a constant; every file name or value reaches it as a positional argument
("$1", "$2", ...), so nothing from a document is ever parsed by the shell.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import ConfigError, ToolError

STDERR_TAIL_LINES = 20
_ENV = {"LC_ALL": "C", "LANG": "C", "TZ": "UTC"}


def tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(_ENV)
    if extra:
        env.update(extra)
    return env


def require(tool: str) -> str:
    """The tool's path, or a ConfigError that says how to install it."""
    found = shutil.which(tool)
    if not found:
        raise ConfigError(f"{tool} not found on PATH: install it (apt-get install samtools tabix gffread, "
                          "or conda install -c bioconda samtools htslib gffread)")
    return found


def run(argv: Sequence[str | Path], *, context: str = "", stdout: Path | None = None,
        cwd: Path | None = None) -> str:
    """Run argv (no shell); return its stdout (or write it to `stdout`); raise ToolError on failure."""
    args = [str(a) for a in argv]
    require(args[0])
    if stdout is not None:
        with open(stdout, "wb") as out:
            proc = subprocess.run(args, stdout=out, stderr=subprocess.PIPE, env=environment(), cwd=cwd,
                                  check=False)
        text = ""
    else:
        proc = subprocess.run(args, capture_output=True, env=environment(), cwd=cwd, check=False)
        text = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise ToolError(args, proc.returncode, tail(proc.stderr.decode("utf-8", "replace")), context)
    return text


def pipe(script: str, *args: str | Path | int, context: str = "", env: Mapping[str, str] | None = None,
         cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run a constant bash script under `-o pipefail` with `args` as $1, $2, ...; raise ToolError."""
    argv = ["bash", "-o", "pipefail", "-o", "errexit", "-o", "nounset", "-c", script, "preprocess-pipe",
            *(str(a) for a in args)]
    proc = subprocess.run(argv, capture_output=True, env=environment(env), cwd=cwd, check=False)
    if proc.returncode != 0:
        shown = ["bash", "-o", "pipefail", "-c", " ".join(script.split()), *argv[9:]]
        raise ToolError(shown, proc.returncode, tail(proc.stderr.decode("utf-8", "replace")), context)
    return proc


def version(tool: str) -> str:
    """The first line of `tool --version`, for the manifest's provenance."""
    try:
        out = subprocess.run([tool, "--version"], capture_output=True, check=False, env=environment())
    except OSError:
        return "unknown"
    first = (out.stdout or out.stderr).decode("utf-8", "replace").strip().splitlines()
    return first[0] if first else "unknown"
