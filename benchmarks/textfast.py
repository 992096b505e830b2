"""Interval pipelines against the plain tools, side by side: `python -m benchmarks.textfast [--repeat 3]
[--threads 1,2] [--code DIR,DIR]`. BED and VCF (200 MB, unsorted and sorted) as in benchmarks/run.py;
each repeat runs the plain tools and then `preprocess run --cluster sync` on the same file (with each
checkout of --code in turn, for before/after: `git archive REV | tar -x -C DIR`), and the ratio of
the medians is printed with the load average."""

from __future__ import annotations

import argparse
import json
import os
import statistics

from benchmarks.common import PLAIN_BED, PLAIN_VCF, PLAIN_VCF_GZ, make_sorted, make_text, pipeline, plain

# Per-file cost of the interval build alone (no engine): N small files of each format built one after
# another in one process, as a worker does; prints milliseconds per file. Run with a checkout's cwd.
SMALL = r"""
import sys, tempfile, time
from pathlib import Path
from pipelines import intervals
from pipelines.base import BuildContext, BuildSettings
from tests import samples
n, fmt, order = int(sys.argv[1]), sys.argv[2], sys.argv[3]
spec = {"bed": intervals.BED, "vcf": intervals.VCF, "gff3": intervals.GFF3, "narrowpeak": intervals.NARROWPEAK}[fmt]
make = {"bed": lambda p: samples.bed(p, records=300), "vcf": lambda p: samples.vcf(p, records=300),
        "gff3": lambda p: samples.gff3(p, genes=40), "narrowpeak": lambda p: samples.narrowpeak(p, records=300)}[fmt]
root = Path(tempfile.mkdtemp())
source = make(root / f"in.{fmt}")
if order == "sorted":
    work = root / "w"; work.mkdir()
    ctx = BuildContext(source=source, format=fmt, workdir=work, settings=BuildSettings())
    import gzip
    out = spec.build(ctx).artifacts["data"]
    source = root / f"sorted.{fmt}"; source.write_bytes(gzip.decompress(out.read_bytes()))
started = time.perf_counter()
for i in range(n):
    work = root / f"w{i}"; work.mkdir()
    spec.build(BuildContext(source=source, format=fmt, workdir=work, settings=BuildSettings()))
print(round((time.perf_counter() - started) / n * 1000, 1))
"""


def small(codes: list[str], count: int, repeat: int) -> None:
    import subprocess
    import sys

    for fmt in ("bed", "vcf", "gff3", "narrowpeak"):
        for order in ("unsorted", "sorted"):
            times: dict[str, list[float]] = {code: [] for code in codes}
            for _ in range(repeat):
                for code in codes:
                    out = subprocess.run([sys.executable, "-c", SMALL, str(count), fmt, order], cwd=code,
                                         capture_output=True, text=True, check=True)
                    times[code].append(float(out.stdout.split()[-1]))
            print(json.dumps({"small": fmt, "order": order, "ms_per_file": {c: statistics.median(t) for c, t in
                                                                           times.items()},
                              "load": round(os.getloadavg()[0], 2)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--cases", default="bed,vcf,sorted-bed,sorted-vcf")
    parser.add_argument("--code", default=".", help="checkouts whose preprocess to run, comma-separated")
    parser.add_argument("--small", type=int, default=0, help="instead: ms per small file, building this many")
    args = parser.parse_args()
    if args.small:
        small([os.path.abspath(code) for code in args.code.split(",")], args.small, args.repeat)
        return
    bed, vcf = make_text("bed", 200), make_text("vcf", 200)
    cases = {"bed": (bed, "BED", PLAIN_BED), "vcf": (vcf, "VCF", PLAIN_VCF),
             "sorted-bed": (make_sorted(bed), "BED", PLAIN_BED), "sorted-vcf": (make_sorted(vcf), "VCF", PLAIN_VCF_GZ)}
    codes = [os.path.abspath(code) for code in args.code.split(",")]
    for threads in (int(t) for t in args.threads.split(",")):
        for name in args.cases.split(","):
            source, fmt, script = cases[name]
            tool: list[float] = []
            ours: dict[str, list[float]] = {code: [] for code in codes}
            peaks: dict[str, float] = dict.fromkeys(codes, 0.0)
            for _ in range(args.repeat):
                tool.append(plain(script, source, threads)[0])
                for code in codes:
                    os.chdir(code)  # python -m preprocess imports from the working directory first
                    wall, rss = pipeline(source, fmt, threads)
                    ours[code].append(wall)
                    peaks[code] = max(peaks[code], rss)
            for code, times in ours.items():
                row = {"case": name, "threads": threads, "code": code, "plain_s": round(statistics.median(tool), 2),
                       "preprocess_s": round(statistics.median(times), 2),
                       "ratio": round(statistics.median(times) / statistics.median(tool), 2),
                       "rss_mb": round(peaks[code]), "runs": [round(t, 2) for t in times],
                       "load": round(os.getloadavg()[0], 2)}
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
