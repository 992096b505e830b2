"""Compressed files, read from their bytes alone: which compression a text has (plain, gzip or BGZF), its
lines, and a BGZF file's block layout (one walker over the block headers: whether the file is
well-formed BGZF ending with the EOF block, how many bytes it holds decompressed, where it first breaks)."""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from preprocess import shell

GZIP_MAGIC = b"\x1f\x8b"
EOF_BLOCK = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
BLOCK_MAX = 1 << 16  # a BGZF block holds at most 64 KiB, compressed or not
_HEADER = struct.Struct("<4BI2BH2BH")  # magic(2) CM FLG MTIME XFL OS XLEN, then the first subfield SI1 SI2 SLEN


def sniff_compression(path: Path) -> str:
    """"bgzf", "gzip" or "plain", from the magic bytes (BGZF: gzip with a BC extra subfield)."""
    with open(path, "rb") as stream:
        head = stream.read(18)
    if not head.startswith(GZIP_MAGIC):
        return "plain"
    if len(head) >= 16 and head[3] & 4 and head[12:14] == b"BC":
        return "bgzf"
    return "gzip"


def read_head(path: Path, size: int) -> bytes:
    """The first `size` bytes of a text, decompressed when it is gzip or BGZF (OSError, EOFError or
    zlib.error when the stream cannot be read that far)."""
    import gzip

    opened = open(path, "rb") if sniff_compression(path) == "plain" else gzip.open(path, "rb")  # noqa: SIM115
    with opened as stream:
        return stream.read(size)


def text_lines(path: Path) -> Iterator[bytes]:
    """The lines of a plain, gzip or BGZF text file as bytes, without line ends."""
    import gzip

    opened = open(path, "rb") if sniff_compression(path) == "plain" else gzip.open(path, "rb")  # noqa: SIM115
    with opened as stream:
        for line in stream:
            yield line.rstrip(b"\n").removesuffix(b"\r")


@dataclass(frozen=True)
class Block:
    offset: int     # of the block in the file
    size: int       # compressed, header and trailer included
    isize: int      # decompressed
    xlen: int = 6   # the extra field's length: the compressed data starts at 12 + xlen


class Fault(Exception):
    """Where a file meant to be BGZF throughout first is not, in the user's terms (the message)."""


def walk(stream: BinaryIO, check_data: bool = False, doing: str = "reading the BGZF blocks") -> Iterator[Block]:
    """Every block of a BGZF stream, in order, from its headers and trailers; Fault at the first place
    it is not BGZF: bytes that are not gzip, a gzip member without the BC subfield, a cut-off block,
    and (with `check_data`, which inflates every block, at most 64 KiB each) data that does not inflate
    or does not match its size and CRC32. Stops at the task's time cap."""
    end = os.fstat(stream.fileno()).st_size
    offset = count = 0
    while True:
        stream.seek(offset)
        head = stream.read(18)
        if not head:
            return
        count += 1
        if count % 1024 == 0:
            shell.check_time(doing)
        if len(head) < 18 or head[:2] != GZIP_MAGIC:
            raise Fault(f"bytes that are not a gzip block at offset {offset} (after the last whole block)")
        _id1, _id2, cm, flg, _mtime, _xfl, _os, xlen, si1, si2, slen = _HEADER.unpack_from(head)
        if (cm, flg & 4, si1, si2, slen) != (8, 4, 66, 67, 2) or xlen < 6:
            raise Fault(f"a plain gzip member at offset {offset}, not a BGZF block: the file is not BGZF "
                        "throughout (recompress it whole with bgzip)")
        size = struct.unpack_from("<H", head, 16)[0] + 1
        if size < 12 + xlen + 8 or offset + size > end:
            raise Fault(f"truncated compressed block at offset {offset}")
        if check_data:
            block = head + stream.read(size - 18)
            crc, isize = struct.unpack_from("<II", block, size - 8)
            inflater = zlib.decompressobj(-15)
            try:
                data = inflater.decompress(block[12 + xlen:size - 8], BLOCK_MAX + 1)
            except zlib.error:
                raise Fault(f"corrupt compressed block at offset {offset} (its data does not inflate)") from None
            if not inflater.eof or len(data) != isize or zlib.crc32(data) != crc:
                raise Fault(f"corrupt compressed block at offset {offset} (its data does not match its size and "
                            "CRC32)")
        else:
            stream.seek(offset + size - 4)
            isize = struct.unpack("<I", stream.read(4))[0]
        yield Block(offset, size, isize, xlen)
        offset += size


def blocks(path: Path) -> list[Block] | None:
    """Every block of a BGZF file, or None where it is not well-formed BGZF (a block without its BC
    subfield, a cut-off block, bytes after the last block)."""
    with open(path, "rb") as stream:
        try:
            return list(walk(stream))
        except Fault:
            return None


def first_fault(path: Path, inflate: bool = True) -> str | None:
    """Where a file meant to be BGZF throughout first is not, in the user's terms, or None (see walk;
    `inflate` checks every block's data too). For explaining a failure htslib reported, not for every
    build; it stops at the task's time cap."""
    with open(path, "rb") as stream:
        try:
            for _ in walk(stream, inflate, "looking for the damaged block"):
                pass
        except Fault as fault:
            return str(fault)
    return None


def inflate(data: bytes | mmap.mmap, block: Block) -> bytes:
    """One block's data, decompressed; `data` holds the file (or at least the block, at its offset)."""
    return zlib.decompress(data[block.offset + 12 + block.xlen:block.offset + block.size - 8], -15)


def ends_with_eof_block(path: Path, layout: list[Block]) -> bool:
    """The last block is htslib's empty EOF marker (its absence makes htslib warn of truncation)."""
    if not layout or layout[-1].isize or layout[-1].size != len(EOF_BLOCK):
        return False
    with open(path, "rb") as stream:
        stream.seek(layout[-1].offset)
        return stream.read(len(EOF_BLOCK)) == EOF_BLOCK


def ends_with_newline(path: Path, layout: list[Block]) -> bool:
    """Whether the text's last byte is a newline, from the data of its last blocks (decompressed from
    the end until one holds data: no block's ISIZE is taken on trust)."""
    with open(path, "rb") as stream:
        for block in reversed(layout):
            stream.seek(block.offset)
            data = inflate(stream.read(block.size), replace(block, offset=0))
            if data:
                return data.endswith(b"\n")
    return False


def last_line(path: Path, layout: list[Block]) -> bytes:
    """The last line (without its newline), decompressing blocks from the end until it starts."""
    tail = b""
    with open(path, "rb") as stream:
        for block in reversed(layout):
            if not block.isize:
                continue
            stream.seek(block.offset)
            data = inflate(stream.read(block.size), replace(block, offset=0))
            tail = data + tail
            cut = tail.rstrip(b"\n").rfind(b"\n")
            if cut >= 0:
                return tail[cut + 1:].rstrip(b"\n")
    return tail.rstrip(b"\n")
