"""Planning on the client: a local file without an md5 is hashed there, so a cached answer starts no
cluster, and imports neither distributed nor dask (whose import is most of a start-up), nor pydantic
(where another package installed it: the settings and documents are records.py's)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests import samples

SCRIPT = """
import json, sys
import preprocess
settings = preprocess.load_settings(**{"store.url": sys.argv[2], "cluster.profile": sys.argv[3]})
result = preprocess.run({"id": "s1", "access_url": sys.argv[1], "format": "SAM"}, settings=settings)
print(json.dumps({"status": result.status, "key": result.key,
                  "imported": sorted(m for m in ("distributed", "dask", "pysam", "pydantic") if m in sys.modules)}))
"""


@pytest.mark.parametrize("profile", ["auto", "sync"])
def test_cached_local_doc_without_md5_needs_no_cluster(tmp_path, profile):
    sam = samples.sam(tmp_path / "s1.sam", reads=200)
    store = tmp_path / "store"

    def run() -> dict:
        proc = subprocess.run([sys.executable, "-c", SCRIPT, str(sam), str(store), profile], cwd=tmp_path,
                              capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])

    first = run()  # builds in this process: pysam, not dask
    assert first["status"] == "built" and first["imported"] == ["pysam"]
    again = run()
    assert again == {"status": "cached", "key": first["key"], "imported": []}


def test_missing_local_file_without_md5_fails_in_planning(settings, tmp_path):
    import preprocess

    report = preprocess.run_many([{"id": "gone", "access_url": str(tmp_path / "gone.sam"), "format": "SAM"}],
                                 settings=settings.replace(cluster=settings.cluster.replace(
                                     profile="local")))
    assert report.results[0].status == "failed"
    assert report.results[0].error is not None and report.results[0].error.class_ == "InputError"
    assert "does not exist" in report.results[0].error.message
    assert report.dashboard is None  # planning answered it: no cluster was started


def test_local_cram_without_md5_is_keyed_with_its_reference_or_left_to_the_worker(settings, tmp_path):
    from preprocess import registry
    from preprocess.build import key_for, open_store
    from preprocess.keys import task_key
    from preprocess.plan import plan
    from tests.conftest import md5

    ref = samples.fasta(tmp_path / "ref.fa")
    cram = samples.cram(tmp_path / "a.cram", ref, reads=100)
    pipeline = registry.pipeline_for("CRAM")
    doc = {"id": "a", "access_url": str(cram), "format": "CRAM", "reference": str(ref)}
    with_md5 = plan([{**doc, "reference_md5": md5(ref)}], settings, open_store(settings))
    assert list(with_md5.tasks) == [task_key(pipeline.stage, key_for(pipeline, md5(cram), settings, md5(ref)))]
    # without the reference's md5 the key is not known here: the worker fetches both and keys them
    without = plan([doc], settings, open_store(settings))
    assert len(without.tasks) == 1 and not next(iter(without.tasks)).endswith(key_for(pipeline, md5(cram), settings))
