"""digests: a local file's md5 and sha256 read once in a process, and only ever reused for the file in
the very state (device, inode, size, times) it had when the hash began."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from preprocess import digests


def test_the_hashes_are_the_files_and_a_second_ask_reuses_the_first(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(os.urandom(3 * digests.CHUNK + 5))
    first = digests.start(path, sha256=True)
    assert first is not None
    assert first.md5.result() == hashlib.md5(path.read_bytes()).hexdigest()
    assert first.want_sha256().result() == hashlib.sha256(path.read_bytes()).hexdigest()
    assert digests.start(path) is first and digests.taken(path, digests.file_state(path)) is first


def test_a_file_changed_after_its_hash_began_is_hashed_again(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"one\n")
    first = digests.start(path)
    assert first is not None and first.md5.result() == hashlib.md5(b"one\n").hexdigest()
    path.write_bytes(b"two\n")  # same size: the change time (and inode-level times) tell it apart
    assert digests.taken(path, digests.file_state(path)) is None
    assert digests.md5(path) == hashlib.md5(b"two\n").hexdigest()


@pytest.mark.parametrize("make", ["missing", "folder", "fifo"])
def test_what_is_not_a_regular_file_is_not_hashed(tmp_path: Path, make: str) -> None:
    """Refused without being opened: a FIFO would wait for a writer forever."""
    path = tmp_path / "x"
    if make == "folder":
        path.mkdir()
    elif make == "fifo":
        os.mkfifo(path)
    assert digests.start(path) is None
    with pytest.raises(OSError):
        digests.md5(path)


def test_one_pass_gives_the_same_hashes_in_one_read(tmp_path: Path) -> None:
    """A build checking a document's md5 reads the file once for md5 and sha256 together."""
    path = tmp_path / "b.bin"
    path.write_bytes(os.urandom(2 * digests.CHUNK + 7))
    found = digests.start(path, sha256=True, one_pass=True)
    assert found is not None and found.sha256 is not None
    assert (found.md5.result(), found.sha256.result()) == (hashlib.md5(path.read_bytes()).hexdigest(),
                                                           hashlib.sha256(path.read_bytes()).hexdigest())


def test_a_copy_keeps_the_hashes_of_its_source_and_loses_them_once_changed(tmp_path: Path) -> None:
    """copy_file's promise to pipelines: an output that is its source's bytes is not read again to be
    hashed; once its bytes change, its hash is its own."""
    source, copy = tmp_path / "source.bin", tmp_path / "out" / "copy.bin"
    copy.parent.mkdir()
    source.write_bytes(os.urandom(digests.CHUNK + 7))
    taken = digests.start(source, sha256=True)
    assert taken is not None
    digests.copy(source, copy)
    assert copy.read_bytes() == source.read_bytes()
    kept = digests.taken(copy, digests.file_state(copy))
    assert kept is not None and kept.md5 is taken.md5 and kept.sha256 is taken.sha256
    assert digests.sha256(copy) == hashlib.sha256(source.read_bytes()).hexdigest()
    copy.write_bytes(b"other bytes\n")
    assert digests.taken(copy, digests.file_state(copy)) is None
    assert digests.sha256(copy) == hashlib.sha256(b"other bytes\n").hexdigest()


def test_a_copy_of_a_file_never_hashed_is_hashed_from_its_own_bytes(tmp_path: Path) -> None:
    source, copy = tmp_path / "never.txt", tmp_path / "copy.txt"
    source.write_bytes(b"not hashed before\n")
    digests.copy(source, copy)
    assert digests.taken(copy, digests.file_state(copy)) is None
    assert digests.sha256(copy) == hashlib.sha256(b"not hashed before\n").hexdigest()
