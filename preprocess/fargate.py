"""A FargateCluster from `cluster.fargate`: its resolved arguments and traps (for --dry-run), a start
that names the cluster, and an explicit teardown of everything that name created.

dask-cloudprovider deletes what it created through `weakref.finalize` callbacks that run at
interpreter exit, after the cluster's event loop is closed ("IOLoop is closed"), so roles, task
definitions and the security group stay behind. Every resource it creates is tagged
`dask_cluster_name=<name>`; `teardown(name)` deletes exactly those, synchronously, and says what it
deleted.
"""

from __future__ import annotations

import logging
import time
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dask.config

from .errors import ConfigError

log = logging.getLogger(__name__)

CREATED_BY = {"createdBy": "dask-cloudprovider"}  # dask-cloudprovider's DEFAULT_TAGS
OUR_KEYS = {"adaptive"}  # keys of cluster.fargate that are ours, not FargateCluster arguments
DEFAULT_IMAGES = {"daskdev/dask:latest", "ghcr.io/dask/dask:latest"}
SECRET_WORDS = ("SECRET", "PASSWORD", "TOKEN", "ACCESS_KEY", "ACCOUNT_KEY", "CONNECTION_STRING", "CREDENTIAL", "SAS")
STOP_WAIT = 180.0  # seconds to wait for tasks to stop (ENIs to go) before the security group is deleted


def ecs_config() -> dict[str, Any]:
    """dask-cloudprovider's `cloudprovider.ecs` config with its shipped defaults; imports no AWS SDK."""
    try:
        import dask_cloudprovider.config  # noqa: F401 - registers the defaults only
    except ImportError:
        pass
    return dict(dask.config.get("cloudprovider.ecs", {}))


