"""A lease in the store, so two scheduled reindex runs of one store never overlap.

Leases are generations: `leases/<name>.<generation>.json`. The highest generation is the lease.
Every write is conditional, through the store's own primitives (`ArtifactStore.put_if`: an exclusive
link or an flock-guarded compare locally, If-None-Match / If-Match PUTs on S3, ETag conditions on
Azure), so no run ever overwrites a lease it does not hold:

- taking: generation n+1 is created only if absent, once n is released, or expired and claimed;
  of two runs racing for n+1 exactly one create succeeds.
- claiming an expired lease: n is rewritten as taken over, on the condition that it is still the
  version judged expired. A renewal in between makes the claim fail, so a live lease is never taken.
- renewing: the holder rewrites its expiry every third of it, on the condition that the lease is
  still the version it last wrote. A holder whose lease was claimed learns so at that renewal
  (`lost`), calls `on_lost`, and stops renewing; reindex then stops with LeaseLost.
- releasing: a conditional rewrite marking the lease released (never a delete, so generation
  numbers only grow and a late release can never touch a later holder's lease).

Expiry is judged by the store's clock alone: a lease is expired when the store's time now (the
timestamp of a probe it writes) is more than the expiry past the store's timestamp of the lease's
last renewal, plus the store's timestamp resolution (1 s on S3 and Azure). No host's clock enters.
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
from .store import ArtifactStore, Conflict, Versioned

LEASES = "leases"
DEFAULT_EXPIRY = timedelta(hours=1)
_NAME = re.compile(r"^(?P<name>[a-z]+)\.(?P<gen>[0-9]{1,12})\.json$")


class LeaseHeld(PreprocessError):
    """Another live run holds the lease; the message says who, since when, and until when."""


class LeaseLost(PreprocessError):
    """This run's lease was taken over (it was not renewed in time): the run stopped."""


