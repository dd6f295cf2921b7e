"""schemathesis against the running stack: every check, at least 300 cases, no server error, no mismatch."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.procs import free_port
from harness.stack import Stack

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CONFIG = Path(__file__).parent / "schemathesis.toml"


@pytest.mark.timeout(600)
def test_schemathesis_finds_no_server_error_and_no_mismatch(stack, tmp_path):
    # A second gateway on the stack's Redis (its worker serves both) without the per-key rate limit, so the
    # fuzzer's cases reach the routes' logic instead of mostly answering 429.
    # Its own metrics folder: a gunicorn clears its folder when it starts, which would wipe the main gateway's.
    fuzz = Stack({**stack.env, "SAMQ_PORT": str(free_port()), "SAMQ_RATE_LIMIT_PER_MIN": "0",
                  "SAMQ_METRICS_DIR": str(tmp_path / "metrics")}, stack.logs)
    fuzz.start_gateway()
    try:
        key = fuzz.new_key(10)
        result = subprocess.run(
            [str(SCHEMATHESIS), "--config-file", str(CONFIG), "--no-color", "run", f"{fuzz.url}/openapi.json",
             "--checks", "all", "--max-examples", "25", "--seed", "20261201", "--header", f"x-api-key: {key}"],
            capture_output=True, text=True, timeout=540, cwd=tmp_path,  # its crash cache stays out of the repo
        )
    finally:
        fuzz.stop()
    out = result.stdout + result.stderr
    cases = re.search(r"(\d+) generated", out)
    assert result.returncode == 0, out[-6000:]
    assert cases and int(cases.group(1)) >= 300, out[-3000:]
    summary = out.split("SUMMARY")[-1]
    # "N generated, M found K unique failures" and the final "K failures, E errors in T s": every count is 0.
    failures = [int(n) for n in re.findall(r"(\d+)\s+(?:unique\s+)?failures?\b", summary, flags=re.I)]
    assert sum(failures) == 0 and "Failures:" not in summary, out[-3000:]
    print(f"\nfigure: schemathesis {cases.group(1)} cases, all checks, 0 failures")
