"""Settings in the dask.config namespace "preprocess", validated by pydantic (the schema)."""

from __future__ import annotations

import copy
import pathlib
import re
from typing import Annotated, Any, Literal

import dask.config
import yaml
from pydantic import BaseModel, ConfigDict, Field, Secret, ValidationError, field_validator

from .errors import ConfigError, validation_reasons
from .urls import Url

DEFAULTS_PATH = pathlib.Path(__file__).with_name("preprocess.yaml")


def _seconds(value: Any) -> Any:
    """"90s", "2h", 30 -> seconds (dask's own parser); None stays None (no limit)."""
    if value is None or isinstance(value, int | float):
        return value
    from dask.utils import parse_timedelta

    try:
        return parse_timedelta(value)
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"expected a duration such as 90s, 10m or 2h, got {value!r}") from None


def _size(value: Any) -> Any:
    """"16KiB", "2MB", 1024 -> bytes (dask's own parser)."""
    if not isinstance(value, str):
        return value
    from dask.utils import parse_bytes

    try:
        return parse_bytes(value)
    except (ValueError, TypeError):
        raise ValueError(f"expected a size such as 16KiB or 2MB, got {value!r}") from None


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=lambda n: n.replace("_", "-"))


class StoreSettings(_Section):
    """`url` prints without credentials; `storage_options` (keys, SAS tokens, connection strings) are a
    Secret: hidden from repr and JSON, and withheld (None) from the settings a task carries to a worker,
    which takes them from its own configuration instead (`options()`)."""

    url: Url
    storage_options: Secret[dict[str, Any]] | None = Field(default_factory=lambda: Secret({}))
    verify: Literal["sha256", "size"] = "sha256"
    signing_key: str | None = None  # path of an Ed25519 private key PEM: every manifest is signed (signing.py)
    verify_key: str | None = None   # path of the public key PEM: every manifest read is checked

    def options(self) -> dict[str, Any]:
        """The storage options to open the store with: this process's own configuration when withheld."""
        if self.storage_options is None:
            return dict(dask.config.get("preprocess.store.storage-options", default=None) or {})
        return dict(self.storage_options.get_secret_value())


class ClusterSettings(_Section):
    profile: Literal["auto", "local", "sync", "address", "fargate"] = "auto"
    address: str | None = None
    n_workers: int | None = Field(default=None, ge=1)
    threads_per_worker: int | None = Field(default=None, ge=1)
    dashboard_address: str | None = "127.0.0.1:0"
    worker_ttl: float | None = Field(default=60, gt=0)
    fargate: dict[str, Any] = Field(default_factory=dict)

    _ttl = field_validator("worker_ttl", mode="before")(lambda v: _seconds(v))


class SourceSettings(_Section):
    timeout: float = Field(default=60, gt=0)
    min_rate: int = Field(default=16 * 2**10, ge=0)
    attempts: int = Field(default=4, ge=1)
    backoff: float = Field(default=1.0, ge=0)
    drs_scheme: Literal["https", "http"] = "https"
    drs_access_schemes: list[str] = Field(default_factory=lambda: ["https", "s3", "az", "gs"])

    _rate = field_validator("min_rate", mode="before")(lambda v: _size(v))


class SplitSettings(_Section):
    """A BAM of more than part-size bytes is built in parts (the key's parameter part_size), which the
    workers of a cluster sort side by side (preprocess/split.py); the bytes are the same on one worker."""

    part_size: int = Field(default=256 * 2**20, ge=1)

    @field_validator("part_size", mode="before")
    @classmethod
    def _bytes(cls, value: Any) -> Any:
        from dask.utils import parse_bytes

        return parse_bytes(value) if isinstance(value, str) else value


class Settings(_Section):
    """The whole namespace; each field is documented in preprocess.yaml."""

    store: StoreSettings
    cluster: ClusterSettings
    scratch: str | None = None
    threads: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    sort_memory: str = "768M"
    compression_level: int = Field(default=6, ge=0, le=9)
    cram_output: Literal["cram", "bam"] = "cram"
    unreachable_reads: Literal["build", "refuse"] = "build"
    keep_public_urls: bool = False
    source: SourceSettings
    task_timeout: float | None = Field(default=None, gt=0)
    split: SplitSettings = Field(default_factory=SplitSettings)

    _timeout = field_validator("task_timeout", mode="before")(lambda v: _seconds(v))

    def for_workers(self) -> Settings:
        """These settings without secret values, as a task carries them to a worker (whose logs may
        print its arguments): a worker resolves the store's credentials from its own environment,
        role or dask configuration; the cluster's options (Fargate's may hold keys) stay here."""
        return self.model_copy(update={"store": self.store.model_copy(update={"storage_options": None}),
                                       "cluster": self.cluster.model_copy(update={"fargate": {}})})

    @field_validator("sort_memory")
    @classmethod
    def _check_memory(cls, value: str) -> str:
        if not re.fullmatch(r"[1-9][0-9]*[KMG]?", str(value)):
            raise ValueError(f"sort-memory must look like 768M or 2G, got {value!r}")
        return str(value)


