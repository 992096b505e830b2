"""What every benchmark shares: the data folder, the plain tools' scripts, the timer (wall time and peak
RSS of a process tree) and the generators of the test data (fixed seeds, made once under benchmarks/data)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
CONTIGS = {f"chr{i}": 250_000_000 - i * 5_000_000 for i in range(1, 23)}
# $1 input, $2 work directory, $3 threads: the plain tools as a user would chain them.
PLAIN_BAM = ('samtools sort --no-PG -l 6 -m 768M -@ "$3" -T "$2/tmp" -o "$2/out.bam" "$1"'
             ' && samtools index -@ "$3" "$2/out.bam"')
PLAIN_BED = (r'LC_ALL=C sort -s -t "$(printf "\t")" -k1,1 -k2,2n -k3,3n -S 768M --parallel="$3" -T "$2" "$1"'
             r' | bgzip -l 6 -@ "$3" > "$2/out.gz" && tabix -p bed "$2/out.gz"')
PLAIN_VCF = (r'{ grep "^#" "$1"; grep -v "^#" "$1" | LC_ALL=C sort -s -t "$(printf "\t")" -k1,1 -k2,2n -S 768M'
             r' --parallel="$3" -T "$2"; } | bgzip -l 6 -@ "$3" > "$2/out.gz" && tabix -p vcf "$2/out.gz"')
# A bgzipped VCF, as callers write them: decompressed on the way in.
PLAIN_VCF_GZ = (r'{ bgzip -dc "$1" | grep "^#"; bgzip -dc "$1" | grep -v "^#" | LC_ALL=C sort -s -t "$(printf "\t")"'
                r' -k1,1 -k2,2n -S 768M --parallel="$3" -T "$2"; } | bgzip -l 6 -@ "$3" > "$2/out.gz"'
                r' && tabix -p vcf "$2/out.gz"')
PLAIN_GFF = (r'{ grep "^#" "$1"; grep -v "^#" "$1" | LC_ALL=C sort -s -t "$(printf "\t")" -k1,1 -k4,4n -S 768M'
             r' --parallel="$3" -T "$2"; } | bgzip -l 6 -@ "$3" > "$2/out.gz" && tabix -p gff "$2/out.gz"')


def host_cores() -> int:
    return len(os.sched_getaffinity(0))


# A fresh wrapper per run: RUSAGE_CHILDREN's ru_maxrss is the largest single process of the tree
# (samtools, sort, bgzip, python), and it only ever grows within one process.
WRAPPER = """
import resource, subprocess, sys, time
started = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)
"""


def measure(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall seconds and the peak RSS (MiB) of the largest process in the command's tree."""
    out = subprocess.run([sys.executable, "-c", WRAPPER, *argv], capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, check=True)
    wall, rss_kib, code = out.stdout.split()
    if code != "0":
        raise RuntimeError(f"{argv[:4]} failed: {out.stderr[-2000:]}")
    return float(wall), int(rss_kib) / 1024


def plain(script: str, source: Path, threads: int) -> tuple[float, float]:
    work = Path(tempfile.mkdtemp(prefix="bench-plain-"))
    try:
        return measure(["bash", "-o", "pipefail", "-c", script, "bench", str(source), str(work), str(threads)])
    finally:
        shutil.rmtree(work)


def pipeline(source: Path, fmt: str, threads: int | None) -> tuple[float, float]:
    """`preprocess run` in its own process: `--cluster sync` with `threads`, or (None) the shipped defaults."""
    store = Path(tempfile.mkdtemp(prefix="bench-store-"))
    argv = [sys.executable, "-m", "preprocess", "run", str(source), "--format", fmt, "--store", str(store)]
    try:
        if threads is None:
            return measure(argv)
        return measure([*argv, "--cluster", "sync"], env={"DASK_PREPROCESS__THREADS": str(threads)})
    finally:
        shutil.rmtree(store)


