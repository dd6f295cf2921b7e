"""API keys: only their SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import redis

from shared import names
from shared.credits import Credits

KEY_PREFIX = "sk_"


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
        record = self.client.hgetall(names.api_key(key_id))
        if not record:
            return None
        return ApiKey(
            key_id=key_id,
            name=record.get(b"name", b"").decode(),
            created=float(record.get(b"created", 0)),
            disabled=record.get(b"disabled") == b"1",
            credits=self.credits.balance(key_id),
        )

    def lookup(self, raw: str) -> ApiKey | None:
        """Find a key by its raw value."""
        return self.get(hash_key(raw))

    def disable(self, key_id: str) -> bool:
        """Disable a key; False when it does not exist."""
        if not self.client.exists(names.api_key(key_id)):
            return False
        self.client.hset(names.api_key(key_id), "disabled", 1)
        return True
