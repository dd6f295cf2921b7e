"""Webhooks as a key sees them: events, secrets and signatures (Standard Webhooks), disabled URLs, the log."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any, cast

import redis

from shared import names
from shared.fetch import Target, check_url
from shared.redis_client import script
from shared.settings import Settings

SECRET_PREFIX = "whsec_"
ROTATION_OVERLAP_S = 24 * 3600  # after a rotation the old secret still signs deliveries this long

ROTATE = """
-- Give a key a new webhook secret; the old one keeps signing until ARGV[2]; disabled URLs are enabled again.
-- KEYS[1] the key's hash  KEYS[2] its disabled webhook URLs
-- ARGV[1] the new secret  ARGV[2] the old one's end (epoch s)
local old = redis.call('HGET', KEYS[1], 'webhook_secret')
if old then redis.call('HSET', KEYS[1], 'webhook_secret_prev', old, 'webhook_secret_prev_until', ARGV[2]) end
redis.call('HSET', KEYS[1], 'webhook_secret', ARGV[1])
redis.call('DEL', KEYS[2])
return 1
"""

_ROTATE = script(ROTATE)


@dataclass(frozen=True)
class Event:
    """One webhook event as the job's Lua step writes it to the outbox (JSON)."""

    id: str  # the webhook-id: the same on every attempt and redelivery
    type: str  # job.started | job.succeeded | job.failed | job.canceled | batch.completed
    key_id: str
    url: str
    at: float  # when it happened (epoch s)
    job_id: str | None = None
    batch_id: str | None = None

    @classmethod
    def parse(cls, raw: str | bytes) -> Event:
        """An event from its JSON (unknown fields ignored)."""
        data = json.loads(raw)
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})

    @property
    def subject(self) -> str:
        """The job or batch the event is about (its delivery log lives under this id)."""
        return self.job_id or self.batch_id or ""

    def to_json(self) -> str:
        """The event as JSON."""
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None})


def new_secret() -> str:
    """A fresh signing secret: whsec_ and 24 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def secret(client: redis.Redis, key_id: str) -> str:
    """The key's current secret, made on first use (concurrent first uses agree on one)."""
    client.hsetnx(names.api_key(key_id), "webhook_secret", new_secret())
    # cast: redis-py types replies as bytes | str (it cannot tell decode_responses); samq's clients read bytes
    # (and HSETNX just above leaves the field set)
    return cast(bytes, client.hget(names.api_key(key_id), "webhook_secret")).decode()


def rotate(client: redis.Redis, key_id: str) -> str:
    """Make a new secret (the old one signs too for 24 h) and enable every disabled URL again; returns it."""
    fresh = new_secret()
    keys = [names.api_key(key_id), names.webhook_disabled(key_id)]
    _ROTATE(keys=keys, args=[fresh, time.time() + ROTATION_OVERLAP_S], client=client)
    return fresh


def signing_secrets(client: redis.Redis, key_id: str) -> list[str]:
    """The secrets a delivery is signed with now: the current one, and the previous one during its overlap."""
    current = secret(client, key_id)
    prev, until = cast(list[bytes | None], client.hmget(names.api_key(key_id), "webhook_secret_prev",
                                                         "webhook_secret_prev_until"))  # bytes: see secret()
    if prev and until and float(until) > time.time():
        return [current, prev.decode()]
    return [current]


def sign(secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` per secret, space-separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    parts = []
    for s in secrets_:
        key = base64.b64decode(s.removeprefix(SECRET_PREFIX))
        parts.append("v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode())
    return " ".join(parts)


def check_webhook_url(url: str, settings: Settings, field: str = "webhook_url") -> Target:
    """The SSRF guard of image URLs applied to a receiver (SAMQ_WEBHOOK_ALLOW_HOSTS exempts hosts); raises 400."""
    return check_url(url, settings.allowed_webhook_hosts, field)


def disable_url(client: redis.Redis, key_id: str, url: str) -> None:
    """Stop delivering to `url` for this key (it answered 410 Gone)."""
    client.hset(names.webhook_disabled(key_id), url, time.time())


def enable_url(client: redis.Redis, key_id: str, url: str) -> bool:
    """Deliver to `url` again; False when it was not disabled."""
    return bool(client.hdel(names.webhook_disabled(key_id), url))


def disabled_urls(client: redis.Redis, key_id: str) -> dict[str, float]:
    """The key's disabled URLs and when each was disabled (epoch s)."""
    disabled = cast(dict[bytes, bytes], client.hgetall(names.webhook_disabled(key_id)))  # bytes: see secret()
    return {k.decode(): float(v) for k, v in disabled.items()}


def is_disabled(client: redis.Redis, key_id: str, url: str) -> bool:
    """Whether deliveries to `url` are off for this key."""
    return bool(client.hexists(names.webhook_disabled(key_id), url))


def log_attempt(client: redis.Redis, subject_key: str, subject_id: str, attempt: dict[str, Any],
                retention_s: int) -> int:
    """Append one attempt to the delivery log of a job or batch, kept as long as it; returns its number n.

    A job still running has no TTL yet: its log then gets the full retention from now.
    """
    ttl = client.ttl(subject_key)
    with client.pipeline() as pipe:
        pipe.rpush(names.deliveries(subject_id), json.dumps(attempt))
        pipe.expire(names.deliveries(subject_id), ttl if ttl > 0 else retention_s)
        n = pipe.execute()[0]
    return int(n)


def deliveries(client: redis.Redis, subject_id: str) -> list[dict[str, Any]]:
    """Every logged attempt of a job or batch, oldest first, each with its number n (from 1)."""
    raw = client.lrange(names.deliveries(subject_id), 0, -1)
    return [{"n": i, **json.loads(item)} for i, item in enumerate(raw, start=1)]
