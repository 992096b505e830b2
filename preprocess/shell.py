"""Run external tools: argv lists directly, shell pipelines under `bash -o pipefail`.

A pipeline script is a constant; every file name or value reaches it as a positional argument
("$1", "$2", ...), so nothing from a document is ever parsed by the shell.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

from .errors import ConfigError, ToolError

STDERR_TAIL_LINES = 20
STDERR_CAP_BYTES = 64 * 1024
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


def _execute(argv: list[str], env: dict[str, str], cwd: Path | None) -> subprocess.CompletedProcess[bytes]:
    """Run argv; stdout in memory (ours are small), stderr through a file of which only the tail is kept,
    so a tool that warns about every line of a huge malformed input cannot exhaust memory."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=err, env=env, cwd=cwd, check=False)
        size = err.seek(0, os.SEEK_END)
        err.seek(max(0, size - STDERR_CAP_BYTES))
        return subprocess.CompletedProcess(argv, proc.returncode, proc.stdout, err.read())


def run(argv: Sequence[str | Path], *, context: str = "", cwd: Path | None = None,
        env: Mapping[str, str] | None = None) -> str:
    """Run argv (no shell) and return its stdout; raise ToolError on failure."""
    return run_with_stderr(argv, context=context, cwd=cwd, env=env)[0]


def run_with_stderr(argv: Sequence[str | Path], *, context: str = "", cwd: Path | None = None,
                    env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """Run argv (no shell); return stdout and the tail of stderr, where a tool's warnings go.
    `env` adds to (or overrides) the environment the tool sees."""
    args = [str(a) for a in argv]
    require(args[0])
    proc = _execute(args, environment(env), cwd)
    stderr = tail(proc.stderr.decode("utf-8", "replace"))
    if proc.returncode != 0:
        raise ToolError(args, proc.returncode, stderr, context)
    return proc.stdout.decode("utf-8", "replace"), stderr


def pipe(script: str, *args: str | Path | int, context: str = "", env: Mapping[str, str] | None = None,
         cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run a constant bash script under `-o pipefail` with `args` as $1, $2, ...; raise ToolError."""
    argv = ["bash", "-o", "pipefail", "-o", "errexit", "-o", "nounset", "-c", script, "preprocess-pipe",
            *(str(a) for a in args)]
    proc = _execute(argv, environment(env), cwd)
    if proc.returncode != 0:
        shown = ["bash", "-o", "pipefail", "-c", " ".join(script.split()), *argv[9:]]
        raise ToolError(shown, proc.returncode, tail(proc.stderr.decode("utf-8", "replace")), context)
    return proc


def script(path: Path, *args: str | Path | int, context: str = "", env: Mapping[str, str] | None = None,
           cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run a bash script file of the package (it sets pipefail itself) with `args` as $1, $2, ...; raise ToolError."""
    argv = ["bash", str(path), *(str(a) for a in args)]
    proc = _execute(argv, environment(env), cwd)
    if proc.returncode != 0:
        raise ToolError(argv, proc.returncode, tail(proc.stderr.decode("utf-8", "replace")), context)
    return proc


@cache
def version(tool: str) -> str:
    """The first line of `tool --version` (mawk: `-W version`), for the manifest's provenance."""
    for flag in (["--version"], ["-W", "version"]):
        try:
            out = subprocess.run([tool, *flag], capture_output=True, check=False, env=environment(),
                                 stdin=subprocess.DEVNULL, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        first = (out.stdout or out.stderr).decode("utf-8", "replace").strip().splitlines()
        if out.returncode == 0 and first:
            return first[0]
    return "unknown"
