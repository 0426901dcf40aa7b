"""How the web hands work on: publish a job's new state to the event stream, and send
its message to the workers. Both can fail without losing the job: the row is the truth
and the lifeline re-sends a queued job whose message never arrived."""

from __future__ import annotations

import logging
import random
from typing import Any
from uuid import uuid4

import dramatiq
import redis.asyncio as aioredis
from dramatiq.brokers.redis import DEFAULT_LUA_MAX_STACK, MAINTENANCE_SCALE, RedisBroker
from dramatiq.common import current_millis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError
from starlette.requests import Request

from db import live
from db.queues import job_message
from db.settings import Settings

logger = logging.getLogger(__name__)


class PipelinedEnqueuer:
    """Dramatiq's ``RedisBroker.enqueue`` for the event loop, as one command of a
    redis.asyncio pipeline.

    Why: Dramatiq's client is synchronous, so the web sent each message from a worker
    thread: a thread hop (which waits for the GIL while the event loop is busy) and a
    round trip of its own beside the publish's. Written here, the message rides in the
    publish's round trip, with no thread.

    What it keeps of ``RedisBroker.enqueue`` (Dramatiq 2.2; setup.cfg pins it below
    2.3): the message as the broker would write it, with a fresh ``redis_message_id``
    option per enqueue; the broker's ``before_enqueue`` and ``after_enqueue`` hooks
    around the write (no middleware in actors/broker.py has them today, but one added
    later runs as it would on any enqueue); and the broker's own ``dispatch`` Lua script
    with the arguments it passes: the broker's id (its heartbeat), heartbeat timeout and
    dead-message TTL, queue maintenance on the same one-in-``maintenance_chance``
    chance, and half the Lua stack as the unpack size. A job's message is never
    delayed, so the delay queue is not needed.

    Parameters:
      broker: the project's broker (:mod:`actors.broker`).
      client: an asyncio client of the same Redis.
    """

    def __init__(self, broker: RedisBroker, client: aioredis.Redis) -> None:
        self.broker = broker
        self.dispatch = client.register_script(broker.scripts["dispatch"].script)
        self._maxstack = client.register_script(broker.scripts["maxstack"].script)
        self._unpack_size: int | None = (
            DEFAULT_LUA_MAX_STACK // 2 if DEFAULT_LUA_MAX_STACK else None
        )

    async def unpack_size(self) -> int:
        """Half of the Lua stack of the server (asked once per process)."""
        if self._unpack_size is None:
            self._unpack_size = int(await self._maxstack()) // 2
        return self._unpack_size

    def arguments(self, message: dramatiq.Message, unpack_size: int) -> list[Any]:
        """ARGV of the ``dispatch`` script that enqueues ``message``."""
        broker = self.broker
        maintenance = random.randint(1, MAINTENANCE_SCALE) <= broker.maintenance_chance
        return [
            "enqueue",
            current_millis(),
            message.queue_name,
            broker.broker_id,
            broker.heartbeat_timeout,
            broker.dead_message_ttl,
            int(maintenance),
            unpack_size,
            message.options["redis_message_id"],
            message.encode(),
        ]

    async def add(
        self, pipe: Pipeline, message: dramatiq.Message
    ) -> tuple[dramatiq.Message, list[Any]]:
        """Put the enqueue of ``message`` on ``pipe``: the message as enqueued, and the
        script's ARGV (to run it again after a ``NOSCRIPT``)."""
        unpack_size = await self.unpack_size()
        message = message.copy(options={"redis_message_id": str(uuid4())})
        self.broker.logger.debug(
            "Enqueueing message %r on queue %r.", message.message_id, message.queue_name
        )
        self.broker.emit_before("enqueue", message, None)
        args = self.arguments(message, unpack_size)
        pipe.evalsha(self.dispatch.sha, 1, self.broker.namespace, *args)
        return message, args

    async def retry(self, args: list[Any]) -> None:
        """Run the ``dispatch`` script again, loading it first (after a ``NOSCRIPT``)."""
        await self.dispatch(keys=[self.broker.namespace], args=args)

    def enqueued(self, message: dramatiq.Message) -> None:
        self.broker.emit_after("enqueue", message, None)


def make_enqueuer(settings: Settings, client: aioredis.Redis) -> PipelinedEnqueuer:
    """The web's enqueuer, on ``client``: a Redis broker of its own, built from
    ``settings`` with no middleware and no actors, gives it the namespace, the
    ``dispatch`` script and a broker id whose heartbeat the script keeps. The web sends
    messages by actor name (:func:`db.queues.job_message`), so it never imports the
    actors (and with them yt-dlp, PyAV and periodiq)."""
    broker = RedisBroker(
        url=settings.redis_url,
        middleware=[],
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
    )
    return PipelinedEnqueuer(broker, client)


async def publish(request: Request, job: dict[str, Any]) -> None:
    keys, args = live.publish_arguments(job)
    try:
        await request.app.state.publish(keys=keys, args=args)
    except Exception:
        logger.warning("could not publish job %s", job["id"], exc_info=True)


async def publish_and_send(request: Request, job: dict[str, Any]) -> None:
    """Publish the new job's state and enqueue its message, in one round trip to Redis.

    The publish goes first, so the ``queued`` event precedes any event of a worker
    that takes the job at once.
    """
    state = request.app.state
    enqueuer: PipelinedEnqueuer = state.enqueuer
    keys, publish_args = live.publish_arguments(job)
    try:
        message = job_message(job["kind"], job["id"], job["queue"])
        async with state.redis.pipeline(transaction=False) as pipe:
            pipe.evalsha(state.publish.sha, len(keys), *keys, *publish_args)
            message, send_args = await enqueuer.add(pipe, message)
            published, sent = await pipe.execute(raise_on_error=False)
    except Exception:
        logger.warning("could not publish job %s", job["id"], exc_info=True)
        logger.warning("could not enqueue job %s now; the lifeline will", job["id"], exc_info=True)
        return
    try:
        if isinstance(published, NoScriptError):  # Redis restarted, or its scripts flushed
            await state.publish(keys=keys, args=publish_args)
        elif isinstance(published, Exception):
            raise published
    except Exception:
        logger.warning("could not publish job %s", job["id"], exc_info=True)
    try:
        if isinstance(sent, NoScriptError):
            await enqueuer.retry(send_args)
        elif isinstance(sent, Exception):
            raise sent
    except Exception:
        logger.warning("could not enqueue job %s now; the lifeline will", job["id"], exc_info=True)
        return
    enqueuer.enqueued(message)
