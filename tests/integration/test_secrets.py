"""Secrets planted everywhere a user can put one never reach any output of a run.

Planted: a signed URL's query string, URL userinfo, store storage options, the environment, a dask
config file, the private key that signs manifests (store.signing-key). Grepped: stdout and stderr of
the CLI, the scheduler's and the worker's logs (at debug level), the report JSON, every manifest in the
store, gc and mirror output, and the exceptions run() raises (their text, attributes and pickled bytes),
on a real scheduler and worker, on a LocalCluster, in the calling process (one file, profile auto), and
on a cluster whose worker logs into the caller's process at debug, where every task's pickled arguments
and key are grepped too.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import preprocess
from preprocess.config import load_settings
from preprocess.store import ArtifactStore
from tests import samples
from tests.servers import HOST, FileServer, free_port, wait_for_port

SIGNING_SEED = b"PLANTED-SIGNING-KEY-SEED-8d4b-32"  # the raw 32 bytes of an Ed25519 private key


def _signing_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(SIGNING_SEED).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


SECRETS = {
    "query": "PLANTED-QUERY-SIG-4f1d",
    "userinfo": "PLANTED-USERINFO-PW-9a7c",
    "storage-options": "PLANTED-STORAGE-OPTION-2b8e",
    "environment": "PLANTED-ENVIRONMENT-KEY-6c0a",
    "config-file": "PLANTED-CONFIG-FILE-KEY-3e5f",
    "signing-key": _signing_pem().decode().splitlines()[1],  # the key's PEM body
    "signing-key-bytes": SIGNING_SEED.decode(),
}
VENV_BIN = Path(sys.executable).parent


def leaked(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [kind for kind, secret in SECRETS.items() if secret.encode() in data]


def closed_port_url() -> str:
    return f"http://{HOST}:{free_port()}/in/x.sam?X-Amz-Expires=600&X-Amz-Signature={SECRETS['query']}"


@pytest.fixture
def env_with_secrets(tmp_path, s3_endpoint):
    """The environment of every process: an AWS secret in the environment, store credentials in a
    dask config file (moto accepts any), few fast retries."""
    config = tmp_path / "dask-config"
    config.mkdir()
    signing_key = tmp_path / "signing.key"
    signing_key.write_bytes(_signing_pem())
    (config / "preprocess.yaml").write_text(yaml.safe_dump({"preprocess": {
        "store": {"storage-options": {"key": "testing-key-id", "secret": SECRETS["config-file"]},
                  "signing-key": str(signing_key)},
        "source": {"attempts": 2, "backoff": 0.01}}}))
    return {**os.environ, "DASK_CONFIG": str(config), "AWS_SECRET_ACCESS_KEY": SECRETS["environment"],
            "DASK_LOGGING__DISTRIBUTED": "debug"}


def test_no_secret_in_any_output_of_a_batch_on_a_scheduler_and_worker(env_with_secrets, s3_bucket, tmp_path):
    env = env_with_secrets
    logs = {name: tmp_path / f"{name}.log" for name in ("scheduler", "worker")}
    port = free_port()
    home = tmp_path / "worker-home"
    home.mkdir()
    procs = []
    try:
        with logs["scheduler"].open("w") as log:
            procs.append(subprocess.Popen([str(VENV_BIN / "dask"), "scheduler", "--host", HOST, "--port", str(port),
                                           "--no-dashboard"], env=env, stdout=log, stderr=log))
        wait_for_port(port)
        with logs["worker"].open("w") as log:
            procs.append(subprocess.Popen([str(VENV_BIN / "dask"), "worker", f"tcp://{HOST}:{port}", "--host", HOST,
                                           "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
                                           "--local-directory", str(home)], cwd=home, env=env, stdout=log,
                                          stderr=log))
        outputs = _batch_gc_and_mirror(f"tcp://{HOST}:{port}", s3_bucket, env, tmp_path)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    outputs += [path.read_text() for path in logs.values()]
    assert "preprocess.build.build_doc" in logs["worker"].read_text() or "sort_bam" in logs["worker"].read_text()
    assert not [kind for text in outputs for kind in leaked(text)]


def _batch_gc_and_mirror(address: str, bucket: str, env: dict[str, str], tmp_path: Path) -> list[str]:
    sam = samples.sam(tmp_path / "good.sam", reads=300)
    with FileServer() as server:
        down = server.add("down.sam", sam.read_bytes())
        server.fail["/files/down.sam"] = 100
        userinfo = down.replace("http://", f"http://someone:{SECRETS['userinfo']}@") + "?token=" + SECRETS["query"]
        (tmp_path / "catalogue.csv").write_text(
            "id,access_url,format\n"
            f"good,{sam},SAM\n"
            f"refused,{closed_port_url()},SAM\n"
            f"unavailable,{userinfo},SAM\n")
        store = f"s3://{bucket}/out"
        batch = subprocess.run([sys.executable, "-m", "preprocess", "batch", "catalogue.csv", "--store", store,
                                "--cluster", "address", "--address", address, "--json", "report.json"],
                               cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    report = (tmp_path / "report.json").read_text()
    statuses = {r["id"]: (r["status"], (r["error"] or {}).get("class")) for r in json.loads(report)["results"]}
    assert statuses == {"good": ("built", None), "refused": ("failed", "SourceError"),
                        "unavailable": ("failed", "SourceError")}, batch.stderr
    assert "Max retries exceeded" in report  # the library's words are kept, its URL's query is not
    s3 = ArtifactStore(store)
    manifests = [s3.fs.cat_file(path).decode() for path in s3.fs.glob(f"{s3.root}/v1/*/*/manifest.json")]
    assert len(manifests) == 1
    assert len(s3.fs.glob(f"{s3.root}/v1/*/*/manifest.json.*.sig")) == 1  # the worker signed it with the key
    more = [subprocess.run([sys.executable, "-m", "preprocess", *args], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=240)
            for args in (["gc", "--store", store, "--older-than", "1s"],
                         ["mirror", store, str(tmp_path / "mirror"), "--json", "mirror.json"])]
    assert [out.returncode for out in more] == [0, 0], [out.stderr for out in more]
    return [batch.stdout, batch.stderr, report, *manifests, *(o.stdout + o.stderr for o in more),
            (tmp_path / "mirror.json").read_text()]


def test_no_secret_in_what_run_raises_or_prints_on_a_local_cluster(s3_endpoint, s3_bucket, tmp_path, monkeypatch,
                                                                   capfd):
    # The environment points S3 at a dead port: the worker can reach moto only through the storage options.
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{HOST}:{free_port()}")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRETS["environment"])
    monkeypatch.setenv("DASK_LOGGING__DISTRIBUTED", "debug")
    (tmp_path / "signing.key").write_bytes(_signing_pem())
    settings = load_settings(**{
        "store.url": f"s3://{bucket_and_prefix(s3_bucket)}", "store.signing-key": str(tmp_path / "signing.key"),
        "store.storage-options": {"key": "k", "secret": SECRETS["storage-options"], "endpoint_url": s3_endpoint},
        "cluster.n-workers": 1, "scratch": str(tmp_path), "source.attempts": 2, "source.backoff": 0.01})
    assert not leaked(repr(settings)) and not leaked(pickle.dumps(settings.for_workers()))
    sam = samples.sam(tmp_path / "ok.sam", reads=200)
    built = preprocess.run({"id": "ok", "access_url": str(sam), "format": "SAM"}, settings=settings)
    assert built.status == "built"  # the worker had the storage options without a task carrying them
    with pytest.raises(preprocess.SourceError) as caught:
        preprocess.run({"id": "bad", "access_url": closed_port_url().replace("http://", f"http://u:{SECRETS['userinfo']}@"),
                        "format": "SAM"}, settings=settings)
    exc = caught.value
    texts = [str(exc), repr(exc), repr(exc.args), repr(vars(exc)), pickle.dumps(exc), *capfd.readouterr()]
    assert not [kind for text in texts for kind in leaked(text)]


def bucket_and_prefix(bucket: str) -> str:
    return f"{bucket}/api"


ONE_FILE = textwrap.dedent("""
    import pickle, sys
    import preprocess
    store, good, bad = sys.argv[1:4]
    print(preprocess.run({"id": "ok", "access_url": good, "format": "SAM"}, store=store).status)
    try:
        preprocess.run({"id": "bad", "access_url": bad, "format": "SAM"}, store=store)
    except preprocess.SourceError as exc:
        print("raised", str(exc), repr(exc), repr(vars(exc)), pickle.dumps(exc))
    print("cluster started:", "distributed" in sys.modules)
