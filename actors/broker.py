"""The broker (Redis, or RabbitMQ with ``BROKER_URL``), its middleware and its queues,
built from the settings.

PeriodiqMiddleware must be on the broker before any actor is declared, and every queue
is declared up front so a worker consumes a message whatever queue it was sent to.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import dramatiq
import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)
from periodiq import PeriodiqMiddleware

from actors.job_tracking import JobTracking
from actors.lifeline_runner import LifelineRunner
from actors.log_format import LogFormat
from actors.media_priority import MediaPriority
from actors.orphans import OrphanRecovery
from actors.retry_policy import RETRY_MAX_BACKOFF_MS
from actors.schedule_runs import ScheduleRuns
from actors.shutdown import GroupSignals
from actors.slot_gate import SlotGate
from actors.warm_processes import WarmMediaProcesses
from actors.worker_metrics import worker_metrics
from actors.worker_registry import WorkerRegistry
from db import live
from db.queues import Queue
from db.rabbitmq import rabbitmq_broker
from db.settings import Settings, get_settings


class _Consumer(_RedisConsumer):
    """Dramatiq's Redis consumer, with a Redis that times out treated as the lost
    connection it is.

    Dramatiq turns only ``redis.ConnectionError`` into its ``ConnectionClosed``. A
    ``redis.TimeoutError`` (Redis stalled past the socket timeout) took another way: the
    consumer thread logged an unexpected error and closed the consumer, whose give-back
    of its delayed messages timed out again, uncaught, and the thread ended for good;
    that worker stopped consuming the queue until it restarted (seen with a delay-queue
    consumer after a 12 s stall). As ``ConnectionClosed`` it is logged and the consumer
    is built again a second later; what it held stays in its ack set, where
    :mod:`actors.orphans` finds it.
    """

    def __next__(self) -> MessageProxy | None:
        with _lost_on_timeout():
            return super().__next__()

    def ack(self, message: MessageProxy) -> None:
        with _lost_on_timeout():
            super().ack(message)

    def nack(self, message: MessageProxy) -> None:
        with _lost_on_timeout():
            super().nack(message)

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        with _lost_on_timeout():
            super().requeue(messages)


@contextlib.contextmanager
def _lost_on_timeout() -> Iterator[None]:
    try:
        yield
    except (redis.TimeoutError, redis.ConnectionError) as exc:
        raise ConnectionClosed(exc) from None


class FleetBroker(RedisBroker):
    """The Redis broker whose consumers ride out a Redis that times out (:class:`_Consumer`)."""

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return _Consumer


def make_broker(settings: Settings) -> dramatiq.Broker:
    """The fleet's broker: Dramatiq's RabbitMQ broker when ``BROKER_URL`` names one
    (:mod:`db.rabbitmq`), else :class:`FleetBroker` on ``REDIS_URL``; the same middleware
    and queues on both."""
    tracking = JobTracking()
    on_rabbitmq = settings.uses_rabbitmq
    middleware = [
        LogFormat(),
        MediaPriority(),  # the worker yields the CPU to the web
        # Dramatiq's Prometheus (when on) before the others: it times all they do.
        *worker_metrics(settings),
        # First of the rest: it counts a message as this worker's from the moment a worker thread
        # takes it, before any other hook can hold it (SlotGate waits). Not on RabbitMQ:
        # it finds what Redis's ack sets hold for a worker that never received it;
        # RabbitMQ hands a consumer its messages on the consumer's own connection and
        # gives back what was delivered and not acked when that connection ends (a
        # consumer that errs is closed and built again, a worker that dies drops its
        # connections), so a fetched message cannot be stranded with a live worker.
        *([] if on_rabbitmq else [OrphanRecovery()]),
        AgeLimit(),
        # Before TimeLimit and ShutdownNotifications: waiting for a slot is not
        # running (no time limit), and a stopping worker ends the wait itself.
        SlotGate(tracking=tracking),
        TimeLimit(),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        # Before Retries: Dramatiq runs ``after_*`` hooks in reverse order, so
        # JobTracking sees ``message.failed`` once Retries has decided.
        tracking,
        # Backoff doubles from VIDFLEET_RETRY_BACKOFF per retry, up to 5 minutes.
        Retries(min_backoff=int(settings.retry_backoff * 1000), max_backoff=RETRY_MAX_BACKOFF_MS),
        CurrentMessage(),
        # Before periodiq's: a message periodiq skips is recorded as a skipped run.
        ScheduleRuns(),
        PeriodiqMiddleware(skip_delay=30),
        GroupSignals(),
        WarmMediaProcesses(),
        LifelineRunner(),
        WorkerRegistry(),  # who each worker is, for the system page
    ]
    broker: dramatiq.Broker
    if on_rabbitmq:
        broker = rabbitmq_broker(settings, middleware)
    else:
        # Bounded, so an enqueue or a fetch cannot hang on a dead Redis; Dramatiq's
        # Redis consumer polls with a script, it never blocks on the socket. (A pool of
        # our own: given ``url``, RedisBroker builds its pool from the URL alone and
        # drops the timeouts.)
        broker = FleetBroker(connection_pool=live.broker_pool(settings), middleware=middleware)
    for queue in Queue:
        broker.declare_queue(queue)
    return broker


broker = make_broker(get_settings())
dramatiq.set_broker(broker)
