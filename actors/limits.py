"""Fleet-wide limits on downloads: a cap on how many run at once (slots that expire with
their holder's heartbeat, with a fair waiting line: :mod:`db.slots`, used by
:mod:`actors.slot_gate`), and how many may start per minute on one site (Dramatiq's
WindowRateLimiter; over it, the job goes back to the queue, ``Postponed``, without
using an attempt).
"""

from __future__ import annotations

import random
from functools import lru_cache

from dramatiq.rate_limits import WindowRateLimiter
from dramatiq.rate_limits.backends import RedisBackend

from actors import stores
from db import live
from db.settings import get_settings
from db.slots import FairSlots


@lru_cache(maxsize=1)
def download_slots() -> FairSlots:
    settings = get_settings()
    return FairSlots(
        stores.redis_client(),
        live.DOWNLOAD_SLOTS_KEY,
        limit=settings.max_concurrent_downloads,
        ttl_s=settings.heartbeat_timeout,
    )


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
