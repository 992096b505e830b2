"""The README's examples and the quickstart notebook, run as a reader would run them: the commands in
order, on a fresh store, each with the exit code and the lines it claims to print."""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests import samples

ROOT = Path(__file__).resolve().parents[2]


def env() -> dict[str, str]:
    return {**os.environ, "DASK_PREPROCESS__CLUSTER__N_WORKERS": "1"}


@dataclass
class Example:
    """One `$ python -m preprocess …` line of a README console block and the lines shown under it."""

    command: str
    exit_code: int = 0
    claims: list[str] = field(default_factory=list)


def readme_examples(text: str) -> list[Example]:
    """Every console example in README order; `# exit N` after a command is the exit code it claims."""
    examples: list[Example] = []
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        current = None
        for line in block.splitlines():
            if line.startswith("$ "):
                command, _, comment = line[2:].partition("  # ")
                code = re.match(r"exit (\d+)", comment.strip())
                current = Example(command.strip(), int(code.group(1)) if code else 0)
                examples.append(current)
            elif current is not None and line.strip():
                current.claims.append(line.strip())
    return examples


def claimed(line: str) -> re.Pattern[str]:
    """A claimed output line as a pattern: `…` stands for anything, a run of spaces for any spacing."""
    parts = [re.sub(r"(\\ )+", r"\\s+", re.escape(part)) for part in line.split("…")]
    return re.compile(".*".join(parts))


def make_demo_command() -> list[str]:
    """The batch `make demo` runs, read from the Makefile (so this test starts where a reader does)."""
    recipe = (ROOT / "Makefile").read_text().split("\ndemo:", 1)[1]
    return shlex.split(re.search(r"\$\(PY\) -m preprocess (batch [^|]*?)\s*\|\|", recipe).group(1))


def test_readme_python_examples_run_from_the_notebooks_folder(tmp_path):
    samples.demo(tmp_path / "demo", reads=300)
    (tmp_path / "notebooks").mkdir()
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks
    for block in blocks:
        out = subprocess.run([sys.executable, "-c", block], cwd=tmp_path / "notebooks", capture_output=True,
                             text=True, env=env(), timeout=240)
        assert out.returncode == 0, out.stderr
        assert "built" in out.stdout and "sorted.bam" in out.stdout


def test_readme_commands_run_in_order_on_a_fresh_store_and_print_what_they_claim(tmp_path, s3_endpoint,
                                                                                  azurite_connection):
    import s3fs

    s3fs.S3FileSystem(skip_instance_cache=True).mkdir("my-bucket")  # the README: a bucket must exist
    samples.demo(tmp_path / "demo", reads=300)
    with open(tmp_path / "demo" / "manifest.csv") as stream, open(tmp_path / "catalogue.csv", "w") as out:
        rows = list(csv.reader(stream))  # "catalogue.csv" in the README is the reader's own: here, the demo's
        writer = csv.writer(out, lineterminator="\n")
        writer.writerows([rows[0], *([row[0], f"demo/{row[1]}", *row[2:]] for row in rows[1:])])

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "preprocess", *argv], cwd=tmp_path, capture_output=True,
                              text=True, env=env(), timeout=300)

    demo = run(make_demo_command())  # `make demo`: the broken row fails on purpose, nothing else
    assert demo.returncode == 1, demo.stdout + demo.stderr
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert [r["id"] for r in report["results"] if r["status"] == "failed"] == ["broken"]

    examples = readme_examples((ROOT / "README.md").read_text())
    seen = ""
    for example in examples:
        argv = shlex.split(example.command)
        assert argv[:3] == ["python", "-m", "preprocess"], example.command
        if "…" in example.command:  # the README's placeholder key: the first BAM the S3 batch built
            built = re.search(r"(s3://my-bucket/artifacts/v1/\S+/sorted\.bam)\b", seen)
            assert built, seen
            argv = [built.group(1) if "…" in arg else arg for arg in argv]
        out = run(argv[3:])
        printed = [line.strip() for line in (out.stdout + out.stderr).splitlines()]
        assert out.returncode == example.exit_code, (example.command, out.stdout, out.stderr)
        for claim in example.claims:
            assert any(claimed(claim).fullmatch(line) for line in printed), (example.command, claim, printed)
        seen += out.stdout
    commands = [shlex.split(e.command)[3] for e in examples if not e.command.endswith("--version")]
    assert {"batch", "run", "sign", "mirror", "reindex", "status", "gc", "doctor", "config"} <= set(commands)
    assert (tmp_path / "demo" / "report.html").is_file()  # the fresh store had work: the report was written


def test_quickstart_notebook_executes(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    NotebookClient(notebook, timeout=240, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))
    assert "built" in outputs and "broken failed InputError" in outputs
    assert notebook.cells[1].outputs == []  # writing the sample displays nothing stray
    assert (tmp_path / "quickstart-store").is_dir()
    ignored = subprocess.run(["git", "check-ignore", "notebooks/quickstart-data/x", "notebooks/quickstart-store/x"],
                             cwd=ROOT, capture_output=True, text=True)
    assert ignored.stdout.split() == ["notebooks/quickstart-data/x", "notebooks/quickstart-store/x"]
