"""The tabix index of an interval output: its limits, the choice between TBI and CSI, writing it, and the
records per contig htslib counted while indexing (the index's pseudo-bin: TBI and CSI both keep one per
reference), so the records-in == records-out check needs no read-back."""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

from preprocess import shell

TBI_MAX = 2**29          # TBI bins address positions below 2^29; beyond that, CSI
TABIX_MAX = 2**32        # the largest end tabix's CSI (min_shift 14) stores; beyond is an input error
CSI_MIN_SHIFT = 14
TBI_META_BIN = 37450  # ((1 << 18) - 1) // 7 + 1, the pseudo-bin of a depth-5 index


def record_counts(index: Path) -> dict[str, int]:
    """Contig name -> records indexed under it, from a tabix .tbi or .csi; ValueError if unreadable."""
    data = gzip.decompress(index.read_bytes())
    if data[:4] == b"TBI\1":
        n_ref = struct.unpack_from("<i", data, 4)[0]
        names_length = struct.unpack_from("<i", data, 32)[0]
        names, offset, meta, csi = data[36:36 + names_length], 36 + names_length, TBI_META_BIN, False
    elif data[:4] == b"CSI\1":
        _min_shift, depth, aux_length = struct.unpack_from("<3i", data, 4)
        aux = data[16:16 + aux_length]
        names_length = struct.unpack_from("<i", aux, 24)[0] if aux_length >= 28 else 0
        names, offset, csi = aux[28:28 + names_length], 16 + aux_length, True
        meta = ((1 << (3 * depth + 3)) - 1) // 7 + 1
        n_ref = struct.unpack_from("<i", data, offset)[0]
        offset += 4
    else:
        raise ValueError(f"{index.name} is neither a TBI nor a CSI index")
    contigs = [name.decode("latin-1") for name in names.split(b"\0")[:n_ref]]
    if len(contigs) != n_ref:
        raise ValueError(f"{index.name} names {len(contigs)} contigs but holds {n_ref}")
    counts: dict[str, int] = {}
    for name in contigs:
        mapped = 0
        n_bin = struct.unpack_from("<i", data, offset)[0]
        offset += 4
        for _ in range(n_bin):
            if csi:
                bin_number, _loffset, n_chunk = struct.unpack_from("<IQi", data, offset)
                offset += 16
            else:
                bin_number, n_chunk = struct.unpack_from("<Ii", data, offset)
                offset += 8
            if bin_number == meta and n_chunk == 2:  # (start, end offsets), (mapped, unmapped)
                mapped = struct.unpack_from("<Q", data, offset + 16)[0]
            offset += 16 * n_chunk
        if not csi:
            n_intervals = struct.unpack_from("<i", data, offset)[0]
            offset += 4 + 8 * n_intervals
        counts[name] = mapped
    return counts


def declared_lengths(header: list[str]) -> list[int]:
    """Contig lengths a header declares: VCF ##contig length=, GFF3 ##sequence-region end."""
    found = []
    for line in header:
        match = (re.match(r"##contig=<.*?\blength=(\d+)", line)
                 or re.match(r"##sequence-region\s+\S+\s+\d+\s+(\d+)", line))
        if match:
            found.append(int(match.group(1)))
    return found


def index_kind(max_end: int, lengths: tuple[int, ...] | list[int]) -> str:
    """"csi" when the records' largest end or a contig length reaches past what TBI bins address, else "tbi"."""
    return "csi" if max_end >= TBI_MAX or any(n >= TBI_MAX for n in lengths) else "tbi"


def index_argv(out: Path, preset: str, kind: str, skip: int) -> list[str]:
    """tabix -p `preset` over `out` (CSI with min_shift 14 for `kind` "csi"), `skip` leading lines not
    indexed (a BED track line)."""
    flags = ["--csi", "-m", str(CSI_MIN_SHIFT)] if kind == "csi" else []
    skipped = ["-S", str(skip)] if skip else []
    return ["tabix", "-f", "-p", preset, *flags, *skipped, str(out)]


def index_path(out: Path, kind: str) -> Path:
    return out.with_name(f"{out.name}.{kind}")


def write_index(out: Path, preset: str, kind: str, skip: int, label: str) -> Path:
    """Index `out` (see index_argv); returns the index's path."""
    shell.run(index_argv(out, preset, kind, skip), context=f"indexing {label}")
    return index_path(out, kind)
