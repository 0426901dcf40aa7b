"""Wrong passwords counted per user name, in Redis, shared by every web replica.

After ``VIDFLEET_LOGIN_FAILURES_PER_USER`` wrong passwords for one name within
:data:`WINDOW_S`, every sign-in with that name waits until the window ends, from any
client and even with the right password: a guesser spread over many addresses gets no
more tries than one (the per-address :class:`web.auth.GuessLimiter` is the other half).
Unknown names count like known ones, so the answers say nothing of which names exist.
A right password before the limit clears the count. While Redis cannot answer, sign-in
goes on uncounted (a warning is logged), as the per-address limit does.
"""

from __future__ import annotations

import hashlib
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette import status

from db import live
from db.outages import describe_failure
from db.users import name_key
from web.errors import ApiError

logger = logging.getLogger(__name__)

WINDOW_S = 15 * 60


def _key(name: str) -> str:
    # Hashed: a hostile name (any length, any characters) makes a key of 64 hex digits.
    return live.login_failures_key(
        hashlib.sha256(name_key(name).encode("utf-8", "surrogatepass")).hexdigest()
    )


class LoginLimiter:
    def __init__(self, redis: Redis, *, limit: int) -> None:
        self.redis = redis
        self.limit = limit

    async def check(self, name: str) -> None:
        """Raise a 429 while ``name`` has had too many wrong passwords."""
        key = _key(name)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.ttl(key)
                failures, ttl = await pipe.execute()
        except (RedisError, OSError) as exc:
            logger.warning("could not read a name's failed sign-ins (%s)", describe_failure(exc))
            return
        if failures is not None and int(failures) >= self.limit:
            wait = max(int(ttl), 1)
            minutes = (wait + 59) // 60
            raise ApiError(
                status.HTTP_429_TOO_MANY_REQUESTS,
                "too_many_failures",
                f"too many wrong passwords for this user name; try again in {minutes} min",
                headers={"Retry-After": str(wait)},
            )

    async def failed(self, name: str) -> None:
        key = _key(name)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                # SET NX starts the window; INCR keeps its TTL.
                pipe.set(key, 0, ex=WINDOW_S, nx=True)
                pipe.incr(key)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            logger.warning("could not count a failed sign-in (%s)", describe_failure(exc))

    async def succeeded(self, name: str) -> None:
        try:
            await self.redis.delete(_key(name))
        except (RedisError, OSError) as exc:
            logger.warning("could not clear a name's failed sign-ins (%s)", describe_failure(exc))
