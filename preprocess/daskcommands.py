"""`dask-scheduler` and `dask-worker`, the commands dask-cloudprovider's ECS tasks run.

distributed 2026.6 removed these scripts in favour of `dask scheduler` / `dask worker`, but
dask-cloudprovider still writes the old names into every task (dask/dask-cloudprovider#485).
The package installs them as console scripts, so the worker image (and any venv) runs them.
"""

from __future__ import annotations


def scheduler() -> None:
    """`dask-scheduler ARGS` runs `dask scheduler ARGS`."""
    from distributed.cli.dask_scheduler import main

    main(prog_name="dask-scheduler")


def worker() -> None:
    """`dask-worker ARGS` runs `dask worker ARGS`."""
    from distributed.cli.dask_worker import main

    main(prog_name="dask-worker")
