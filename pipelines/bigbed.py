"""bigBed -> BED text, then the BED pipeline: sorted, bgzipped, tabix-indexed.

The records are read straight from the file's data blocks, in either byte order: a record's
fields after chromEnd are written exactly as stored (tabs, spaces and empty fields kept, no text
decoding). pybigtools splits them on whitespace and drops empty fields, which turns an autoSql
description such as "zinc finger" into two columns (UCSC's own tracks then fail as ragged).
Layout: UCSC's bigBed format (Kent et al. 2010): a 64-byte header, a B+ tree of chromosomes, a
record count, zlib blocks of records (chromId, chromStart, chromEnd: uint32; rest: a NUL-terminated
string; 0-based half-open as in BED), and an R-tree whose leaves give each block's offset and size
(the blocks need not be contiguous: bigtools writes the chromosome tree between them and the index).
Hostile files are bounded: each tree node is read once, trees are at most _MAX_DEPTH deep and their nodes
hold no more bytes than the file, blocks do not overlap, and a block inflates to at most the size the
header declares (so output is at most zlib's ratio times the file's size, in memory one block at a time).
"""

from __future__ import annotations

import errno
import itertools
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from preprocess import shell
from preprocess.errors import InputError

from .base import BuildContext, BuildOutput, BuildSettings, PipelineBase
from .intervals import BED, build_intervals
from .streaming import converted_line

BIGBED_MAGIC = 0x8789F2EB
CHROM_TREE_MAGIC = 0x78CA8C91
CIR_TREE_MAGIC = 0x2468ACE0
_MAX_DEPTH = 64  # tree levels: UCSC's trees (up to 256 children a node) have a handful
_MAX_BLOCK = 256 * 2**20  # uncompressed bytes in one data block; writers make blocks of ~512 records


@dataclass(frozen=True)
class BigBedPipeline(PipelineBase):
    name: str = "bigbed"
    version: str = "2"  # as BED; fields kept as stored (pybigtools split them on whitespace); either byte order
    formats: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"bigBed": (".bb", ".bigbed")})
    stage: str = "sort_bigbed"
    passthrough: bool = False
    tool_pins: str | None = "pipelines.pins:TOOLS"  # the tool versions its output pins were made with

    def artifact_names(self) -> dict[str, tuple[str, ...]]:
        return BED.artifact_names()  # its output is BED's

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
        with open(path, "rb") as stream, shell.interruptible("converting the bigBed's records"):
            return _convert(stream, out, label)
    except (struct.error, zlib.error, EOFError, IndexError, ValueError) as exc:
        raise InputError(f"{label}: truncated or corrupt bigBed ({type(exc).__name__}: {exc})") from None
    except MemoryError:
        raise InputError(f"{label}: bigBed too large to convert in the memory this worker has (MemoryError)"
                         ) from None
    except OSError as exc:  # a corrupt offset: seek() past what the OS allows (EINVAL); a full disk stays itself
        if exc.errno == errno.ENOSPC:
            raise
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
    if buffer_size > _MAX_BLOCK:
        raise InputError(f"{label}: corrupt bigBed (its header declares data blocks of {buffer_size} bytes "
                         f"uncompressed; at most {_MAX_BLOCK} are read)")
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
                block = _inflate(block, buffer_size, offset, label)
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
    at = stream.tell()
    left = os.fstat(stream.fileno()).st_size - at
    if size < 0 or size > left:  # a corrupt size must not become a read of gigabytes (MemoryError, or an OOM kill)
        raise EOFError(f"wanted {size} bytes at offset {at}, file has {max(left, 0)} left")
    data = stream.read(size)
    if len(data) != size:
        raise EOFError(f"wanted {size} bytes at offset {at}, file has {len(data)}")
    return data


def _inflate(block: bytes, limit: int, offset: int, label: str) -> bytes:
    """A zlib data block, inflated to no more than `limit` bytes (the header's uncompressBufSize)."""
    inflater = zlib.decompressobj()
    data = inflater.decompress(block, limit)
    if inflater.unconsumed_tail or not inflater.eof and inflater.decompress(b"", 1):
        raise InputError(f"{label}: corrupt bigBed (the data block at offset {offset} inflates to more than the "
                         f"{limit} bytes its header allows a block)")
    if not inflater.eof:
        raise zlib.error(f"the data block at offset {offset} is an incomplete or truncated zlib stream")
    return data


