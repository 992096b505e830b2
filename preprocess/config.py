"""Settings in the dask.config namespace "preprocess", validated by pydantic (the schema)."""

from __future__ import annotations

import copy
import pathlib
import re
from typing import Annotated, Any, Literal

import dask.config
import yaml
from pydantic import BaseModel, ConfigDict, Field, Secret, ValidationError, field_validator

from .errors import ConfigError
from .model import validation_reasons
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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=lambda n: n.replace("_", "-"))


class StoreSettings(_Section):
    """`url` prints without credentials; `storage_options` (keys, SAS tokens, connection strings) are a
    Secret: hidden from repr and JSON, and withheld (None) from the settings a task carries to a worker,
    which takes them from its own configuration instead (`options()`)."""

    url: Url
    storage_options: Secret[dict[str, Any]] | None = Field(default_factory=lambda: Secret({}))
    verify: Literal["sha256", "size"] = "sha256"

    def options(self) -> dict[str, Any]:
        """The storage options to open the store with: this process's own configuration when withheld."""
        if self.storage_options is None:
            return dict(dask.config.get("preprocess.store.storage-options", default=None) or {})
        return dict(self.storage_options.get_secret_value())


class ClusterSettings(_Section):
    profile: Literal["local", "sync", "address", "fargate"] = "local"
    address: str | None = None
    n_workers: int | None = Field(default=None, ge=1)
    threads_per_worker: int | None = Field(default=None, ge=1)
    dashboard_address: str | None = "127.0.0.1:0"
    worker_ttl: float | None = Field(default=60, gt=0)
    fargate: dict[str, Any] = Field(default_factory=dict)

    _ttl = field_validator("worker_ttl", mode="before")(lambda v: _seconds(v))


class SourceSettings(_Section):
    timeout: float = Field(default=60, gt=0)
    attempts: int = Field(default=4, ge=1)
    backoff: float = Field(default=1.0, ge=0)
    drs_scheme: Literal["https", "http"] = "https"
    drs_access_schemes: list[str] = Field(default_factory=lambda: ["https", "s3", "az", "gs"])


class SplitSettings(_Section):
    """When one SAM/BAM is sorted across workers (preprocess/split.py): never below min-size bytes."""

    min_size: int = Field(default=16 * 2**30, ge=0)
    parts: int | None = Field(default=None, ge=1)

    @field_validator("min_size", mode="before")
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
        role or dask configuration."""
        return self.model_copy(update={"store": self.store.model_copy(update={"storage_options": None})})

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
