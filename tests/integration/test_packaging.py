"""The project as a user installs it: the sdist and wheel `python -m build` makes (the wheel from the sdist),
installed into a fresh virtual environment, where `python -m preprocess doctor` passes and one file builds.

No test reaches the package index: the build backend comes from the wheelhouse `make test` fills
(.tools/wheelhouse), and the fresh environment takes the wheel's dependencies from this one's site
packages (a .pth file), never the project's source tree."""

from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import preprocess
from preprocess import registry
from tests import samples

ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE = ROOT / ".tools" / "wheelhouse"
DIST = "preprocess-genomics"


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment less anything that would import the project from its source tree."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """The sdist and wheel of the project's files (tracked, and new ones not ignored), built offline."""
    if not any(WHEELHOUSE.glob("setuptools-*.whl")):
        pytest.fail(f"environment: no setuptools wheel in {WHEELHOUSE} (make test downloads it)", pytrace=False)
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    built = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(source)], capture_output=True,
                           text=True, timeout=280, env=_clean_env(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(WHEELHOUSE)))
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return out


def test_the_wheel_and_sdist_carry_the_name_version_and_metadata(dist):
    version = preprocess.__version__
    [wheel] = dist.glob("*.whl")
    [sdist] = dist.glob("*.tar.gz")
    assert wheel.name == f"preprocess_genomics-{version}-py3-none-any.whl"
    assert sdist.name == f"preprocess_genomics-{version}.tar.gz"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        meta = email.message_from_bytes(archive.read(f"preprocess_genomics-{version}.dist-info/METADATA"))
        entry_points = archive.read(f"preprocess_genomics-{version}.dist-info/entry_points.txt").decode()
    assert meta["Name"] == DIST and meta["Version"] == version and meta["License-Expression"] == "MIT"
    assert f"preprocess_genomics-{version}.dist-info/licenses/LICENSE" in names
    assert {"preprocess/preprocess.yaml", "pipelines/scripts/validate.awk", "preprocess/__main__.py",
            "pipelines/bamwalk.c", "pipelines/bamindex.c", "pipelines/bgzindex.c"} <= names
    assert not [n for n in names if n.startswith("tests/")]
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Homepage", "Repository", "Issues", "Changelog"} <= set(urls)
    assert "Topic :: Scientific/Engineering :: Bio-Informatics" in meta.get_all("Classifier")
    assert meta["Requires-Python"] == ">=3.11" and any(r.startswith("pysam") for r in meta.get_all("Requires-Dist"))
    assert "preprocess = preprocess.cli:main" in entry_points
    assert "bam = pipelines.alignments:ALIGNMENTS" in entry_points


def test_the_wheel_installed_in_a_fresh_venv_passes_doctor_and_builds_a_file(dist, tmp_path):
    [wheel] = dist.glob("*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    fresh = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                check=True, capture_output=True, text=True).stdout.strip())
    # the dependencies (dask, pysam, …) from this environment, after the venv's own packages
    (fresh / "zz-shared-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
                                "--no-deps", str(wheel)], capture_output=True, text=True, timeout=120,
                               env=_clean_env())
    assert installed.returncode == 0, installed.stderr
    work = tmp_path / "work"  # far from the source tree: nothing is imported from it
    work.mkdir()
    env = _clean_env(PATH=f"{venv / 'bin'}:{os.environ['PATH']}")

    where = subprocess.run([str(python), "-c", "import pipelines, preprocess; print(preprocess.__file__); "
                            "print(pipelines.__file__)"], cwd=work, env=env, capture_output=True, text=True)
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(fresh)) for line in where.stdout.split()), where.stdout

    doctor = subprocess.run([str(python), "-m", "preprocess", "doctor", "--store", str(work / "store")], cwd=work,
                            env=env, capture_output=True, text=True, timeout=120)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert re.search(rf"^ok +preprocess +{re.escape(preprocess.__version__)} \({re.escape(str(fresh))}/preprocess\)$",
                     doctor.stdout, re.M), doctor.stdout

    sam = samples.sam(work / "one.sam", reads=300)
    built = subprocess.run([str(venv / "bin" / "preprocess"), "run", str(sam), "--store", str(work / "store"),
                            "--cluster", "sync"], cwd=work, env=env, capture_output=True, text=True, timeout=180)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "built" in built.stdout
    [bam] = (work / "store").rglob("sorted.bam")
    assert (bam.parent / "sorted.bam.bai").is_file() and (bam.parent / "manifest.json").is_file()
    count = subprocess.run(["samtools", "view", "-c", str(bam)], check=True, capture_output=True, text=True)
    assert int(count.stdout) == 300 + 20  # the sample's reads and its unmapped ones

    built = subprocess.run([str(python), "-c", "from pipelines import native; print(native.program()); "
                            "print(native.bgzindex())"], cwd=work, env={**env, "XDG_CACHE_HOME": str(work / "cache")},
                           capture_output=True, text=True)
    walker, indexer = built.stdout.split()
    assert walker.startswith(str(work / "cache" / "preprocess" / "bamwalk-")), built.stdout + built.stderr
    assert indexer.startswith(str(work / "cache" / "preprocess" / "bgzindex-")), built.stdout + built.stderr


def test_the_changelog_lists_the_pipeline_versions_this_release_serves():
    text = (ROOT / "CHANGELOG.md").read_text()
    section = text.split(f"\n## {preprocess.__version__} ", 1)[1].split("\n## ", 1)[0]
    listed = {(m[0], m[1]) for m in re.findall(r"^\| (\w+) \| (\w+) \|", section, re.M) if m[0] != "pipeline"}
    served = {(registry.pipeline_for(fmt).name, registry.pipeline_for(fmt).version) for fmt in registry.formats()}
    assert listed == served
