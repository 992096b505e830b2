"""Pipelines against the plain tools on the same data: wall time and peak memory, as ratios.

    python -m benchmarks.run [--reads 2000000] [--bed-mb 200] [--vcf-mb 200] [--repeat 3]

Each side runs as its own process (the pipeline as `python -m preprocess run --cluster sync`, so
no cluster start-up is counted) with the same threads, sort memory and compression level; the
median of --repeat runs is reported. Data is generated once under benchmarks/data.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
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


def pipeline(source: Path, fmt: str, threads: int) -> tuple[float, float]:
    store = Path(tempfile.mkdtemp(prefix="bench-store-"))
    try:
        return measure([sys.executable, "-m", "preprocess", "run", str(source), "--format", fmt, "--store", str(store),
                        "--cluster", "sync"], env={"DASK_PREPROCESS__THREADS": str(threads)})
    finally:
        shutil.rmtree(store)


def make_bam(reads: int) -> Path:
    target = DATA / f"reads-{reads}.bam"
    if target.exists():
        return target
    sys.path.insert(0, str(HERE.parent))
    from tests import samples

    DATA.mkdir(exist_ok=True)
    samples.bam(target, reads=reads, seed=42, contigs=dict(list(CONTIGS.items())[:5]), unmapped=reads // 100)
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


def compare(name: str, source: Path, fmt: str, script: str, repeat: int, threads: int) -> dict[str, float | str]:
    runs_plain = [plain(script, source, threads) for _ in range(repeat)]
    runs_pipe = [pipeline(source, fmt, threads) for _ in range(repeat)]
    p_wall = statistics.median(w for w, _ in runs_plain)
    q_wall = statistics.median(w for w, _ in runs_pipe)
    p_mem = max(m for _, m in runs_plain)
    q_mem = max(m for _, m in runs_pipe)
    return {"case": name, "threads": threads, "input_mb": round(source.stat().st_size / 2**20, 1),
            "plain_s": round(p_wall, 2), "pipeline_s": round(q_wall, 2), "time_ratio": round(q_wall / p_wall, 2),
            "plain_rss_mb": round(p_mem), "pipeline_rss_mb": round(q_mem), "rss_ratio": round(q_mem / p_mem, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=2_000_000)
    parser.add_argument("--bed-mb", type=int, default=200)
    parser.add_argument("--vcf-mb", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="threads for each tool, on both sides")
    args = parser.parse_args()
    cases = [("BAM: samtools sort + index", make_bam(args.reads), "BAM", PLAIN_BAM),
             ("BED: sort | bgzip | tabix", make_text("bed", args.bed_mb), "BED", PLAIN_BED),
             ("VCF: sort | bgzip | tabix", make_text("vcf", args.vcf_mb), "VCF", PLAIN_VCF)]
    rows = [compare(*case, args.repeat, args.threads) for case in cases]
    print(f"{'case':30} {'input MB':>8} {'plain s':>8} {'pipe s':>8} {'ratio':>6} "
          f"{'plain MB':>9} {'pipe MB':>8} {'ratio':>6}")
    for r in rows:
        print(f"{r['case']:30} {r['input_mb']:>8} {r['plain_s']:>8} {r['pipeline_s']:>8} {r['time_ratio']:>6} "
              f"{r['plain_rss_mb']:>9} {r['pipeline_rss_mb']:>8} {r['rss_ratio']:>6}")
    (DATA / f"results-threads{args.threads}.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
