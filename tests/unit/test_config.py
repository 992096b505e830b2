import json
import subprocess
import sys
import typing

import pytest
import yaml

from preprocess.config import DEFAULTS_PATH, Settings, load_settings
from preprocess.errors import ConfigError
from preprocess.records import Record


def _keys(model: type, prefix: str = "") -> set[str]:
    found = set()
    for name, sub in typing.get_type_hints(model).items():
        if name not in model.__dataclass_fields__:
            continue  # the class's own settings (ClassVar)
        key = prefix + name.replace("_", "-")
        found.add(key)
        if isinstance(sub, type) and issubclass(sub, Record):
            found |= _keys(sub, key + ".")
    return found


def _yaml_keys(tree: dict, prefix: str = "") -> set[str]:
    found = set()
    for key, value in tree.items():
        found.add(prefix + key)
        if isinstance(value, dict) and value and key not in ("storage-options", "fargate"):
            found |= _yaml_keys(value, prefix + key + ".")
    return found


def test_shipped_yaml_and_schema_agree():
    shipped = yaml.safe_load(DEFAULTS_PATH.read_text())["preprocess"]
    missing_in_yaml = _keys(Settings) - _yaml_keys(shipped)
    unknown_in_schema = _yaml_keys(shipped) - _keys(Settings)
    assert not missing_in_yaml, f"add these keys with their defaults to {DEFAULTS_PATH.name}: {missing_in_yaml}"
    assert not unknown_in_schema, f"add these keys to preprocess.config.Settings: {unknown_in_schema}"
    Settings.from_dict(shipped)


def test_defaults_need_no_configuration():
    settings = load_settings()
    assert settings.store.url == "./preprocess-store" and settings.cluster.profile == "auto"


def test_environment_variable_reaches_the_same_key():
    code = "from preprocess.config import load_settings; print(load_settings().sort_memory)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"DASK_PREPROCESS__SORT_MEMORY": "2G", "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "2G"


@pytest.mark.parametrize("override", [{"sort-memory": "lots"}, {"cluster.profile": "kubernetes"},
                                      {"compression-level": 12}, {"no-such-key": 1}])
def test_bad_values_are_config_errors(override):
    with pytest.raises(ConfigError, match="invalid preprocess configuration"):
        load_settings(**override)


def test_a_config_error_names_the_key_but_never_echoes_the_value():
    with pytest.raises(ConfigError) as caught:
        load_settings(**{"store.verify": "s3cr3t-value"})
    assert "store.verify" in str(caught.value) and "s3cr3t-value" not in str(caught.value)


READ = """
import json, sys
if sys.argv[1] == "dask":
    import dask.config  # read through dask.config itself, as a notebook or a worker does
from preprocess import config
settings = config.load_settings()
print(json.dumps({"settings": settings.to_dict(),
                  "options": settings.store.options(), "dask imported": "dask" in sys.modules}))
"""


def test_settings_read_without_dask_are_what_dask_config_reads(tmp_path):
    """Without dask imported, the settings are read here as dask.config reads them (its YAML paths in
    their order, its DASK_* variables, "_" and "-" as one key, a value given beating the default)."""
    root, user = tmp_path / "root", tmp_path / "user"
    root.mkdir(), user.mkdir()
    (root / "a.yaml").write_text("preprocess:\n  sort_memory: 1G\n  threads: 3\n  source: {attempts: 2}\n")
    (user / "b.yml").write_text("preprocess:\n  sort-memory: 2G\n  split: {part_size: 64MiB}\n"
                                "  cluster: {worker_ttl: 2m, n-workers: 2}\n  store:\n"
                                "    storage_options: {anon: true, Key_Name: kept-as-written}\n")
    (user / "c.json").write_text('{"preprocess": {"source": {"min-rate": "1 MiB", "backoff": 0.5}}}')
    (user / "ignored.txt").write_text("preprocess: {threads: 99}\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DASK_ROOT_CONFIG": str(root), "DASK_CONFIG": str(user),
           "DASK_PREPROCESS__COMPRESSION_LEVEL": "4", "DASK_PREPROCESS__TASK_TIMEOUT": "90m",
           "DASK_PREPROCESS__CLUSTER__ADDRESS": "None", "DASK_PREPROCESS__KEEP_PUBLIC_URLS": "true",
           "DASK_PREPROCESS__SOURCE__DRS_ACCESS_SCHEMES": "['https', 's3']",
           "DASK_PREPROCESS__STORE__STORAGE_OPTIONS__TIMEOUT": "30"}
    read = {how: json.loads(subprocess.run([sys.executable, "-c", READ, how], capture_output=True, text=True,
                                           check=True, env=env).stdout)
            for how in ("here", "dask")}
    assert read["here"].pop("dask imported") is False and read["dask"].pop("dask imported") is True
    assert read["here"] == read["dask"]
    settings = read["here"]["settings"]
    assert (settings["sort-memory"], settings["threads"], settings["compression-level"]) == ("2G", 3, 4)
    assert settings["split"]["part-size"] == 64 * 2**20 and settings["cluster"]["worker-ttl"] == 120
    assert settings["task-timeout"] == 5400 and settings["source"]["min-rate"] == 2**20
    assert settings["keep-public-urls"] is True and settings["source"]["drs-access-schemes"] == ["https", "s3"]
    assert read["here"]["options"] == {"anon": True, "Key_Name": "kept-as-written", "timeout": 30}


@pytest.mark.parametrize("text", ["16KiB", "2MB", "1.5 GiB", "5", "kB", "", "3k", "2mi", "1e3", "lots", "2XB",
                                  "-4B", "0.5PB"])
def test_sizes_read_as_dask_reads_them(text):
    """source.min-rate, a size, read without dask: what dask.utils.parse_bytes makes of it, or refused."""
    from dask.utils import parse_bytes

    try:
        expected = parse_bytes(text)
    except ValueError:
        expected = -1  # refused, as a negative rate is
    if expected < 0:
        with pytest.raises(ConfigError, match="source.min-rate"):
            load_settings(**{"source.min-rate": text})
    else:
        assert load_settings(**{"source.min-rate": text}).source.min_rate == expected


@pytest.mark.parametrize("text", ["90s", "2h", "10m", "1.5 hours", "250ms", "3", "0.5", "h", "2 Weeks", "5 days",
                                  "1e2s", "soon", "3x", "-5s", ".5s"])
def test_durations_read_as_dask_reads_them(text):
    """task-timeout, a duration, read without dask: what dask.utils.parse_timedelta makes of it, or refused."""
    from dask.utils import parse_timedelta

    try:
        expected = parse_timedelta(text)
    except (ValueError, KeyError):
        with pytest.raises(ConfigError, match="task-timeout"):
            load_settings(**{"task-timeout": text})
    else:
        assert load_settings(**{"task-timeout": text}).task_timeout == expected
