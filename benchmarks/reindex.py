"""What a nightly re-run of an all-cached catalogue costs: requests per row and time per row.

    python -m benchmarks.reindex [--rows 1000] [--stores local,s3] [--repeat 3] [--cases batch,reindex,…]

A store is filled with `--rows` committed keys (small fake artifacts under real keys and valid
manifests; nothing is built), and a catalogue CSV names them by md5. Then `batch`, `reindex`
(planned from shard listings, and from one listing per key), and `reindex --verify` run over it,
each as `python -m preprocess … --cluster sync` in its own process, as cron would start it. On S3
(a moto server on 127.0.0.1 in this process) every request the server answers is counted from its
request log (werkzeug), by method. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from preprocess.build import key_for
from preprocess.config import load_settings
from preprocess.keys import LAYOUT
from preprocess.model import Artifact, Manifest, PipelineInfo, SourceInfo
from preprocess.registry import pipeline_for

ALL_CASES: dict[str, tuple[str, list[str]]] = {
    "batch": ("batch", ["batch"]),
    "reindex": ("reindex (auto)", ["reindex"]),
    "shards": ("reindex --plan-from shards", ["reindex", "--plan-from", "shards"]),
    "keys": ("reindex --plan-from keys", ["reindex", "--plan-from", "keys"]),
    "verify": ("reindex --verify", ["reindex", "--verify"]),
}
CASES = list(ALL_CASES.values())


class RequestLog(logging.Handler):
    """Counts the requests werkzeug logs for the moto server, by method."""

    def __init__(self) -> None:
        super().__init__()
        self.methods: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        plain = re.sub(r"\x1b\[[0-9;]*m", "", record.getMessage())  # werkzeug colours some lines
        found = re.search(r'"(GET|HEAD|PUT|POST|DELETE) /', plain)
        if found:
            self.methods[found[1]] += 1


def fake_store(rows: int, workdir: Path) -> tuple[Path, dict[str, bytes]]:
    """The catalogue CSV and every object of a store where each row is committed (relative paths)."""
    settings = load_settings()
    pipeline = pipeline_for("BAM")
    objects: dict[str, bytes] = {}
    lines = ["id,access_url,format,md5"]
    data, index = b"B" * 64, b"I" * 16
    for i in range(rows):
        md5 = hashlib.md5(f"row-{i}".encode(), usedforsecurity=False).hexdigest()
        key = key_for(pipeline, md5, settings)
        arts = [Artifact(kind="data", name="sorted.bam", size=len(data), sha256=hashlib.sha256(data).hexdigest()),
                Artifact(kind="index", name="sorted.bam.bai", size=len(index),
                         sha256=hashlib.sha256(index).hexdigest())]
        manifest = Manifest(key=key, layout=LAYOUT, artifacts=arts,
                            source=SourceInfo(url=f"/data/row-{i}.bam", format="BAM", md5=md5, size=1000),
                            pipeline=PipelineInfo(name=pipeline.name, version=pipeline.version,
                                                  parameters=pipeline.parameters(_build(settings))))
        folder = f"{LAYOUT}/{key[:2]}/{key}"
        objects[f"{folder}/sorted.bam"] = data
        objects[f"{folder}/sorted.bam.bai"] = index
        objects[f"{folder}/manifest.json"] = manifest.to_json().encode()
        lines.append(f"row-{i},/data/row-{i}.bam,BAM,{md5}")
    catalogue = workdir / "catalogue.csv"
    catalogue.write_text("\n".join(lines) + "\n")
    return catalogue, objects


def _build(settings):  # type: ignore[no-untyped-def]
    from preprocess.build import build_settings

    return build_settings(settings)


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "preprocess", *argv, "--cluster", "sync"], env=env,
                         capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {out.returncode}: {out.stderr[-2000:]}")
    return elapsed


def in_process(rows: int, catalogue: Path, store: str) -> dict[str, float]:
    """The API calls alone, without interpreter start-up: seconds for one run each."""
    from preprocess.api import run_many
    from preprocess.catalog import read_catalog
    from preprocess.reindex import reindex

    settings = load_settings(**{"store.url": store, "cluster.profile": "sync"})
    docs = read_catalog(catalogue)
    out = {}
    started = time.perf_counter()
    report = run_many(docs, settings=settings)
    out["batch (API)"] = time.perf_counter() - started
    assert report.counts["cached"] == rows
    started = time.perf_counter()
    re = reindex(docs, settings=settings)
    out["reindex (API)"] = time.perf_counter() - started
    assert re.counts["actions"]["ok"] == rows
    return out


def bench_local(rows: int, repeat: int, workdir: Path) -> None:
    catalogue, objects = fake_store(rows, workdir)
    store = workdir / "store"
    for name, body in objects.items():
        (store / name).parent.mkdir(parents=True, exist_ok=True)
        (store / name).write_bytes(body)
    env = dict(os.environ)
    print(f"\nlocal store, {rows} committed rows, median of {repeat} (whole process, start-up included)")
    print(f"{'case':32} {'s':>8} {'ms/row':>8}")
    for label, argv in CASES:
        times = [timed([*argv, str(catalogue), "--store", str(store)], env) for _ in range(repeat)]
        median = statistics.median(times)
        print(f"{label:32} {median:8.3f} {1000 * median / rows:8.3f}")
    api = [in_process(rows, catalogue, str(store)) for _ in range(repeat)]
    for label in api[0]:
        median = statistics.median(run[label] for run in api)
        print(f"{label:32} {median:8.3f} {1000 * median / rows:8.3f}")


def bench_s3(rows: int, repeat: int, workdir: Path) -> list[dict[str, object]]:
    """Each case's requests (counted from moto's log) and median time: the rows of --json."""
    import s3fs
    from moto.server import ThreadedMotoServer

    from tests.servers import HOST, free_port, wait_for_port

    log = RequestLog()
    werkzeug = logging.getLogger("werkzeug")
    werkzeug.setLevel(logging.INFO)
    werkzeug.addHandler(log)
    werkzeug.propagate = False
    port = free_port()
    server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=True)
    server.start()
    wait_for_port(port)
    endpoint = f"http://{HOST}:{port}"
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    try:
        catalogue, objects = fake_store(rows, workdir)
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir("bench")
        fs.pipe({f"bench/store/{name}": body for name, body in objects.items()})
        url = "s3://bench/store"
        print(f"\nS3 (moto server on {HOST}), {rows} committed rows; requests counted from the server's log; "
              f"median time of {repeat}")
        print(f"{'case':32} {'requests':>9} {'req/row':>8} {'by method':24} {'s':>8} {'ms/row':>8}")
        found: list[dict[str, object]] = []
        for label, argv in CASES:
            times, counts = [], []
            for _ in range(repeat):
                log.methods.clear()
                times.append(timed([*argv, str(catalogue), "--store", url], env))
                counts.append(Counter(log.methods))
            total = sum(counts[-1].values())
            methods = " ".join(f"{m}:{n}" for m, n in sorted(counts[-1].items()))
            median = statistics.median(times)
            print(f"{label:32} {total:9d} {total / rows:8.3f} {methods:24} {median:8.3f} {1000 * median / rows:8.3f}")
            found.append({"group": "requests", "store": "s3", "case": label, "rows": rows, "requests": total,
                          "requests_per_row": round(total / rows, 3), "by_method": dict(sorted(counts[-1].items())),
                          "seconds": round(median, 3)})
        return found
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--stores", default="local,s3")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cases", default=",".join(ALL_CASES), help=f"some of {','.join(ALL_CASES)}")
    parser.add_argument("--json", type=Path, help="Also write the S3 request counts here (benchmarks/results-*.json; "
                        "the README's request figures are tested against the newest)")
    args = parser.parse_args()
    CASES[:] = [ALL_CASES[name] for name in args.cases.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-reindex-") as tmp:
        for kind in args.stores.split(","):
            workdir = Path(tmp) / kind
            workdir.mkdir()
            if kind == "s3":
                found = bench_s3(args.rows, args.repeat, workdir)
                if args.json:
                    args.json.write_text(json.dumps(found, indent=2) + "\n")
            else:
                bench_local(args.rows, args.repeat, workdir)


if __name__ == "__main__":
    main()
