"""Settings in the dask.config namespace "preprocess", checked by their records (the schema).

They are read as dask.config reads them (its YAML paths, then DASK_* variables), without importing
dask where the process has not: importing dask costs 0.2 s, most of a one-file run's start-up. Once
dask is imported (a notebook, a worker, a cluster's client), dask.config is read itself, so that its
`set()` counts."""

from __future__ import annotations

import ast
import copy
import os
import pathlib
import re
import site
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import field
from typing import Annotated, Any, Literal

import yaml

from .errors import ConfigError
from .records import Ge, Gt, Le, Match, Record, ValidationError
from .urls import Url

DEFAULTS_PATH = pathlib.Path(__file__).with_name("preprocess.yaml")


def _seconds(value: Any) -> Any:
    """"90s", "2h", 30 -> seconds (as dask.utils.parse_timedelta reads them); None stays None (no limit)."""
    if value is None or isinstance(value, int | float):
        return value
    try:
        if not isinstance(value, str):
            raise ValueError("not text")
        return _number_and_unit(value, _SECONDS, "seconds", whole=False)
    except (ValueError, KeyError, OverflowError):
        raise ValueError("expected a duration such as 90s, 10m or 2h") from None


def _size(value: Any) -> Any:
    """"16KiB", "2MB", 1024 -> bytes (as dask.utils.parse_bytes reads them)."""
    if not isinstance(value, str):
        return value
    try:
        return _number_and_unit(value, _BYTES, "", whole=True)
    except (ValueError, KeyError, OverflowError):
        raise ValueError("expected a size such as 16KiB or 2MB") from None


def _number_and_unit(text: str, units: Mapping[str, float], default: str, whole: bool) -> int | float:
    """A number and a unit ("1.5 GiB"; a unit alone means one of it): dask.utils.parse_bytes (`whole`)
    and parse_timedelta, rule for rule, so that reading settings needs no dask."""
    text = text.replace(" ", "")
    if not text and not whole:
        raise ValueError("no duration")
    if not (any(c.isdigit() for c in text) if whole else text[:1].isdigit()):
        text = f"1{text}"
    cut = len(text)
    while cut and text[cut - 1].isalpha():
        cut -= 1
    number = float(text[:cut])
    result = number * units[(text[cut:] or default).lower()]
    return int(result) if whole or int(result) == result else result


