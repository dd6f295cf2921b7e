"""Webhook events survive a Redis restart (AOF on, as in production): a pending retry and an outbox entry
whose publisher died are both delivered afterwards by the same webhook worker."""

from __future__ import annotations

import subprocess
import time
import uuid
from shutil import which

import pytest
import redis

from harness.procs import free_port, wait_until
from harness.receiver import Receiver
from harness.stack import new_stack
from shared import names, outbox, webhooks
from shared.celery_apps import make_webhook_celery
from shared.keys import KeyStore, hash_key
from shared.webhooks import Event


class DurableRedis:
    """A redis-server that persists every write (appendfsync always) and can be restarted on its data."""

    def __init__(self, data_dir) -> None:
        self.port, self.data_dir = free_port(), data_dir
        self.proc = self._start()

    def _start(self) -> subprocess.Popen:
        proc = subprocess.Popen([which("redis-server"), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                                 "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.data_dir)],
                                stdout=subprocess.DEVNULL)
        wait_until(lambda: redis.Redis(port=self.port).ping(), 10, "redis-server")
        return proc

    def shutdown(self, save: bool = True) -> None:
        """Stop it cleanly (the AOF is already on disk either way)."""
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", *([] if save else ["nosave"])],
                       capture_output=True)
        self.proc.wait(timeout=10)

    def restart(self) -> None:
        """Stop it and start it again on the same port and data."""
        self.shutdown()
        self.proc = self._start()


@pytest.fixture
def durable(tmp_path, fault_models):
    server = DurableRedis(tmp_path)
    stack = new_stack(3, tmp_path, fault_models, None, SAMQ_REDIS_URL=f"redis://127.0.0.1:{server.port}/3",
                      SAMQ_WEBHOOK_ALLOW_HOSTS="127.0.0.1", SAMQ_WEBHOOK_RETRY_SCHEDULE_S="0,3")
    stack.start_webhook_worker()
    try:
        yield stack, server
    finally:
        stack.stop()
        server.shutdown(save=False)


def test_a_pending_retry_and_an_unpublished_event_are_delivered_after_redis_restarts(durable):
    stack, server = durable
    receiver = Receiver()
    client = stack.redis
    raw_key = KeyStore(client).create(1)
    secret = webhooks.secret(client, hash_key(raw_key))
    job_id = uuid.uuid4().hex
    client.hset(names.job(job_id), mapping={"id": job_id, "status": "succeeded", "key_id": hash_key(raw_key)})

    def event(name: str, *script: object) -> Event:
        return Event(id=f"msg_{uuid.uuid4().hex}", type="job.succeeded", key_id=hash_key(raw_key),
                     url=receiver.url(name, *script), at=time.time(), job_id=job_id)

    retried, stranded = event("retried", 503), event("stranded")
    outbox.publish(make_webhook_celery(stack.settings), client, [retried.to_json()])
    wait_until(lambda: client.zcard(names.WEBHOOK_RETRIES), 10, "the retry to be scheduled")
    client.zadd(names.OUTBOX, {stranded.to_json(): stranded.at})  # its publisher died right after the Lua step

    server.restart()
    try:
        wait_until(lambda: len(receiver.calls["retried"]) == 2 and receiver.calls["stranded"], 40,
                   "both deliveries after the restart", interval_s=0.3)
    finally:
        receiver.close()
    assert [c.webhook_id for c in receiver.calls["retried"]] == [retried.id, retried.id]
    assert receiver.calls["stranded"][0].verify(secret)["data"]["id"] == job_id
    assert sorted(d["status"] for d in webhooks.deliveries(client, job_id)) == [200, 200, 503]
