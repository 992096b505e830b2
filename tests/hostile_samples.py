"""Hostile files for the bounds on time and memory (issue 20, items 7 and 8), each small on disk and
shaped like its reproduction: a bigBed whose R-tree points at itself, a bigBed holding a zlib bomb, and a
BAM whose header is tens of megabytes. Deterministic: no randomness, no timestamps.
"""

from __future__ import annotations

import struct
import subprocess
import zlib
from pathlib import Path

CHROM = b"chr1"
CHROM_LENGTH = 100_000
_ROWS = ((100, 200, b"a"), (300, 400, b"b"), (500, 600, b"c"))


def bigbed(path: Path, *, loop: bool = False, bomb: int = 0, declared: int | None = None) -> Path:
    """A minimal little-endian bigBed (UCSC's layout, no zoom levels) of three BED3+1 records on chr1.

    loop: the R-tree's root is a non-leaf node whose one child is itself (about 200 bytes in all).
    bomb: the data block inflates to `bomb` zero bytes past its records (2 GiB deflate to about 2 MB),
    while the header declares blocks of `declared` bytes uncompressed (default: the records' size)."""
    out = bytearray(64)
    tree_at = len(out)
    out += struct.pack("<IIIIQQ", 0x78CA8C91, 1, len(CHROM), 8, 1, 0)
    out += struct.pack("<BBH", 1, 0, 1) + CHROM + struct.pack("<II", 0, CHROM_LENGTH)
    data_at = len(out)
    out += struct.pack("<Q", len(_ROWS))
    raw = b"".join(struct.pack("<III", 0, start, end) + rest + b"\0" for start, end, rest in _ROWS)
    block_at = len(out)
    out += _deflate(raw, bomb)
    block_size = len(out) - block_at
    index_at = len(out)
    out += struct.pack("<IIQIIIIQII", 0x2468ACE0, 256, 1, 0, _ROWS[0][0], 0, _ROWS[-1][1], index_at, 1, 0)
    root = index_at + 48
    if loop:
        out += struct.pack("<BBH", 0, 0, 1) + struct.pack("<IIIIQ", 0, 0, 0, CHROM_LENGTH, root)
    else:
        out += struct.pack("<BBH", 1, 0, 1) + struct.pack("<IIIIQQ", 0, 0, 0, CHROM_LENGTH, block_at, block_size)
    out += struct.pack("<I", 0x8789F2EB)
    out[:64] = struct.pack("<IHHQQQHHQQIQ", 0x8789F2EB, 4, 0, tree_at, data_at, index_at, 4, 4, 0, 0,
                           len(raw) if declared is None else declared, 0)
    path.write_bytes(bytes(out))
    return path


def _deflate(raw: bytes, zeros: int) -> bytes:
    """zlib(raw + `zeros` zero bytes), quickly: after a full flush deflate starts afresh, so one 16 MiB piece
    of zeros compressed once stands for them all (the adler32 trailer is still that of every byte)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = [packer.compress(raw) + packer.flush(zlib.Z_FULL_FLUSH)]
    checksum = zlib.adler32(raw)
    piece = bytes(16 * 2**20)
    packed = packer.compress(piece) + packer.flush(zlib.Z_FULL_FLUSH)
    whole, part = divmod(zeros, len(piece))
    body += [packed] * whole
    for _ in range(whole):
        checksum = zlib.adler32(piece, checksum)
    body.append(packer.compress(piece[:part]) + packer.flush())
    checksum = zlib.adler32(piece[:part], checksum)
    return b"\x78\xda" + b"".join(body) + checksum.to_bytes(4, "big")


def huge_header_bam(path: Path, header_bytes: int = 64 * 2**20, reads: int = 200) -> Path:
    """A BAM of `reads` sorted reads under a header of about `header_bytes` (one @SQ line, then @CO lines):
    about 240 KB on disk for 64 MB, since the comment lines repeat. samtools writes it from SAM text."""
    line = b"@CO\t" + b"a comment that repeats; " * 40 + b"\n"
    sam = path.with_suffix(".sam")
    with open(sam, "wb") as out:
        out.write(b"@HD\tVN:1.6\n@SQ\tSN:chr1\tLN:%d\n" % CHROM_LENGTH)
        block = line * (2**20 // len(line))
        for _ in range(max(1, header_bytes // len(block))):
            out.write(block)
        for i in range(reads):
            out.write(b"r%d\t0\tchr1\t%d\t60\t10M\t*\t0\t0\tACGTACGTAC\tIIIIIIIIII\n" % (i, 1 + i * 10))
    subprocess.run(["samtools", "view", "--no-PG", "-b", "-o", str(path), str(sam)], check=True)
    sam.unlink()
    return path


HOSTILE = {  # kind -> (format, file name, maker): the generated bad-file set's hostile kinds
    "self-referential-index": ("bigBed", "loop.bb", lambda d: bigbed(d / "loop.bb", loop=True)),
    "decompression-bomb": ("bigBed", "bomb.bb", lambda d: bigbed(d / "bomb.bb", bomb=2 * 2**30)),
    "huge-header": ("BAM", "header.bam", lambda d: huge_header_bam(d / "header.bam")),
}
