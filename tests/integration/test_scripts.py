"""Plain scripts that call preprocess.run(): the local cluster's spawned workers re-import the script,
so one without `if __name__ == "__main__":` once started clusters in every worker and hung."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests import samples

CALL = 'preprocess.run({"id": "s1", "access_url": "s1.sam", "format": "SAM"}, store="store").status'
SHAPES = {
    "top level, no guard": f"import preprocess\n\nprint('RESULT', {CALL})\n",
    "under the guard": f"import preprocess\n\nif __name__ == '__main__':\n    print('RESULT', {CALL})\n",
    "a main() called under the guard": (f"import preprocess\n\n\ndef main():\n    print('RESULT', {CALL})\n\n\n"
                                        "if __name__ == \"__main__\":\n    main()\n"),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_a_script_that_runs_preprocess_finishes_and_says_what_to_write(tmp_path, shape):
    samples.sam(tmp_path / "s1.sam", reads=200)
    (tmp_path / "job.py").write_text(SHAPES[shape])
    proc = subprocess.run([sys.executable, "job.py"], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "RESULT built"
    advice = 'job.py line 3: put the call under `if __name__ == "__main__":`'
    if shape == "top level, no guard":
        assert advice in proc.stderr and "as threads" in proc.stderr
    else:
        assert "__main__" not in proc.stderr and "Traceback" not in proc.stderr
