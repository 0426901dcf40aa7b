"""One MusicBrainz request at a time across the whole fleet, each sent at least a second
after the one before it was answered: MusicBrainz allows one request a second per
client, and every worker process on every machine is the same client to it.

The turn is Dramatiq's ``ConcurrentRateLimiter(limit=1)`` on the Redis backend, a
fleet-wide mutex, held through the request and for :data:`SPACING_S` after its answer
(or failure). Why not a limiter that counts requests: Dramatiq's ``WindowRateLimiter``
and ``BucketRateLimiter`` count in windows aligned to whole seconds (the window's keys
are ``<key>@<int(time.time())>``), so two requests at x.99 s and (x+1).01 s fall in two
windows and both pass, 20 ms apart. Holding the mutex until a second after the answer
also covers network latency: the next request starts after the previous one arrived,
plus a second. The price is a little under one request a second (one per second plus a
round trip), which MusicBrainz's rule allows.

The mutex's key expires after :data:`HOLD_TTL_MS`, so a worker killed while holding it
blocks the others that long at most; a request with its spacing (its timeout, 10 s, plus
the second) ends well before that, so no holder outlives its key and releases another's.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache

from dramatiq.rate_limits import ConcurrentRateLimiter
from dramatiq.rate_limits.backends import RedisBackend

from actors import stores
from db import live
from media.errors import Cancelled

#: Seconds between an answer and the next request.
SPACING_S = 1.0
HOLD_TTL_MS = 60_000
#: How often a thread waiting for the turn asks again (with jitter, so waiters spread).
POLL_S = 0.05


@lru_cache(maxsize=1)
def _backend() -> RedisBackend:
    return RedisBackend(client=stores.redis_client())


@contextmanager
def musicbrainz_turn(should_cancel: Callable[[], bool] = lambda: False) -> Iterator[None]:
    """Wait for the fleet's turn to ask MusicBrainz, hold it for the request, and give
    it up :data:`SPACING_S` after.

    Raises:
      Cancelled: ``should_cancel`` returned true while waiting.
    """
    turn = ConcurrentRateLimiter(_backend(), live.MUSICBRAINZ_TURN_KEY, limit=1, ttl=HOLD_TTL_MS)
    while True:
        with turn.acquire(raise_on_failure=False) as acquired:
            if acquired:
                try:
                    yield
                finally:
                    time.sleep(SPACING_S)  # still holding the turn: this is the spacing
                return
        if should_cancel():
            raise Cancelled()
        # The limiter has no blocking acquire: poll it.
        time.sleep(POLL_S * random.uniform(0.5, 1.5))
