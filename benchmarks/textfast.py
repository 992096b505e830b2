"""Interval pipelines against the plain tools, side by side: `python -m benchmarks.textfast [--repeat 3]
[--threads 1,2] [--code DIR]`. BED and VCF (200 MB, unsorted and sorted) as in benchmarks/run.py; each
repeat runs the plain tools and then `preprocess run --cluster sync` on the same file, and the ratio
of the medians is printed with the load average. --code runs another checkout's preprocess (before/after)."""

from __future__ import annotations

import argparse
import json
import os
import statistics

from benchmarks.run import PLAIN_BED, PLAIN_VCF, PLAIN_VCF_GZ, make_sorted, make_text, pipeline, plain


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--cases", default="bed,vcf,sorted-bed,sorted-vcf")
    parser.add_argument("--code", help="a checkout whose preprocess to run instead of this one")
    args = parser.parse_args()
    bed, vcf = make_text("bed", 200), make_text("vcf", 200)
    cases = {"bed": (bed, "BED", PLAIN_BED), "vcf": (vcf, "VCF", PLAIN_VCF),
             "sorted-bed": (make_sorted(bed), "BED", PLAIN_BED), "sorted-vcf": (make_sorted(vcf), "VCF", PLAIN_VCF_GZ)}
    if args.code:
        os.chdir(args.code)  # python -m preprocess imports from the working directory first
    for threads in (int(t) for t in args.threads.split(",")):
        for name in args.cases.split(","):
            source, fmt, script = cases[name]
            tool, ours = [], []
            for _ in range(args.repeat):
                tool.append(plain(script, source, threads)[0])
                ours.append(pipeline(source, fmt, threads)[0])
            row = {"case": name, "threads": threads, "plain_s": round(statistics.median(tool), 2),
                   "preprocess_s": round(statistics.median(ours), 2),
                   "ratio": round(statistics.median(ours) / statistics.median(tool), 2),
                   "load": os.getloadavg()[0]}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
