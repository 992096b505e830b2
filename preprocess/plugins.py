"""What a client installs on the cluster it uses: a scratch sweep on every worker, a worker-ttl, and
(on a cluster whose workers this process did not start) the key that opens the URLs its tasks carry.

Imported only once work goes to a cluster (it imports distributed). The scheduler keeps registered
plugins and hands them to workers that join later, so a worker restarted after a crash sweeps its
predecessor's scratch before it runs a task.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

from .config import Settings
from .scratch import sweep_stale
from .urls import add_key, seal_key

log = logging.getLogger("preprocess")


class SweepScratch(WorkerPlugin):
    """On each worker, remove task folders left by processes that have died (kill -9, OOM)."""

    name = "preprocess-sweep-scratch"

    def __init__(self, scratch: str | None) -> None:
        self.scratch = scratch

    def setup(self, worker: Any) -> None:
        for path in sweep_stale(self.scratch):
            log.info("removed %s, left by a process that no longer runs", path)


class SealKey(WorkerPlugin):
    """On each worker, the key the client seals its tasks' URLs with (preprocess/urls.py), so the worker
    can open them at the I/O call. Registered only where the workers cannot have it otherwise; the
    key then crosses the scheduler once, never beside the sealed URLs in a task."""

    idempotent = True  # the name is the key's fingerprint: registered again, it is the same plugin

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.name = f"preprocess-seal-key-{hmac.new(key, b'name', 'sha256').hexdigest()[:12]}"

    def __repr__(self) -> str:  # never the key, whoever prints the plugin
        return f"SealKey({self.name})"

    def setup(self, worker: Any) -> None:
        add_key(self.key)


class WorkerTTL(SchedulerPlugin):
    """Lower the scheduler's worker-ttl to ours, so a frozen worker's tasks move on after `seconds`."""

    idempotent = True  # registered by every batch: once per value is enough (a second would warn)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.name = f"preprocess-worker-ttl-{seconds:g}s"

    async def start(self, scheduler: Any) -> None:
        from tornado.ioloop import PeriodicCallback

        if scheduler.worker_ttl and scheduler.worker_ttl <= self.seconds:
            return  # never raise a limit the scheduler's own configuration made lower
        scheduler.worker_ttl = self.seconds
        old = scheduler.periodic_callbacks.pop("worker-ttl", None)
        if old is not None:
            old.stop()
        check = PeriodicCallback(scheduler.check_worker_ttl, self.seconds * 1000)
        scheduler.periodic_callbacks["worker-ttl"] = check
        check.start()


def install(client: Any, settings: Settings, tell_key: bool = True) -> None:
    """Register our plugins with the client's cluster; a scheduler that cannot load them is told, not fatal.
    `tell_key`: the workers need this process's seal key (not for a local cluster it started, whose
    workers were given it at start, nor when preprocess-seal-key is configured on both sides)."""
    import dask.config

    from .urls import SEAL_CONFIG

    plugins: list[Any] = [SweepScratch(settings.scratch)]
    if tell_key and not dask.config.get(SEAL_CONFIG, default=None):
        plugins.append(SealKey(seal_key()))
    if settings.cluster.worker_ttl:
        plugins.append(WorkerTTL(settings.cluster.worker_ttl))
    for plugin in plugins:
        try:
            client.register_plugin(plugin)
        except Exception as exc:  # noqa: BLE001 - e.g. a scheduler without preprocess installed
            log.warning("could not install %s on the cluster: %s", plugin.name, exc)
