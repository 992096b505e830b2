"""`batch --cluster fargate` end to end: an unmodified FargateCluster against moto (ECS, EC2, IAM, Logs,
S3) in this process, with tests/ecs_agent.py running the tasks' commands as local processes; then
nothing the run created may remain. `cluster --profile fargate --dry-run` calls no AWS at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pysam
import pytest
import yaml

from tests import samples
from tests.conftest import md5
from tests.ecs_agent import GUARD_SITE, EcsAgent
from tests.servers import HOST, free_port

REGION = "us-east-1"
IMAGE = "preprocess-worker:test"  # deploy/Dockerfile's image, which the agent runs from the project's venv


def _boto(service: str, endpoint: str) -> Any:
    import boto3

    return boto3.client(service, endpoint_url=endpoint, region_name=REGION)


@pytest.fixture
def ecs_emulator(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[str, EcsAgent]]:
    """moto made to run FargateCluster as measured in issue 7: managed IAM policies, long task ARNs (for
    tags), tasks that stay RUNNING until stopped, task ENIs on 127.0.0.1 (never a 10.x address), and an
    agent that runs the tasks."""
    import moto.ecs.models
    from moto.moto_api import state_manager

    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    _load_managed_policies()
    monkeypatch.setattr(moto.ecs.models, "random_private_ip", lambda *args, **kwargs: HOST)
    state_manager.set_transition("ecs::task", {"progression": "manual", "times": 10**9})
    _boto("ecs", s3_endpoint).put_account_setting(name="taskLongArnFormat", value="enabled")
    task_role = {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "task-role-key-id",
                 "AWS_SECRET_ACCESS_KEY": "task-role-secret", "AWS_DEFAULT_REGION": REGION}
    try:
        with EcsAgent(s3_endpoint, tmp_path / "ecs-tasks", task_role, images={IMAGE}) as agent:
            yield s3_endpoint, agent
    finally:
        state_manager.unset_transition("ecs::task")


def _load_managed_policies() -> None:
    """AWS managed policies (which FargateCluster attaches) in moto's IAM, even if an earlier test of the
    session created the IAM backend before MOTO_IAM_LOAD_MANAGED_POLICIES was set."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.iam.models import iam_backends

    backend = iam_backends[DEFAULT_ACCOUNT_ID]["global"]
    if not backend.aws_managed_policies:
        backend.aws_managed_policies = backend._init_aws_policies()
        backend.managed_policies.update(backend._init_managed_policies())


SHARED_LOG_GROUP = "dask-ecs"  # dask-cloudprovider's default log group, shared by every cluster of the account


