"""Run external tools: argv lists directly, shell pipelines under `bash -o pipefail`.

A pipeline script is a constant; every file name or value reaches it as a positional argument
("$1", "$2", ...), so nothing from a document is ever parsed by the shell.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextvars import ContextVar
from functools import cache
from pathlib import Path
from typing import Any

from .errors import ConfigError, TimeLimitError, ToolError

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


class _Cap:
    """One task's time cap: its deadline, and the thread that entered it. At the deadline a timer raises
    TimeLimitError inside that thread if it is then in an `interruptible()` region (a pure-Python loop
    stops there at its next bytecode); elsewhere the next `check_time` or tool wait raises it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.thread = threading.get_ident()
        self.lock = threading.Lock()
        self.regions: list[str | None] = []  # what the thread is doing, innermost last; None: held
        self.sent = False
        self.timer = threading.Timer(seconds, self._expire)
        self.timer.daemon = True

    def _expire(self) -> None:
        with self.lock:
            if self.regions and self.regions[-1] is not None and not self.sent:
                self.sent = _raise_in(self.thread, _CapReached)

    def enter(self, doing: str | None) -> None:
        with self.lock:
            self.regions.append(doing)
            if doing is None and self.sent:
                _raise_in(self.thread, None)  # not inside a hold: `held` raises it at its start instead

    def leave(self) -> None:
        with self.lock:
            self.regions.pop()
            if not self.regions and self.sent:
                _raise_in(self.thread, None)  # cancel it if it was not delivered yet

    def doing(self) -> str:
        return next((doing for doing in reversed(self.regions) if doing), "running")

    def message(self, doing: str) -> str:
        return f"stopped after the task time cap of {self.seconds:g}s (preprocess.task-timeout) while {doing}"


def _raise_in(thread: int, exc: type[BaseException] | None) -> bool:
    """Have `thread` raise `exc` at its next bytecode (None: no longer); CPython's PyThreadState_SetAsyncExc."""
    import ctypes

    return ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread),
                                                      ctypes.py_object(exc) if exc else None) == 1


class _CapReached(TimeLimitError):
    """The TimeLimitError the cap's timer raises in the task's thread (a class, instantiated there with no
    arguments): it names what the thread was doing, and reports and pickles as TimeLimitError."""

    def __init__(self, *args: object) -> None:
        cap = _DEADLINE.get()
        super().__init__(*args or (cap.message(cap.doing()) if cap else "stopped after the task time cap",))

    def info(self) -> dict[str, str]:
        return {"class": "TimeLimitError", "message": str(self)}

    def __reduce__(self) -> tuple[Any, ...]:
        return (TimeLimitError, (str(self),))


# the cap of the task running in this thread (contextvars copy it to the threads a task starts)
_DEADLINE: ContextVar[_Cap | None] = ContextVar("preprocess_deadline", default=None)


@contextlib.contextmanager
def time_cap(seconds: float | None) -> Iterator[None]:
    """Within the block, a tool still running `seconds` after the block began is killed with its whole
    process group (a pipeline's every stage, anything they spawned) and TimeLimitError raised; Python
    code in an `interruptible()` region is stopped at the deadline too."""
    cap = _Cap(seconds) if seconds else None
    token = _DEADLINE.set(cap)
    if cap:
        cap.timer.start()
    try:
        yield
    finally:
        try:
            if cap:
                cap.timer.cancel()
        finally:
            _DEADLINE.reset(token)


@contextlib.contextmanager
def interruptible(doing: str) -> Iterator[None]:
    """A region that the task's time cap may stop at its deadline, at any bytecode: only pure-Python work
    over input that may be abandoned anywhere (its files in `with` blocks; it starts no process or thread,
    which an exception landing mid-start would orphan). In another thread it does nothing."""
    cap = _DEADLINE.get()
    if cap is None or cap.thread != threading.get_ident():
        yield
        return
    cap.enter(doing)
    try:
        check_time(doing)  # entered past the deadline: at once
        yield
    finally:
        cap.leave()


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Within an interruptible region, a step the cap must not cut in two (an import, starting a process
    or thread): a deadline that passes inside it is raised as it ends."""
    cap = _DEADLINE.get()
    if cap is None or cap.thread != threading.get_ident() or not cap.regions:
        yield
        return
    cap.enter(None)
    try:
        check_time(cap.doing())
        yield
    finally:
        cap.leave()
    check_time(cap.doing())


def time_left() -> float | None:
    """Seconds before the running task's time cap (0 once passed); None when uncapped."""
    cap = _DEADLINE.get()
    return None if cap is None else max(0.0, cap.deadline - time.monotonic())


