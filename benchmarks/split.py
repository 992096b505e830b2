"""One big BAM built in parts across two workers, as separate one-core machines would see it.

    python -m benchmarks.split [--size MB] [--references N] [--repeat 3] [--json PATH]

Two `dask worker` processes, each pinned with taskset to a core of its own with its own scratch
($TMPDIR), build the BAM in its parted layout at the shipped split settings (route-, sort_part-,
merge- tasks; parts meet in a local store); against `samtools sort` + `samtools index` pinned to one
such core. Each run alternates the two, in fresh folders. Reported: medians of the wall times, their
ratio (the speed-up), the stage times from the manifest (route: the slowest route task, each reads
its share of the source's blocks; sort_part: the slowest part's sort, sort_parts: all parts' sorts added up; merge:
concatenation, index and checks, serial) and the projection to N workers from them,
T(N) = route + ceil(P / N) * sort_parts / P + merge + commit (P parts; no worker sorts a fraction of a part).
The BAM is `samtools cat` of copies of benchmarks/data/reads-2000000.bam (made by benchmarks.run): five
references of about equal length, so five parts (at most one per reference); `--references 22` makes
it of a unit over 22 references of 140-245 Mbp (as a human genome's autosomes), nine parts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import DATA, make_bam, measure

PLAIN = ('samtools sort --no-PG -l 6 -m 768M -@ 1 -T "$2/tmp" -o "$2/out.bam" "$1"'
         ' && samtools index -@ 1 "$2/out.bam"')


def make_big(megabytes: int, references: int = 5) -> Path:
    """A BAM of about `megabytes` MB: whole copies of a 2 M-read benchmark BAM, concatenated."""
    unit = make_bam(2_000_000, references)
    copies = max(1, round(megabytes * 2**20 / unit.stat().st_size))
    target = DATA / (f"split-{copies}x.bam" if references == 5 else f"split-{copies}x-{references}refs.bam")
    if not target.exists():
        tmp = target.with_suffix(".tmp")
        subprocess.run(["samtools", "cat", "--no-PG", "-o", str(tmp), *[str(unit)] * copies], check=True)
        tmp.rename(target)
    return target


def plain(source: Path, core: int) -> tuple[float, float]:
    """Wall and CPU seconds of samtools sort + index pinned to `core`."""
    work = Path(tempfile.mkdtemp(prefix="bench-split-plain-"))
    before = _children_cpu()
    try:
        wall, _ = measure(["taskset", "-c", str(core), "bash", "-o", "pipefail", "-c", PLAIN, "bench", str(source),
                           str(work)])
        return wall, _children_cpu() - before
    finally:
        shutil.rmtree(work)


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """CPU seconds of a process and the children it has waited for (its tools), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")


class PinnedWorkers:
    """A scheduler and two single-thread workers, worker i on core i with scratch of its own."""

    def __init__(self, root: Path, cores: tuple[int, ...]) -> None:
        self.root, self.cores = root, cores
        self.procs: list[subprocess.Popen[bytes]] = []
        self.file = root / "scheduler.json"

    def __enter__(self) -> PinnedWorkers:
        bin_dir = Path(sys.executable).parent
        log = open(self.root / "cluster.log", "wb")  # noqa: SIM115 - kept open for the processes' lives
        self.procs.append(subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                                            "--no-dashboard", "--scheduler-file", str(self.file)],
                                           stdout=log, stderr=log))
        while not self.file.exists():
            time.sleep(0.1)
        for core in self.cores:
            scratch = self.root / f"scratch-{core}"
            scratch.mkdir()
            self.procs.append(subprocess.Popen(
                ["taskset", "-c", str(core), str(bin_dir / "dask"), "worker", "--scheduler-file", str(self.file),
                 "--nthreads", "1", "--nworkers", "1", "--no-nanny", "--host", "127.0.0.1", "--no-dashboard",
                 "--local-directory", str(scratch)],
                stdout=log, stderr=log, env={**os.environ, "TMPDIR": str(scratch)}))
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            proc.wait(30)


