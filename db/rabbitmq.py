"""The broker on RabbitMQ (``BROKER_URL=amqp://...``): Dramatiq's RabbitmqBroker as every
process builds it, and the :class:`BrokerSender` through which the jobs service's
messages reach it.

Only the broker moves: the progress stream, heartbeats, cancel flags, slots, leases and
the worker registry stay on Redis (``REDIS_URL``). Dramatiq's RabbitmqBroker keeps one
pika connection per thread (``BlockingConnection`` is not thread-safe), declares each
queue durable with its delay queue (``<queue>.DQ``) and dead-letter queue
(``<queue>.XQ``), and publishes persistent messages; with ``confirm_delivery`` an
enqueue returns only once RabbitMQ has the message, so a send that did not raise is
one the lifeline need not repeat.

Priority stays what it is on Redis (DESIGN §3): the choice of queue. The queues are not
RabbitMQ priority queues (no ``max_priority``): a message's place inside its queue is
its arrival, as on Redis.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, TypeVar

import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.errors import ConnectionError as BrokerConnectionError
from dramatiq.middleware import Middleware

from db.queues import ACTOR_OF_KIND, Queue, job_message
from db.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: What a RabbitMQ that cannot be reached raises (through Dramatiq, or from pika).
UNAVAILABLE = (BrokerConnectionError, pika.exceptions.AMQPConnectionError)


def rabbitmq_broker(settings: Settings, middleware: list[Middleware]) -> RabbitmqBroker:
    """The fleet's RabbitMQ broker with ``middleware``. It connects on first use (per
    thread), so building it needs no server."""
    return RabbitmqBroker(url=settings.broker_url, confirm_delivery=True, middleware=middleware)


def queue_counts(broker: RabbitmqBroker) -> list[tuple[Queue, int, int, int]]:
    """Per queue, its ready, delayed and dead-lettered messages, as RabbitMQ counts them
    (a queue declare's answer; a message delivered to a worker and not yet acked is in
    none of them). Call it on the thread that owns the broker's connection.

    Raises:
      ConnectionClosed: RabbitMQ cannot be reached.
    """
    counts = []
    for queue in Queue:
        try:
            ready, delayed, dead = broker.get_queue_message_counts(queue)
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as exc:
            del broker.connection  # the next call on this thread connects afresh
            raise BrokerConnectionError(exc) from None
        counts.append((queue, ready, delayed, dead))
    return counts


class BrokerSender:
    """Sends job messages with the broker's own ``enqueue``.

    Why not in the outbox's Redis pipeline as :class:`db.outbox.MessageSender` does: a
    RabbitMQ publish is no Redis command. So the courier sends these after its round
    trip to Redis, which keeps a job's ``queued`` event ahead of its worker's events.

    Parameters:
      broker: the fleet's RabbitMQ broker (the workers' own, or the web's, with no
        middleware and no actors: messages go by actor name).
      actor_of_kind: job kind -> the name of the actor that runs it, asked at each send.
      executor: where sends run. None: on the caller's thread (a worker's thread, which
        Dramatiq gives a connection of its own). The web gives it one thread of its own
        (:func:`web_broker_sender`): pika blocks, so it stays off the event loop, and
        one thread is one connection per web process.
    """

    def __init__(
        self,
        broker: RabbitmqBroker,
        actor_of_kind: Callable[[], Mapping[str, str]] = lambda: ACTOR_OF_KIND,
        *,
        executor: Executor | None = None,
    ) -> None:
        self.broker = broker
        self.actor_of_kind = actor_of_kind
        self.executor = executor

    def send(self, jobs: list[dict[str, Any]]) -> dict[str, BaseException]:
        """Send the message of each job (mappings with ``id``, ``kind`` and ``queue``);
        returns the jobs whose send failed, by id, with why. A job of a kind no actor
        runs is logged and skipped."""
        failed: dict[str, BaseException] = {}
        kinds = self.actor_of_kind()
        for job in jobs:
            try:
                message = job_message(job["kind"], job["id"], job["queue"], actor_of_kind=kinds)
            except KeyError:
                logger.error("job %s has kind %r that no actor handles", job["id"], job["kind"])
                continue
            try:
                self.broker.enqueue(message)
            except UNAVAILABLE as exc:
                failed[job["id"]] = exc
        return failed

    async def send_async(self, jobs: list[dict[str, Any]]) -> dict[str, BaseException]:
        """:meth:`send` off the event loop."""
        return await self.call(lambda: self.send(jobs))

    async def call(self, work: Callable[[], T]) -> T:
        """Run ``work`` where this sender's sends run (the thread of its connection)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, work)

    def close(self) -> None:
        """Close the broker's connections on the thread that made them, then the thread."""
        if self.executor is None:
            self.broker.close()
            return
        self.executor.submit(self.broker.close).result()
        self.executor.shutdown()


def web_broker_sender(settings: Settings) -> BrokerSender:
    """A sender for the web: a RabbitMQ broker with no middleware, on one thread."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vidfleet-broker")
    return BrokerSender(rabbitmq_broker(settings, []), executor=executor)
