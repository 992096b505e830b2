"""deploy/: the worker image installs what CI installs, and the task role's policy allows every S3 call
a build, a cached re-run and gc make (recorded against the moto server)."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests import samples
from tests.conftest import md5

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

# S3 API operation -> (IAM action, resource level): https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html
S3_ACTIONS = {
    "HeadObject": ("s3:GetObject", "object"), "GetObject": ("s3:GetObject", "object"),
    "PutObject": ("s3:PutObject", "object"), "CopyObject": ("s3:PutObject", "object"),
    "CreateMultipartUpload": ("s3:PutObject", "object"), "UploadPart": ("s3:PutObject", "object"),
    "CompleteMultipartUpload": ("s3:PutObject", "object"), "UploadPartCopy": ("s3:PutObject", "object"),
    "DeleteObject": ("s3:DeleteObject", "object"), "DeleteObjects": ("s3:DeleteObject", "object"),
    "AbortMultipartUpload": ("s3:AbortMultipartUpload", "object"),
    "ListParts": ("s3:ListMultipartUploadParts", "object"),
    "ListObjectsV2": ("s3:ListBucket", "bucket"), "ListObjects": ("s3:ListBucket", "bucket"),
    "HeadBucket": ("s3:ListBucket", "bucket"), "ListMultipartUploads": ("s3:ListBucketMultipartUploads", "bucket"),
    "GetBucketLocation": ("s3:GetBucketLocation", "bucket"),
}


CI_ONLY_PACKAGES = {"shellcheck", "chromium"}  # apt packages the Makefile installs for checks and tests only


def apt_packages(text: str) -> set[str]:
    """The package names of every `apt-get install` in a Makefile or Dockerfile."""
    found: set[str] = set()
    for line in re.findall(r"apt-get install ([^&;\n]*)", text):
        found |= {w for w in line.replace("\\", " ").split() if not w.startswith(("-", ">", "$"))}
    return found


def test_the_worker_image_installs_the_tools_and_commands_ci_uses():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    image, ci = apt_packages(dockerfile), apt_packages(makefile)
    assert image == ci - CI_ONLY_PACKAGES and {"samtools", "tabix", "gffread"} <= image
    assert re.search(r"^FROM python:3\.11-slim-bookworm$", dockerfile, re.M)  # Debian bookworm's packages
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    from dask_cloudprovider.aws import ecs

    source = Path(ecs.__file__).read_text()
    for command in ("dask-scheduler", "dask-worker"):  # what dask-cloudprovider writes into each task
        assert f'"{command}"' in source
        assert command in scripts and f"{command} --version" in dockerfile


def _allows(policy: dict[str, Any], action: str, arn: str) -> bool:
    def listed(value: str | list[str]) -> list[str]:
        return [value] if isinstance(value, str) else value

    return any(s["Effect"] == "Allow" and action in listed(s["Action"])
               and any(fnmatch.fnmatchcase(arn, r) for r in listed(s["Resource"])) for s in policy["Statement"])


@pytest.fixture
def s3_calls(monkeypatch):
    """Every S3 API call made in this process, as (operation, bucket, key)."""
    from aiobotocore.client import AioBaseClient

    calls: list[tuple[str, str, str]] = []
    real = AioBaseClient._make_api_call

    async def record(self, operation_name, api_params):
        calls.append((operation_name, api_params.get("Bucket", ""), api_params.get("Key", "")))
        return await real(self, operation_name, api_params)

    monkeypatch.setattr(AioBaseClient, "_make_api_call", record)
    return calls


def test_the_task_role_policy_allows_every_s3_call_a_build_and_gc_make(s3_calls, s3_bucket, tmp_path):
    import s3fs

    from preprocess.api import run_many
    from preprocess.config import load_settings
    from preprocess.gc import collect
    from preprocess.store import ArtifactStore

    policy = json.loads((DEPLOY / "iam" / "task-role-policy.json").read_text())
    execution = json.loads((DEPLOY / "iam" / "execution-role-policy.json").read_text())
    trust = json.loads((DEPLOY / "iam" / "ecs-tasks-trust.json").read_text())
    assert trust["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    for action in ("ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                   "logs:CreateLogStream", "logs:PutLogEvents"):
        assert any(action in s["Action"] for s in execution["Statement"]), action
    sources_bucket = f"{s3_bucket}-sources"
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir(sources_bucket)
    sam = samples.sam(tmp_path / "s1.sam", reads=300)
    fs.put(str(sam), f"{sources_bucket}/in/s1.sam")
    settings = load_settings(**{"store.url": f"s3://{s3_bucket}/artifacts", "cluster.profile": "sync",
                                "scratch": str(tmp_path)})
    doc = {"id": "s1", "access_url": f"s3://{sources_bucket}/in/s1.sam", "format": "SAM", "md5": md5(sam)}
    s3_calls.clear()
    assert run_many([doc], settings=settings).results[0].status == "built"
    assert run_many([doc], settings=settings).results[0].status == "cached"
    collect(ArtifactStore(settings.store.url), timedelta(0), dry_run=False)

    names = {s3_bucket: ("STORE_BUCKET", "artifacts"), sources_bucket: ("SOURCES_BUCKET", None)}
    seen = set()
    for operation, bucket, key in s3_calls:
        assert operation in S3_ACTIONS, f"map {operation} to its IAM action, then allow it in the policy"
        action, level = S3_ACTIONS[operation]
        placeholder, prefix = names[bucket]
        arn = f"arn:aws:s3:::{placeholder}"
        if level == "object":
            arn += "/" + (key.replace(prefix, "STORE_PREFIX", 1) if prefix and key.startswith(prefix) else key)
        assert _allows(policy, action, arn), f"{operation} on {bucket}/{key} needs {action} on {arn}"
        seen.add((placeholder, action))
    # the run exercised reads and writes on both buckets, so the check above covered them
    assert {("STORE_BUCKET", "s3:PutObject"), ("STORE_BUCKET", "s3:GetObject"), ("STORE_BUCKET", "s3:ListBucket"),
            ("SOURCES_BUCKET", "s3:GetObject")} <= seen, seen
    # gc also lists and aborts unfinished multipart uploads (none were left to abort here)
    assert _allows(policy, "s3:ListBucketMultipartUploads", "arn:aws:s3:::STORE_BUCKET")
    assert _allows(policy, "s3:AbortMultipartUpload", "arn:aws:s3:::STORE_BUCKET/STORE_PREFIX/v1/ab/x/sorted.bam")
    assert not _allows(policy, "s3:PutObject", "arn:aws:s3:::SOURCES_BUCKET/in/s1.sam")  # sources are read-only


# -- scheduled reindex: ECS scheduled task, cron, systemd -------------------------------------------
SCHEDULED = DEPLOY / "ecs-scheduled-task"


def _reindex_argv(argv: list[str]) -> list[str]:
    """The `preprocess reindex MANIFEST --store URL` part of a command line; fails if absent."""
    start = next(i for i, word in enumerate(argv) if word.endswith("python") and argv[i + 1:i + 4] == [
        "-m", "preprocess", "reindex"])
    args = argv[start + 4:]
    assert args[0].endswith(".csv") and args[1] == "--store" and args[2].startswith("s3://"), argv
    from preprocess.cli import cli

    command = cli.commands.get("reindex")  # merged from the reindex branch: then its own parser checks the line
    if command is not None:
        command.make_context("reindex", list(args))
    return args


def test_the_ecs_scheduled_reindex_registers_against_the_emulator(s3_endpoint, s3_bucket):
    import boto3

    def aws(service: str) -> Any:
        return boto3.client(service, endpoint_url=s3_endpoint, region_name="us-east-1")

    ecs, ec2, iam, events = aws("ecs"), aws("ec2"), aws("iam"), aws("events")
    [vpc] = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"][0]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"reindex-{s3_bucket}", Description="reindex: egress only",
                                      VpcId=vpc["VpcId"])["GroupId"]
    cluster = f"preprocess-{s3_bucket}"
    ecs.create_cluster(clusterName=cluster)
    values = {"ACCOUNT_ID": "123456789012", "REGION": "us-east-1", "CLUSTER_NAME": cluster, "SUBNET_ID": subnet,
              "SECURITY_GROUP_ID": group, "EFS_ID": "fs-0123456789abcdef0", "IMAGE_TAG": "2026.11",
              "STORE_BUCKET": s3_bucket, "STORE_PREFIX": "artifacts"}

    def load(path: Path) -> Any:
        text = path.read_text()
        for name, value in values.items():
            text = text.replace(name, value)
        return json.loads(text)

    # the roles the task definition and the rule name, with the policies shipped beside them (moto checks them)
    iam_dir, ecs_trust = DEPLOY / "iam", DEPLOY / "iam" / "ecs-tasks-trust.json"
    roles = {"preprocess-execution-role": (ecs_trust, iam_dir / "execution-role-policy.json"),
             "preprocess-task-role": (ecs_trust, iam_dir / "task-role-policy.json"),
             "preprocess-events-role": (SCHEDULED / "events-role-trust.json", SCHEDULED / "events-role-policy.json")}
    for role, (trust, policy) in roles.items():
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(load(trust)))
        iam.put_role_policy(RoleName=role, PolicyName=role, PolicyDocument=json.dumps(load(policy)))

    definition = ecs.register_task_definition(**load(SCHEDULED / "task-definition.json"))["taskDefinition"]
    rule = events.put_rule(**load(SCHEDULED / "rule.json"))
    put = events.put_targets(**load(SCHEDULED / "targets.json"))

    assert put["FailedEntryCount"] == 0
    [container] = definition["containerDefinitions"]
    args = _reindex_argv(container["command"])
    assert args[2] == f"s3://{s3_bucket}/artifacts" and args[0].startswith("/catalogue/")
    assert any(m["containerPath"] == "/catalogue" for m in container["mountPoints"])
    described = events.describe_rule(Name="preprocess-nightly-reindex")
    assert described["Arn"] == rule["RuleArn"] and described["State"] == "ENABLED"
    assert re.fullmatch(r"cron\((\S+ ){5}\S+\)|rate\(\d+ \w+\)", described["ScheduleExpression"])
    [target] = events.list_targets_by_rule(Rule="preprocess-nightly-reindex")["Targets"]
    assert target["Arn"] == ecs.describe_clusters(clusters=[cluster])["clusters"][0]["clusterArn"]
    assert definition["taskDefinitionArn"].startswith(target["EcsParameters"]["TaskDefinitionArn"] + ":")
    assert target["RoleArn"] == iam.get_role(RoleName="preprocess-events-role")["Role"]["Arn"]
    for arn in (definition["executionRoleArn"], definition["taskRoleArn"]):
        assert arn in {iam.get_role(RoleName=r)["Role"]["Arn"] for r in roles}


def test_the_cron_line_and_systemd_units_run_reindex():
    import shlex

    [line] = [x for x in (DEPLOY / "cron" / "preprocess-reindex").read_text().splitlines()
              if x.strip() and not x.startswith("#")]
    fields = line.split(None, 6)
    assert all(re.fullmatch(r"[\d*/,-]+", f) for f in fields[:5]) and fields[5] == "preprocess", fields
    assert "flock -n" in fields[6]
    assert "%" not in fields[6].replace("\\%", "")  # cron ends the command at an unescaped %
    _reindex_argv(shlex.split(fields[6].replace("$(date +\\%F)", "2026-01-01")))
    service = (DEPLOY / "systemd" / "preprocess-reindex.service").read_text()
    timer = (DEPLOY / "systemd" / "preprocess-reindex.timer").read_text()
    [exec_start] = re.findall(r"^ExecStart=(.+)$", service, re.M)
    _reindex_argv(shlex.split(exec_start))
    assert re.search(r"^Type=oneshot$", service, re.M)  # never two at once
    assert re.search(r"^Unit=preprocess-reindex\.service$", timer, re.M) and re.search(r"^OnCalendar=\S", timer, re.M)
    assert re.search(r"^WantedBy=timers\.target$", timer, re.M)
