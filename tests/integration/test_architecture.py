"""docs/architecture.md is current: its toy pipeline, installed as a reader would install it (a
distribution with a `preprocess.pipelines` entry point, nothing changed in the engine), builds end to
end; and its module map names every module of the packages."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "architecture.md"


def block(info: str) -> str:
    """The fenced block of the page whose info string is `info`."""
    found = re.search(rf"```{re.escape(info)}\n(.*?)```", PAGE.read_text(), re.S)
    assert found, f"docs/architecture.md has no ```{info} block"
    return found.group(1)


def install_toy(site: Path) -> None:
    """toy_pipeline.py and its distribution's metadata, from the page, into a folder put on sys.path."""
    site.mkdir()
    (site / "toy_pipeline.py").write_text(block("python toy_pipeline.py"))
    declared = tomllib.loads(block("toml"))["project"]["entry-points"]["preprocess.pipelines"]
    dist = site / "toy_pipeline-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-pipeline\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[preprocess.pipelines]\n" + "".join(f"{name} = {value}\n" for name, value in declared.items()))


def cli(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(filter(None, [str(site), str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "preprocess", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": path}, timeout=300)


def test_the_toy_pipeline_of_the_page_registers_by_entry_point_and_builds_end_to_end(tmp_path):
    site, store = tmp_path / "site", tmp_path / "store"
    install_toy(site)
    source = tmp_path / "lines.toy"
    source.write_bytes(b"pear\napple\nfig\n")

    built = cli(site, "run", str(source), "--store", str(store), "--cluster", "sync", "--json", "-")
    assert built.returncode == 0, built.stderr
    result = json.loads(built.stdout)["results"][0]
    assert (result["status"], result["format"], result["pipeline"]) == ("built", "TOY", "toy")
    assert result["artifacts"]["data"].endswith("/sorted.toy")
    assert Path(result["artifacts"]["data"]).read_bytes() == b"apple\nfig\npear\n"

    again = cli(site, "run", str(source), "--store", str(store), "--cluster", "sync", "--json", "-")
    assert json.loads(again.stdout)["results"][0]["status"] == "cached"
    status = cli(site, "status", "--store", str(store), "--json", "-")
    assert json.loads(status.stdout)["keys"] == {"toy": 1}  # read by the names the pipeline declares


def test_the_toy_pipeline_refuses_bad_input_with_an_input_error_and_commits_nothing(tmp_path):
    site, store = tmp_path / "site", tmp_path / "store"
    install_toy(site)
    source = tmp_path / "cut.toy"
    source.write_bytes(b"pear\napple")

    failed = cli(site, "run", str(source), "--store", str(store), "--cluster", "sync", "--json", "-")
    assert failed.returncode == 1
    error = json.loads(failed.stdout)["results"][0]["error"]
    assert error == {"class": "InputError", "message": "cut.toy: the last line has no newline"}
    assert not list(store.rglob("manifest.json"))


def test_the_module_map_names_every_module():
    page = PAGE.read_text()
    modules = [path.name for package in ("preprocess", "pipelines", "benchmarks")
               for path in (ROOT / package).glob("*.py") if path.name != "__init__.py" or package == "preprocess"]
    missing = sorted(name for name in modules if f"`{name}`" not in page)
    assert not missing, f"docs/architecture.md's module map lacks {missing}"


def test_every_engine_module_stands_on_a_floor_of_the_import_contract():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    floors = next(c for c in contracts if c["id"] == "floors")["layers"]
    placed = {name.strip() for floor in floors for name in floor.split("|")}
    modules = {f"preprocess.{path.stem}" for path in (ROOT / "preprocess").glob("*.py") if path.stem != "__init__"}
    assert not modules - placed, f"modules on no floor of [tool.importlinter] (make lint cannot check them): " \
                                 f"{sorted(modules - placed)}"
