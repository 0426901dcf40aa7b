"""Fleet-wide limits on downloads: a cap on how many run at once, and how many may start
per minute on one site. When a limit says "not yet", the job goes back to the queue
(``Postponed``) without using an attempt.

The cap is written here rather than taken from Dramatiq's ConcurrentRateLimiter: that
one counts holders with one TTL for the whole counter, so a SIGKILLed worker's slot
stays taken until the counter expires, and a download longer than the TTL frees its
slot early. Here each slot is a member of a sorted set scored with its expiry, renewed
by the holder's heartbeat and dropped when the holder stops beating. The per-site limit
is Dramatiq's WindowRateLimiter, unchanged.
"""

from __future__ import annotations

import random
import time
from functools import lru_cache

from dramatiq.rate_limits import WindowRateLimiter
from dramatiq.rate_limits.backends import RedisBackend

from actors import stores
from db import live
from db.settings import get_settings

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


class DownloadSlots:
    """At most ``limit`` holders at once across the fleet.

    Parameters:
      limit: how many slots there are.
      ttl_s: how long a slot outlives its holder's last heartbeat.
    """

    def __init__(self, *, limit: int, ttl_s: float) -> None:
        self.limit = limit
        self.ttl_s = ttl_s
        self.client = stores.redis_client()
        self._acquire = self.client.register_script(ACQUIRE_SCRIPT)

    def acquire(self, holder: str) -> bool:
        now = time.time()
        keys = [live.DOWNLOAD_SLOTS_KEY]
        return bool(self._acquire(keys=keys, args=[now, now + self.ttl_s, holder, self.limit]))

    def release(self, holder: str) -> None:
        self.client.zrem(live.DOWNLOAD_SLOTS_KEY, holder)


@lru_cache(maxsize=1)
def download_slots() -> DownloadSlots:
    settings = get_settings()
    return DownloadSlots(limit=settings.max_concurrent_downloads, ttl_s=settings.heartbeat_timeout)


@lru_cache(maxsize=1)
def _rate_backend() -> RedisBackend:
    return RedisBackend(url=get_settings().redis_url)


def site_allows_a_start(site: str) -> bool:
    """One more download from ``site`` fits in the per-minute limit (and is counted)."""
    per_minute = get_settings().site_downloads_per_minute
    if not per_minute:
        return True
    limiter = WindowRateLimiter(_rate_backend(), f"site:{site}", limit=per_minute, window=60)
    with limiter.acquire(raise_on_failure=False) as acquired:
        return bool(acquired)


def retry_delay_ms() -> int:
    """When a postponed download tries again: soon, spread out so waiters don't stampede."""
    return random.randint(1_000, 5_000)