_BYTES: dict[str, float] = {"kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15, "kib": 2**10,
                            "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50, "b": 1, "": 1}
_BYTES.update({k[0]: v for k, v in list(_BYTES.items()) if k and "i" not in k})
_BYTES.update({k[:-1]: v for k, v in list(_BYTES.items()) if k and "i" in k})
_SECONDS: dict[str, float] = {"s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "m": 60, "h": 3600, "d": 86400,
                              "w": 604800, "second": 1, "minute": 60, "hour": 3600, "day": 86400,
                              "week": 604800, "millisecond": 1e-3, "microsecond": 1e-6, "nanosecond": 1e-9}
_SECONDS.update({f"{k}s": v for k, v in list(_SECONDS.items()) if len(k) > 2})


class Secret:
    """A value that prints, and is written to JSON, as `**********`; `reveal()` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: dict[str, Any]) -> None:
        self._value = value

    def reveal(self) -> dict[str, Any]:
        return self._value

    @classmethod
    def coerce(cls, value: Any) -> Secret:
        """A record field's check (records.py): a Secret as it is, else a mapping made one."""
        if isinstance(value, Secret):
            return value
        if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
            raise ValueError("must be a mapping of names")
        return cls(dict(value))

    def __str__(self) -> str:
        return _HIDDEN

    def __repr__(self) -> str:
        return f"Secret({_HIDDEN!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    __hash__ = None  # type: ignore[assignment]


class _Section(Record):
    _extra = "forbid"
    _dashed = True


class StoreSettings(_Section):
    """`url` prints without credentials; `storage_options` (keys, SAS tokens, connection strings) are a
    Secret: hidden from repr and JSON, and withheld (None) from the settings a task carries to a worker,
    which takes them from its own configuration instead (`options()`)."""

    url: Url
    storage_options: Secret | None = field(default_factory=lambda: Secret({}))
    verify: Literal["sha256", "size"] = "sha256"
    signing_key: str | None = None  # path of an Ed25519 private key PEM: every manifest is signed (signing.py)
    verify_key: str | None = None   # path of the public key PEM: every manifest read is checked

    def options(self) -> dict[str, Any]:
        """The storage options to open the store with: this process's own configuration when withheld."""
        if self.storage_options is None:
            return dict(dask_config().get("preprocess.store.storage-options", default=None) or {})
        return dict(self.storage_options.reveal())


class ClusterSettings(_Section):
    _before = {"worker_ttl": _seconds}

    profile: Literal["auto", "local", "sync", "address", "fargate"] = "auto"
    address: str | None = None
    n_workers: Annotated[int, Ge(1)] | None = None
    threads_per_worker: Annotated[int, Ge(1)] | None = None
    dashboard_address: str | None = "127.0.0.1:0"
    worker_ttl: Annotated[float, Gt(0)] | None = 60
    fargate: dict[str, Any] = field(default_factory=dict)


class SourceSettings(_Section):
    _before = {"min_rate": _size}

    timeout: Annotated[float, Gt(0)] = 60
    min_rate: Annotated[int, Ge(0)] = 16 * 2**10
    attempts: Annotated[int, Ge(1)] = 4
    backoff: Annotated[float, Ge(0)] = 1.0
    drs_scheme: Literal["https", "http"] = "https"
    drs_access_schemes: list[str] = field(default_factory=lambda: ["https", "s3", "az", "gs"])


class SplitSettings(_Section):
    """A BAM of more than min-size bytes is built in parts of about part-size bytes (both the key's
    parameters), which the workers of a cluster sort side by side (preprocess/split.py); the bytes are
    the same on one worker."""

    _before = {"min_size": _size, "part_size": _size}

    min_size: Annotated[int, Ge(0)] = 256 * 2**20
    part_size: Annotated[int, Ge(1)] = 64 * 2**20


class Settings(_Section):
    """The whole namespace; each field is documented in preprocess.yaml."""

    _before = {"task_timeout": _seconds}

    store: StoreSettings
    cluster: ClusterSettings
    scratch: str | None = None
    threads: Annotated[int, Ge(1)] | Literal["auto"] = "auto"
    sort_memory: Annotated[str, Match(r"[1-9][0-9]*[KMG]?", "must look like 768M or 2G")] = "768M"
    compression_level: Annotated[int, Ge(0), Le(9)] = 6
    cram_output: Literal["cram", "bam"] = "cram"
    unreachable_reads: Literal["build", "refuse"] = "build"
    keep_public_urls: bool = False
    source: SourceSettings
    task_timeout: Annotated[float, Gt(0)] | None = None
    split: SplitSettings = field(default_factory=SplitSettings)

    def for_workers(self) -> Settings:
        """These settings without secret values, as a task carries them to a worker (whose logs may
        print its arguments): a worker resolves the store's credentials from its own environment,
        role or dask configuration; the cluster's options (Fargate's may hold keys) stay here."""
        return self.replace(store=self.store.replace(storage_options=None), cluster=self.cluster.replace(fargate={}))


def dask_config() -> Any:
    """dask.config, imported, with the shipped defaults registered (once): for the code that imports
    dask anyway (a cluster's client, a worker reading its own store options)."""
    import dask.config

    with _LOCK:
        if not _REGISTERED:
            dask.config.update_defaults({"preprocess": _shipped_defaults()})
            _REGISTERED.append(True)
    return dask.config


_LOCK = threading.Lock()
_REGISTERED: list[bool] = []  # the shipped defaults are in dask.config.defaults


_FLAGS: list[dict[str, Any]] = []  # the --set KEY=VALUE of the command running (dashed dotted keys)


@contextmanager
def flags_applied(flags: Mapping[str, Any]) -> Iterator[None]:
    """`--set` values over every other source for the command's duration (`active_flags()` hands them
    to the dask config of a cluster the command starts)."""
    _FLAGS.append(dict(flags))
    try:
        yield
    finally:
        _FLAGS.pop()


def active_flags() -> dict[str, Any]:
    """The `--set` values in effect, as dask.config keys ("preprocess.threads": 4)."""
    return {f"preprocess.{key}": value for flags in _FLAGS for key, value in flags.items()}


def load_settings(**overrides: Any) -> Settings:
    """Settings from the configuration (`--set` flags on top), with dotted-key overrides
    (`store.url=...`) applied last."""
    tree = _configured()
    for key, value in [*active_flags().items(), *((f"preprocess.{k}", v) for k, v in overrides.items()
                                                  if v is not None)]:
        _assign(tree, key.split(".")[1:], value)
    try:
        return Settings.from_dict(_dashes(tree))
    except ValidationError as exc:
        raise ConfigError(f"invalid preprocess configuration: {exc}") from None


def _configured() -> dict[str, Any]:
    """A copy of the namespace as dask.config holds it: from dask.config once dask is imported (or a
    parent process handed its config down), else read here the way dask.config reads it."""
    if "dask.config" in sys.modules or "DASK_INTERNAL_INHERIT_CONFIG" in os.environ:
        return copy.deepcopy(dask_config().get("preprocess"))
    collected: dict[str, Any] = {}
    for layer in reversed([data for _, data in yaml_files()] + [_environment()]):  # dask.config.collect
        _update(collected, layer, keep_old=True)
    tree = collected.get("preprocess")
    tree = tree if isinstance(tree, dict) else {}
    _update(tree, _shipped_defaults(), keep_old=True)  # update_defaults: a value given stands
    return tree


def yaml_paths() -> list[str]:
    """The folders and files dask.config reads YAML from, lowest precedence first (its _get_paths)."""
    paths = [os.getenv("DASK_ROOT_CONFIG", "/etc/dask"), os.path.join(sys.prefix, "etc", "dask"),
             *[os.path.join(prefix, "etc", "dask") for prefix in site.PREFIXES],
             os.path.join(os.path.expanduser("~"), ".config", "dask")]
    if "DASK_CONFIG" in os.environ:
        paths.append(os.environ["DASK_CONFIG"])
    return list(reversed(list(dict.fromkeys(reversed(paths)))))


def yaml_files() -> Iterator[tuple[pathlib.Path, dict[str, Any]]]:
    """Each YAML or JSON file of `yaml_paths()` and what it holds, as dask.config.collect_yaml finds them."""
    found: list[str] = []
    for path in yaml_paths():
        if os.path.isdir(path):
            try:
                found.extend(sorted(os.path.join(path, name) for name in os.listdir(path)
                                    if os.path.splitext(name)[1].lower() in (".json", ".yaml", ".yml")))
            except OSError:
                pass
        elif os.path.exists(path):
            found.append(path)
    for path in found:
        try:
            with open(path) as stream:
                data = _yaml(stream.read())
        except OSError:
            continue
        except Exception as exc:  # noqa: BLE001 - dask.config refuses such a file at import, as this does
            raise ConfigError(f"the dask config file {path} is malformed: {exc}") from None
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"the dask config file {path} is malformed: its top level is a "
                              f"{type(data).__name__}, not a mapping")
        if data is not None:
            yield pathlib.Path(path), data


