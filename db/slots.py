"""Fleet-wide slots: at most ``limit`` holders of a kind of work at once, across every
process and machine on one Redis. Downloads (``actors.limits``) and transcodes
(``web.sessions``) both take theirs here.

Written here rather than taken from Dramatiq's ConcurrentRateLimiter: that one counts
holders with one TTL for the whole counter, so a SIGKILLed holder's slot stays taken
until the counter expires, and work longer than the TTL frees its slot early. Here each
slot is a member of a sorted set scored with its expiry, renewed by the holder's
heartbeat and dropped once the holder stops beating.

One class for both kinds of client: with a ``redis.Redis`` the methods return their
results, with a ``redis.asyncio.Redis`` they return awaitables of the same.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

ACQUIRE_SCRIPT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
  return 1
end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
  return 1
end
return 0
"""


class Slots:
    """At most ``limit`` holders in the sorted set ``key`` at once.

    Parameters:
      client: a Redis client, sync or asyncio (``decode_responses=True``).
      key: the sorted set (holder -> when its slot expires).
      limit: how many slots there are.
      ttl_s: how long a slot outlives its holder's last renewal.
    """

    def __init__(self, client: Any, key: str, *, limit: int, ttl_s: float) -> None:
        self.client = client
        self.key = key
        self.limit = limit
        self.ttl_s = ttl_s
        self._acquire = client.register_script(ACQUIRE_SCRIPT)

    def acquire(self, holder: str) -> Any:
        """Take a slot (or renew the one ``holder`` has): true if it has one now.
        Expired slots are dropped first."""
        now = time.time()
        args = [now, now + self.ttl_s, holder, self.limit]
        return self._acquire(keys=[self.key], args=args)

    def release(self, holder: str) -> Any:
        return self.client.zrem(self.key, holder)

    def renew(self, holders: Iterable[str], *, on: Any = None) -> Any:
        """Push the expiry of slots that exist (``xx``: a lapsed slot is not retaken);
        ``on``: a pipeline to queue the command on instead of sending it."""
        client = self.client if on is None else on
        return client.zadd(self.key, dict.fromkeys(holders, time.time() + self.ttl_s), xx=True)

    def holders(self) -> Any:
        """The holders whose slots have not expired."""
        return self.client.zrangebyscore(self.key, time.time(), "+inf")
