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


def apt_packages(text: str) -> set[str]:
    """The package names of every `apt-get install` in a Makefile or Dockerfile."""
    found: set[str] = set()
    for line in re.findall(r"apt-get install ([^&;\n]*)", text):
        found |= {w for w in line.replace("\\", " ").split() if not w.startswith(("-", ">", "$"))}
    return found


def test_the_worker_image_installs_the_tools_and_commands_ci_uses():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert apt_packages(dockerfile) == apt_packages(makefile) == {"samtools", "tabix", "gffread"}
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
    trust = json.loads((DEPLOY / "iam" / "task-role-trust.json").read_text())
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
