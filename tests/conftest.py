"""Shared fixtures: settings on a temp store, sample files made by tests/samples.py."""

from __future__ import annotations

import hashlib
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


def store_files(store: Path) -> list[Path]:
    """Every file in a store, temp files included: what a failed build must not leave behind."""
    return sorted(p for p in store.rglob("*") if p.is_file()) if store.exists() else []


@pytest.fixture(params=["local", "memory"])
def any_store(request, tmp_path: Path):
    """The same ArtifactStore contract on every backend; cloud backends join in tests/integration."""
    from preprocess.store import ArtifactStore

    if request.param == "local":
        return ArtifactStore(str(tmp_path / "store"))
    import uuid

    return ArtifactStore(f"memory://store-{uuid.uuid4().hex}")
