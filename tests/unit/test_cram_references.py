"""Where the CRAM pipeline lets htslib look for references: local directories only, never a URL."""

import pytest

from pipelines.cram import reference_environment as _environment
from pipelines.cram import site_ref_path as _site_ref_path


@pytest.mark.parametrize("ref_path, kept", [
    ("/a/%2s/%s:http://www.ebi.ac.uk/ena/cram/md5/%s:/b", ["/a/%2s/%s", "/b"]),
    ("https://refs.example:8080/md5/%s:/c/%s", ["/c/%s"]),
    ("/d", ["/d"]),
    ("", []),
])
def test_only_local_entries_of_the_workers_ref_path_are_kept(ref_path, kept, monkeypatch):
    monkeypatch.setenv("REF_PATH", ref_path)
    assert _site_ref_path() == kept


def test_ref_path_is_never_empty_so_htslib_never_falls_back_to_the_ebi(tmp_path, monkeypatch):
    monkeypatch.setenv("REF_PATH", "http://www.ebi.ac.uk/ena/cram/md5/%s")
    monkeypatch.setenv("REF_CACHE", "/cache/%2s/%2s/%s")
    alone, everything = _environment(tmp_path, outside=False), _environment(tmp_path, outside=True)
    assert alone == {"REF_PATH": f"{tmp_path}/no-references/%s", "REF_CACHE": ""}
    assert everything == {"REF_PATH": f"{tmp_path}/no-references/%s", "REF_CACHE": "/cache/%2s/%2s/%s"}
    (tmp_path / "refs").mkdir()  # the document's reference, by md5
    assert _environment(tmp_path, outside=True)["REF_PATH"] == f"{tmp_path}/refs/%s"
