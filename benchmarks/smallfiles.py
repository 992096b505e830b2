"""Many small files: `preprocess batch` against the same tools driven by Snakemake, both on all cores.

    python -m benchmarks.smallfiles [--files 200] [--repeat 3]

The catalogue holds `--files` distinct small files of five formats (BAM, BED, narrowPeak, VCF, GFF3).
Snakemake runs the plain tools a user would chain (samtools sort + index; sort | bgzip | tabix) with
`--cores N`; preprocess runs `batch` with its shipped defaults (profile auto: these 8 MB of local
files build in the calling process on a thread per core, as any local batch under 64 MiB; start-up
included).
Each side is timed from scratch (empty output) and again when everything is up to date (nothing to
do). Median of --repeat runs; printed and returned, never asserted.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from preprocess.cluster import host_cores

FORMATS = ("bam", "bed", "narrowPeak", "vcf", "gff3")

SNAKEFILE = r'''
import glob, os
NAMES = {fmt: [os.path.basename(p)[: -len(fmt) - 1] for p in glob.glob(f"in/*.{fmt}")] for fmt in
         ("bam", "bed", "narrowPeak", "vcf", "gff3")}

rule all:
    input:
        expand("out/{name}.sorted.bam.bai", name=NAMES["bam"]),
        expand("out/{name}.bed.gz.tbi", name=NAMES["bed"]),
        expand("out/{name}.narrowPeak.gz.tbi", name=NAMES["narrowPeak"]),
        expand("out/{name}.vcf.gz.tbi", name=NAMES["vcf"]),
        expand("out/{name}.gff3.gz.tbi", name=NAMES["gff3"])

rule bam:
    input: "in/{name}.bam"
    output: bam="out/{name}.sorted.bam", bai="out/{name}.sorted.bam.bai"
    shell: "samtools sort --no-PG -l 6 -o {output.bam} {input} && samtools index {output.bam}"

rule bed:
    input: "in/{name}.{kind}"
    output: gz="out/{name}.{kind}.gz", tbi="out/{name}.{kind}.gz.tbi"
    wildcard_constraints: kind="bed|narrowPeak"
    shell: "LC_ALL=C sort -k1,1 -k2,2n -k3,3n {input} | bgzip > {output.gz} && tabix -p bed {output.gz}"

rule vcf:
    input: "in/{name}.vcf"
    output: gz="out/{name}.vcf.gz", tbi="out/{name}.vcf.gz.tbi"
    shell: "(grep '^#' {input}; grep -v '^#' {input} | LC_ALL=C sort -k1,1 -k2,2n) | bgzip > {output.gz}"
           " && tabix -p vcf {output.gz}"

rule gff3:
    input: "in/{name}.gff3"
    output: gz="out/{name}.gff3.gz", tbi="out/{name}.gff3.gz.tbi"
    shell: "(grep '^#' {input}; grep -v '^#' {input} | LC_ALL=C sort -k1,1 -k4,4n) | bgzip > {output.gz}"
           " && tabix -p gff {output.gz}"
'''


def make_files(folder: Path, count: int) -> Path:
    """`count` distinct small files, an equal share of each format, and their catalogue CSV."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests import samples

    source = folder / "in"
    source.mkdir(parents=True, exist_ok=True)
    rows = ["id,access_url,format"]
    for i in range(count):
        fmt = FORMATS[i % len(FORMATS)]
        path = source / f"f{i:04d}.{fmt}"
        if fmt == "bam":
            samples.bam(path, reads=2000, seed=1000 + i)
        elif fmt == "bed":
            samples.bed(path, records=500, seed=1000 + i, track=False)
        elif fmt == "narrowPeak":
            samples.narrowpeak(path, records=300, seed=1000 + i)
        elif fmt == "vcf":
            samples.vcf(path, records=500, seed=1000 + i)
        else:
            samples.gff3(path, genes=60, seed=1000 + i, fasta=False)
        rows.append(f"f{i:04d},{path},{fmt}")
    catalogue = folder / "catalogue.csv"
    catalogue.write_text("\n".join(rows) + "\n")
    (folder / "Snakefile").write_text(SNAKEFILE)
    return catalogue


def _timed(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    out = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"{argv[:3]} exited {out.returncode}: {out.stderr[-3000:]}")
    return elapsed


def snakemake(folder: Path, cores: int) -> tuple[float, float]:
    """Seconds from scratch, then for the up-to-date re-run."""
    shutil.rmtree(folder / "out", ignore_errors=True)
    shutil.rmtree(folder / ".snakemake", ignore_errors=True)
    argv = [str(Path(sys.executable).with_name("snakemake")), "--cores", str(cores), "--quiet", "all", "-s",
            "Snakefile"]
    return _timed(argv, folder), _timed(argv, folder)


def preprocess(folder: Path, catalogue: Path) -> tuple[float, float]:
    store = folder / "store"
    shutil.rmtree(store, ignore_errors=True)
    argv = [sys.executable, "-m", "preprocess", "batch", str(catalogue), "--store", str(store)]
    return _timed(argv, folder), _timed(argv, folder)


def compare(files: int, repeat: int, folder: Path | None = None) -> list[dict[str, object]]:
    """Rows for the JSON of benchmarks.run: from scratch and up to date, preprocess / Snakemake."""
    work = folder or Path(tempfile.mkdtemp(prefix="bench-small-"))
    try:
        catalogue = make_files(work, files)
        cores = host_cores()
        snake = [snakemake(work, cores) for _ in range(repeat)]
        ours = [preprocess(work, catalogue) for _ in range(repeat)]
    finally:
        if folder is None:
            shutil.rmtree(work, ignore_errors=True)
    rows: list[dict[str, object]] = []
    for label, i in (("from scratch", 0), ("up to date", 1)):
        plain = statistics.median(run[i] for run in snake)
        pipe = statistics.median(run[i] for run in ours)
        rows.append({"case": f"{files} small files, {label}: preprocess batch / Snakemake", "threads": cores,
                     "plain": "snakemake", "plain_s": round(plain, 2), "pipeline_s": round(pipe, 2),
                     "time_ratio": round(pipe / plain, 2), "per_file_ms": round(1000 * pipe / files, 1),
                     "runs_plain": [round(run[i], 3) for run in snake],
                     "runs_pipeline": [round(run[i], 3) for run in ours]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    for row in compare(args.files, args.repeat, args.keep):
        print(f"{row['case']:60} snakemake {row['plain_s']:>7} s  preprocess {row['pipeline_s']:>7} s  "
              f"ratio {row['time_ratio']}")


if __name__ == "__main__":
    main()
