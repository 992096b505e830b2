import subprocess
import sys

import pytest
import yaml

from preprocess.config import DEFAULTS_PATH, Settings, load_settings
from preprocess.errors import ConfigError


def _keys(model: type, prefix: str = "") -> set[str]:
    found = set()
    for name, field in model.model_fields.items():
        key = prefix + name.replace("_", "-")
        found.add(key)
        sub = field.annotation
        if isinstance(sub, type) and hasattr(sub, "model_fields"):
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
    Settings.model_validate(shipped)


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