class _TreeWalk:
    """The nodes of one of the file's trees, each read once: a node reached twice (a loop, or a node with
    two parents), a tree deeper than _MAX_DEPTH or nodes holding more bytes than the file are corrupt."""

    def __init__(self, stream: BinaryIO, root: int, what: str, label: str) -> None:
        self.stream, self.what, self.label = stream, what, label
        self.pending, self.seen = [(root, 0)], set[int]()
        self.budget = os.fstat(stream.fileno()).st_size

    def __iter__(self) -> Iterator[int]:
        """Seeks to each node in turn and yields its depth; `child` adds the nodes it points to."""
        while self.pending:
            offset, depth = self.pending.pop()
            if offset in self.seen:
                raise InputError(f"{self.label}: corrupt bigBed (its {self.what} reaches the node at offset "
                                 f"{offset} twice: a tree's nodes have one parent, and loops never end)")
            if depth > _MAX_DEPTH:
                raise InputError(f"{self.label}: corrupt bigBed (its {self.what} is more than {_MAX_DEPTH} "
                                 "levels deep)")
            self.seen.add(offset)
            self.stream.seek(offset)
            yield depth

    def spend(self, size: int) -> None:
        """Count `size` bytes of node read; together they cannot exceed the file (nodes do not overlap)."""
        self.budget -= size
        if self.budget < 0:
            raise InputError(f"{self.label}: corrupt bigBed (its {self.what}'s nodes hold more bytes than the file)")

    def child(self, offset: int, depth: int) -> None:
        self.pending.append((offset, depth + 1))


def _block_list(stream: BinaryIO, order: str, offset: int, label: str) -> list[tuple[int, int]]:
    """(offset, size) of every data block, in file order, from the R-tree's leaves; blocks may not overlap."""
    stream.seek(offset)
    if struct.unpack(order + "I", _read(stream, 4))[0] != CIR_TREE_MAGIC:
        raise InputError(f"{label}: corrupt bigBed (no R-tree index where the header points)")
    blocks = set()
    walk = _TreeWalk(stream, offset + 48, "R-tree index", label)
    for depth in walk:
        leaf, _, count = struct.unpack(order + "BBH", _read(stream, 4))
        walk.spend(4 + count * (32 if leaf else 24))
        for _ in range(count):
            if leaf:
                blocks.add(struct.unpack(order + "16xQQ", _read(stream, 32)))
            else:
                walk.child(struct.unpack(order + "16xQ", _read(stream, 24))[0], depth)
    ordered = sorted(blocks)
    for (first, size), (second, _) in itertools.pairwise(ordered):
        if second < first + size:
            raise InputError(f"{label}: corrupt bigBed (its index lists data blocks that overlap, at offsets "
                             f"{first} and {second})")
    return ordered


def _chromosomes(stream: BinaryIO, order: str, offset: int, label: str) -> tuple[dict[int, bytes], dict[bytes, int]]:
    """Chromosome id -> name, and name -> length, from the B+ tree (leaves hold key, id, size)."""
    stream.seek(offset)
    magic, _, key_size, _, _, _ = struct.unpack(order + "IIIIQQ", _read(stream, 32))
    if magic != CHROM_TREE_MAGIC:
        raise InputError(f"{label}: corrupt bigBed (no chromosome tree where the header points)")
    names: dict[int, bytes] = {}
    lengths: dict[bytes, int] = {}
    walk = _TreeWalk(stream, stream.tell(), "chromosome tree", label)
    for depth in walk:
        leaf, _, count = struct.unpack(order + "BBH", _read(stream, 4))
        walk.spend(4 + count * (key_size + 8))
        for _ in range(count):
            key = _read(stream, key_size).rstrip(b"\0")
            if leaf:
                chrom_id, size = struct.unpack(order + "II", _read(stream, 8))
                names[chrom_id] = key
                lengths[key] = size
            else:
                walk.child(struct.unpack(order + "Q", _read(stream, 8))[0], depth)
    return names, lengths


BIGBED = BigBedPipeline()