def check_time(doing: str) -> None:
    """Raise TimeLimitError when the running task's time cap has passed (between steps, in read loops)."""
    cap = _DEADLINE.get()
    if cap is not None and time.monotonic() > cap.deadline:
        raise TimeLimitError(cap.message(doing))


@cache
def _setpriv() -> str | None:
    found = shutil.which("setpriv")
    return found if found and "--pdeathsig" in subprocess.run(
        [found, "--help"], capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL).stdout else None


def tied(argv: Sequence[str], signame: str = "KILL") -> list[str]:
    """argv run so that it gets SIG`signame` when the thread that started it ends (Linux PR_SET_PDEATHSIG,
    set by util-linux's setpriv, which then execs argv). Every caller here waits for its child in that
    thread, so that is when this process dies, kill -9 included: no tool outlives its task. setpriv, not
    prctl in a preexec_fn: that would fork this process (about 0.2 s for a worker holding 1 GiB) where
    subprocess otherwise uses vfork. argv as it is where setpriv is missing (not Linux)."""
    setpriv = _setpriv()
    return [setpriv, "--pdeathsig", signame, "--", *argv] if setpriv else list(argv)


# A bash script's own children do not inherit the parent-death signal, so a script runs under this one,
# which gets SIGTERM when its parent dies and then kills its whole process group (the script and every
# stage of its pipelines). `wait` returns at once on a trapped signal; a foreground command would not.
_SUPERVISE = 'trap "kill -KILL 0" TERM; "$@" & wait "$!"'


def _execute(argv: list[str], env: dict[str, str], cwd: Path | None,
             supervise: bool = False) -> subprocess.CompletedProcess[bytes]:
    """Run argv in a process group of its own that dies with this process (`supervise` for a bash script,
    whose children the parent-death signal does not reach); stdout in memory (ours are small), stderr
    through a file of which only the tail is kept, so a tool that warns about every line of a huge
    malformed input cannot exhaust memory. Past the task's time cap, or if this thread is interrupted,
    the group is killed."""
    cap = _DEADLINE.get()
    argv = tied(["bash", "-c", _SUPERVISE, "preprocess-supervise", *argv], "TERM") if supervise else tied(argv)
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, env=env,
                                cwd=cwd, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=None if cap is None else max(0.0, cap.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            assert cap is not None  # only a capped wait times out
            raise TimeLimitError(f"stopped after the task time cap of {cap.seconds:g}s (preprocess.task-timeout): "
                                 f"{' '.join(argv)[:200]} was still running; its process group was killed"
                                 ) from None
        except BaseException:
            _kill_group(proc)
            raise
        size = err.seek(0, os.SEEK_END)
        err.seek(max(0, size - STDERR_CAP_BYTES))
        return subprocess.CompletedProcess(argv, proc.returncode, out, err.read())


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group may already be gone
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    if proc.stdout:
        proc.stdout.close()


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
    proc = _execute(argv, environment(env), cwd, supervise=True)
    if proc.returncode != 0:
        shown = ["bash", "-o", "pipefail", "-c", " ".join(script.split()), *argv[9:]]
        raise ToolError(shown, proc.returncode, tail(proc.stderr.decode("utf-8", "replace")), context)
    return proc


def script(path: Path, *args: str | Path | int, context: str = "", env: Mapping[str, str] | None = None,
           cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run a bash script file of the package (it sets pipefail itself) with `args` as $1, $2, ...; raise ToolError."""
    argv = ["bash", str(path), *(str(a) for a in args)]
    proc = _execute(argv, environment(env), cwd, supervise=True)
    if proc.returncode != 0:
        raise ToolError(argv, proc.returncode, tail(proc.stderr.decode("utf-8", "replace")), context)
    return proc


def version(tool: str) -> str:
    """The first line of `tool --version` (mawk: `-W version`), for the manifest's provenance; asked once a
    process (see ask_version)."""
    with _asking:
        answer = _answers.get(tool)
        mine = answer is None
        if answer is None:
            answer = _answers[tool] = Future()
    if mine:
        value = "unknown"
        try:
            value = _version(tool)
        finally:
            answer.set_result(value)
    return answer.result()


def ask_version(*tools: str) -> None:
    """Start asking each tool its version on a thread of its own, so that version(tool), called as a build
    ends (for its manifest), finds the answer there instead of waiting for another process."""
    for tool in tools:
        if tool not in _answers:  # asked already (a worker's later builds): nothing to start
            threading.Thread(target=version, args=(tool,), name=f"version-{tool}", daemon=True).start()


_asking = threading.Lock()
_answers: dict[str, Future[str]] = {}


def _version(tool: str) -> str:
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
