"""The README's examples and the quickstart notebook, run as a reader would run them."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests import samples

ROOT = Path(__file__).resolve().parents[2]


def env() -> dict[str, str]:
    return {**os.environ, "DASK_PREPROCESS__CLUSTER__N_WORKERS": "1"}


def test_readme_python_examples_run(tmp_path):
    samples.demo(tmp_path / "demo", reads=300)
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks
    for block in blocks:
        out = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, env=env(),
                             timeout=240)
        assert out.returncode == 0, out.stderr
        assert "built" in out.stdout and "sorted.bam" in out.stdout


def test_readme_local_commands_run(tmp_path):
    samples.demo(tmp_path / "demo", reads=300)
    text = (ROOT / "README.md").read_text()
    commands = [line[2:] for line in re.findall(r"^\$ python -m preprocess .*$", text, re.M)]
    local = [c for c in commands if "://" not in c]
    assert len(local) >= 2
    for command in local:
        argv = shlex.split(command)
        out = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, capture_output=True, text=True, env=env(),
                             timeout=240)
        assert out.returncode == 0, (command, out.stdout, out.stderr)
    # cloud commands in the README (s3://, az://, sign, mirror) run against moto and Azurite in test_cloud.py
    assert {"batch", "run", "sign", "mirror"} <= {shlex.split(c)[3] for c in commands}


def test_quickstart_notebook_executes(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    NotebookClient(notebook, timeout=240, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))
    assert "built" in outputs and "broken failed InputError" in outputs
    assert (tmp_path / "quickstart-store").is_dir()