""")


def test_one_file_is_built_in_the_calling_process_and_prints_no_secret(env_with_secrets, s3_bucket, tmp_path):
    env = {**env_with_secrets, "DASK_LOGGING__DASK": "debug"}  # distributed's at debug too (the fixture)
    sam = samples.sam(tmp_path / "ok.sam", reads=200)
    bad = closed_port_url().replace("http://", f"http://u:{SECRETS['userinfo']}@")
    out = subprocess.run([sys.executable, "-c", ONE_FILE, f"s3://{s3_bucket}/one", str(sam), bad], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=240)
    lines = out.stdout.splitlines()
    assert lines[0] == "built" and lines[1].startswith("raised bad: fetching"), out.stderr
    assert lines[-1] == "cluster started: False"  # profile auto, one file: built here, as profile sync does
    assert not leaked(out.stdout + out.stderr)


@pytest.fixture
def debug_logs() -> Iterator[io.StringIO]:
    """Every record of the distributed and dask loggers, at debug level, as text (their children too:
    distributed's configuration gives some of them a level of their own)."""
    import distributed  # noqa: F401 - configures its loggers on import; set ours after that

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.DEBUG)
    names = [name for name in list(logging.root.manager.loggerDict) if name.split(".")[0] in ("distributed", "dask")]
    loggers = [logging.getLogger(name) for name in sorted({"distributed", "dask", *names})]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    try:
        yield stream
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
            logger.removeHandler(handler)


