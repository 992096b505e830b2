"""Plain scripts that call preprocess: the local cluster's spawned workers re-import the script, so one
without `if __name__ == "__main__":` once started clusters in every worker and hung. The scripts ask
for the local cluster (two small files would build in the calling process, where no guard is needed)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests import samples

CALL = ('",".join(r.status for r in preprocess.run_many([{"id": "s1", "access_url": "s1.sam", "format": "SAM"}, '
        '{"id": "s2", "access_url": "s2.sam", "format": "SAM"}], store="store").results)')
SHAPES = {
    "top level, no guard": f"import preprocess\n\nprint('RESULT', {CALL})\n",
    "under the guard": f"import preprocess\n\nif __name__ == '__main__':\n    print('RESULT', {CALL})\n",
    "a main() called under the guard": (f"import preprocess\n\n\ndef main():\n    print('RESULT', {CALL})\n\n\n"
                                        "if __name__ == \"__main__\":\n    main()\n"),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_a_script_that_runs_preprocess_finishes_and_says_what_to_write(tmp_path, shape):
    samples.sam(tmp_path / "s1.sam", reads=200)
    samples.sam(tmp_path / "s2.sam", reads=200, seed=2)
    (tmp_path / "job.py").write_text(SHAPES[shape])
    env = {**os.environ, "DASK_PREPROCESS__CLUSTER__PROFILE": "local"}
    proc = subprocess.run([sys.executable, "job.py"], cwd=tmp_path, capture_output=True, text=True, timeout=180,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "RESULT built,built"
    advice = 'job.py line 3: put the call under `if __name__ == "__main__":`'
    if shape == "top level, no guard":
        assert advice in proc.stderr and "as threads" in proc.stderr
    else:
        assert "__main__" not in proc.stderr and "Traceback" not in proc.stderr


def test_a_script_with_one_file_to_build_needs_no_guard(tmp_path):
    """One file builds in the calling process: nothing re-imports the script, nothing to advise."""
    samples.sam(tmp_path / "s1.sam", reads=200)
    one = 'preprocess.run({"id": "s1", "access_url": "s1.sam", "format": "SAM"}, store="store").status'
    (tmp_path / "job.py").write_text(f"import preprocess\n\nprint('RESULT', {one})\n")
    proc = subprocess.run([sys.executable, "job.py"], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1] == "RESULT built", proc.stderr[-3000:]
    assert "__main__" not in proc.stderr and "Traceback" not in proc.stderr
