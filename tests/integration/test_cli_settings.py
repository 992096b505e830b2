"""Settings on the command line: --set beats YAML and the environment, in what `config` shows and in
what a build does; one --json convention; --version."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from preprocess.build import key_for
from preprocess.config import load_settings
from preprocess.registry import pipeline_for
from tests import samples
from tests.conftest import md5


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "preprocess", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=240, env={**os.environ, **(env or {})})


def user_config(tmp_path: Path) -> dict[str, str]:
    """A YAML file in dask's config path and two variables, as a user's machine would have them."""
    folder = tmp_path / "dask-config"
    folder.mkdir()
    (folder / "preprocess.yaml").write_text("preprocess:\n  compression-level: 3\n  sort-memory: 1G\n"
                                            "  store:\n    storage-options: {account_key: not-for-printing}\n")
    return {"DASK_CONFIG": str(folder), "DASK_PREPROCESS__SORT_MEMORY": "2G", "DASK_PREPROCESS__THREADS": "2"}


def settings_shown(out: subprocess.CompletedProcess[str]) -> dict[str, tuple[object, str, str]]:
    assert out.returncode == 0, out.stderr
    return {s["key"]: (s["value"], s["source"], s["where"]) for s in json.loads(out.stdout)}


def test_config_shows_each_setting_and_its_source_and_flags_beat_yaml_and_environment(tmp_path):
    env = user_config(tmp_path)
    plain = cli("config", "--json", "-", cwd=tmp_path, env=env)
    shown = settings_shown(plain)
    yaml_file = str(tmp_path / "dask-config" / "preprocess.yaml")
    assert shown["compression-level"] == (3, "YAML", yaml_file)
    assert shown["sort-memory"] == ("2G", "environment", "DASK_PREPROCESS__SORT_MEMORY")  # beats the YAML's 1G
    assert shown["threads"] == (2, "environment", "DASK_PREPROCESS__THREADS")
    assert shown["cram-output"] == ("cram", "default", "")
    assert shown["store.storage-options"] == ({"account_key": "**********"}, "YAML", yaml_file)
    flagged = settings_shown(cli("config", "--set", "compression-level=7", "--set", "sort_memory=3G",
                                 "--store", "elsewhere", "--json", "-", cwd=tmp_path, env=env))
    assert flagged["compression-level"] == (7, "flag", "--set compression-level")
    assert flagged["sort-memory"] == ("3G", "flag", "--set sort-memory")
    assert flagged["store.url"] == ("elsewhere", "flag", "--store elsewhere")
    assert flagged["threads"] == (2, "environment", "DASK_PREPROCESS__THREADS")
    table = cli("config", "--set", "threads=4", cwd=tmp_path, env=env)
    assert table.returncode == 0 and "not-for-printing" not in table.stdout + plain.stdout
    assert any(line.split() == ["threads", "4", "flag", "--set", "threads"] for line in table.stdout.splitlines())


def test_a_build_uses_the_flag_not_the_yaml(tmp_path):
    env = user_config(tmp_path)  # compression-level 3 in YAML: part of the key
    bed = samples.bed(tmp_path / "a.bed")
    keys = {}
    for level, extra in ((3, []), (1, ["--set", "compression-level=1"])):
        out = cli("run", str(bed), "--cluster", "sync", "--store", "store", *extra, "--json", "-", cwd=tmp_path,
                  env=env)
        assert out.returncode == 0, out.stderr
        keys[level] = json.loads(out.stdout)["results"][0]["key"]
        expected = load_settings(**{"compression-level": level})
        assert keys[level] == key_for(pipeline_for("BED"), md5(bed), expected, None)
    assert keys[1] != keys[3]


def test_a_bad_set_is_a_usage_error_naming_the_settings(tmp_path):
    for bad, why in (("threadz=4", "no setting 'threadz'; the settings are"), ("threads", "expected KEY=VALUE"),
                     ("threads=0", "invalid preprocess configuration")):
        out = cli("config", "--set", bad, cwd=tmp_path)
        assert out.returncode == 2 and why in out.stderr, (bad, out.stderr)


def test_version():
    out = cli("--version", cwd=Path.cwd())
    assert out.returncode == 0 and out.stdout.startswith("preprocess, version ")


def test_json_takes_a_path_everywhere_dash_prints_and_a_csv_is_never_overwritten(tmp_path):
    (tmp_path / "catalogue.csv").write_text("id,access_url,format\n")
    written = cli("status", "--store", "store", "--json", "status.json", cwd=tmp_path)
    assert written.returncode == 0 and "store" in json.loads((tmp_path / "status.json").read_text())
    assert "store" in json.loads(cli("status", "--store", "store", "--json", "-", cwd=tmp_path).stdout)
    assert "store" in json.loads(cli("status", "--store", "store", "--json", cwd=tmp_path).stdout)  # as before
    refused = cli("status", "--store", "store", "--json", "catalogue.csv", cwd=tmp_path)
    assert refused.returncode == 2 and "is a CSV file" in refused.stderr
    assert (tmp_path / "catalogue.csv").read_text() == "id,access_url,format\n"
