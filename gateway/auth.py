"""API key authentication and per-key rate limiting."""

from __future__ import annotations

import time

from flask import g, request

from gateway.services import services
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
    per_minute = services().settings.rate_limit_per_min
    now = time.time()
    key, count = services().keys.authenticate(raw, int(now // 60) if per_minute > 0 else None)
    if key is None:
        raise Unauthorized("unknown API key")
    if key.disabled:
        raise Unauthorized("this API key is disabled")
    g.key_id = key.key_id
    if per_minute > 0 and count > per_minute:
        wait = 60 - int(now) % 60
        raise RateLimited(f"more than {per_minute} requests this minute; retry after {wait} s", retry_after_s=wait)
    return key