def cluster_arguments(options: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """The FargateCluster keyword arguments for `cluster.fargate` options, with a fresh cluster name.

    `fargate_use_private_ip` is passed explicitly: FargateCluster's constructor default (False) wins
    over `cloudprovider.ecs.fargate_use_private_ip` in config, so a value set there is otherwise lost.
    `skip_cleanup` defaults to True: dask-cloudprovider's start-up sweep deletes, account-wide, every
    resource it tagged whose ECS cluster has no running task (and fails on an untagged ECS cluster).
    """
    args = {k: v for k, v in options.items() if k not in OUR_KEYS}
    args.setdefault("skip_cleanup", True)  # teardown() deletes what this run created; see plan()'s warning
    if "fargate_use_private_ip" not in args:
        args["fargate_use_private_ip"] = bool(ecs_config().get("fargate_use_private_ip", False))
    args["name"] = name or args.get("name") or f"preprocess-{uuid.uuid4().hex[:8]}"
    return args


def adaptive_bounds(options: dict[str, Any]) -> dict[str, int] | None:
    """`adaptive: {minimum, maximum}` from cluster.fargate, or None for a fixed n_workers."""
    bounds = options.get("adaptive")
    if bounds is None:
        return None
    if not isinstance(bounds, dict) or set(bounds) - {"minimum", "maximum"}:
        raise ConfigError("cluster.fargate.adaptive takes {minimum: N, maximum: M}")
    return {k: int(v) for k, v in bounds.items()}


def _setting(args: dict[str, Any], config: dict[str, Any], key: str) -> Any:
    value = args.get(key)
    return config.get(key) if value is None else value


def plan(options: dict[str, Any], store_url: str) -> dict[str, Any]:
    """What `cluster --profile fargate` would start, and the traps that apply: JSON-ready, no AWS call."""
    config = ecs_config()
    args = cluster_arguments(options, name="preprocess-<random at start>")
    adaptive = adaptive_bounds(options)
    get = lambda key: _setting(args, config, key)  # noqa: E731 - a short local reader
    environment = get("environment") or {}
    private_ip = bool(args["fargate_use_private_ip"])
    resolved = {
        "name": args["name"],
        "image": get("image"),
        "cluster_arn": get("cluster_arn") or "(created, then deleted at the end)",
        "region_name": get("region_name") or "(from the AWS chain)",
        "scheduler": {"cpu": get("scheduler_cpu"), "memory_mb": get("scheduler_mem"),
                      "port": get("scheduler_port") or 8786, "idle_timeout": get("scheduler_timeout"),
                      "extra_args": get("scheduler_extra_args")},
        "workers": {"cpu": get("worker_cpu"), "memory_mb": get("worker_mem"), "nthreads": get("worker_nthreads"),
                    "extra_args": get("worker_extra_args"),
                    **({"adaptive": adaptive} if adaptive else {"n_workers": get("n_workers")})},
        "networking": {"vpc": get("vpc"), "subnets": get("subnets") or "(every subnet of the VPC)",
                       "security_groups": get("security_groups") or "(created: 8786-8787 open to the world)",
                       "fargate_use_private_ip": private_ip,
                       "client_connects_to": "private IP" if private_ip else "public IP"},
        "roles": {"execution_role_arn": get("execution_role_arn") or "(created)",
                  "task_role_arn": get("task_role_arn") or "(created)",
                  "task_role_policies": get("task_role_policies") or []},
        "tags": {**(get("tags") or {}), **CREATED_BY, "dask_cluster_name": args["name"]},
        "environment": {name: "***" for name in environment},
        "skip_cleanup": bool(args["skip_cleanup"]),
    }
    return {"profile": "fargate", "arguments": resolved, "warnings": warnings(options, args, config, store_url)}


def warnings(options: dict[str, Any], args: dict[str, Any], config: dict[str, Any],
             store_url: str) -> list[dict[str, str]]:
    """The known traps that apply to these arguments (resolved from `options`), each as {"code", "message"}."""
    get = lambda key: _setting(args, config, key)  # noqa: E731
    out: list[dict[str, str]] = []

    def warn(code: str, message: str) -> None:
        out.append({"code": code, "message": message})

    if not args.get("fargate_use_private_ip"):
        warn("public-ip", "the scheduler gets a public IP and this client connects to it there: port 8786 must "
             "be reachable from here, over the internet. Inside the VPC, set fargate_use_private_ip: true.")
    else:
        warn("private-ip", "the client connects to the scheduler's private IP: run it inside the VPC "
             "(or over a VPN/peering), or it cannot connect.")
    if "fargate_use_private_ip" not in options and config.get("fargate_use_private_ip"):
        warn("config-private-ip", "cloudprovider.ecs.fargate_use_private_ip is ignored by FargateCluster "
             "(its constructor default False wins); preprocess passes it explicitly.")
    if not get("security_groups"):
        warn("world-open-security-group", "no security_groups: the one created opens ports 8786-8787 to "
             "0.0.0.0/0 and ::/0 (anyone can submit work). Pass security_groups of your own.")
    if get("subnets") and get("vpc") in (None, "default"):
        warn("default-vpc-lookup", "subnets are given but vpc is 'default': the default VPC is still looked up "
             "(fails where there is none) and a created security group lands in it, not in your subnets' VPC. "
             "Set vpc too.")
    if not get("n_workers") and not options.get("adaptive"):
        warn("no-workers", "n_workers is 0 and no adaptive bounds: the cluster starts no worker and a batch "
             "waits forever. Set n_workers or adaptive: {minimum, maximum}.")
    if not args.get("worker_task_definition_arn"):
        warn("ephemeral-storage", "workers get Fargate's default ephemeral storage (20 GiB): run_task overrides "
             "cannot raise it. Large sorts need a worker task definition of your own with ephemeralStorage "
             "(worker_task_definition_arn).")
    if not get("task_role_arn") and not get("task_role_policies"):
        warn("no-task-role", "no task_role_arn or task_role_policies: workers get a role with no permissions "
             "and cannot read S3 sources or write the store (deploy/iam/task-role-policy.json).")
    secret = [k for k in (get("environment") or {}) if any(w in k.upper() for w in SECRET_WORDS)]
    if secret:
        warn("credentials-in-environment", f"environment sets {', '.join(sorted(secret))}: values there are "
             "readable by anyone who can describe the tasks. Grant access through the task role instead.")
    image = get("image")
    if not image or image in DEFAULT_IMAGES:
        warn("default-image", f"image {image!r} has no samtools/htslib/gffread or preprocess: every build "
             "fails. Build and push deploy/Dockerfile.")
    if not get("skip_cleanup"):
        warn("stale-resource-sweep", "skip_cleanup is false: on start, dask-cloudprovider deletes every "
             "resource tagged createdBy=dask-cloudprovider whose ECS cluster has no running task, account-wide "
             "in the region (a colleague's cluster that is still starting included). preprocess deletes what "
             "its own run created; after a killed run: `preprocess cluster --profile fargate --teardown NAME`.")
    if "://" not in store_url or store_url.startswith(("file://", "memory://")):
        warn("local-store", f"store {store_url!r} is on this machine: Fargate workers cannot write it. "
             "Use s3://bucket/prefix.")
    return out


@contextmanager
def fargate_client(options: dict[str, Any]) -> Iterator[Any]:
    """A Client on a new FargateCluster; on exit the cluster is closed and everything it created deleted."""
    try:
        from dask_cloudprovider.aws import FargateCluster
    except ImportError:
        raise ConfigError("profile 'fargate' needs dask-cloudprovider: pip install 'preprocess[fargate]'") from None
    from distributed import Client

    args = cluster_arguments(options)
    adaptive = adaptive_bounds(options)
    name = args["name"]
    cluster = None
    try:
        log.info("starting FargateCluster %s", name)
        try:
            cluster = FargateCluster(**args)
        except Exception as exc:  # noqa: BLE001 - any failure to start is reported the same way, after teardown
            raise ConfigError(f"FargateCluster {name} did not start ({type(exc).__name__}: {exc}); "
                              "what it had created is deleted") from exc
        if adaptive:
            cluster.adapt(**adaptive)
        with Client(cluster) as client:
            yield client
    finally:
        try:
            if cluster is not None:
                cluster.close()
        finally:
            _detach_finalizers(name)
            teardown(name, region_name=args.get("region_name"), cluster_arn=args.get("cluster_arn"),
                     aws_access_key_id=args.get("aws_access_key_id"),
                     aws_secret_access_key=args.get("aws_secret_access_key"))


def _detach_finalizers(name: str) -> None:
    """Drop dask-cloudprovider's exit-time deletions for cluster `name`: teardown() does them, with a loop."""
    registry = getattr(weakref.finalize, "_registry", {})  # CPython's table of live finalizers
    for finalizer in list(registry):
        info = finalizer.peek()
        if info is not None and getattr(info[0], "name", None) == name and hasattr(info[0], "cluster_arn"):
            finalizer.detach()


def teardown(name: str, region_name: str | None = None, cluster_arn: str | None = None,
             **credentials: str | None) -> list[str]:
    """Delete what FargateCluster `name` created (tasks, ECS cluster, task definitions, security group,
    roles: those tagged dask_cluster_name=name); return their identifiers. The shared log group stays."""
    import botocore.session

    session = botocore.session.get_session()
    creds = {k: v for k, v in credentials.items() if v}

    def client(service: str) -> Any:
        return session.create_client(service, region_name=region_name or None, **creds)

    ours = {**CREATED_BY, "dask_cluster_name": name}
    deleted: list[str] = []
    ecs, ec2, iam = client("ecs"), client("ec2"), client("iam")
    clusters = [c for c in _clusters(ecs) if ours.items() <= _tags(c.get("tags")).items()]
    shared = [cluster_arn] if cluster_arn else []
    tasks = _stop_tasks(ecs, [(c["clusterArn"], True) for c in clusters] + [(a, False) for a in shared], name)
    deleted += tasks
    for cluster in clusters:
        ecs.delete_cluster(cluster=cluster["clusterArn"])
        deleted.append(cluster["clusterArn"])
    for role in ("scheduler", "worker"):
        deleted += _delete_task_definitions(ecs, f"dask-{name}-{role}", ours)
    deleted += _delete_security_groups(ec2, name)
    for role_name in (f"dask-{name}-execution-role", f"dask-{name}-task-role"):
        deleted += _delete_role(iam, role_name, ours)
    log.info("FargateCluster %s: deleted %s", name, ", ".join(deleted) or "nothing")
    return deleted


def _tags(tags: list[dict[str, str]] | None) -> dict[str, str]:
    return {t.get("key", t.get("Key", "")): t.get("value", t.get("Value", "")) for t in tags or []}


def _clusters(ecs: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for page in ecs.get_paginator("list_clusters").paginate():
        arns = page["clusterArns"]
        for start in range(0, len(arns), 100):
            found += ecs.describe_clusters(clusters=arns[start:start + 100], include=["TAGS"])["clusters"]
    return [c for c in found if c.get("status") == "ACTIVE"]


def _stop_tasks(ecs: Any, cluster_arns: list[tuple[str, bool]], name: str) -> list[str]:
    """Stop this run's tasks (all of a cluster it created; those tagged with its name in a cluster it was
    given) and wait until ECS reports them stopped: their network interfaces hold the security group."""
    stopping: dict[str, str] = {}
    for arn, created in cluster_arns:
        task_arns = [t for page in ecs.get_paginator("list_tasks").paginate(cluster=arn) for t in page["taskArns"]]
        for start in range(0, len(task_arns), 100):
            for task in ecs.describe_tasks(cluster=arn, tasks=task_arns[start:start + 100], include=["TAGS"])["tasks"]:
                if created or _tags(task.get("tags")).get("dask_cluster_name") == name:
                    if task["lastStatus"] != "STOPPED":
                        if task.get("desiredStatus") != "STOPPED":
                            ecs.stop_task(cluster=arn, task=task["taskArn"], reason="preprocess teardown")
                        stopping[task["taskArn"]] = arn
    deadline = time.monotonic() + STOP_WAIT
    pending = dict(stopping)
    while pending and time.monotonic() < deadline:
        for arn in set(pending.values()):
            mine = [t for t, c in pending.items() if c == arn]
            for task in ecs.describe_tasks(cluster=arn, tasks=mine)["tasks"]:
                if task["lastStatus"] == "STOPPED":
                    pending.pop(task["taskArn"], None)
        if pending:
            time.sleep(2)
    if pending:
        log.warning("tasks still stopping after %ss: %s", STOP_WAIT, ", ".join(pending))
    return list(stopping)


def _delete_task_definitions(ecs: Any, family: str, ours: dict[str, str]) -> list[str]:
    """Deregister, then delete, every revision of `family` that carries our tags."""
    deleted = []
    for status in ("ACTIVE", "INACTIVE"):
        pages = ecs.get_paginator("list_task_definitions").paginate(familyPrefix=family, status=status)
        for arn in [a for page in pages for a in page["taskDefinitionArns"]]:
            if arn.rsplit("/", 1)[-1].split(":")[0] != family:
                continue  # familyPrefix is a prefix: dask-x-worker would match dask-x-worker2
            described = ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
            if not ours.items() <= _tags(described.get("tags")).items():
                continue
            if status == "ACTIVE":
                ecs.deregister_task_definition(taskDefinition=arn)
            ecs.delete_task_definitions(taskDefinitions=[arn])
            deleted.append(arn)
    return deleted


def _delete_security_groups(ec2: Any, name: str) -> list[str]:
    from botocore.exceptions import ClientError

    filters = [{"Name": "tag:dask_cluster_name", "Values": [name]},
               {"Name": "tag:createdBy", "Values": [CREATED_BY["createdBy"]]}]
    deleted = []
    for group in ec2.describe_security_groups(Filters=filters)["SecurityGroups"]:
        deadline = time.monotonic() + STOP_WAIT
        while True:
            try:
                ec2.delete_security_group(GroupId=group["GroupId"])
                deleted.append(group["GroupId"])
                break
            except ClientError as exc:  # DependencyViolation until the stopped tasks' ENIs are released
                if exc.response["Error"]["Code"] != "DependencyViolation" or time.monotonic() > deadline:
                    raise
                time.sleep(5)
    return deleted


def _delete_role(iam: Any, role_name: str, ours: dict[str, str]) -> list[str]:
    try:
        tags = _tags(iam.list_role_tags(RoleName=role_name)["Tags"])
    except iam.exceptions.NoSuchEntityException:
        return []
    if not ours.items() <= tags.items():
        return []
    for policy in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]:
        iam.detach_role_policy(RoleName=role_name, PolicyArn=policy["PolicyArn"])
    iam.delete_role(RoleName=role_name)
    return [role_name]
