"""bigBed -> BED text (pybigtools), then the BED pipeline: sorted, bgzipped, tabix-indexed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preprocess import shell
from preprocess.errors import InputError, ToolError

from .base import BuildContext, BuildOutput, BuildSettings
from .intervals import BED, build_intervals

BIGBED_MAGIC = (0x8789F2EB).to_bytes(4, "little")


@dataclass(frozen=True)
class BigBedPipeline:
    name: str = "bigbed"
    version: str = "2"  # as BED
    formats: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"bigBed": (".bb", ".bigbed")})
    stage: str = "sort_bigbed"
    passthrough: bool = False

    def parameters(self, settings: BuildSettings) -> dict[str, Any]:
        return BED.parameters(settings)

    def build(self, ctx: BuildContext) -> BuildOutput:
        bed = ctx.workdir / "converted.bed"
        with ctx.stage("convert"):
            lengths, records = to_bed_isolated(ctx.source, bed)
        return build_intervals(BED, ctx, bed, lengths=tuple(lengths.values()),
                               extra_records={"conversion": {"tool": "pybigtools", "records": records}})


def to_bed(path: Any, out: Any) -> tuple[dict[str, int], int]:
    """Write every record of a bigBed as a BED line (0-based, half-open); return lengths and count."""
    import pybigtools

    with open(path, "rb") as stream:
        if stream.read(4) != BIGBED_MAGIC:
            raise InputError(f"{path.name}: not a bigBed file (bad magic number)")
    count = 0
    try:
        reader = pybigtools.open(str(path))
        lengths = dict(reader.chroms())
        with open(out, "w", encoding="utf-8", newline="\n") as target:
            for chrom in lengths:
                for record in reader.records(chrom):
                    start, end, *rest = record
                    target.write("\t".join((chrom, str(start), str(end), *map(str, rest))) + "\n")
                    count += 1
    except InputError:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - pybigtools raises its own errors for bad files, and on
        # some (a flipped byte in a data block) panics: a PanicException, which is not an Exception
        raise InputError(f"{path.name}: unreadable bigBed: {type(exc).__name__}: {exc}") from None
    return lengths, count


def to_bed_isolated(path: Path, out: Path) -> tuple[dict[str, int], int]:
    """to_bed() in a child process: on some corrupt files pybigtools aborts the whole process
    (SIGABRT), which would take a worker, or a notebook running the build in-process, with it."""
    proc = subprocess.run([sys.executable, "-m", "pipelines.bigbed", str(path), str(out)], capture_output=True,
                          check=False, env=shell.environment())
    if proc.returncode == 0:
        answer = json.loads(proc.stdout)
        return dict(answer["lengths"]), int(answer["records"])
    said = proc.stderr.decode("utf-8", "replace").strip()
    if proc.returncode == _REFUSED:
        raise InputError(said.splitlines()[-1] if said else f"{path.name}: unreadable bigBed")
    if proc.returncode < 0:
        crash = signal.Signals(-proc.returncode).name
        raise InputError(f"{path.name}: unreadable bigBed: the reader crashed ({crash})")
    raise ToolError([sys.executable, "-m", "pipelines.bigbed", path.name, out.name], proc.returncode, shell.tail(said),
                    context=f"converting {path.name}")


_REFUSED = 3


def _main(argv: list[str]) -> int:
    try:
        lengths, records = to_bed(Path(argv[0]), Path(argv[1]))
    except InputError as exc:
        print(str(exc), file=sys.stderr)
        return _REFUSED
    print(json.dumps({"lengths": lengths, "records": records}))
    return 0


BIGBED = BigBedPipeline()

if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
