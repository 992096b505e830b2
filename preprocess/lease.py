"""A lease in the store, so two scheduled reindex runs of one store never overlap.

Leases are generations: `leases/<name>.<generation>.json`, each created only if absent (an
exclusive link locally, a conditional PUT with If-None-Match on S3, a conditional create on Azure:
`ArtifactStore._create`, the mechanism manifests use). The highest generation is the lease. A run
takes generation n+1 when n is released (deleted) or expired; of two runs racing for n+1 exactly
one create succeeds. A holder renews its lease (rewrites its expiry) every third of the expiry
while it runs, so only a dead or stalled holder's lease expires and is taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import PreprocessError
from .store import ArtifactStore

LEASES = "leases"
DEFAULT_EXPIRY = timedelta(hours=1)
_NAME = re.compile(r"^(?P<name>[a-z]+)\.(?P<gen>[0-9]{1,12})\.json$")


class LeaseHeld(PreprocessError):
    """Another live run holds the lease; the message says who, since when, and until when."""


@dataclass
class Lease:
    store: ArtifactStore
    name: str
    generation: int
    run: str
    expiry: timedelta
    taken_over: dict[str, Any] | None = None  # the expired lease this one replaced, if any
    lost: bool = False                         # a later generation appeared: someone took over
    acquired: datetime = field(default_factory=lambda: datetime.now(UTC))
    released: datetime | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def path(self) -> str:
        return _path(self.store, self.name, self.generation)

    def renew(self) -> None:
        """Push the expiry forward, unless a later generation shows the lease was taken over."""
        if _generations(self.store, self.name)[-1:] != [self.generation]:
            self.lost = True
            return
        _write(self.store, self.path, _body(self.run, self.expiry), exclusive=False)

    def keep_alive(self) -> None:
        """Renew in a background thread every third of the expiry until release()."""
        interval = max(self.expiry.total_seconds() / 3, 0.05)

        def loop() -> None:
            while not self._stop.wait(interval):
                with contextlib.suppress(Exception):  # a failed renewal is retried; expiry is the bound
                    self.renew()

        self._thread = threading.Thread(target=loop, name=f"lease-{self.name}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(FileNotFoundError):
            self.store.fs.rm_file(self.path)
        self.released = datetime.now(UTC)

    def info(self) -> dict[str, Any]:
        """What a report and a run record say about the lease."""
        def stamp(when: datetime | None) -> str | None:
            return when.isoformat(timespec="milliseconds") if when else None

        return {"generation": self.generation, "expiry_seconds": self.expiry.total_seconds(),
                "acquired": stamp(self.acquired), "released": stamp(self.released), "taken_over": self.taken_over,
                "lost": self.lost}

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(store: ArtifactStore, name: str = "reindex", expiry: timedelta = DEFAULT_EXPIRY,
            wait: float = 0, poll: float = 1.0, on_wait: Callable[[str], None] | None = None) -> Lease:
    """Take the store's `name` lease, waiting up to `wait` seconds for a live holder to finish (told
    once to `on_wait`); LeaseHeld when it does not. An expired lease is taken over (`taken_over`)."""
    run = uuid.uuid4().hex[:12]
    deadline = time.monotonic() + wait
    told = False
    while True:
        generations = _generations(store, name)
        top = generations[-1] if generations else 0
        holder = _read(store, _path(store, name, top)) if top else None
        if top and holder is not None and not _expired(holder):
            if time.monotonic() >= deadline:
                raise LeaseHeld(_held_message(store, holder))
            if on_wait and not told:
                on_wait(f"waiting up to {wait:g}s: {_held_message(store, holder).split('; ')[0]}")
                told = True
            time.sleep(max(0.0, min(poll, deadline - time.monotonic())))
            continue
        if top and holder is None and _exists(store, _path(store, name, top)):
            holder = {"unreadable": True}  # not parseable: treat as expired, it cannot be renewed
        try:
            _write(store, _path(store, name, top + 1), _body(run, expiry), exclusive=True)
        except FileExistsError:
            continue  # another run took this generation first: look again
        lease = Lease(store, name, top + 1, run, expiry, taken_over=holder if top and holder else None)
        for old in generations:  # released or expired leftovers below ours
            with contextlib.suppress(FileNotFoundError):
                store.fs.rm_file(_path(store, name, old))
        return lease


def _held_message(store: ArtifactStore, holder: dict[str, Any]) -> str:
    return (f"another reindex of {store.url} is running: run {holder.get('run')} on host {holder.get('host')} "
            f"(pid {holder.get('pid')}) holds the lease since {holder.get('acquired')}, renewed until "
            f"{holder.get('expires')}; a lease not renewed by then is taken over. Try again later, "
            "or wait for it with --wait SECONDS")


def _path(store: ArtifactStore, name: str, generation: int) -> str:
    return f"{store.root}/{LEASES}/{name}.{generation:012d}.json"


def _body(run: str, expiry: timedelta) -> bytes:
    now = datetime.now(UTC)
    return json.dumps({"run": run, "host": socket.gethostname(), "pid": os.getpid(),
                       "acquired": now.isoformat(timespec="seconds"), "expiry_seconds": expiry.total_seconds(),
                       "expires": (now + expiry).isoformat(timespec="milliseconds")}).encode()


def _expired(holder: dict[str, Any]) -> bool:
    try:
        return datetime.fromisoformat(str(holder["expires"])) <= datetime.now(UTC)
    except (KeyError, ValueError):
        return True


def _generations(store: ArtifactStore, name: str) -> list[int]:
    folder = f"{store.root}/{LEASES}"
    try:
        if store.local:
            names = os.listdir(folder)
        else:
            store.fs.invalidate_cache(folder)
            names = [p.rsplit("/", 1)[-1] for p in store.fs.ls(folder, detail=False)]
    except FileNotFoundError:
        return []
    found = (_NAME.match(n) for n in names)
    return sorted(int(m["gen"]) for m in found if m and m["name"] == name)


def _read(store: ArtifactStore, path: str) -> dict[str, Any] | None:
    try:
        data = json.loads(store.fs.cat_file(path))
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _exists(store: ArtifactStore, path: str) -> bool:
    try:
        store.fs.info(path)
    except FileNotFoundError:
        return False
    return True


def _write(store: ArtifactStore, path: str, body: bytes, exclusive: bool) -> None:
    if store.local:
        store.make_folders(path)  # never through a symlink in the store's own folders
    if exclusive:
        store._create(path, body)
    elif store.local:
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as stream:
            stream.write(body)
        os.replace(tmp, path)
    else:
        store.fs.pipe_file(path, body)
