"""bench/gpu.py in its --smoke mode (tiny models and images on CPU), so a GPU run cannot fail on a typo."""

from __future__ import annotations

import json

from tests.helpers import load_bench


def test_gpu_benchmark_smoke_runs_every_code_path(tmp_path):
    gpu = load_bench("gpu")
    out = tmp_path / "gpu.json"

    report = gpu.main(["--smoke", "--out", str(out)])

    assert json.loads(out.read_text()) == report
    assert report["skipped"] == []
    modes = {(r["workload"], r["mode"]) for r in report["rows"]}
    assert {("points", m) for m in ("baseline", "fp32", "bf16", "bf16+compile", "bf16+compile x2")} <= modes
    assert {("text", "baseline"), ("text", "bf16+compile"), ("text", "bf16+compile x2")} <= modes
    for row in report["rows"]:
        assert row["images"] >= 1 and row["images_per_s"] > 0 and row["p95_ms"] >= row["p50_ms"] > 0
        assert row["vs_baseline"] > 0
