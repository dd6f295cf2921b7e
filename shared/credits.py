"""Credit balances. Credits move only inside these Lua scripts (settling a job lives in jobs.py)."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from shared import names
from shared.errors import InsufficientCredits, Unauthorized

RESERVE = """
-- Reserve the cost of one job.
-- KEYS[1] key hash  KEYS[2] credit balance  KEYS[3] hold of the job
-- ARGV[1] cost  ARGV[2] hold ttl (s)
-- Returns {code, balance}: 1 reserved, 0 not enough credits, -1 unknown key, -2 disabled key
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
if redis.call('HGET', KEYS[1], 'disabled') == '1' then return {-2, 0} end
local balance = tonumber(redis.call('GET', KEYS[2]) or '0')
local cost = tonumber(ARGV[1])
if balance < cost then return {0, balance} end
balance = redis.call('DECRBY', KEYS[2], cost)
redis.call('SET', KEYS[3], cost, 'EX', ARGV[2])
return {1, balance}
"""

REFUND = """
-- Give back what a job reserved, at most once: the hold is deleted as it is refunded.
-- KEYS[1] hold of the job  KEYS[2] credit balance
-- Returns the amount refunded (0 when there was nothing to refund)
local held = redis.call('GET', KEYS[1])
if not held then return 0 end
redis.call('DEL', KEYS[1])
redis.call('INCRBY', KEYS[2], held)
return tonumber(held)
"""

ADD = """
-- Add (or with a negative amount, remove) credits of an existing key.
-- KEYS[1] key hash  KEYS[2] credit balance
-- ARGV[1] amount
-- Returns the new balance, or false when the key does not exist
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('INCRBY', KEYS[2], ARGV[1])
"""


@dataclass(frozen=True)
class Reservation:
    """Credits held for one job."""

    job_id: str
    key_id: str
    cost: int
    balance: int


class Credits:
    """The credit scripts bound to one Redis connection."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._reserve = client.register_script(RESERVE)
        self._refund = client.register_script(REFUND)
        self._add = client.register_script(ADD)

    def balance(self, key_id: str) -> int:
        """Current balance of a key."""
        return int(self.client.get(names.credits(key_id)) or 0)

    def reserve(self, key_id: str, job_id: str, cost: int, hold_ttl_s: int) -> Reservation:
        """Take `cost` credits for a job or raise; nothing changes when it raises."""
        keys = [names.api_key(key_id), names.credits(key_id), names.hold(job_id)]
        code, balance = self._reserve(keys=keys, args=[cost, hold_ttl_s])
        if code == -1:
            raise Unauthorized("unknown API key")
        if code == -2:
            raise Unauthorized("this API key is disabled")
        if code == 0:
            raise InsufficientCredits(f"this call costs {cost} credits; the key has {balance}")
        return Reservation(job_id=job_id, key_id=key_id, cost=cost, balance=int(balance))

    def refund(self, key_id: str, job_id: str) -> int:
        """Give back a job's hold (once); returns the amount refunded."""
        return int(self._refund(keys=[names.hold(job_id), names.credits(key_id)]))

    def add(self, key_id: str, amount: int) -> int | None:
        """Add credits; None when the key does not exist."""
        result = self._add(keys=[names.api_key(key_id), names.credits(key_id)], args=[amount])
        return None if result is None else int(result)
