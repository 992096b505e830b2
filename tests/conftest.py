"""Shared fixtures: settings on a temp store, sample files made by tests/samples.py."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from preprocess.config import Settings, load_settings


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def settings(store_dir: Path, tmp_path: Path) -> Settings:
    """In-process execution (profile sync) against a fresh local store; scratch under tmp_path."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return load_settings(**{"store.url": str(store_dir), "cluster.profile": "sync", "scratch": str(scratch)})


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


def process_gone(pid: int, wait: float = 5.0) -> bool:
    """True once pid has exited, waiting up to `wait` seconds (a zombie awaiting its reaper counts as gone)."""
    import time

    deadline = time.monotonic() + wait
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def store_files(store: Path) -> list[Path]:
    """Every file in a store, temp files included: what a failed build must not leave behind."""
    return sorted(p for p in store.rglob("*") if p.is_file()) if store.exists() else []


@pytest.fixture(params=["local", "file-url", "memory", "s3", "az", "abfs"])
def any_store(request, tmp_path: Path):
    """The same ArtifactStore contract on every backend: S3 on moto, Azure Blob on Azurite."""
    import uuid

    from preprocess.store import ArtifactStore

    if request.param == "local":
        return ArtifactStore(str(tmp_path / "store"))
    if request.param == "file-url":
        return ArtifactStore(f"file://{tmp_path}/store")
    if request.param == "memory":
        return ArtifactStore(f"memory://store-{uuid.uuid4().hex}")
    if request.param == "s3":
        return ArtifactStore(f"s3://{request.getfixturevalue('s3_bucket')}/prefix")
    return ArtifactStore(f"{request.param}://{request.getfixturevalue('az_container')}/prefix")


# -- loopback only --------------------------------------------------------------------------------
from tests.loopback_site import loopback_guard  # noqa: E402

GUARD_SITE = Path(__file__).resolve().parent / "loopback_site"
# Every Python process a test starts (Dask workers, the CLI, servers) imports the guard at start-up.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(GUARD_SITE), os.environ.get("PYTHONPATH")) if p)


@pytest.fixture(autouse=True, scope="session")
def loopback_only():
    """Any connection this test process opens to a non-loopback address fails."""
    loopback_guard.install()
    yield
    loopback_guard.uninstall()


# -- real S3 (moto) and Azure Blob (Azurite) --------------------------------------------------------
@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server, reached through the standard AWS variables alone."""
    from tests.servers import moto_server

    with moto_server() as endpoint:
        saved = {k: os.environ.get(k) for k in _AWS}
        os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing-key-id",
                           "AWS_SECRET_ACCESS_KEY": "testing-secret-key", "AWS_DEFAULT_REGION": "us-east-1"})
        yield endpoint
        _restore(saved)


@pytest.fixture(scope="session")
def azurite_connection(tmp_path_factory):
    """Azurite's blob service, reached through AZURE_STORAGE_CONNECTION_STRING alone."""
    from tests.servers import azurite

    with azurite(tmp_path_factory.mktemp("azurite")) as connection:
        saved = {"AZURE_STORAGE_CONNECTION_STRING": os.environ.get("AZURE_STORAGE_CONNECTION_STRING")}
        os.environ["AZURE_STORAGE_CONNECTION_STRING"] = connection
        yield connection
        _restore(saved)


_AWS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


def _restore(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def s3_bucket(s3_endpoint) -> str:
    import uuid

    import s3fs

    name = f"bucket-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(skip_instance_cache=True).mkdir(name)
    return name


@pytest.fixture
def az_container(azurite_connection) -> str:
    import uuid

    import adlfs

    name = f"c{uuid.uuid4().hex[:12]}"
    adlfs.AzureBlobFileSystem(connection_string=azurite_connection, skip_instance_cache=True).mkdir(name)
    return name
