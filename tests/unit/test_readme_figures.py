"""The README's request figures, held to the newest measurement (benchmarks/results-requests-*.json,
written by `python -m benchmarks.reindex --stores s3 --json PATH`): a stale figure fails here."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_request_figures_match_the_newest_benchmark_json():
    newest = sorted(ROOT.glob("benchmarks/results-requests-*.json"))[-1]
    text = " ".join((ROOT / "README.md").read_text().split())
    assert f"]({newest.relative_to(ROOT)})" in text, f"the README should cite {newest.name}"
    cases = {case["case"]: case for case in json.loads(newest.read_text())}
    batch, reindex = cases["batch"], cases["reindex (auto)"]
    assert batch["rows"] == reindex["rows"] == 1000
    assert "a cached `batch` costs one per row" in text and round(batch["requests_per_row"]) == 1
    assert "about a quarter of a request per row at 1,000 rows" in text
    assert round(reindex["requests_per_row"] * 4) == 1  # 0.125 to 0.375: "about a quarter"
