"""API key authentication and per-key rate limiting."""

from __future__ import annotations

import time

from flask import g, request

from gateway.services import services
from shared import names
from shared.errors import RateLimited, Unauthorized
from shared.keys import ApiKey


def _raw_key() -> str | None:
    key = request.headers.get("x-api-key", "").strip()
    if key:
        return key
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def authenticate() -> ApiKey:
    """The caller's key (x-api-key or Authorization: Bearer), rate limited; raises 401/429."""
    raw = _raw_key()
    if raw is None:
        raise Unauthorized("missing API key: send it in the x-api-key header")
    svc = services()
    key = svc.keys.lookup(raw)
    if key is None:
        raise Unauthorized("unknown API key")
    if key.disabled:
        raise Unauthorized("this API key is disabled")
    g.key_id = key.key_id
    _rate_limit(key.key_id, svc.settings.rate_limit_per_min)
    return key


def _rate_limit(key_id: str, per_minute: int) -> None:
    if per_minute <= 0:
        return
    window = int(time.time() // 60)
    counter = names.rate(key_id, window)
    svc = services()
    with svc.redis.pipeline() as pipe:
        pipe.incr(counter)
        pipe.expire(counter, 120)
        count, _ = pipe.execute()
    if count > per_minute:
        wait = 60 - int(time.time()) % 60
        raise RateLimited(f"more than {per_minute} requests this minute; retry after {wait} s", retry_after_s=wait)
