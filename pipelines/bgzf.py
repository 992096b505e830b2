"""BGZF block layout, read from the block headers alone: is a file well-formed BGZF ending with the
EOF block, how many bytes it holds decompressed, and its last line (the interval pipelines' checks)."""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from preprocess import shell

EOF_BLOCK = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
_HEADER = struct.Struct("<4BI2BH2BH")  # magic(2) CM FLG MTIME XFL OS XLEN, then the first subfield SI1 SI2 SLEN


@dataclass(frozen=True)
class Block:
    offset: int     # of the block in the file
    size: int       # compressed, header and trailer included
    isize: int      # decompressed


def blocks(path: Path) -> list[Block] | None:
    """Every block of a BGZF file, or None where it is not well-formed BGZF (a block without its BC
    subfield, a cut-off block, bytes after the last block)."""
    found = []
    with open(path, "rb") as stream:
        end = stream.seek(0, 2)
        offset = 0
        while offset < end:
            stream.seek(offset)
            head = stream.read(18)
            if len(head) < 18:
                return None
            id1, id2, cm, flg, _mtime, _xfl, _os, xlen, si1, si2, slen = _HEADER.unpack_from(head)
            if (id1, id2, cm, flg & 4, si1, si2, slen) != (31, 139, 8, 4, 66, 67, 2) or xlen < 6:
                return None
            size = struct.unpack_from("<H", head, 16)[0] + 1
            if offset + size > end or size < 18 + 8:
                return None
            stream.seek(offset + size - 4)
            found.append(Block(offset, size, struct.unpack("<I", stream.read(4))[0]))
            offset += size
    return found


def ends_with_eof_block(path: Path, layout: list[Block]) -> bool:
    """The last block is htslib's empty EOF marker (its absence makes htslib warn of truncation)."""
    if not layout or layout[-1].isize or layout[-1].size != len(EOF_BLOCK):
        return False
    with open(path, "rb") as stream:
        stream.seek(layout[-1].offset)
        return stream.read(len(EOF_BLOCK)) == EOF_BLOCK


def last_line(path: Path, layout: list[Block]) -> bytes:
    """The last line (without its newline), decompressing blocks from the end until it starts."""
    tail = b""
    with open(path, "rb") as stream:
        for block in reversed(layout):
            if not block.isize:
                continue
            stream.seek(block.offset)
            data = zlib.decompress(stream.read(block.size)[18:-8], -15)
            tail = data + tail
            cut = tail.rstrip(b"\n").rfind(b"\n")
            if cut >= 0:
                return tail[cut + 1:].rstrip(b"\n")
    return tail.rstrip(b"\n")


BLOCK_MAX = 1 << 16  # a BGZF block holds at most 64 KiB, compressed or not


def first_fault(path: Path, inflate: bool = True) -> str | None:
    """Where a file meant to be BGZF throughout first is not, in the user's terms, or None: a gzip member
    without the BC subfield (a plain gzip member after BGZF blocks), a block whose data does not inflate
    or does not match its CRC32 (only with `inflate`: it inflates every block, at most 64 KiB each), a
    cut-off block, bytes that are not gzip. For explaining a failure htslib reported, not for every build;
    it stops at the task's time cap."""
    with open(path, "rb") as stream:
        offset = count = 0
        while head := stream.read(18):
            count += 1
            if count % 1024 == 0:
                shell.check_time("looking for the damaged block")
            if len(head) < 18 or head[:2] != b"\x1f\x8b":
                return f"bytes that are not a gzip block at offset {offset} (after the last whole block)"
            _id1, _id2, cm, flg, _mtime, _xfl, _os, xlen, si1, si2, slen = _HEADER.unpack_from(head)
            if (cm, flg & 4, si1, si2, slen) != (8, 4, 66, 67, 2) or xlen < 6:
                return (f"a plain gzip member at offset {offset}, not a BGZF block: the file is not BGZF "
                        "throughout (recompress it whole with bgzip)")
            size = struct.unpack_from("<H", head, 16)[0] + 1
            if not inflate:
                if size < 12 + xlen + 8 or stream.seek(offset + size) > os.fstat(stream.fileno()).st_size:
                    return f"truncated compressed block at offset {offset}"
                offset += size
                continue
            block = head + stream.read(size - 18)
            if len(block) < size or size < 12 + xlen + 8:
                return f"truncated compressed block at offset {offset}"
            crc, isize = struct.unpack_from("<II", block, size - 8)
            inflater = zlib.decompressobj(-15)
            try:
                data = inflater.decompress(block[12 + xlen:size - 8], BLOCK_MAX + 1)
            except zlib.error:
                return f"corrupt compressed block at offset {offset} (its data does not inflate)"
            if not inflater.eof or len(data) != isize or zlib.crc32(data) != crc:
                return f"corrupt compressed block at offset {offset} (its data does not match its size and CRC32)"
            offset += size
    return None
