"""The money check every fault test ends with: no credit created, lost or held by nobody."""

from __future__ import annotations

import redis

from shared import names
from shared.keys import hash_key

TERMINAL = {"succeeded", "failed", "canceled"}


def _jobs(client: redis.Redis) -> list[dict[str, str]]:
    out = []
    for key in client.scan_iter(match=names.job("*"), count=1000):
        if key.count(b":") != 2:
            continue  # not a job hash (no sub-keys today, but stay exact)
        record = {k.decode(): v.decode() for k, v in client.hgetall(key).items()}
        if record:
            out.append(record)
    return out


def check_ledger(client: redis.Redis, started_with: dict[str, int]) -> dict[str, dict[str, int]]:
    """Assert, for every raw key given with its starting credits: start == balance + committed + held,
    and that every hold belongs to a live job (none orphaned, none missing). Returns the figures per key."""
    jobs = _jobs(client)
    holds = {k.decode().rsplit(":", 1)[1]: int(client.get(k) or 0) for k in client.scan_iter(match=names.hold("*"))}
    by_id = {j["id"]: j for j in jobs}
    orphans = {job_id: amount for job_id, amount in holds.items()
               if job_id not in by_id or by_id[job_id]["status"] in TERMINAL}
    assert not orphans, f"holds without a live job: {orphans}"
    unheld = [j["id"] for j in jobs if j["status"] not in TERMINAL and int(j.get("cost", 0)) and j["id"] not in holds]
    assert not unheld, f"live jobs holding no credits: {unheld}"
    figures = {}
    for raw, start in started_with.items():
        key_id = hash_key(raw)
        mine = [j for j in jobs if j.get("key_id") == key_id]
        committed = sum(int(j.get("cost", 0)) for j in mine if j["status"] == "succeeded")
        held = sum(holds.get(j["id"], 0) for j in mine)
        balance = int(client.get(names.credits(key_id)) or 0)
        figures[raw] = {"start": start, "balance": balance, "committed": committed, "held": held}
        assert start == balance + committed + held, f"ledger broken for a key: {figures[raw]}"
    return figures


def job_summary(client: redis.Redis) -> dict[str, int]:
    """How many jobs are in each status (for the figures in docs/RELIABILITY.md)."""
    counts: dict[str, int] = {}
    for job in _jobs(client):
        counts[job["status"]] = counts.get(job["status"], 0) + 1
    return counts