def _leftovers(endpoint: str) -> dict[str, list[str]]:
    """Every ECS cluster, running task, task definition, IAM role, security group, network interface (the
    tasks' ENIs) and log group that dask-cloudprovider creates, as AWS reports them now; the shared log
    group is listed on its own (`kept`), since a run keeps it on purpose."""
    ecs, ec2, iam = _boto("ecs", endpoint), _boto("ec2", endpoint), _boto("iam", endpoint)
    logs = _boto("logs", endpoint)
    cluster_arns = ecs.list_clusters()["clusterArns"]
    clusters = ecs.describe_clusters(clusters=cluster_arns)["clusters"] if cluster_arns else []
    active = [c["clusterArn"] for c in clusters if c["status"] == "ACTIVE"]
    tasks = []
    for arn in cluster_arns:
        task_arns = ecs.list_tasks(cluster=arn)["taskArns"]
        if task_arns:
            tasks += [t["taskArn"] for t in ecs.describe_tasks(cluster=arn, tasks=task_arns)["tasks"]
                      if t["lastStatus"] != "STOPPED"]
    definitions = [a for status in ("ACTIVE", "INACTIVE")
                   for a in ecs.list_task_definitions(status=status)["taskDefinitionArns"] if "/dask-" in a]
    roles = [r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"].startswith("dask-")]
    groups = [g["GroupId"] for g in ec2.describe_security_groups(
        Filters=[{"Name": "tag:createdBy", "Values": ["dask-cloudprovider"]}])["SecurityGroups"]]
    interfaces = [i["NetworkInterfaceId"] for i in ec2.describe_network_interfaces()["NetworkInterfaces"]]
    log_groups = [g["logGroupName"] for page in logs.get_paginator("describe_log_groups").paginate()
                  for g in page["logGroups"]]
    return {"clusters": active, "tasks": tasks, "task definitions": definitions, "roles": roles,
            "security groups": groups, "network interfaces": interfaces,
            "log groups": [g for g in log_groups if g != SHARED_LOG_GROUP],
            "kept": [g for g in log_groups if g == SHARED_LOG_GROUP]}


def _without_task_enis(now: dict[str, list[str]], before: dict[str, list[str]], agent: EcsAgent
                       ) -> dict[str, list[str]]:
    """`now` less the network interfaces of the tasks the run started, once each task is stopped: on AWS
    Fargate deletes a task's ENI as the task stops (moto keeps it). Fails on any other new interface."""
    assert all(c.eni for c in agent.containers.values()) and agent.running() == []
    new = set(now["network interfaces"]) - set(before["network interfaces"])
    assert new == {c.eni for c in agent.containers.values()}, (new, [c.eni for c in agent.containers.values()])
    return {**now, "network interfaces": [i for i in now["network interfaces"] if i not in new]}


def _fargate_config(directory: Path, port: int, image: str = IMAGE, **workers: Any) -> Path:
    """The user's ~/.config/dask/preprocess.yaml for this run: the worker image, two workers, the scheduler
    on its own port and on loopback (in the test), private IP (moto gives no public one)."""
    loopback = ["--host", HOST, "--no-dashboard"]
    config = {"preprocess": {"cluster": {"fargate": {
        "image": image, "region_name": REGION, **(workers or {"n_workers": 2}),
        "scheduler_cpu": 512, "scheduler_mem": 1024, "worker_cpu": 1024, "worker_mem": 2048,
        "scheduler_port": port, "scheduler_extra_args": ["--port", str(port), *loopback],
        "worker_extra_args": loopback, "fargate_use_private_ip": True}}}}
    directory.mkdir()
    (directory / "preprocess.yaml").write_text(yaml.safe_dump(config))
    return directory


def _batch_on_fargate(cwd: Path, store: str, dask_config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m preprocess batch manifest.csv --cluster fargate`, as a user runs it, loopback-guarded."""
    environ = {**os.environ, "DASK_CONFIG": str(dask_config), "PYTHONPATH": str(GUARD_SITE), **env}
    return subprocess.run([sys.executable, "-m", "preprocess", "batch", "manifest.csv", "--cluster", "fargate",
                           "--store", store, "--json", "report.json"], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize("workers", [{"n_workers": 2}, {"n_workers": 0, "adaptive": {"minimum": 0, "maximum": 2}}],
                         ids=["fixed", "adaptive"])
def test_batch_on_fargate_builds_every_file_and_leaves_nothing_behind(ecs_emulator, s3_bucket, tmp_path, workers):
    import s3fs

    endpoint, agent = ecs_emulator
    before = _leftovers(endpoint)
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    sources = f"{s3_bucket}/sources"
    data = tmp_path / "data"
    data.mkdir()
    files = {"s1": (samples.sam(data / "s1.sam", reads=1200), "SAM"),
             "v1": (samples.bgzip(samples.vcf(data / "v1.vcf", records=200), data / "v1.vcf.gz"), "VCF"),
             "b1": (samples.bed(data / "b1.bed", records=200), "BED")}
    lines = ["id,access_url,format,md5"]
    for doc_id, (path, fmt) in files.items():
        fs.put(str(path), f"{sources}/{path.name}")
        lines.append(f"{doc_id},s3://{sources}/{path.name},{fmt},{md5(path)}")
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n")
    store = f"s3://{s3_bucket}/artifacts"

    out = _batch_on_fargate(tmp_path, store, _fargate_config(tmp_path / "dask-config", free_port(), **workers))

    context = f"{out.stdout}\n{out.stderr}\n{agent.logs()}\nagent errors: {agent.errors}"
    assert out.returncode == 0, context
    report = json.loads((tmp_path / "report.json").read_text())
    assert {r["id"]: r["status"] for r in report["results"]} == {"s1": "built", "v1": "built", "b1": "built"}
    # the tasks ran the commands dask-cloudprovider wrote, as the image runs them: a scheduler, the workers
    commands = sorted(c.command[0] for c in agent.containers.values())
    assert commands[0] == "dask-scheduler" and set(commands[1:]) == {"dask-worker"}, context
    assert len(commands) - 1 in ((1, 2) if "adaptive" in workers else (2,)), context  # adaptive: up to its maximum
    assert all(c.error is None for c in agent.containers.values()), context
    # every artifact is whole and readable
    local = tmp_path / "artifacts"
    for result in report["results"]:
        target = local / result["id"]
        target.mkdir(parents=True)
        for uri in result["artifacts"].values():
            assert uri.startswith(store + "/")
            fs.get(uri, str(target / uri.rsplit("/", 1)[-1]))
    with pysam.AlignmentFile(str(files["s1"][0])) as sam:
        reads = sum(1 for _ in sam)
    with pysam.AlignmentFile(str(local / "s1" / "sorted.bam")) as bam:
        assert bam.check_index() and sum(1 for _ in bam.fetch(until_eof=True)) == reads
    with pysam.VariantFile(str(local / "v1" / "sorted.vcf.gz")) as vcf:
        assert sum(1 for _ in vcf.fetch()) == 200
    with pysam.TabixFile(str(local / "b1" / "sorted.bed.gz")) as bed:
        assert sum(1 for contig in bed.contigs for _ in bed.fetch(contig)) == 200
    # nothing the run created remains, and nothing was left to dask-cloudprovider's exit-time teardown; what
    # it keeps on purpose is the shared log group (the tasks' logs live on in it, for a post-mortem, and other
    # clusters of the account write to it too), so only that may be new
    after = _leftovers(endpoint)
    assert _without_task_enis(after, before, agent) == {**before, "kept": [SHARED_LOG_GROUP]}, context
    assert agent.running() == [], context
    assert "IOLoop is closed" not in out.stderr and "Traceback" not in out.stderr, out.stderr
    # the task role's secret is in every task's environment (the agent injects it, as ECS does); it is in no
    # output: the CLI's, the report, nor the scheduler's and workers' own logs
    task_logs = agent.logs()
    assert all(agent.task_role_env["AWS_SECRET_ACCESS_KEY"] == "task-role-secret" and c.log.is_file()
               for c in agent.containers.values()), context
    assert "dask-worker" in task_logs and "Start worker" in task_logs, task_logs  # the logs were read
    for text in (out.stdout, out.stderr, (tmp_path / "report.json").read_text(), task_logs):
        assert "task-role-secret" not in text
    # a re-run with everything cached starts no cluster at all
    started = len(agent.containers)
    again = _batch_on_fargate(tmp_path, store, tmp_path / "dask-config")
    assert again.returncode == 0, again.stderr
    assert {r["status"] for r in json.loads((tmp_path / "report.json").read_text())["results"]} == {"cached"}
    assert len(agent.containers) == started and _leftovers(endpoint) == after


def test_a_cluster_that_cannot_start_says_so_and_leaves_nothing_behind(ecs_emulator, s3_bucket, tmp_path):
    endpoint, agent = ecs_emulator
    before = _leftovers(endpoint)
    (tmp_path / "manifest.csv").write_text(f"id,access_url,format,md5\ns1,s3://{s3_bucket}/in/s1.sam,SAM,{'0' * 32}\n")
    config = _fargate_config(tmp_path / "dask-config", free_port(), image="daskdev/dask:latest")  # not pullable here

    out = _batch_on_fargate(tmp_path, f"s3://{s3_bucket}/artifacts", config,
                            DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="5s")

    assert out.returncode == 2, f"{out.stdout}\n{out.stderr}\n{agent.logs()}"
    assert "did not start" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert [c.error for c in agent.containers.values()] == ["CannotPullContainerError: daskdev/dask:latest"]
    left = _without_task_enis(_leftovers(endpoint), before, agent)
    # the shared log group, made before the tasks are started, is kept
    assert {**left, "kept": []} == {**before, "kept": []} and left["kept"] in ([], [SHARED_LOG_GROUP])


def test_teardown_deletes_only_what_its_own_cluster_created(s3_endpoint):
    """The deletion is selected by the dask_cluster_name tag: a colleague's cluster in the same account stays."""
    from preprocess.fargate import teardown

    ecs, ec2, iam = _boto("ecs", s3_endpoint), _boto("ec2", s3_endpoint), _boto("iam", s3_endpoint)
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                                "Principal": {"Service": "ecs-tasks.amazonaws.com"}}]})
    [vpc] = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]

    def resources(name: str) -> None:
        """What FargateCluster(name=name) creates, named and tagged the way it names and tags them."""
        tags = {"createdBy": "dask-cloudprovider", "cluster": f"dask-{name}", "dask_cluster_name": name}
        ecs_tags = [{"key": k, "value": v} for k, v in tags.items()]
        ecs.create_cluster(clusterName=f"dask-{name}", tags=ecs_tags)
        for role in ("execution", "task"):
            iam.create_role(RoleName=f"dask-{name}-{role}-role", AssumeRolePolicyDocument=trust,
                            Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        ec2.create_security_group(GroupName=f"dask-{name}-security-group", Description="dask", VpcId=vpc["VpcId"],
                                  TagSpecifications=[{"ResourceType": "security-group",
                                                      "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}])
        for role in ("scheduler", "worker"):
            ecs.register_task_definition(family=f"dask-{name}-{role}", tags=ecs_tags, containerDefinitions=[
                {"name": f"dask-{role}", "image": IMAGE, "memory": 512, "command": [f"dask-{role}"]}])

    resources("preprocess-mine")
    resources("someone-else")
    untouched = _leftovers(s3_endpoint)

    deleted = teardown("preprocess-mine", region_name=REGION)

    assert len(deleted) == 6  # ECS cluster, 2 task definitions, security group, 2 roles
    left = _leftovers(s3_endpoint)
    assert not any("preprocess-mine" in item for items in left.values() for item in items)
    assert sum(len(v) for v in untouched.values()) - sum(len(v) for v in left.values()) == 6
    assert teardown("preprocess-mine", region_name=REGION) == []  # idempotent
    # what a killed run leaves behind, deleted from the command line (and the session's moto left clean)
    out = subprocess.run([sys.executable, "-m", "preprocess", "cluster", "--profile", "fargate",
                          "--teardown", "someone-else"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(GUARD_SITE)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("deleted ") == 6 and "dask-someone-else-task-role" in out.stdout
    left = _leftovers(s3_endpoint)
    assert left["roles"] == left["task definitions"] == left["security groups"] == []
    assert not [arn for arn in left["clusters"] if "/dask-" in arn]


def test_dry_run_resolves_the_arguments_and_warns_without_calling_aws(tmp_path):
    config = {"preprocess": {"cluster": {"fargate": {
        "image": "123.dkr.ecr.us-east-1.amazonaws.com/preprocess:1", "worker_cpu": 2048, "worker_mem": 8192,
        "adaptive": {"minimum": 0, "maximum": 20}, "subnets": ["subnet-1"],
        "environment": {"AWS_SECRET_ACCESS_KEY": "do-not-print-me", "LOG_LEVEL": "info"}}}},
        "cloudprovider": {"ecs": {"fargate_use_private_ip": True}}}
    (tmp_path / "preprocess.yaml").write_text(yaml.safe_dump(config))
    code = ("import json, sys\nfrom preprocess.cli import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "loaded = [m for m in ('botocore', 'aiobotocore', 'boto3', 'dask_cloudprovider.aws') if m in sys.modules]\n"
            "print(json.dumps(loaded))")
    env = {**os.environ, "DASK_CONFIG": str(tmp_path), "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
           "PYTHONPATH": str(GUARD_SITE)}
    out = subprocess.run([sys.executable, "-c", code, "cluster", "--profile", "fargate", "--dry-run",
                          "--store", "s3://bucket/artifacts"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    plan_text, _, loaded = out.stdout.rstrip().rpartition("\n")
    assert json.loads(loaded) == []  # no AWS SDK imported, so no AWS call made
    plan = json.loads(plan_text)
    args = plan["arguments"]
    assert args["image"].endswith("/preprocess:1")
    assert args["workers"]["adaptive"] == {"minimum": 0, "maximum": 20} and args["workers"]["cpu"] == 2048
    assert args["networking"]["fargate_use_private_ip"] is True  # taken from cloudprovider config, explicitly
    assert args["environment"] == {"AWS_SECRET_ACCESS_KEY": "***", "LOG_LEVEL": "***"}
    assert "do-not-print-me" not in out.stdout
    codes = {w["code"] for w in plan["warnings"]}
    assert {"world-open-security-group", "config-private-ip", "default-vpc-lookup", "ephemeral-storage",
            "no-task-role", "credentials-in-environment", "private-ip"} <= codes
    assert not codes & {"public-ip", "default-image", "local-store", "no-workers", "stale-resource-sweep"}


def test_dry_run_flags_a_public_scheduler_and_a_store_workers_cannot_reach(tmp_path):
    out = subprocess.run([sys.executable, "-m", "preprocess", "cluster", "--profile", "fargate", "--dry-run",
                          "--store", str(tmp_path / "store")], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "DASK_CONFIG": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    codes = {w["code"] for w in json.loads(out.stdout)["warnings"]}
    assert {"public-ip", "world-open-security-group", "default-image", "local-store", "no-workers"} <= codes
