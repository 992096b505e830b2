"""A Url with secrets pickles sealed: no secret in the bytes a task carries, opened only where its key is."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest

from preprocess.errors import ConfigError
from preprocess.model import FileDoc
from preprocess.urls import SealedUrl, Url

SIGNED = "https://someone:PASSWORD-7d1e@host.example/data/a.bam?X-Amz-Signature=SIGNATURE-88c2#frag"
UNPICKLE = ("import pickle, sys\n"
            "doc = pickle.loads(sys.stdin.buffer.read())\n"
            "print(type(doc.access_url).__name__, doc.access_url)\n"
            "print(doc.access_url.reveal())\n")


def test_a_url_with_secrets_pickles_without_them_and_opens_in_the_process_that_sealed_it():
    doc = FileDoc(id="a", access_url=SIGNED, reference=SIGNED.replace("a.bam", "ref.fa"))
    data = pickle.dumps(doc)
    assert b"PASSWORD-7d1e" not in data and b"SIGNATURE-88c2" not in data and b"frag" not in data
    back = pickle.loads(data)
    assert back.access_url.reveal() == SIGNED and back.reference is not None
    assert back.reference.reveal() == SIGNED.replace("a.bam", "ref.fa")
    plain = pickle.dumps(Url("/data/a.bam"))
    assert b"/data/a.bam" in plain and pickle.loads(plain).reveal() == "/data/a.bam"  # nothing to hide


def test_another_process_without_the_key_keeps_it_sealed_and_refuses_to_reveal(tmp_path):
    data = pickle.dumps(FileDoc(id="a", access_url=SIGNED))
    out = subprocess.run([sys.executable, "-c", UNPICKLE], input=data, capture_output=True, timeout=60)
    assert out.stdout.decode().splitlines()[0] == "SealedUrl https://host.example/data/a.bam"
    assert b"ConfigError: cannot open https://host.example/data/a.bam: its secrets were sealed" in out.stderr
    assert b"PASSWORD-7d1e" not in out.stdout + out.stderr and b"SIGNATURE-88c2" not in out.stdout + out.stderr
    sealed = SealedUrl("https://host.example/data/a.bam", "token")
    with pytest.raises(ConfigError):
        Url(sealed)  # a copy never silently drops the secrets it cannot see
    assert pickle.loads(pickle.dumps(sealed))._token == "token"  # passes on (a scheduler) as it came


def test_a_key_configured_on_both_sides_opens_it_in_another_process():
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    code = ("import dask.config, pickle, sys\n"
            f"dask.config.set({{'preprocess-seal-key': {key!r}}})\n"
            "from preprocess.model import FileDoc\n"
            "sys.stdout.buffer.write(pickle.dumps(FileDoc(id='a', access_url=sys.argv[1])))\n")
    sealed = subprocess.run([sys.executable, "-c", code, SIGNED], capture_output=True, check=True, timeout=60).stdout
    assert b"SIGNATURE-88c2" not in sealed
    out = subprocess.run([sys.executable, "-c", UNPICKLE], input=sealed, capture_output=True, timeout=60,
                         env={**os.environ, "DASK_PREPROCESS_SEAL_KEY": key})
    assert out.stdout.decode().splitlines() == ["Url https://host.example/data/a.bam", SIGNED], out.stderr


def test_task_keys_of_urls_name_equal_work_alike_and_hide_the_url():
    from dask.base import tokenize

    assert tokenize(Url(SIGNED)) == tokenize(Url(SIGNED)) != tokenize(Url(SIGNED.replace("88c2", "88c3")))
    assert "SIGNATURE" not in tokenize(Url(SIGNED))
