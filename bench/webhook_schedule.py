"""Webhook retries against the schedule: one event to a receiver that always answers 503, through a real
webhook worker process, with the default schedule scaled down (SAMQ_WEBHOOK_RETRY_SCHEDULE_S).

    PYTHONPATH=$PWD .venv/bin/python bench/webhook_schedule.py --redis redis://127.0.0.1:6379/6 --scale 0.001

It flushes that Redis database, prints planned against seen delays and writes bench/webhook_schedule.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from pathlib import Path

import redis

from gateway.supervisor import webhook_command
from harness.procs import start, stop, wait_until
from harness.receiver import Receiver
from shared import names, outbox, webhooks
from shared.celery_apps import make_webhook_celery
from shared.keys import KeyStore, hash_key
from shared.settings import Settings

DEFAULT_SCHEDULE = Settings.model_fields["webhook_retry_schedule_s"].default


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", required=True, help="a Redis database this run may flush")
    parser.add_argument("--scale", type=float, default=0.001, help="factor applied to the default schedule")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("webhook_schedule.json"))
    args = parser.parse_args()
    planned = [float(d) * args.scale for d in DEFAULT_SCHEDULE.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="samq-bench-"))
    env = {"SAMQ_REDIS_URL": args.redis, "SAMQ_STORAGE_URL": f"file://{tmp}", "SAMQ_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
           "SAMQ_WEBHOOK_RETRY_SCHEDULE_S": ",".join(f"{d:g}" for d in planned), "PYTHONUNBUFFERED": "1"}
    os.environ.update(env)
    settings = Settings()
    client = redis.Redis.from_url(args.redis)
    client.flushdb()
    log = tmp / "webhooks.log"
    worker = start(webhook_command(settings), env, log)
    receiver = Receiver()
    try:
        wait_until(lambda: b"samq webhook worker ready" in log.read_bytes(), 60, "the webhook worker")
        key_id = hash_key(KeyStore(client).create(1))
        job_id = uuid.uuid4().hex
        client.hset(names.job(job_id), mapping={"id": job_id, "status": "failed", "key_id": key_id})
        event = webhooks.Event(id=f"msg_{uuid.uuid4().hex}", type="job.failed", key_id=key_id,
                               url=receiver.url("down", *[503] * len(planned)), at=time.time(), job_id=job_id)
        outbox.publish(make_webhook_celery(settings), client, [event.to_json()])
        wait_until(lambda: len(webhooks.deliveries(client, job_id)) == len(planned), sum(planned) * 1.2 + 30,
                   "every attempt", interval_s=0.5)
    finally:
        receiver.close()
        stop(worker)
    calls = receiver.calls["down"]
    seen = [0.0] + [b.at - a.at for a, b in zip(calls, calls[1:], strict=False)]
    rows = [{"attempt": i + 1, "planned_s": round(p, 3), "seen_s": round(s, 3)} for i, (p, s) in
            enumerate(zip(planned, seen, strict=True))]
    print(f"{'attempt':>7} {'planned s':>10} {'seen s':>8} {'seen - planned':>15}")
    for row in rows:
        print(f"{row['attempt']:>7} {row['planned_s']:>10.3f} {row['seen_s']:>8.3f} "
              f"{row['seen_s'] - row['planned_s']:>15.3f}")
    statuses = [d["status"] for d in webhooks.deliveries(client, job_id)]
    print(f"attempts {len(calls)}, one webhook-id: {len({c.webhook_id for c in calls}) == 1}, statuses {statuses}")
    args.out.write_text(json.dumps({"scale": args.scale, "attempts": rows, "statuses": statuses}, indent=1) + "\n")


if __name__ == "__main__":
    main()
