import hashlib
import subprocess
import sys

import pytest

from preprocess.keys import canonical_json, derive_key, task_key

MD5 = "md5:" + "0" * 32


def test_key_is_pinned_so_a_change_to_the_derivation_cannot_pass_unnoticed():
    # If this fails, every artifact ever built gets a new address: bump LAYOUT deliberately instead.
    assert derive_key(MD5, "alignments", "1", {"compression_level": 6}) == (
        "95a99066166745a099585a17bd9962fc994b489e35beeb9bbd5f46357a596700"
    )


def test_key_is_sha256_of_the_documented_canonical_json():
    body = ('{"layout":"v1","parameters":{"compression_level":6},"pipeline":"alignments",'
            f'"source":"{MD5}","version":"1"}}')
    assert derive_key(MD5, "alignments", "1", {"compression_level": 6}) == hashlib.sha256(body.encode()).hexdigest()


def test_parameter_order_does_not_matter_but_every_part_does():
    base = derive_key(MD5, "alignments", "1", {"a": 1, "b": 2})
    assert derive_key(MD5, "alignments", "1", {"b": 2, "a": 1}) == base
    assert derive_key(MD5, "alignments", "2", {"a": 1, "b": 2}) != base
    assert derive_key(MD5, "vcf", "1", {"a": 1, "b": 2}) != base
    assert derive_key(MD5, "alignments", "1", {"a": 1, "b": 3}) != base
    assert derive_key("md5:" + "1" * 32, "alignments", "1", {"a": 1, "b": 2}) != base


def test_same_key_in_a_fresh_process_with_another_hash_seed():
    code = "from preprocess.keys import derive_key; print(derive_key('%s', 'p', '1', {'x': [1, 'y'], 'a': None}))"
    outs = {
        subprocess.run([sys.executable, "-c", code % MD5], capture_output=True, text=True, check=True,
                       env={"PYTHONHASHSEED": seed}).stdout.strip()
        for seed in ("1", "2")
    }
    assert outs == {derive_key(MD5, "p", "1", {"x": [1, "y"], "a": None})}


@pytest.mark.parametrize("bad", ["md5:xyz", "0" * 32, "sha1:" + "0" * 40, "md5:" + "0" * 31])
def test_malformed_source_hash_is_refused(bad):
    with pytest.raises(ValueError, match="source hash"):
        derive_key(bad, "p", "1", {})


def test_canonical_json_is_compact_sorted_ascii():
    assert canonical_json({"b": "é", "a": [1, 2]}) == '{"a":[1,2],"b":"\\u00e9"}'


def test_task_key_names_the_stage():
    assert task_key("sort_bam", "ab" * 32) == "sort_bam-" + "ab" * 32
