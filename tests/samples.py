"""Deterministic sample files for tests, the demo and benchmarks: fixed seeds, gzip mtime=0.

    python -m tests.samples DIR [--reads N]   writes one file per format and DIR/manifest.csv
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

CONTIGS = {"chr1": 200_000, "chr2": 150_000, "chrX": 100_000}
BASES = "ACGT"


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def write_gzip(path: Path, data: bytes) -> Path:
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as out:
        out.write(data)
    return path


def bgzip(path: Path, out: Path) -> Path:
    with open(out, "wb") as target:
        subprocess.run(["bgzip", "-c", str(path)], stdout=target, check=True)
    return out


def sam(path: Path, reads: int = 2000, seed: int = 1, contigs: dict[str, int] | None = None,
        unmapped: int = 20) -> Path:
    """An unsorted SAM: random 50-bp reads over `contigs`, plus some unmapped reads."""
    rng = random.Random(seed)
    contigs = contigs or CONTIGS
    lines = ["@HD\tVN:1.6\tSO:unsorted"] + [f"@SQ\tSN:{n}\tLN:{ln}" for n, ln in contigs.items()]
    lines.append("@RG\tID:rg1\tSM:sample1")
    names = list(contigs)
    for i in range(reads):
        ref = rng.choice(names)
        pos = rng.randint(1, min(contigs[ref], 2**31) - 60)
        seq = "".join(rng.choice(BASES) for _ in range(50))
        flag = rng.choice((0, 16))
        lines.append(f"r{i:07d}\t{flag}\t{ref}\t{pos}\t60\t50M\t*\t0\t0\t{seq}\t{'I' * 50}\tRG:Z:rg1")
    for i in range(unmapped):
        seq = "".join(rng.choice(BASES) for _ in range(50))
        lines.append(f"u{i:07d}\t4\t*\t0\t0\t*\t*\t0\t0\t{seq}\t{'I' * 50}\tRG:Z:rg1")
    path.write_text("\n".join(lines) + "\n")
    return path


def bam(path: Path, **kwargs: object) -> Path:
    """An unsorted BAM made from sam() by samtools."""
    text = sam(path.with_suffix(".tmp.sam"), **kwargs)  # type: ignore[arg-type]
    subprocess.run(["samtools", "view", "--no-PG", "-b", "-o", str(path), str(text)], check=True)
    text.unlink()
    return path


def fasta(path: Path, contigs: dict[str, int] | None = None, seed: int = 9) -> Path:
    """A random reference FASTA (60 bases a line) with its .fai beside it."""
    rng = random.Random(seed)
    with open(path, "w") as out:
        for name, length in (contigs or CONTIGS).items():
            bases = "".join(rng.choice(BASES) for _ in range(length))
            out.write(f">{name}\n" + "".join(bases[i:i + 60] + "\n" for i in range(0, length, 60)))
    subprocess.run(["samtools", "faidx", str(path)], check=True)
    return path


def read_sequences(path: Path) -> dict[str, str]:
    """The sequences of a FASTA by name, upper case."""
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            current = found.setdefault(line[1:].split()[0], [])
        elif line:
            current.append(line.strip().upper())
    return {name: "".join(parts) for name, parts in found.items()}


def cram(path: Path, reference: Path, reads: int = 1500, seed: int = 12, embed: bool = False,
         unmapped: int = 10, ordered: bool | None = None, ur: str = "file:/generated/ref.fa") -> Path:
    """An unsorted CRAM of reads drawn from `reference` (some with a mismatch), written by samtools.

    @SQ lines carry M5 (as samtools writes them) and a UR (`ur`; by default a path that exists
    nowhere), so the reference is found only where a test puts it. `embed` stores the reference in the CRAM;
    `ordered` (default: as `embed`) sorts the reads, so each slice holds one reference and its md5."""
    rng = random.Random(seed)
    seqs = read_sequences(reference)
    lines = ["@HD\tVN:1.6\tSO:unsorted"]
    lines += [f"@SQ\tSN:{n}\tLN:{len(s)}\tM5:{hashlib.md5(s.encode()).hexdigest()}\tUR:{ur}"
              for n, s in seqs.items()]
    lines.append("@RG\tID:rg1\tSM:sample1")
    names = list(seqs)
    for i in range(reads):
        ref = rng.choice(names)
        pos = rng.randint(1, len(seqs[ref]) - 60)
        seq = list(seqs[ref][pos - 1:pos + 49])
        if rng.random() < 0.3:
            at = rng.randrange(50)
            seq[at] = rng.choice([b for b in BASES if b != seq[at]])
        lines.append(f"c{i:07d}\t{rng.choice((0, 16))}\t{ref}\t{pos}\t60\t50M\t*\t0\t0\t{''.join(seq)}\t{'I' * 50}"
                     "\tRG:Z:rg1")
    for i in range(unmapped):
        seq = "".join(rng.choice(BASES) for _ in range(50))
        lines.append(f"u{i:07d}\t4\t*\t0\t0\t*\t*\t0\t0\t{seq}\t{'I' * 50}\tRG:Z:rg1")
    if embed if ordered is None else ordered:  # embedded: sorted, as such files are, so a span is embedded once
        body = sorted(lines[len(seqs) + 2:], key=lambda r: (names.index(r.split("\t")[2])
                                                           if r.split("\t")[2] in names else len(names),
                                                           int(r.split("\t")[3])))
        lines = lines[:len(seqs) + 2] + body
    text = path.with_suffix(".tmp.sam")
    text.write_text("\n".join(lines) + "\n")
    # The reference reaches samtools by M5 (REF_PATH), not -T, which would rewrite UR to its own path.
    refs = path.with_name(path.name + ".refs")
    refs.mkdir()
    for bases in seqs.values():
        (refs / hashlib.md5(bases.encode()).hexdigest()).write_text(bases)
    options = ["--output-fmt-option", "embed_ref=1"] if embed else []
    env = {**os.environ, "REF_PATH": f"{refs}/%s", "REF_CACHE": ""}
    # cwd and relative names: a CRAM's header holds the name it was written under
    subprocess.run(["samtools", "view", "--no-PG", "-C", *options, "-o", path.name, text.name], check=True, env=env,
                   cwd=path.parent)
    text.unlink()
    shutil.rmtree(refs)
    return path


def unaligned_bam(path: Path, reads: int = 300, seed: int = 13) -> Path:
    """A PacBio-HiFi-like unaligned BAM: no @SQ lines, every read unmapped, with kinetics-free tags."""
    rng = random.Random(seed)
    lines = ["@HD\tVN:1.6\tSO:unknown\tpb:5.0.0", "@RG\tID:ab12cd34\tPL:PACBIO\tDS:READTYPE=CCS\tSM:hifi"]
    for i in range(reads):
        length = rng.randint(80, 400)
        seq = "".join(rng.choice(BASES) for _ in range(length))
        lines.append(f"m64011_190830_220126/{i}/ccs\t4\t*\t0\t255\t*\t*\t0\t0\t{seq}\t{'~' * length}"
                     f"\tRG:Z:ab12cd34\tnp:i:{rng.randint(3, 30)}\trq:f:0.99")
    text = path.with_suffix(".tmp.sam")
    text.write_text("\n".join(lines) + "\n")
    subprocess.run(["samtools", "view", "--no-PG", "-b", "-o", str(path), str(text)], check=True)
    text.unlink()
    return path


def empty_bam(path: Path) -> Path:
    """A BAM with a header (two references, a read group) and no records."""
    text = path.with_suffix(".tmp.sam")
    text.write_text("@HD\tVN:1.6\tSO:coordinate\n" + "".join(f"@SQ\tSN:{n}\tLN:{ln}\n" for n, ln in CONTIGS.items())
                    + "@RG\tID:rg1\tSM:none\n")
    subprocess.run(["samtools", "view", "--no-PG", "-b", "-o", str(path), str(text)], check=True)
    text.unlink()
    return path


def _positions(rng: random.Random, n: int, contigs: dict[str, int]) -> Iterable[tuple[str, int]]:
    names = list(contigs)
    for _ in range(n):
        ref = rng.choice(names)
        yield ref, rng.randint(1, contigs[ref] - 1000)


def vcf(path: Path, records: int = 500, seed: int = 2, contigs: dict[str, int] | None = None) -> Path:
    rng = random.Random(seed)
    contigs = contigs or CONTIGS
    head = ["##fileformat=VCFv4.2", *(f"##contig=<ID={n},length={ln}>" for n, ln in contigs.items()),
            '##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">',
            '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts1"]
    body = []
    for ref, pos in _positions(rng, records, contigs):
        a, b = rng.sample(BASES, 2)
        body.append(f"{ref}\t{pos}\t.\t{a}\t{b}\t{rng.randint(10, 99)}\tPASS\tDP={rng.randint(1, 60)}\tGT\t0/1")
    path.write_text("\n".join(head + body) + "\n")
    return path


def bed(path: Path, records: int = 500, seed: int = 3, columns: int = 6, track: bool = True,
        contigs: dict[str, int] | None = None) -> Path:
    rng = random.Random(seed)
    contigs = contigs or CONTIGS
    lines = ['track name="sample" description="generated"'] if track else []
    for i, (ref, start) in enumerate(_positions(rng, records, contigs)):
        cols = [ref, str(start), str(start + rng.randint(1, 900)), f"f{i}", str(rng.randint(0, 1000)),
                rng.choice("+-")]
        lines.append("\t".join(cols[:columns]))
    path.write_text("\n".join(lines) + "\n")
    return path


def narrowpeak(path: Path, records: int = 300, seed: int = 4, broad: bool = False) -> Path:
    rng = random.Random(seed)
    lines = []
    for i, (ref, start) in enumerate(_positions(rng, records, CONTIGS)):
        end = start + rng.randint(100, 2000)
        cols = [ref, str(start), str(end), f"peak{i}", str(rng.randint(0, 1000)), ".",
                f"{rng.uniform(1, 50):.3f}", f"{rng.uniform(1, 20):.3f}", f"{rng.uniform(1, 20):.3f}"]
        if not broad:
            cols.append(str(rng.randint(0, end - start)))
        lines.append("\t".join(cols))
    path.write_text("\n".join(lines) + "\n")
    return path


def gff3(path: Path, genes: int = 100, seed: int = 5, fasta: bool = True) -> Path:
    rng = random.Random(seed)
    lines = ["##gff-version 3", *(f"##sequence-region {n} 1 {ln}" for n, ln in CONTIGS.items())]
    for g, (ref, start) in enumerate(_positions(rng, genes, CONTIGS)):
        end = start + rng.randint(300, 900)
        strand = rng.choice("+-")
        lines.append(f"{ref}\tgen\tgene\t{start}\t{end}\t.\t{strand}\t.\tID=gene{g}")
        lines.append(f"{ref}\tgen\tmRNA\t{start}\t{end}\t.\t{strand}\t.\tID=tx{g};Parent=gene{g}")
        lines.append(f"{ref}\tgen\texon\t{start}\t{start + 200}\t.\t{strand}\t.\tParent=tx{g}")
        lines.append(f"{ref}\tgen\texon\t{end - 90}\t{end}\t.\t{strand}\t.\tParent=tx{g}")
    if fasta:
        lines += ["##FASTA", ">chr1", "ACGTACGTAC", "ACGT"]
    path.write_text("\n".join(lines) + "\n")
    return path


def gtf(path: Path, genes: int = 100, seed: int = 6) -> Path:
    rng = random.Random(seed)
    lines = ["#!genome-build generated"]
    for g, (ref, start) in enumerate(_positions(rng, genes, CONTIGS)):
        end = start + rng.randint(400, 900)
        s = rng.choice("+-")
        ids = f'gene_id "g{g}"; transcript_id "t{g}";'
        lines += [f'{ref}\tgen\tgene\t{start}\t{end}\t.\t{s}\t.\tgene_id "g{g}"; gene_name "G{g}";',
                  f"{ref}\tgen\ttranscript\t{start}\t{end}\t.\t{s}\t.\t{ids}",
                  f"{ref}\tgen\texon\t{start}\t{start + 150}\t.\t{s}\t.\t{ids}",
                  f"{ref}\tgen\tCDS\t{start + 20}\t{start + 150}\t.\t{s}\t0\t{ids}",
                  f"{ref}\tgen\tstart_codon\t{start + 20}\t{start + 22}\t.\t{s}\t0\t{ids}",
                  f"{ref}\tgen\texon\t{end - 100}\t{end}\t.\t{s}\t.\t{ids}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def bigbed(path: Path, records: int = 300, seed: int = 7) -> Path:
    import pybigtools

    rng = random.Random(seed)
    rows = sorted((ref, start, start + rng.randint(1, 500)) for ref, start in _positions(rng, records, CONTIGS))
    writer = pybigtools.open(str(path), "w")
    writer.write(dict(CONTIGS), [(r, s, e, f"item{i}\t{i % 1000}\t+") for i, (r, s, e) in enumerate(rows)])
    return path


def bigbed_raw(path: Path, chroms: dict[str, int], rows: list[tuple[str, int, int, bytes]], order: str = ">",
               autosql: bytes = b"") -> Path:
    """A minimal bigBed in either byte order ('>' big-endian, as old SPARC/PowerPC builds of UCSC's tools wrote):
    UCSC's layout with no zoom levels, one zlib block per chromosome (the format allows no more) and a one-node
    R-tree; `rest` bytes as given."""
    import struct
    import zlib

    names = sorted(chroms)
    ids = {name: i for i, name in enumerate(names)}
    rows = sorted(rows, key=lambda r: (ids[r[0]], r[1], r[2]))
    key = max(len(name) for name in names)
    fields = 3 + (rows[0][3].count(b"\t") + 1 if rows[0][3] else 0)
    out = bytearray(64)
    autosql_at = len(out) if autosql else 0
    out += autosql + b"\0" if autosql else b""
    tree_at = len(out)
    out += struct.pack(order + "IIIIQQ", 0x78CA8C91, len(names), key, 8, len(names), 0)
    out += struct.pack(order + "BBH", 1, 0, len(names))
    for name in names:
        out += name.encode().ljust(key, b"\0") + struct.pack(order + "II", ids[name], chroms[name])
    data_at = len(out)
    out += struct.pack(order + "Q", len(rows))
    leaves, largest = [], 0
    for name in names:
        mine = [r for r in rows if r[0] == name]
        if not mine:
            continue
        raw = b"".join(struct.pack(order + "III", ids[c], s, e) + rest + b"\0" for c, s, e, rest in mine)
        block = zlib.compress(raw)
        largest = max(largest, len(raw))
        leaves.append((ids[name], mine[0][1], ids[name], max(r[2] for r in mine), len(out), len(block)))
        out += block
    index_at = len(out)
    out += struct.pack(order + "IIQIIIIQII", 0x2468ACE0, 256, len(leaves), leaves[0][0], leaves[0][1],
                       leaves[-1][2], leaves[-1][3], index_at, 1, 0)
    out += struct.pack(order + "BBH", 1, 0, len(leaves))
    for leaf in leaves:
        out += struct.pack(order + "IIIIQQ", *leaf)
    out += struct.pack(order + "I", 0x8789F2EB)  # a whole file ends with its magic number again
    out[:64] = struct.pack(order + "IHHQQQHHQQIQ", 0x8789F2EB, 4, 0, tree_at, data_at, index_at, fields, fields,
                           autosql_at, 0, largest, 0)
    path.write_bytes(bytes(out))
    return path


def bigwig(path: Path, seed: int = 8) -> Path:
    import pybigtools

    rng = random.Random(seed)
    values = [("chr1", i * 100, i * 100 + 100, rng.random()) for i in range(100)]
    pybigtools.open(str(path), "w").write({"chr1": CONTIGS["chr1"]}, values)
    return path


def demo(directory: Path, reads: int = 20000) -> Path:
    """One file of each format and a manifest.csv listing them with md5 and size."""
    directory.mkdir(parents=True, exist_ok=True)
    files = [
        ("s1", sam(directory / "s1.sam", reads=reads), "SAM"),
        ("s2", bam(directory / "s2.bam", reads=reads, seed=11), "BAM"),
        ("v1", bgzip(vcf(directory / "v1.vcf"), directory / "v1.vcf.gz"), "VCF"),
        ("b1", bed(directory / "b1.bed"), "BED"),
        ("p1", narrowpeak(directory / "p1.narrowPeak"), "narrowPeak"),
        ("p2", narrowpeak(directory / "p2.broadPeak", broad=True), "broadPeak"),
        ("a1", gff3(directory / "a1.gff3"), "GFF3"),
        ("a2", gtf(directory / "a2.gtf"), "GTF"),
        ("bb", bigbed(directory / "bb.bb"), "bigBed"),
        ("bw", bigwig(directory / "bw.bw"), "bigWig"),
    ]
    (directory / "t1.tsv").write_text("gene\tscore\nA\t1\n")
    files.append(("t1", directory / "t1.tsv", "TSV"))
    with open(directory / "manifest.csv", "w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["id", "access_url", "format", "md5", "size"])
        for doc_id, path, fmt in files:
            writer.writerow([doc_id, path.name, fmt, md5(path), path.stat().st_size])
    (directory / "v1.vcf").unlink()
    return directory / "manifest.csv"


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "demo")
    reads = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[2] == "--reads" else 20000
    print(demo(target, reads))