def split_run(source: Path, md5: str, client: Any, store: Path) -> tuple[float, dict[str, Any]]:
    """Wall time of one split build (fresh store) and its manifest's stage timings."""
    import preprocess
    from preprocess.config import load_settings

    settings = load_settings(**{"store.url": str(store), "cluster.profile": "address"})
    doc = {"id": "big", "access_url": str(source), "format": "BAM", "md5": md5}
    started = time.perf_counter()
    result = preprocess.run_many([doc], settings=settings, client=client).results[0]
    wall = time.perf_counter() - started
    if result.status != "built" or result.records.get("parts", 1) < 2:
        raise RuntimeError(f"split build failed: {result.error or result.records}")
    return wall, {**result.timings, "parts": result.records["parts"]}


def compare(megabytes: int, repeat: int, references: int = 5) -> list[dict[str, object]]:
    """Rows for `make bench`: the 2-worker split build against samtools sort + index on one core."""
    from distributed import Client

    source = make_big(megabytes, references)
    md5 = _md5(source)
    runs_plain: list[float] = []
    runs_split: list[float] = []
    cpu_plain: list[float] = []
    cpu_workers: list[list[float]] = []
    stages: list[dict[str, Any]] = []
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-split-") as tmp:
        root = Path(tmp)
        with PinnedWorkers(root, (0, 1)) as cluster, Client(scheduler_file=str(cluster.file)) as client:
            client.wait_for_workers(2)
            for run in range(repeat):
                loads.append(os.getloadavg()[0])
                wall, cpu = plain(source, 0)
                runs_plain.append(wall)
                cpu_plain.append(cpu)
                workers = cluster.procs[1:]
                before = [process_cpu(w.pid) for w in workers]
                try:
                    wall, timings = split_run(source, md5, client, root / f"store-{run}")
                except RuntimeError:
                    print((root / "cluster.log").read_text()[-6000:], file=sys.stderr)
                    raise
                cpu_workers.append([round(process_cpu(w.pid) - b, 2) for w, b in zip(workers, before, strict=True)])
                runs_split.append(wall)
                stages.append(timings)
                shutil.rmtree(root / f"store-{run}")
    p, s = statistics.median(runs_plain), statistics.median(runs_split)
    stage = {name: round(statistics.median(t.get(name, 0.0) for t in stages), 2)
             for name in ("fetch", "route", "sort_part", "sort_parts", "merge", "commit")}
    parts = stages[0]["parts"]

    def projected(n: int) -> float:  # T(N) = route + ceil(P / N) * sort_parts / P + merge + commit
        return stage["route"] + math.ceil(parts / n) * stage["sort_parts"] / parts + stage["merge"] + stage["commit"]

    return [{"case": f"BAM {round(source.stat().st_size / 2**20)} MB ({references} references) over 2 one-core "
                     "workers / samtools sort + index on one core", "threads": 1,
             "input_mb": round(source.stat().st_size / 2**20, 1),
             "parts": parts, "plain_s": round(p, 2), "pipeline_s": round(s, 2), "time_ratio": round(s / p, 2),
             "speedup": round(p / s, 2), "stages_s": stage,
             "projected_speedup": {n: round(p / projected(n), 2) for n in (2, 4, 8, 32)},
             "speedup_limit": round(p / projected(parts), 2),
             "load_1min": [round(x, 2) for x in loads],
             # CPU seconds: samtools on its core, each worker with its tools; the busier worker's is a
             # floor for the split's wall time on an idle machine (the load here inflates walls)
             "cpu_plain_s": [round(c, 2) for c in cpu_plain], "cpu_workers_s": cpu_workers,
             "cpu_speedup": round(statistics.median(cpu_plain) / statistics.median(max(c) for c in cpu_workers), 2),
             "runs_plain": [round(w, 3) for w in runs_plain], "runs_pipeline": [round(w, 3) for w in runs_split]}]


def _md5(path: Path) -> str:
    import hashlib

    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2048, help="size of the BAM in MB (whole copies of 61 MB)")
    parser.add_argument("--references", type=int, default=5, help="references of the BAM (5, or up to 22)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = compare(args.size, args.repeat, args.references)
    for row in rows:
        print(json.dumps({k: v for k, v in row.items() if not k.startswith("runs_")} | {
            "runs_plain": row["runs_plain"], "runs_pipeline": row["runs_pipeline"]}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
