"""Stream sessions: every remux or transcode run, registered in Redis while it lasts,
and the fleet-wide caps on how many run at once.

A session holds two slots (:mod:`db.slots`): one of ``VIDFLEET_MAX_TRANSCODES`` for the
whole fleet and one of ``VIDFLEET_MAX_TRANSCODES_PER_CLIENT`` for its client's address.
Each web process renews the slots of its own sessions every third of the heartbeat
timeout, so the slots of a web process that was SIGKILLed lapse within that timeout.
A session's public fields (video, mode, quality, format, client, backend, bytes sent,
when it started, its time to first byte, the replica) live in ``vf:stream:<id>`` with the same
lifetime, for ``GET /api/system/streams``. Direct play takes no slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError
from starlette import status
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from db import live
from db.slots import Slots
from web.apidoc import INT, array, documented, obj
from web.errors import ApiError, describe_failure

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 10
REPLICA = f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class StreamSession:
    video_id: int
    mode: str
    quality: str
    format: str
    client: str
    backend: str = "ffmpeg"
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = field(default_factory=time.time)
    bytes_sent: int = 0
    ttfb_ms: float | None = None
    replica: str = REPLICA

    def public(self) -> dict[str, str]:
        return {name: "" if value is None else str(value) for name, value in asdict(self).items()}


class StreamsFull(Exception):
    """No transcode slot is free, for the fleet or for this client."""


class StreamRegistry:
    """The process's live sessions and the fleet's slots for them.

    Parameters:
      client: the app's asyncio Redis client.
      limit: transcodes at once across the fleet.
      per_client: transcodes at once for one client address.
      ttl_s: how long a slot outlives its holder's last renewal.
    """

    def __init__(self, client: aioredis.Redis, *, limit: int, per_client: int, ttl_s: float):
        self.client = client
        self.per_client = per_client
        self.ttl_s = ttl_s
        self.slots = Slots(client, live.TRANSCODE_SLOTS_KEY, limit=limit, ttl_s=ttl_s)
        self.live: dict[str, StreamSession] = {}
        # This process's totals since it started (GET /api/system/streams).
        self.totals: Counter[str] = Counter()
        self._beating: asyncio.Task[None] | None = None

    def _client_slots(self, client: str) -> Slots:
        return Slots(
            self.client,
            live.client_transcode_slots_key(client),
            limit=self.per_client,
            ttl_s=self.ttl_s,
        )

    async def open(self, session: StreamSession) -> None:
        """Take the session's slots and register it.

        Raises:
          StreamsFull: the fleet or this client has no slot free.
        """
        if not await self.slots.acquire(session.id):
            raise StreamsFull(
                f"the fleet runs {self.slots.limit} transcodes at once, its most; "
                "play the file directly or retry later"
            )
        if not await self._client_slots(session.client).acquire(session.id):
            await self.slots.release(session.id)
            raise StreamsFull(
                f"this client has {self.per_client} transcodes running, its most; close one first"
            )
        self.live[session.id] = session
        await self._save(session)

    def cache(self, *, hit: bool) -> None:
        self.totals["cache_hits" if hit else "cache_misses"] += 1

    async def close(self, session: StreamSession, *, failed: bool = False) -> None:
        """Free the session's slots and forget it (once; errors are logged, not raised:
        the slots lapse by themselves)."""
        if self.live.pop(session.id, None) is None:
            return
        self.totals[f"sessions_{session.mode}"] += 1
        self.totals["bytes_sent"] += session.bytes_sent
        if failed:
            self.totals["failures"] += 1
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.zrem(live.TRANSCODE_SLOTS_KEY, session.id)
                pipe.zrem(live.client_transcode_slots_key(session.client), session.id)
                pipe.delete(live.stream_session_key(session.id))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            logger.warning("could not free a stream's slots (%s)", describe_failure(exc))

    async def update(self, session: StreamSession) -> None:
        """Write a live session's fields again (its time to first byte, say)."""
        with contextlib.suppress(RedisError, OSError):
            await self._save(session)

    async def _save(self, session: StreamSession) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            self._queue_save(pipe, session)
            await pipe.execute()

    def _queue_save(self, pipe: Pipeline, session: StreamSession) -> None:
        key = live.stream_session_key(session.id)
        fields: dict[Any, Any] = session.public()  # redis-py's Mapping type is invariant
        pipe.hset(key, mapping=fields)
        pipe.expire(key, int(self.ttl_s) + 1)

    async def beat(self) -> None:
        """Renew the slots and records of this process's sessions, in one round trip."""
        sessions = list(self.live.values())
        if not sessions:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            self.slots.renew([session.id for session in sessions], on=pipe)
            for session in sessions:
                self._client_slots(session.client).renew([session.id], on=pipe)
                self._queue_save(pipe, session)
            await pipe.execute()

    async def run(self) -> None:
        """Beat every third of the TTL until cancelled."""
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                await self.beat()
            except (RedisError, OSError) as exc:
                logger.warning("could not renew the streams' slots (%s)", describe_failure(exc))

    def start(self) -> None:
        self._beating = asyncio.create_task(self.run(), name="stream-sessions")

    async def stop(self) -> None:
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating
        for session in list(self.live.values()):
            await self.close(session)

    async def sessions(self) -> list[dict[str, Any]]:
        """Every live session of the fleet, oldest first."""
        holders = cast(list[str], await self.slots.holders())
        async with self.client.pipeline(transaction=False) as pipe:
            for holder in holders:
                pipe.hgetall(live.stream_session_key(holder))
            records = cast(list[dict[str, str]], await pipe.execute())
        out = [_typed(record) for record in records if record]
        return sorted(out, key=lambda record: record["started"])


def _typed(record: dict[str, str]) -> dict[str, Any]:
    typed: dict[str, Any] = dict(record)
    typed["video_id"] = int(record["video_id"])
    typed["bytes_sent"] = int(record["bytes_sent"])
    typed["started"] = float(record["started"])
    typed["ttfb_ms"] = float(record["ttfb_ms"]) if record.get("ttfb_ms") else None
    return typed


def streams_full(exc: StreamsFull) -> ApiError:
    return ApiError(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        "too_many_streams",
        str(exc),
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


@documented(
    "The fleet's live streams (admin)",
    {
        200: obj(
            {"streams": array({"type": "object"}), "limit": INT, "this_process": {"type": "object"}}
        )
    },
    errors=(403,),
)
async def list_streams(request: Request) -> JSONResponse:
    if request.scope.get("role") != "admin":
        raise ApiError(status.HTTP_403_FORBIDDEN, "forbidden", "only the admin token lists streams")
    registry: StreamRegistry = request.app.state.streams
    return JSONResponse(
        {
            "streams": await registry.sessions(),
            "limit": registry.slots.limit,
            "this_process": {"replica": REPLICA, **registry.totals},
        }
    )


routes = [Route("/api/system/streams", list_streams, methods=["GET"])]
