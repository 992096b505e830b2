"""A distributed.Client for the configured profile: local (or auto), address, fargate; or none for sync."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .config import ClusterSettings
from .errors import ConfigError


@contextmanager
def open_client(settings: ClusterSettings) -> Iterator[Any | None]:
    """Yield a connected Client (None for profile "sync"); close what this call started."""
    if settings.profile == "sync":
        yield None
        return
    from distributed import Client

    if settings.profile == "address":
        if not settings.address:
            raise ConfigError("cluster profile 'address' needs cluster.address (e.g. tcp://host:8786)")
        try:
            client = Client(settings.address, timeout="30s")
        except OSError as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {settings.address}: {exc}") from None
        with client:
            yield client
        return
    if settings.profile == "fargate":
        from .fargate import fargate_client

        with fargate_client(settings.fargate) as client:  # deletes what the cluster created, explicitly
            yield client
        return
    from distributed import LocalCluster

    from .mainguard import ADVICE, unguarded_script_line

    workers = settings.n_workers or 1  # one process, a thread per core: tasks see each other (auto threads)
    threads = settings.threads_per_worker or max(1, host_cores() // workers)
    line = unguarded_script_line()
    if line is not None:
        logging.getLogger("preprocess").warning("preprocess: %s line %d: %s", sys.argv[0], line, ADVICE)
    with LocalCluster(n_workers=workers, threads_per_worker=threads, processes=line is None,
                      protocol="tcp://", host="127.0.0.1", dashboard_address=settings.dashboard_address,
                      silence_logs=40) as cluster, Client(cluster) as client:
        yield client


def host_cores() -> int:
    """The cores this process may run on (taskset, cpusets), which os.cpu_count() ignores."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
