"""One BAM through `preprocess run` (`--cluster sync` or as shipped) vs samtools sort + index, unsorted and sorted.

    python -m benchmarks.bamfast [--repeat 5] [--threads 1,2] [--shipped] [--before DIR] [--json PATH]

Runs alternate (plain, pipeline[, pipeline of --before]) so load from other processes hits each alike;
medians, the ratio of the medians, the median of each round's ratio to the plain run beside it
(`round_ratio`), and the load average before and after. --before names a directory holding another
version of the `preprocess` and `pipelines` packages (e.g. `git archive main preprocess pipelines | tar
-x -C DIR`), put first on PYTHONPATH for its runs; then `paired_ms` is the median of after minus before
within each round, the figure to quote: the medians of the times alone move by tens of ms between runs
on a shared machine. --shipped runs
`preprocess run FILE` with the shipped settings (threads: auto) instead of `--cluster sync` with
--threads (whose first value then sets the plain tools' threads). Both trees' bytecode is compiled
first, as `pip install` leaves it (a run would otherwise compile every module it imports where
PYTHONDONTWRITEBYTECODE is set).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from .common import PLAIN_BAM, compile_code, make_bam, make_sorted, measure, plain


def pipeline(source: Path, threads: int | None, code: Path | None) -> float:
    """One `preprocess run`: `--cluster sync` with `threads`, or (None) the shipped settings."""
    store = Path(tempfile.mkdtemp(prefix="bench-store-"))
    env = {} if threads is None else {"DASK_PREPROCESS__THREADS": str(threads)}
    if threads is None and "DASK_PREPROCESS__THREADS" in os.environ:
        raise SystemExit("--shipped measures the shipped settings: unset DASK_PREPROCESS__THREADS")
    argv = [sys.executable, "-m", "preprocess", "run", str(source), "--format", "BAM", "--store", str(store),
            *([] if threads is None else ["--cluster", "sync"])]
    if code is not None:  # run from `code`: `-m` puts the working directory first on sys.path
        env["PYTHONPATH"] = str(code)
        argv = ["bash", "-c", 'cd "$0" && exec "$@"', str(code), *argv]
    try:
        return measure(argv, env=env)[0]
    finally:
        shutil.rmtree(store)


def case(name: str, source: Path, threads: int, repeat: int, before: Path | None, shipped: bool = False
         ) -> dict[str, object]:
    load = os.getloadavg()[0]
    runs: dict[str, list[float]] = {"plain": [], "after": [], "before": []}
    for _ in range(repeat):
        runs["plain"].append(plain(PLAIN_BAM, source, threads)[0])
        runs["after"].append(pipeline(source, None if shipped else threads, None))
        if before is not None:
            runs["before"].append(pipeline(source, None if shipped else threads, before))
    median = {k: statistics.median(v) for k, v in runs.items() if v}

    def round_ratio(which: str) -> float:  # the median of each round's ratio to the plain run beside it
        return round(statistics.median(t / p for t, p in zip(runs[which], runs["plain"], strict=True)), 3)

    result: dict[str, object] = {"case": name, "threads": "auto" if shipped else threads,
                                 "input_mb": round(source.stat().st_size / 2**20, 1),
                                 "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2),
                                 **{f"{k}_s": round(v, 2) for k, v in median.items()},
                                 "ratio": round(median["after"] / median["plain"], 2),
                                 "round_ratio": round_ratio("after")}
    if before is not None:
        result["ratio_before"] = round(median["before"] / median["plain"], 2)
        result["round_ratio_before"] = round_ratio("before")
        result["paired_ms"] = round(1000 * statistics.median(a - b for a, b in zip(runs["after"], runs["before"],
                                                                                    strict=True)))
    result["runs"] = {k: [round(x, 3) for x in v] for k, v in runs.items() if v}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--before", type=Path)
    parser.add_argument("--shipped", action="store_true", help="the shipped settings, not --cluster sync")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    compile_code(*([args.before] if args.before else []))
    bam = make_bam(args.reads)
    results = []
    for threads in [int(t) for t in args.threads.split(",")][:1 if args.shipped else None]:
        for name, source in (("unsorted BAM", bam), ("sorted BAM", make_sorted(bam))):
            results.append(case(name, source, threads, args.repeat, args.before, args.shipped))
            print(json.dumps({k: v for k, v in results[-1].items() if k != "runs"}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
