"""BGZF block layout, read from the block headers alone: is a file well-formed BGZF ending with the
EOF block, how many bytes it holds decompressed, and its last line (the interval pipelines' checks)."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

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
