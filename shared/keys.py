"""API keys: only their SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import cast

import redis

from shared import names
from shared.credits import Credits

KEY_PREFIX = "sk_"

AUTHENTICATE = """
-- Look up a key and count its request against the rate limit, in one round trip.
-- KEYS[1] key hash  KEYS[2] credit balance  KEYS[3] request counter of this minute
-- ARGV[1] counter ttl (s; 0 = no rate limit, nothing counted)
-- Returns {} for an unknown key, else {name, created, disabled, credits, requests this minute}
local key = redis.call('HMGET', KEYS[1], 'name', 'created', 'disabled')
if not key[2] then return {} end
local count = 0
if tonumber(ARGV[1]) > 0 and key[3] ~= '1' then
  count = redis.call('INCR', KEYS[3])
  if count == 1 then redis.call('EXPIRE', KEYS[3], ARGV[1]) end
end
return {key[1] or '', key[2], key[3] or '0', redis.call('GET', KEYS[2]) or '0', count}
"""


def hash_key(raw: str) -> str:
    """The key id: SHA-256 of the raw key, hex."""
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """What is known about a key (never the key itself)."""

    key_id: str
    name: str
    created: float
    disabled: bool
    credits: int


class KeyStore:
    """Create, look up and disable API keys."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.credits = Credits(client)
        self._authenticate = client.register_script(AUTHENTICATE)

    def create(self, credits: int, name: str = "") -> str:
        """Make a new key with a starting balance; returns the raw key (shown once)."""
        raw = KEY_PREFIX + secrets.token_urlsafe(32)
        key_id = hash_key(raw)
        with self.client.pipeline() as pipe:
            pipe.hset(names.api_key(key_id), mapping={"name": name, "created": time.time(), "disabled": 0})
            pipe.set(names.credits(key_id), int(credits))
            pipe.execute()
        return raw

    def get(self, key_id: str) -> ApiKey | None:
        """The key's record, or None."""
        # cast: redis-py types replies as bytes | str (it cannot tell decode_responses); samq's clients read bytes
        record = cast(dict[bytes, bytes], self.client.hgetall(names.api_key(key_id)))
        if not record:
            return None
        return ApiKey(
            key_id=key_id,
            name=record.get(b"name", b"").decode(),
            created=float(record.get(b"created", 0)),
            disabled=record.get(b"disabled") == b"1",
            credits=self.credits.balance(key_id),
        )

    def authenticate(self, raw: str, rate_window: int | None) -> tuple[ApiKey | None, int]:
        """Find a key by its raw value and count this request in `rate_window` (a minute number; None: no limit).

        Returns the key (None when unknown) and its requests in that minute (0 when not counted).
        """
        key_id = hash_key(raw)
        counter = names.rate(key_id, rate_window or 0)
        found = self._authenticate(keys=[names.api_key(key_id), names.credits(key_id), counter],
                                   args=[120 if rate_window is not None else 0])
        if not found:
            return None, 0
        name, created, disabled, credits, count = found
        key = ApiKey(key_id=key_id, name=name.decode(), created=float(created), disabled=disabled == b"1",
                     credits=int(credits))
        return key, int(count)

    def disable(self, key_id: str) -> bool:
        """Disable a key; False when it does not exist."""
        if not self.client.exists(names.api_key(key_id)):
            return False
        self.client.hset(names.api_key(key_id), "disabled", 1)
        return True
