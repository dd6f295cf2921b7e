"""The `samq keys` admin commands, as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SAMQ = Path(sys.executable).parent / "samq"


def _samq(stack, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SAMQ_REDIS_URL": stack.env["SAMQ_REDIS_URL"]}
    return subprocess.run([str(SAMQ), *args], env=env, capture_output=True, text=True, timeout=60)


def test_keys_lifecycle(stack):
    created = _samq(stack, "keys", "create", "--credits", "100", "--name", "cli-user")
    assert created.returncode == 0, created.stderr
    raw = created.stdout.strip().splitlines()[-1]
    assert raw.startswith("sk_") and stack.balance(raw) == 100
    shown = _samq(stack, "keys", "show", raw)
    assert "credits: 100" in shown.stdout and "name: cli-user" in shown.stdout
    added = _samq(stack, "keys", "add-credits", raw, "5")
    assert added.stdout.strip() == "105" and stack.balance(raw) == 105
    assert stack.get("/v1/credits", raw).json() == {"credits": 105, "name": "cli-user"}
    assert _samq(stack, "keys", "disable", raw).returncode == 0
    assert stack.get("/v1/credits", raw).status_code == 401
    assert "disabled: true" in _samq(stack, "keys", "show", raw).stdout


def test_unknown_key_and_bad_usage(stack):
    for args in (("keys", "show", "sk_nope"), ("keys", "add-credits", "sk_nope", "3"), ("keys", "disable", "sk_no")):
        result = _samq(stack, *args)
        assert result.returncode == 1 and "unknown key" in result.stderr
    assert _samq(stack, "keys", "create", "--credits", "lots").returncode == 2
