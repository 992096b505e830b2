"""md5 and sha256 of local files, each read once in a process. A hash started early (the CLI starts one
as it reads a local SOURCE, while the heavy modules load) or taken while planning is the one the build
uses, as long as the file is still in the state it had when that hash began (device, inode, size,
modification and change times): the state the build's change check compares against. Standard
library only, so the CLI can import it before anything else."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

CHUNK = 2**20  # bytes read at a time into one reused buffer: 20% faster than fresh 8 MiB reads (page faults)
KEPT = 4096  # entries: enough for a batch's planning to reach its builds; a notebook's memory stays small

State = tuple[int, ...]


def file_state(path: Path) -> State:
    """What changes when a file's bytes do: device, inode, size, and modification and change times (ns)."""
    return _state(os.stat(path))


def _state(st: os.stat_result) -> State:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Digests:
    """The hashes of one local file in one state, each a Future (an OSError where the read failed)."""

    def __init__(self, path: Path, state: State) -> None:
        self.path, self.state = path, state
        self.md5: Future[str] = Future()
        self.sha256: Future[str] | None = None

    def want_sha256(self) -> Future[str]:
        """The sha256, its read started now unless it already was."""
        with _lock:
            if self.sha256 is None:
                self.sha256 = Future()
                _start(self.path, [("sha256", self.sha256)])
            return self.sha256


_taken: OrderedDict[str, Digests] = OrderedDict()
_lock = threading.Lock()


def _start(path: Path, wanted: list[tuple[str, Future[str]]], one_pass: bool = False, here: bool = False) -> None:
    """Hash `path` on a thread of its own (hashlib releases the GIL). By default one algorithm after
    another, each a read of the same page-cached bytes, so the first answer (md5, which a key needs)
    comes as soon as it can; `one_pass`: every algorithm in one read, for a file whose md5 is known
    already and only checked (one read of a file too big for the page cache). Either way the thread
    keeps to one core (two hashes side by side slowed the imports they run beside); `here`: in the
    calling thread (a planner's pool of threads already)."""

    def hash_all(group: list[tuple[str, Future[str]]]) -> None:
        try:
            digests = [hashlib.new(name, usedforsecurity=False) for name, _ in group]
            for block in _blocks(path):
                for digest in digests:
                    digest.update(block)
            for (_, future), digest in zip(group, digests, strict=True):
                future.set_result(digest.hexdigest())
        except BaseException as exc:  # noqa: BLE001 - handed to whoever takes the results
            for _, future in group:
                future.set_exception(exc)

    def run() -> None:
        for group in [wanted] if one_pass else [[item] for item in wanted]:
            hash_all(group)

    if here:
        run()
    else:
        threading.Thread(target=run, name="preprocess-hash", daemon=True).start()


def start(path: Path, sha256: bool = False, one_pass: bool = False, here: bool = False) -> Digests | None:
    """Begin hashing the local file `path` in the state it has now (reusing a hash of that state already
    under way), md5 and with `sha256` the sha256 too (`one_pass`: in one read, see _start); None where
    it is not a regular file."""
    key = os.path.abspath(path)
    try:
        found_stat = os.stat(key)
    except OSError:
        return None
    if not stat.S_ISREG(found_stat.st_mode):
        return None
    state = _state(found_stat)
    wanted: list[tuple[str, Future[str]]] = []
    with _lock:
        found = _taken.get(key)
        if found is None or found.state != state:
            found = Digests(Path(key), state)
            _taken[key] = found
            wanted.append(("md5", found.md5))
            if sha256:
                found.sha256 = Future()
                wanted.append(("sha256", found.sha256))
            while len(_taken) > KEPT:
                _taken.popitem(last=False)
        _taken.move_to_end(key)
    if wanted:  # begun by this call: outside the lock, so hashes of other files go on meanwhile
        _start(found.path, wanted, one_pass, here)
    if sha256:
        found.want_sha256()
    return found


def taken(path: Path, state: State) -> Digests | None:
    """The hashes begun of `path` in exactly `state`, if any."""
    with _lock:
        found = _taken.get(os.path.abspath(path))
    return found if found is not None and found.state == state else None


def copy(src: Path, dst: Path) -> None:
    """shutil.copyfile; where `src`'s hashes were taken and it kept their state through the copy, they
    are `dst`'s too (in the state the copy left it): the same bytes are not read again to be hashed."""
    key = os.path.abspath(src)
    before = file_state(Path(key))
    shutil.copyfile(src, dst)
    found = taken(Path(key), before)
    if found is None or file_state(Path(key)) != before:
        return
    made = Digests(Path(os.path.abspath(dst)), file_state(dst))
    made.md5, made.sha256 = found.md5, found.sha256
    with _lock:
        _taken[str(made.path)] = made
        while len(_taken) > KEPT:
            _taken.popitem(last=False)


def sha256(path: Path) -> str:
    """The sha256 of a local file: the one taken in the state it has now, else read now (not kept)."""
    found = taken(path, file_state(path))
    if found is not None and found.sha256 is not None:
        return found.sha256.result()
    digest = hashlib.sha256()
    for block in _blocks(path):
        digest.update(block)
    return digest.hexdigest()


def _blocks(path: Path) -> Iterator[memoryview]:
    """The file's bytes, CHUNK at a time, each a view of the same buffer (valid until the next)."""
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as stream:
        while size := stream.readinto(buffer):
            with view[:size] as block:  # released before the next read: a view kept raises, never changes
                yield block


def md5(path: Path) -> str:
    """The md5 of a local file: the one begun in the state it has now, else read now (and kept for the
    build). OSError where it cannot be read."""
    found = start(path, here=True)
    if found is None:  # never opened: a FIFO would wait for a writer
        os.stat(path)  # FileNotFoundError, PermissionError: the reason as stat gives it
        raise IsADirectoryError(errno.EISDIR, "not a regular file", str(path))
    return found.md5.result()
