"""bench/gpu.py in its --smoke mode (tiny models and images on CPU), so a GPU run cannot fail on a typo."""

from __future__ import annotations

import json

from tests.helpers import load_bench


def test_gpu_benchmark_smoke_runs_every_code_path(tmp_path, redis_server):
    gpu = load_bench("gpu")
    out = tmp_path / "gpu.json"

    report = gpu.main(["--smoke", "--out", str(out), "--redis-url", redis_server])

    assert json.loads(out.read_text()) == report
    assert report["skipped"] == []
    modes = {(r["workload"], r["mode"]) for r in report["rows"]}
    assert {("points", m) for m in ("baseline", "fp32", "bf16", "bf16+compile", "bf16+compile x2")} <= modes
    assert {("text", "baseline"), ("text", "bf16+compile"), ("text", "bf16+compile x2")} <= modes
    # The real service too: a gateway and a worker process, jobs through the API, figures from their records.
    assert {("points", "worker bf16"), ("text", "worker bf16"), ("points", "worker bf16+compile")} <= modes
    for row in report["rows"]:
        assert row["images"] >= 1 and row["images_per_s"] > 0 and row["vs_baseline"] > 0
        if row["mode"].startswith("worker"):
            assert 0 < row["busy"] <= 1.0 and row["median_timings_ms"]["decode_ms"] > 0
        else:
            assert row["p95_ms"] >= row["p50_ms"] > 0
