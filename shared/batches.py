"""Batch records: many jobs accepted together, counted by status in the same steps that move the jobs."""

from __future__ import annotations

import json
from typing import Any, cast

import redis

from shared import names

COUNTS = ("queued", "running", "succeeded", "failed", "canceled")


def get_batch(client: redis.Redis, batch_id: str) -> dict[str, Any] | None:
    """A batch record, decoded, or None."""
    # cast: redis-py types replies as bytes | str (it cannot tell decode_responses); samq's clients read bytes
    raw = cast(dict[bytes, bytes], client.hgetall(names.batch(batch_id)))
    if not raw:
        return None
    batch: dict[str, Any] = {k.decode(): v.decode() for k, v in raw.items()}
    for name in (*COUNTS, "total"):
        batch[name] = int(batch.get(name, 0))
    if "metadata" in batch:
        batch["metadata"] = json.loads(batch["metadata"])
    return batch


def batch_job_ids(client: redis.Redis, batch_id: str, start: int = 0, count: int = -1) -> list[str]:
    """A page of a batch's job ids in submission order (all of them by default)."""
    end = -1 if count < 0 else start + count - 1
    return [i.decode() for i in cast(list[bytes], client.lrange(names.batch_jobs(batch_id), start, end))]


def batch_view(batch: dict[str, Any], base_url: str) -> dict[str, Any]:
    """The public JSON of a batch (no key ids)."""
    done = batch["total"] == sum(batch[name] for name in ("succeeded", "failed", "canceled"))
    return {
        "id": batch["id"],
        "status": "completed" if done else "running" if batch["running"] or batch["total"] > batch["queued"]
        else "queued",
        "priority": batch.get("priority", "normal"),
        "total": batch["total"],
        "counts": {name: batch[name] for name in COUNTS},
        "created_at": batch.get("created_at"),
        "finished_at": batch.get("finished_at"),
        "metadata": batch.get("metadata"),
        "urls": {"self": f"{base_url}/v1/batches/{batch['id']}"},
    }
