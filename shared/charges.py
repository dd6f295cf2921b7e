"""Per-job costs inside one ACCEPT: a batch mixing segment-everything items with others.

ACCEPT (shared/jobs.py) reserves one cost for every job of the call: the balance check is n x cost, and each
job's hold is that cost. A batch whose items cost differently (SAMQ_COST_EVERYTHING vs SAMQ_COST_PER_JOB) is
therefore accepted at the dearest item's cost, and LOWER_HOLDS then lowers each cheaper job's hold to its own
cost and gives the difference back, in one step, before any job is published (so no worker can have settled
one). The money invariants hold at every moment: credits_reserved goes down by what the holds go down by, and
the balance up by the same. The price of not touching ACCEPT: a mixed batch needs n x the dearest cost
available when it is submitted, although it is charged the sum of its items' costs.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from shared import names
from shared.records import JobRecord
from shared.redis_client import run_replicated, script

LOWER_HOLDS = """
-- Lower the holds of jobs just accepted to their own costs; refund the difference to the key.
-- KEYS[1] credit balance  KEYS[2] stats  KEYS[3..] per job: hold, job hash (2 keys each)
-- ARGV[1..] per job: its own cost
-- A hold already settled (gone) or not above the job's cost is left alone, so running this twice is harmless.
-- Returns the balance after the refund
local refund = 0
for i = 1, #ARGV do
  local hold, job = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  local held = tonumber(redis.call('GET', hold) or '-1')
  local own = tonumber(ARGV[i])
  if held > own then
    redis.call('SET', hold, own)
    redis.call('HSET', job, 'cost', own)
    refund = refund + held - own
  end
end
if refund > 0 then
  redis.call('INCRBY', KEYS[1], refund)
  redis.call('HINCRBY', KEYS[2], 'credits_reserved', -refund)
end
return tonumber(redis.call('GET', KEYS[1]) or '0')
"""

_LOWER_HOLDS = script(LOWER_HOLDS)


def mixed(jobs: Sequence[JobRecord]) -> bool:
    """Whether the jobs of one ACCEPT cost differently."""
    return len({job.cost for job in jobs}) > 1


def lower_holds(client: redis.Redis, jobs: Sequence[JobRecord], min_replicas: int = 0,
                wait_timeout_ms: int = 1000) -> int:
    """After ACCEPT reserved max(cost) per job: each hold down to its job's own cost. Returns the balance; raises
    NotReplicated when fewer than `min_replicas` replicas confirmed it (a failover could restore the dearer holds)."""
    keys = [names.credits(jobs[0].key_id), names.STATS]
    for job in jobs:
        keys += [names.hold(job.id), names.job(job.id)]
    return int(run_replicated(client, _LOWER_HOLDS, keys, [job.cost for job in jobs],
                              min_replicas, wait_timeout_ms))
