"""Every case of `make bench`, in one run: the pipelines against the plain tools on the same data, as ratios.

    python -m benchmarks.run [--repeat 3] [--groups unsorted,default,onefile,sorted,small,cached,split] [--json PATH]

Groups (median of --repeat runs each, wall time and the peak RSS of the largest process of each tree):
- unsorted: BAM (2 M reads), BED and VCF (200 MB) at 1 and 2 threads, `python -m preprocess run
  --cluster sync` (no cluster start) against samtools sort + index / sort | bgzip | tabix;
- default: the same files as a user runs them, `python -m preprocess run FILE` with the shipped
  settings (profile auto: one file builds in the calling process; threads: auto), against the plain
  tools on every core;
- onefile: a one-record SAM, `python -m preprocess run FILE` with the shipped settings against the
  same with `--cluster sync`: the fixed cost of a run of one file (goal: at most 1.25x);
- sorted: already sorted inputs (BAM, BED, bgzipped VCF, GFF3), every core, `--cluster sync`;
- small: 200 small files of five formats, `preprocess batch` against Snakemake (benchmarks/smallfiles.py);
- cached: a 1,000-row catalogue where every key is committed, ms per row (benchmarks/reindex.py);
- split: one big BAM over two workers pinned to a core each (benchmarks/split.py), over 22 references of
  human-like lengths and over 5 (--split-references).
Data is generated once under benchmarks/data; results go to --json (default benchmarks/data/results.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from .common import (
    DATA,
    HERE,
    PLAIN_BAM,
    PLAIN_BED,
    PLAIN_GFF,
    PLAIN_VCF,
    PLAIN_VCF_GZ,
    compile_code,
    host_cores,
    make_bam,
    make_gff3,
    make_sorted,
    make_text,
    measure,
    pipeline,
    plain,
)


def compare(name: str, source: Path, fmt: str, script: str, repeat: int, threads: int | None,
            group: str) -> dict[str, object]:
    """Plain tools and pipeline, alternating, `repeat` times; `threads` None: the pipeline's defaults
    against the plain tools on every core."""
    tool_threads = threads or host_cores()
    runs_plain, runs_pipe = [], []
    for _ in range(repeat):
        runs_plain.append(plain(script, source, tool_threads))
        runs_pipe.append(pipeline(source, fmt, threads))
    p_wall = statistics.median(w for w, _ in runs_plain)
    q_wall = statistics.median(w for w, _ in runs_pipe)
    p_mem = max(m for _, m in runs_plain)
    q_mem = max(m for _, m in runs_pipe)
    return {"group": group, "case": name, "threads": threads or f"auto ({tool_threads} cores)",
            "input_mb": round(source.stat().st_size / 2**20, 1), "plain_s": round(p_wall, 2),
            "pipeline_s": round(q_wall, 2), "time_ratio": round(q_wall / p_wall, 2),
            "plain_rss_mb": round(p_mem), "pipeline_rss_mb": round(q_mem), "rss_ratio": round(q_mem / p_mem, 2),
            **in_memory(source, fmt, tool_threads, q_mem),
            "runs_plain": [round(w, 3) for w, _ in runs_plain], "runs_pipeline": [round(w, 3) for w, _ in runs_pipe]}


def in_memory(source: Path, fmt: str, threads: int, rss_mb: float) -> dict[str, object]:
    """For a text that the in-memory pass (pipelines/columnar.py) takes at the shipped sort-memory: the
    pipeline's peak RSS over the text's decompressed size, and whether it stayed within the budget it
    was given (sort-memory x threads); nothing for other rows."""
    sys.path.insert(0, str(HERE.parent))
    from pipelines import bgzf, columnar
    from preprocess.config import Settings

    if fmt not in ("BED", "VCF", "GFF3"):
        return {}
    compression = bgzf.sniff_compression(source)
    budget = columnar.budget(Settings.default_of("sort_memory"), threads)
    need, size = columnar.peak(source, compression), columnar.text_size(source, compression)
    if need is None or size is None or need > budget:
        return {"in_memory": False}
    return {"in_memory": True, "text_mb": round(size / 2**20, 1), "rss_per_text": round(rss_mb * 2**20 / size, 2),
            "budget_mb": round(budget / 2**20), "within_budget": rss_mb * 2**20 <= budget}


def one_record(repeat: int) -> dict[str, object]:
    """A one-record SAM: `preprocess run FILE` as shipped against `--cluster sync` (same threads),
    alternating; what is left is the fixed cost a default run adds to one file (a cluster start)."""
    source = DATA / "one-record.sam"
    if not source.exists():
        sys.path.insert(0, str(HERE.parent))
        from tests import samples

        DATA.mkdir(exist_ok=True)
        samples.sam(source, reads=1, unmapped=0)
    runs_default, runs_sync = [], []
    for _ in range(repeat):
        runs_sync.append(pipeline(source, "SAM", host_cores())[0])
        runs_default.append(pipeline(source, "SAM", None)[0])
    sync, default = statistics.median(runs_sync), statistics.median(runs_default)
    return {"group": "onefile", "case": "a one-record SAM: default settings vs --cluster sync",
            "sync_s": round(sync, 3), "default_s": round(default, 3), "time_ratio": round(default / sync, 2),
            "runs_sync": [round(w, 3) for w in runs_sync], "runs_default": [round(w, 3) for w in runs_default]}


def cached_batch(rows: int, repeat: int) -> dict[str, object]:
    """A catalogue of `rows` rows, every key committed: `preprocess batch` from process start to report."""
    from .reindex import fake_store

    with tempfile.TemporaryDirectory(prefix="bench-cached-") as tmp:
        work = Path(tmp)
        catalogue, objects = fake_store(rows, work)
        store = work / "store"
        for name, body in objects.items():
            (store / name).parent.mkdir(parents=True, exist_ok=True)
            (store / name).write_bytes(body)
        argv = [sys.executable, "-m", "preprocess", "batch", str(catalogue), "--store", str(store)]
        times = [measure(argv)[0] for _ in range(repeat)]
    median = statistics.median(times)
    return {"group": "cached", "case": f"{rows}-row catalogue, all cached: preprocess batch", "rows": rows,
            "pipeline_s": round(median, 3), "ms_per_row": round(1000 * median / rows, 3),
            "runs_pipeline": [round(t, 3) for t in times]}


GROUPS = ("unsorted", "default", "onefile", "sorted", "small", "cached", "split")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=2_000_000)
    parser.add_argument("--bed-mb", type=int, default=200)
    parser.add_argument("--vcf-mb", type=int, default=200)
    parser.add_argument("--gff-mb", type=int, default=100)
    parser.add_argument("--small-files", type=int, default=200)
    parser.add_argument("--cached-rows", type=int, default=1000)
    parser.add_argument("--split-mb", type=int, default=2048, help="size of the big BAM of the split group")
    parser.add_argument("--split-references", default="22,5",
                        help="the split group's BAMs: references of each (22: human-like lengths; 5: each longer "
                             "than a part a sort holds in memory)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", default="1,2", help="thread counts of the unsorted group")
    parser.add_argument("--groups", default=",".join(GROUPS), help=f"some of {','.join(GROUPS)}")
    parser.add_argument("--json", type=Path, default=DATA / "results.json")
    args = parser.parse_args()
    groups = args.groups.split(",")
    compile_code()
    rows: list[dict[str, object]] = []

    def emit(row: dict[str, object]) -> None:
        rows.append(row)
        shown = {k: v for k, v in row.items() if not k.startswith("runs_")}
        print(json.dumps(shown), flush=True)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")  # after every row: a long run keeps what it has

    bam, bed, vcf = make_bam(args.reads), make_text("bed", args.bed_mb), make_text("vcf", args.vcf_mb)
    unsorted: list[tuple[str, Path, str, str]] = [("BAM: samtools sort + index", bam, "BAM", PLAIN_BAM),
                                                  ("BED: sort | bgzip | tabix", bed, "BED", PLAIN_BED),
                                                  ("VCF: sort | bgzip | tabix", vcf, "VCF", PLAIN_VCF)]
    if "unsorted" in groups:
        for threads in (int(t) for t in args.threads.split(",")):
            for case in unsorted:
                emit(compare(*case, args.repeat, threads, "unsorted"))
    if "default" in groups:
        for case in unsorted:
            emit(compare(*case, args.repeat, None, "default"))
    if "onefile" in groups:
        emit(one_record(args.repeat))
    if "sorted" in groups:
        cores = host_cores()
        for name, source, fmt, script in (
                ("sorted BAM: samtools sort + index", make_sorted(bam), "BAM", PLAIN_BAM),
                ("sorted BED: sort | bgzip | tabix", make_sorted(bed), "BED", PLAIN_BED),
                ("sorted VCF.gz: sort | bgzip | tabix", make_sorted(vcf), "VCF", PLAIN_VCF_GZ),
                ("sorted GFF3: sort | bgzip | tabix", make_sorted(make_gff3(args.gff_mb)), "GFF3", PLAIN_GFF)):
            emit(compare(name, source, fmt, script, args.repeat, cores, "sorted"))
    if "small" in groups:
        from .smallfiles import compare as small

        for row in small(args.small_files, args.repeat):
            emit({"group": "small", **row})
    if "cached" in groups:
        emit(cached_batch(args.cached_rows, args.repeat))
    if "split" in groups:
        split: Callable[..., list[dict[str, object]]] | None = _split_bench()
        if split is None:
            print("split: benchmarks/split.py is not there yet", file=sys.stderr)
        else:
            for references in (int(n) for n in args.split_references.split(",")):
                for row in split(args.split_mb, args.repeat, references):
                    emit({"group": "split", **row})
    print(f"written to {args.json}")


def _split_bench() -> Callable[..., list[dict[str, object]]] | None:
    try:
        from .split import compare as split
    except ImportError:
        return None
    return split  # type: ignore[no-any-return]


if __name__ == "__main__":
    main()