def test_no_secret_in_a_tasks_arguments_or_key_when_its_worker_logs_into_this_process(
        s3_endpoint, s3_bucket, tmp_path, debug_logs, capfd):
    """The case that once leaked: a worker in the caller's process, logging at debug. Each task's
    arguments as the scheduler holds and sends them (pickled) and its key are grepped as well."""
    from distributed import Client, LocalCluster
    from distributed.diagnostics.plugin import SchedulerPlugin

    tasks: list[Any] = []

    class Record(SchedulerPlugin):
        def update_graph(self, scheduler: Any, *, keys: Any, **kwargs: Any) -> None:
            for key in keys:
                run_spec = scheduler.tasks[key].run_spec
                tasks.append((str(key), repr(run_spec), pickle.dumps(run_spec)))

    settings = load_settings(**{
        "store.url": f"s3://{s3_bucket}/inproc", "scratch": str(tmp_path), "source.attempts": 2,
        "source.backoff": 0.01, "store.storage-options": {"key": "k", "secret": SECRETS["storage-options"]}})
    sam = samples.sam(tmp_path / "ok.sam", reads=200)
    bad = closed_port_url().replace("http://", f"http://u:{SECRETS['userinfo']}@")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://", host=HOST,
                      dashboard_address="127.0.0.1:0", silence_logs=False) as cluster, Client(cluster) as client:
        cluster.scheduler.add_plugin(Record())  # this very object: the scheduler runs in this process
        report = preprocess.run_many([{"id": "ok", "access_url": str(sam), "format": "SAM"},
                                      {"id": "bad", "access_url": bad, "format": "SAM", "note": "x"}],
                                     settings=settings, client=client)
    assert [r.status for r in report.results] == ["built", "failed"]
    exc = report.results[1].exception
    assert isinstance(exc, preprocess.SourceError) and "Max retries exceeded" in str(exc)  # the worker opened it
    assert len(tasks) == 2 and "build_doc" in tasks[0][1]
    texts = [debug_logs.getvalue(), *capfd.readouterr(), str(exc), repr(vars(exc)), report.to_json(),
             *(text for task in tasks for text in task)]
    assert "Stimulus task finished" in texts[0]  # distributed's debug logging was on
    assert not [kind for text in texts for kind in leaked(text)]
