"""bigBed -> BED text, then the BED pipeline: sorted, bgzipped, tabix-indexed.

The records are read straight from the file's data blocks, in either byte order: a record's
fields after chromEnd are written exactly as stored (tabs, spaces and empty fields kept, no text
decoding). pybigtools splits them on whitespace and drops empty fields, which turns an autoSql
description such as "zinc finger" into two columns (UCSC's own tracks then fail as ragged).
Layout: UCSC's bigBed format (Kent et al. 2010): a 64-byte header, a B+ tree of chromosomes, a
record count, zlib blocks of records (chromId, chromStart, chromEnd: uint32; rest: a NUL-terminated
string; 0-based half-open as in BED), and an R-tree whose leaves give each block's offset and size
(the blocks need not be contiguous: bigtools writes the chromosome tree between them and the index).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from preprocess.errors import InputError

from .base import BuildContext, BuildOutput, BuildSettings
from .intervals import BED, build_intervals, converted_line

BIGBED_MAGIC = 0x8789F2EB
CHROM_TREE_MAGIC = 0x78CA8C91
CIR_TREE_MAGIC = 0x2468ACE0


@dataclass(frozen=True)
class BigBedPipeline:
    name: str = "bigbed"
    version: str = "2"  # as BED; fields kept as stored (pybigtools split them on whitespace); either byte order
    formats: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"bigBed": (".bb", ".bigbed")})
    stage: str = "sort_bigbed"
    passthrough: bool = False

    def parameters(self, settings: BuildSettings) -> dict[str, Any]:
        return BED.parameters(settings)

    def build(self, ctx: BuildContext) -> BuildOutput:
        bed = ctx.workdir / "converted.bed"
        with ctx.stage("convert"):
            lengths, records, order = to_bed(ctx.source, bed, ctx.label)
        return build_intervals(BED, ctx, bed, lengths=tuple(lengths.values()),
                               extra_records={"conversion": {"tool": "preprocess bigBed reader", "records": records,
                                                             "byte_order": order}},
                               where=converted_line(bed, "the bigBed record"))


def to_bed(path: Path, out: Path, label: str) -> tuple[dict[str, int], int, str]:
    """Write every record of a bigBed as a BED line; return contig lengths, the count and the byte order."""
    try:
        with open(path, "rb") as stream:
            return _convert(stream, out, label)
    except (struct.error, zlib.error, EOFError, IndexError, ValueError) as exc:
        raise InputError(f"{label}: truncated or corrupt bigBed ({type(exc).__name__}: {exc})") from None


def _convert(stream: BinaryIO, out: Path, label: str) -> tuple[dict[str, int], int, str]:
    head = stream.read(64)
    if len(head) < 64:
        raise InputError(f"{label}: not a bigBed file (shorter than its 64-byte header)")
    order = {BIGBED_MAGIC.to_bytes(4, "little"): "<", BIGBED_MAGIC.to_bytes(4, "big"): ">"}.get(head[:4])
    if order is None:
        hint = " (it is a bigWig)" if head[:4] in (b"\x26\xfc\x8f\x88", b"\x88\x8f\xfc\x26") else ""
        raise InputError(f"{label}: not a bigBed file (its first bytes are not the bigBed magic number){hint}")
    (_, _, _, chrom_tree, data_offset, index_offset, _, _, _, _, buffer_size, _) = struct.unpack(
        order + "IHHQQQHHQQIQ", head)
    stream.seek(-4, 2)
    if stream.read(4) != head[:4]:
        raise InputError(f"{label}: truncated bigBed (a whole file ends with the magic number it starts with)")
    names, lengths = _chromosomes(stream, order, chrom_tree, label)
    stream.seek(data_offset)
    expected = struct.unpack(order + "Q", _read(stream, 8))[0]
    count = 0
    record = struct.Struct(order + "III")
    with open(out, "wb") as target:
        for offset, size in _block_list(stream, order, index_offset, label):
            stream.seek(offset)
            block = _read(stream, size)
            if buffer_size:
                block = zlib.decompress(block)
            at = 0
            while at < len(block):
                chrom_id, start, end = record.unpack_from(block, at)
                stop = block.index(b"\0", at + 12)
                if chrom_id not in names:
                    raise InputError(f"{label}: a record names chromosome id {chrom_id}, which the file does not list")
                rest = block[at + 12:stop]
                target.write(b"\t".join((names[chrom_id], b"%d" % start, b"%d" % end)) + (b"\t" + rest if rest else b"")
                             + b"\n")
                count += 1
                at = stop + 1
    if count != expected:
        raise InputError(f"{label}: the header counts {expected} records, the data blocks hold {count}")
    return {name.decode("utf-8", "replace"): length for name, length in lengths.items()}, count, \
        "little-endian" if order == "<" else "big-endian"


def _read(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size or size < 0:
        raise EOFError(f"wanted {size} bytes at offset {stream.tell() - len(data)}, file has {len(data)}")
    return data


def _block_list(stream: BinaryIO, order: str, offset: int, label: str) -> list[tuple[int, int]]:
    """(offset, size) of every data block, in file order, from the R-tree's leaves."""
    stream.seek(offset)
    if struct.unpack(order + "I", _read(stream, 4))[0] != CIR_TREE_MAGIC:
        raise InputError(f"{label}: corrupt bigBed (no R-tree index where the header points)")
    blocks = set()
    pending = [offset + 48]
    while pending:
        stream.seek(pending.pop())
        leaf, _, count = struct.unpack(order + "BBH", _read(stream, 4))
        for _ in range(count):
            if leaf:
                blocks.add(struct.unpack(order + "16xQQ", _read(stream, 32)))
            else:
                pending.append(struct.unpack(order + "16xQ", _read(stream, 24))[0])
    return sorted(blocks)


def _chromosomes(stream: BinaryIO, order: str, offset: int, label: str) -> tuple[dict[int, bytes], dict[bytes, int]]:
    """Chromosome id -> name, and name -> length, from the B+ tree (leaves hold key, id, size)."""
    stream.seek(offset)
    magic, _, key_size, _, _, _ = struct.unpack(order + "IIIIQQ", _read(stream, 32))
    if magic != CHROM_TREE_MAGIC:
        raise InputError(f"{label}: corrupt bigBed (no chromosome tree where the header points)")
    names: dict[int, bytes] = {}
    lengths: dict[bytes, int] = {}
    pending = [stream.tell()]
    while pending:
        stream.seek(pending.pop())
        leaf, _, count = struct.unpack(order + "BBH", _read(stream, 4))
        for _ in range(count):
            key = _read(stream, key_size).rstrip(b"\0")
            if leaf:
                chrom_id, size = struct.unpack(order + "II", _read(stream, 8))
                names[chrom_id] = key
                lengths[key] = size
            else:
                pending.append(struct.unpack(order + "Q", _read(stream, 8))[0])
    return names, lengths


BIGBED = BigBedPipeline()