@dataclass
class Lease:
    store: ArtifactStore
    name: str
    generation: int
    run: str
    expiry: timedelta
    tag: str = ""                              # the version last written: every renewal is conditional on it
    taken_over: dict[str, Any] | None = None  # the expired lease this one replaced, if any
    lost: bool = False                         # a renewal found the lease claimed by another run
    acquired: datetime = field(default_factory=lambda: datetime.now(UTC))
    released: datetime | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def path(self) -> str:
        return _path(self.store, self.name, self.generation)

    def renew(self) -> bool:
        """Push the expiry forward, only while the lease is still the version this run wrote last;
        False (and `lost`) when another run claimed it."""
        with self._lock:
            if self.lost or self.released:
                return not self.lost
            try:
                self.tag = self.store.put_if(self.path, _body(self.run, self.expiry), self.tag)
            except Conflict:
                self.lost = True
            return not self.lost

    def lost_message(self) -> str:
        holder = _read(self.store, _path(self.store, self.name, self.generation + 1)) or {}
        who = f"run {holder.get('run')} on host {holder.get('host')}" if holder else "another run"
        return (f"lost the {self.name} lease of {self.store.url}: it was not renewed within "
                f"{self.expiry.total_seconds():g}s (this process stalled, or the store was unreachable) and "
                f"{who} took it over; stopped so that two runs never work on the store at once. What this run "
                "committed is whole; the next run finishes the rest")

    def keep_alive(self, on_lost: Callable[[], None] | None = None) -> None:
        """Renew in a background thread every third of the expiry until release(); when a renewal
        finds the lease lost, call `on_lost` once and stop."""
        interval = max(self.expiry.total_seconds() / 3, 0.05)

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    if not self.renew():
                        if on_lost is not None:
                            on_lost()
                        return
                except Exception:  # noqa: BLE001, S112 - a failed renewal is retried; expiry is the bound
                    continue

        self._thread = threading.Thread(target=loop, name=f"lease-{self.name}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop renewing and mark the lease released (conditionally: a lost lease is left to its taker)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            if not self.lost and self.released is None:
                with contextlib.suppress(Conflict, FileNotFoundError):
                    body = json.loads(_body(self.run, self.expiry))
                    self.tag = self.store.put_if(self.path, json.dumps({**body, "released": True}).encode(),
                                                 self.tag)
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
    once to `on_wait`); LeaseHeld when it does not. An expired lease is claimed and taken over
    (`taken_over`: its holder)."""
    run = uuid.uuid4().hex[:12]
    deadline = time.monotonic() + wait
    told = False
    while True:
        generations = _generations(store, name)
        top = generations[-1] if generations else 0
        holder: dict[str, Any] | None = None
        if top:
            try:
                current = store.read_versioned(_path(store, name, top))
            except FileNotFoundError:
                current = None  # cleaned up by a run that took a later generation: look again below
            if current is not None:
                holder = _parse(current.data)
                if holder.get("taken_over_by"):
                    holder = holder.get("holder") or None  # claimed by another run, which races us for n+1
                elif holder.get("released"):
                    holder = None
                else:
                    until = _until(store, current, holder)
                    if until is not None and store.clock(f"{store.root}/{LEASES}") <= until:
                        if time.monotonic() >= deadline:
                            raise LeaseHeld(_held_message(store, holder, until))
                        if on_wait and not told:
                            on_wait(f"waiting up to {wait:g}s: "
                                    f"{_held_message(store, holder, until).split('; ')[0]}")
                            told = True
                        time.sleep(max(0.0, min(poll, deadline - time.monotonic())))
                        continue
                    claim = json.dumps({"taken_over_by": run, "host": socket.gethostname(), "holder": holder})
                    try:  # only while it is still the version judged expired: a renewal since makes this fail
                        store.put_if(_path(store, name, top), claim.encode(), current.tag)
                    except Conflict:
                        continue
        try:
            tag = store.put_if(_path(store, name, top + 1), _body(run, expiry), None)
        except FileExistsError:
            continue  # another run took this generation first: look again
        lease = Lease(store, name, top + 1, run, expiry, tag=tag, taken_over=holder)
        for old in generations:  # released or claimed: superseded by ours
            with contextlib.suppress(FileNotFoundError):
                store.remove(_path(store, name, old))
        return lease


def _until(store: ArtifactStore, current: Versioned, holder: dict[str, Any]) -> datetime | None:
    """The store time after which the lease is expired: its last write plus its expiry and the
    store's timestamp resolution; None when the lease cannot be read (taken over at once)."""
    try:
        expiry = timedelta(seconds=float(holder["expiry_seconds"]))
    except (KeyError, TypeError, ValueError):
        return None
    return current.modified + expiry + store.clock_resolution


def _held_message(store: ArtifactStore, holder: dict[str, Any], until: datetime) -> str:
    return (f"another reindex of {store.url} is running: run {holder.get('run')} on host {holder.get('host')} "
            f"(pid {holder.get('pid')}) holds the lease since {holder.get('acquired')}, renewed until "
            f"{until.isoformat(timespec='seconds')} by the store's clock; a lease not renewed by then is taken "
            "over. Try again later, or wait for it with --wait SECONDS")


def _path(store: ArtifactStore, name: str, generation: int) -> str:
    return f"{store.root}/{LEASES}/{name}.{generation:012d}.json"


def _body(run: str, expiry: timedelta) -> bytes:
    """A lease's bytes: who holds it, and a nonce, so that no two writes of it are ever the same version."""
    now = datetime.now(UTC)
    return json.dumps({"run": run, "host": socket.gethostname(), "pid": os.getpid(),
                       "acquired": now.isoformat(timespec="seconds"), "expiry_seconds": expiry.total_seconds(),
                       "expires": (now + expiry).isoformat(timespec="milliseconds"),  # the holder's clock: shown only
                       "nonce": uuid.uuid4().hex}).encode()


def _parse(data: bytes) -> dict[str, Any]:
    try:
        found = json.loads(data)
    except ValueError:
        return {"unreadable": True}
    return found if isinstance(found, dict) else {"unreadable": True}


def _generations(store: ArtifactStore, name: str) -> list[int]:
    names = store.names_in(f"{store.root}/{LEASES}")
    found = (_NAME.match(n) for n in names)
    return sorted(int(m["gen"]) for m in found if m and m["name"] == name)


def _read(store: ArtifactStore, path: str) -> dict[str, Any] | None:
    try:
        data = store.read_json(path)
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None
