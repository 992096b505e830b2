"""One CRAM built as CRAM and as BAM (`cram-output`), against the plain samtools sort + index.

    python -m benchmarks.cram [--reads 200000]

Prints sizes in bytes and wall seconds (the pipeline in-process, `cluster.profile: sync`; its
stage timings show where the time goes: the extra decode passes that count and verify records).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import tempfile
import time
from pathlib import Path

import preprocess
from preprocess.config import load_settings
from tests import samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reads", type=int, default=200_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-cram-"))
    (work / "ref").mkdir()
    reference = samples.fasta(work / "ref" / "ref.fa", contigs={"chr1": 2_000_000, "chr2": 1_000_000})
    cram = samples.cram(work / "in.cram", reference, reads=args.reads)
    print(f"input CRAM ({args.reads} reads of 50 bp): {cram.stat().st_size} bytes")
    for output in ("cram", "bam"):
        settings = load_settings(**{"store.url": str(work / output), "cluster.profile": "sync",
                                    "scratch": str(work), "cram-output": output})
        started = time.perf_counter()
        result = preprocess.run({"id": output, "access_url": str(cram), "reference": str(reference)},
                                settings=settings)
        size = Path(result.artifacts["data"]).stat().st_size
        print(f"pipeline, output {output}: {time.perf_counter() - started:.2f} s, {size} bytes, "
              f"stages {result.timings}")
    refs = work / "m5"
    refs.mkdir()
    for bases in samples.read_sequences(reference).values():
        (refs / hashlib.md5(bases.encode(), usedforsecurity=False).hexdigest()).write_text(bases)
    env = {**os.environ, "REF_PATH": f"{refs}/%s", "REF_CACHE": ""}
    started = time.perf_counter()
    subprocess.run(["samtools", "sort", "-O", "cram", "-o", str(work / "plain.cram"), str(cram)], env=env, check=True)
    subprocess.run(["samtools", "index", str(work / "plain.cram")], env=env, check=True)
    print(f"plain samtools sort + index: {time.perf_counter() - started:.2f} s, "
          f"{(work / 'plain.cram').stat().st_size} bytes")
    print(f"(files under {work})")


if __name__ == "__main__":
    main()