def make_bam(reads: int, references: int = 5) -> Path:
    """An unsorted BAM of `reads` reads over the first `references` of CONTIGS (1% unplaced)."""
    target = DATA / (f"reads-{reads}.bam" if references == 5 else f"reads-{reads}-{references}refs.bam")
    if target.exists():
        return target
    sys.path.insert(0, str(HERE.parent))
    from tests import samples

    DATA.mkdir(exist_ok=True)
    samples.bam(target, reads=reads, seed=42, contigs=dict(list(CONTIGS.items())[:references]),
                unmapped=reads // 100)
    return target


def make_text(kind: str, megabytes: int) -> Path:
    target = DATA / f"{kind}-{megabytes}mb.{kind}"
    if target.exists():
        return target
    DATA.mkdir(exist_ok=True)
    rng = random.Random(7)
    names = list(CONTIGS)
    limit = megabytes * 2**20
    written = 0
    with open(target, "w") as out:
        if kind == "vcf":
            head = "##fileformat=VCFv4.2\n" + "".join(f"##contig=<ID={n},length={ln}>\n" for n, ln in CONTIGS.items())
            head += "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts1\n"
            out.write(head)
            written += len(head)
        batch = []
        while written < limit:
            ref = rng.choice(names)
            pos = rng.randint(1, CONTIGS[ref] - 1000)
            if kind == "vcf":
                line = f"{ref}\t{pos}\trs{pos}\tA\tG\t{rng.randint(10, 99)}\tPASS\tDP={rng.randint(1, 90)}\tGT\t0/1\n"
            else:
                line = f"{ref}\t{pos}\t{pos + rng.randint(50, 900)}\tfeature{written}\t{rng.randint(0, 1000)}\t+\n"
            batch.append(line)
            written += len(line)
            if len(batch) == 10000:
                out.write("".join(batch))
                batch.clear()
        out.write("".join(batch))
    return target


def make_sorted(source: Path) -> Path:
    """The same records, already in the order the pipeline writes (a caller's or aligner's output)."""
    kind = source.suffix.lstrip(".")
    target = source.with_name(f"{source.stem}.sorted.{kind}" + (".gz" if kind == "vcf" else ""))
    if target.exists():
        return target
    part = target.with_name(target.name + ".part")
    if kind == "bam":
        subprocess.run(["samtools", "sort", "--no-PG", "-@", "2", "-o", str(part), str(source)], check=True)
    elif kind == "bed":
        script = 'LC_ALL=C sort -s -t "$(printf "\t")" -k1,1 -k2,2n -k3,3n -S 1G "$1" > "$2"'
        subprocess.run(["bash", "-o", "pipefail", "-c", script, "s", str(source), str(part)], check=True)
    elif kind == "vcf":  # header contig order (chr1, chr2, ... as declared), then POS; bgzipped
        script = ('{ grep "^#" "$1"; grep -v "^#" "$1" | LC_ALL=C sort -s -t "$(printf "\t")" -k1.4,1n -k2,2n'
                  ' -S 1G; } | bgzip -@ 2 > "$2"')
        subprocess.run(["bash", "-o", "pipefail", "-c", script, "s", str(source), str(part)], check=True)
    else:  # gff3
        script = ('{ grep "^#" "$1"; grep -v "^#" "$1" | LC_ALL=C sort -s -t "$(printf "\t")" -k1,1 -k4,4n'
                  ' -S 1G; } > "$2"')
        subprocess.run(["bash", "-o", "pipefail", "-c", script, "s", str(source), str(part)], check=True)
    part.rename(target)
    return target


def make_gff3(megabytes: int) -> Path:
    target = DATA / f"gff3-{megabytes}mb.gff3"
    if target.exists():
        return target
    DATA.mkdir(exist_ok=True)
    rng = random.Random(11)
    names = list(CONTIGS)
    limit = megabytes * 2**20
    with open(target, "w") as out:
        head = "##gff-version 3\n" + "".join(f"##sequence-region {n} 1 {ln}\n" for n, ln in CONTIGS.items())
        out.write(head)
        written, batch, gene = len(head), [], 0
        while written < limit:
            ref = rng.choice(names)
            start = rng.randint(1, CONTIGS[ref] - 5000)
            end = start + rng.randint(300, 4000)
            strand = rng.choice("+-")
            gene += 1
            lines = (f"{ref}\tgen\tgene\t{start}\t{end}\t.\t{strand}\t.\tID=g{gene}\n"
                     f"{ref}\tgen\texon\t{start}\t{start + 150}\t.\t{strand}\t.\tParent=g{gene}\n")
            batch.append(lines)
            written += len(lines)
            if len(batch) == 10000:
                out.write("".join(batch))
                batch.clear()
        out.write("".join(batch))
    return target


def compile_code(*trees: Path) -> None:
    """The package's bytecode written beforehand (this checkout's, and each of `trees`'), as `pip install`
    writes it: a checkout run with PYTHONDONTWRITEBYTECODE set (this machine's environment) would
    otherwise compile every module it changed since its last cached bytecode on each run timed, some
    60 ms a run."""
    import compileall

    for tree in (HERE.parent, *trees):
        for package in ("preprocess", "pipelines"):
            compileall.compile_dir(str(tree / package), quiet=1)