def _register_defaults() -> None:
    with DEFAULTS_PATH.open() as stream:
        dask.config.update_defaults(yaml.safe_load(stream))


_register_defaults()


def load_settings(**overrides: Any) -> Settings:
    """Settings from dask.config, with dotted-key overrides (`store.url=...`) applied on top."""
    with dask.config.set({f"preprocess.{k}": v for k, v in overrides.items() if v is not None}):
        raw = copy.deepcopy(dask.config.get("preprocess"))  # set() restores the same dicts on exit
    try:
        return Settings.model_validate(_dashes(raw))
    except ValidationError as exc:
        raise ConfigError(f"invalid preprocess configuration: {validation_reasons(exc)}") from None


_OPAQUE = {"storage-options", "fargate"}  # passed to other libraries as written


def _dashes(value: Any) -> Any:
    # dask.config canonicalizes "_" and "-" in lookups but stores keys as written; the schema uses "-".
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        name = key.replace("_", "-") if isinstance(key, str) else key
        out[name] = item if name in _OPAQUE else _dashes(item)
    return out


# -- settings given on the command line, and where each setting in effect came from -----------------
_HIDDEN = "**********"
_SECRET_NAME = re.compile(r"key|secret|token|password|credential|connection|sas|sig", re.I)


def parse_assignment(text: str) -> tuple[str, Any]:
    """`--set KEY=VALUE` -> (dashed dotted key, value read as YAML: 4 is a number, 2G and 6h are text)."""
    key, sep, value = text.partition("=")
    key = key.strip().removeprefix("preprocess.")
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set threads=4 or --set store.url=s3://b/p")
    names: list[str] = []
    for part in key.split("."):  # inside storage-options or fargate, names go to other libraries as written
        names.append(part if any(n in _OPAQUE for n in names) else part.replace("_", "-"))
    dotted = ".".join(names)
    known = _leaves(_shipped_defaults())
    if not any(dotted == k or dotted.startswith(k + ".") and k.rsplit(".", 1)[-1] in _OPAQUE for k in known):
        raise ConfigError(f"--set {text!r}: no setting {dotted!r}; the settings are {', '.join(sorted(known))}")
    try:
        return dotted, yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        return dotted, value


class SettingSource(BaseModel):
    """One setting in effect: its value (secrets hidden), and where it came from."""

    key: str
    value: Any
    source: Literal["default", "YAML", "environment", "flag"]
    where: str = ""  # the YAML file, the environment variable or the flag


def describe_settings(flags: dict[str, tuple[Any, str]]) -> list[SettingSource]:
    """Every setting in effect with `flags` (dotted key -> (value, the flag as typed)) applied on top,
    each with its source: a flag beats the environment (DASK_PREPROCESS__…), which beats a YAML file in
    dask's config paths, which beats the shipped default (preprocess.yaml)."""
    settings = load_settings(**{key: value for key, (value, _) in flags.items()})
    origins: dict[str, tuple[str, str]] = {}  # key -> (source, where), the lowest precedence first
    for path, data in dask.config.collect_yaml(dask.config.paths, return_paths=True):
        for key in _leaves(_dashes((data or {}).get("preprocess") or {})):
            origins[key] = ("YAML", str(path))
    import os

    for name in sorted(os.environ):
        if name.upper().startswith("DASK_PREPROCESS__"):
            key = ".".join(p.replace("_", "-") for p in name[len("DASK_PREPROCESS__"):].lower().split("__"))
            origins[key] = ("environment", name)
    for key, (_, flag) in flags.items():
        origins[key] = ("flag", flag)
    current = settings.model_dump(by_alias=True, mode="json")
    current["store"]["url"] = str(settings.store.url)
    secret = settings.store.storage_options
    current["store"]["storage-options"] = {k: _HIDDEN for k in (secret.get_secret_value() if secret else {})}
    out = []
    for key, value in _leaves(current).items():
        touching = [name for name in origins if name == key or name.startswith(key + ".") or key.startswith(name + ".")]
        ranked = ["default", "YAML", "environment", "flag"]
        source, where = max((origins[name] for name in touching), key=lambda o: ranked.index(o[0]),
                            default=("default", ""))
        out.append(SettingSource(key=key, value=_hide(value), source=source, where=where))  # type: ignore[arg-type]
    return out


def _shipped_defaults() -> dict[str, Any]:
    with DEFAULTS_PATH.open() as stream:
        return dict(yaml.safe_load(stream)["preprocess"])


def _leaves(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value for every setting; the opaque ones (storage-options, fargate) are one leaf."""
    out: dict[str, Any] = {}
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict) and name not in _OPAQUE and value:
            out.update(_leaves(value, key + "."))
        else:
            out[key] = value
    return out


def _hide(value: Any, name: str = "") -> Any:
    """Values under a credential-like name (key, secret, token, connection string, SAS) or in a
    container's `environment` are replaced: `config` output is safe to paste into an issue."""
    if isinstance(value, dict):
        return {k: _HIDDEN if name == "environment" or _SECRET_NAME.search(str(k)) else _hide(v, str(k))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_hide(v, name) for v in value]
    return value
