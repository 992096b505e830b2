"""An ECS container agent for moto, which runs no containers: each RUNNING task's container command
and environment (task definition, then run_task overrides) runs as a local process started the way
the worker image would start it (its PATH, no translation of the command); the process is ended when
the task is STOPPED, and a process that exits on its own stops its task, as ECS does."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
GUARD_SITE = Path(__file__).resolve().parent / "loopback_site"


@dataclass
class Container:
    task_arn: str
    cluster_arn: str
    command: list[str]
    env_names: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    error: str | None = None
    eni: str | None = None  # the task's network interface (awsvpc), which Fargate deletes when the task stops


@dataclass
class EcsAgent:
    """Polls ECS on `endpoint`; `task_role_env` plays the task role's credentials (ECS injects those)."""

    endpoint: str
    workdir: Path
    task_role_env: dict[str, str]
    images: set[str]  # what this host can pull: the image deploy/Dockerfile builds, here the project's venv
    containers: dict[str, Container] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    errors: list[str] = field(default_factory=list)

    def image_env(self, task_dir: Path) -> dict[str, str]:
        """What the worker image (deploy/Dockerfile) provides: its PATH with the package's scripts, C locale,
        scratch; plus the loopback guard for every Python process (test-only)."""
        return {"PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C", "HOME": str(task_dir),
                "TMPDIR": str(task_dir), "DASK_PREPROCESS__SCRATCH": str(task_dir), "PYTHONPATH": str(GUARD_SITE)}

    def __enter__(self) -> EcsAgent:
        self._thread = threading.Thread(target=self._loop, name="ecs-agent", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
        for container in self.containers.values():
            _terminate(container)

    def running(self) -> list[Container]:
        return [c for c in self.containers.values() if c.proc is not None and c.proc.poll() is None]

    def logs(self) -> str:
        return "\n".join(f"--- {c.command[:1]} {c.task_arn.rsplit('/', 1)[-1]} {c.error or ''}\n"
                         f"{c.log.read_text(errors='replace') if c.log.is_file() else ''}"
                         for c in self.containers.values())

    def _loop(self) -> None:
        import boto3

        ecs = boto3.client("ecs", endpoint_url=self.endpoint, region_name=self.task_role_env["AWS_DEFAULT_REGION"],
                           aws_access_key_id=self.task_role_env["AWS_ACCESS_KEY_ID"],
                           aws_secret_access_key=self.task_role_env["AWS_SECRET_ACCESS_KEY"])
        while not self._stop.wait(0.3):
            try:
                self._poll(ecs)
            except Exception as exc:  # noqa: BLE001 - keep polling; the test reads errors
                self.errors.append(repr(exc))

    def _poll(self, ecs: Any) -> None:
        for cluster_arn in ecs.list_clusters()["clusterArns"]:
            task_arns = ecs.list_tasks(cluster=cluster_arn)["taskArns"]
            if not task_arns:
                continue
            for task in ecs.describe_tasks(cluster=cluster_arn, tasks=task_arns)["tasks"]:
                arn = task["taskArn"]
                container = self.containers.get(arn)
                if task["lastStatus"] == "RUNNING" and container is None:
                    self._start(ecs, cluster_arn, task)
                elif task["lastStatus"] == "STOPPED" and container is not None:
                    _terminate(container)
                elif container is not None and container.proc is not None and container.proc.poll() is not None:
                    ecs.stop_task(cluster=cluster_arn, task=arn, reason="Essential container in task exited")

    def _start(self, ecs: Any, cluster_arn: str, task: dict[str, Any]) -> None:
        definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
        [spec] = definition["containerDefinitions"]
        override = next((o for o in task.get("overrides", {}).get("containerOverrides", [])
                         if o.get("name") == spec["name"]), {})
        command = list(override.get("command") or spec.get("command") or [])
        env_list = list(spec.get("environment", [])) + list(override.get("environment", []))
        eni = next((d["value"] for a in task.get("attachments", []) if a.get("type") == "ElasticNetworkInterface"
                    for d in a.get("details", []) if d.get("name") == "networkInterfaceId"), None)
        if spec["image"] not in self.images:  # ECS stops a task whose image cannot be pulled
            reason = f"CannotPullContainerError: {spec['image']}"
            self.containers[task["taskArn"]] = Container(task["taskArn"], cluster_arn, command, [], self.workdir,
                                                         error=reason, eni=eni)
            ecs.stop_task(cluster=cluster_arn, task=task["taskArn"], reason=reason)
            return
        task_id = task["taskArn"].rsplit("/", 1)[-1]
        task_dir = self.workdir / task_id
        task_dir.mkdir(parents=True)
        env = {**self.image_env(task_dir), **{e["name"]: e["value"] for e in env_list}, **self.task_role_env}
        container = Container(task["taskArn"], cluster_arn, command, [e["name"] for e in env_list],
                              task_dir / "container.log", eni=eni)
        self.containers[task["taskArn"]] = container
        with container.log.open("wb") as log:
            try:
                container.proc = subprocess.Popen(command, env=env, cwd=task_dir, stdout=log,
                                                  stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:  # what ECS reports as CannotStartContainerError
                container.error = f"CannotStartContainerError: {exc}"
                log.write(container.error.encode())
                ecs.stop_task(cluster=cluster_arn, task=task["taskArn"], reason=container.error[:255])


def _terminate(container: Container) -> None:
    proc = container.proc
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)  # docker stop: SIGTERM, then SIGKILL after a grace period
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
