"""Credit balances. Reserving, committing and refunding happen in the job scripts (shared/jobs.py)."""

from __future__ import annotations

import redis

from shared import names

ADD = """
-- Add (or with a negative amount, remove) credits of an existing key.
-- KEYS[1] key hash  KEYS[2] credit balance
-- ARGV[1] amount
-- Returns the new balance, or false when the key does not exist
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('INCRBY', KEYS[2], ARGV[1])
"""


class Credits:
    """The credit scripts bound to one Redis connection."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._add = client.register_script(ADD)

    def balance(self, key_id: str) -> int:
        """Current balance of a key."""
        return int(self.client.get(names.credits(key_id)) or 0)

    def add(self, key_id: str, amount: int) -> int | None:
        """Add credits; None when the key does not exist."""
        result = self._add(keys=[names.api_key(key_id), names.credits(key_id)], args=[amount])
        return None if result is None else int(result)