def _environment() -> dict[str, Any]:
    """DASK_A__B_C=value -> {"a": {"b_c": value}}, the value read as a Python literal (collect_env)."""
    out: dict[str, Any] = {}
    for name, text in os.environ.items():
        if name.startswith("DASK_"):
            try:
                value = ast.literal_eval(text)
            except (SyntaxError, ValueError):
                value = {"none": None, "null": None, "false": False, "true": True}.get(text.lower(), text)
            _assign(out, name[5:].lower().replace("__", ".").split("."), value)
    return out


def _canonical(key: str, tree: Mapping[str, Any]) -> str:
    """The spelling already in `tree` of a key written with "_" or "-" (dask.config.canonical_name)."""
    if key in tree:
        return key
    other = key.replace("_", "-") if "_" in key else key.replace("-", "_")
    return other if other in tree else key


def _assign(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    """tree[k1][k2]… = value, each key spelt as the tree already spells it (dask.config.set)."""
    key = _canonical(keys[0], tree)
    if len(keys) == 1:
        tree[key] = value
        return
    if not isinstance(tree.get(key), dict):
        tree[key] = {}
    _assign(tree[key], keys[1:], value)


def _update(old: dict[str, Any], new: Mapping[str, Any], keep_old: bool = False) -> None:
    """Merge `new` into `old`, nested (dask.config.update; `keep_old`: its priority "old")."""
    for name, value in new.items():
        key = _canonical(name, old)
        if isinstance(value, Mapping):
            if not isinstance(old.get(key), dict):
                old[key] = {}
            _update(old[key], value, keep_old)
        elif not keep_old or key not in old:
            old[key] = value


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


class SettingSource(Record):
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
    for path, data in yaml_files():
        for key in _leaves(_dashes(data.get("preprocess") or {})):
            origins[key] = ("YAML", str(path))
    for name in sorted(os.environ):
        if name.upper().startswith("DASK_PREPROCESS__"):
            key = ".".join(p.replace("_", "-") for p in name[len("DASK_PREPROCESS__"):].lower().split("__"))
            origins[key] = ("environment", name)
    for key, (_, flag) in flags.items():
        origins[key] = ("flag", flag)
    current = settings.to_dict()
    secret = settings.store.storage_options
    current["store"]["storage-options"] = {k: _HIDDEN for k in (secret.reveal() if secret else {})}
    out = []
    for key, value in _leaves(current).items():
        touching = [name for name in origins if name == key or name.startswith(key + ".") or key.startswith(name + ".")]
        ranked = ["default", "YAML", "environment", "flag"]
        source, where = max((origins[name] for name in touching), key=lambda o: ranked.index(o[0]),
                            default=("default", ""))
        out.append(SettingSource(key=key, value=_hide(value), source=source, where=where))  # type: ignore[arg-type]
    return out


def _yaml(text: str) -> Any:
    """yaml.safe_load through libyaml where PyYAML has it: the same documents, read 10x faster (the
    shipped defaults, mostly comments, took 4 ms)."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader


def _shipped_defaults() -> dict[str, Any]:
    """preprocess.yaml's namespace, read once a process; a copy each call."""
    if not _SHIPPED:
        with DEFAULTS_PATH.open() as stream:
            _SHIPPED.update(_yaml(stream.read())["preprocess"])
    return copy.deepcopy(_SHIPPED)


_SHIPPED: dict[str, Any] = {}


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
