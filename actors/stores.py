"""The database engine, sessions and Redis client of this worker process, made on first
use (after Dramatiq has forked its worker processes, so none shares a connection), and
what the actors' background parts share to ride out an outage of either store.

An outage is an answer the store gives by not answering: refused or dropped
connections, timeouts, a database locked beyond its busy timeout, a read-only or full
disk, Redis out of memory. :func:`database_unavailable` and :func:`redis_unavailable`
tell those apart from errors that are bugs (a missing table, a wrong type), which must
still fail loudly. :class:`Outage` is how a part (the job ledger, the job watcher, the
lifeline, the scheduler) waits with backoff and logs one warning when an outage starts
and one info line when the store answers again, instead of a traceback per try.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from functools import lru_cache

import dramatiq
import redis
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from db import live
from db.engine import make_engine, session_factory
from db.outages import describe_failure, unavailable_store
from db.outbox import Courier, MessageSender
from db.rabbitmq import BrokerSender
from db.settings import get_settings


@lru_cache(maxsize=1)
def engine() -> Engine:
    settings = get_settings()
    # Bounded, so that a database that is gone is an error the ledger and the lifeline
    # can wait out, not a thread stuck in a connect or a query for minutes.
    return make_engine(
        settings.database_url,
        connect_timeout=settings.db_connect_timeout,
        statement_timeout=settings.db_statement_timeout,
    )


@lru_cache(maxsize=1)
def sessions() -> sessionmaker:
    return session_factory(engine())


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    # Bounded: a Redis host that vanished (no RST, packets dropped) must cost a
    # heartbeat or a publish seconds, not the kernel's minutes-long TCP timeout.
    return live.sync_client(get_settings().redis_url, timeout=get_settings().redis_timeout)


@lru_cache(maxsize=1)
def courier() -> Courier:
    """How this process's jobs-service outboxes reach Redis (:mod:`db.outbox`): job
    messages go out on the workers' broker (in the Redis round trip, or through RabbitMQ
    on the calling thread), to the actor its broker knows for a kind."""
    broker = dramatiq.get_broker()

    def actor_of_kind() -> dict[str, str]:
        declared = (broker.get_actor(name) for name in broker.get_declared_actors())
        return {
            actor.options["job"]: actor.actor_name for actor in declared if actor.options.get("job")
        }

    if isinstance(broker, RabbitmqBroker):
        return Courier(redis_client(), BrokerSender(broker, actor_of_kind))
    assert isinstance(broker, RedisBroker)
    return Courier(redis_client(), MessageSender(broker, actor_of_kind))


class DatabaseUnavailable(Exception):
    """The database did not answer in time; raised to a caller that would rather give up
    than wait longer (a job's claim: see :meth:`actors.ledger.JobLedger.claim`)."""


def database_unavailable(error: BaseException) -> bool:
    """Does ``error`` mean the database cannot be reached or used right now (worth
    waiting out), as opposed to a bug? (:mod:`db.outages` decides, for the web too.)"""
    return unavailable_store(error) == "database"


def redis_unavailable(error: BaseException) -> bool:
    """Does ``error`` mean Redis (or the broker on it) cannot be reached or written
    right now, as opposed to a bug (a wrong type, a script error)?"""
    return unavailable_store(error) == "redis" or isinstance(error, dramatiq.errors.ConnectionError)


describe = describe_failure


class Outage:
    """One store's outages as one part of a process sees them: a backoff between tries
    and one log line when an outage starts and one when it ends.

    The part calls :meth:`failed` after each try the store did not answer (it returns
    how long to wait before the next) and :meth:`answered` after one it did; it may ask
    :meth:`due` whether its backoff is over. Thread-safe.

    Parameters:
      who: the part, as the log names it ("job ledger").
      store: "the database" or "Redis".
      logger: the part's logger.
      first_delay, max_delay: the backoff doubles from ``first_delay`` up to
        ``max_delay`` seconds, each delay shortened by up to a quarter at random so a
        fleet that lost its store together does not retry in lockstep.
    """

    def __init__(
        self,
        who: str,
        store: str,
        *,
        logger: logging.Logger,
        first_delay: float = 0.1,
        max_delay: float = 2.0,
    ) -> None:
        self.who = who
        self.store = store
        self.logger = logger
        self.first_delay = first_delay
        self.max_delay = max_delay
        #: Failed tries in the current outage (0 while the store answers).
        self.failures = 0
        #: Outages seen since this object was made.
        self.outages = 0
        self._since: float | None = None
        self._next_try = 0.0
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self._since is not None

    def due(self) -> bool:
        """Is the backoff after the last failed try over (always, while the store
        answers)?"""
        return time.monotonic() >= self._next_try

    def failed(self, error: BaseException) -> float:
        """A try failed because the store is unavailable; returns the seconds to wait
        before the next try. Logs a warning on the first failure of an outage only."""
        with self._lock:
            now = time.monotonic()
            starts = self._since is None
            if starts:
                self._since = now
                self.outages += 1
            self.failures += 1
            delay = min(self.max_delay, self.first_delay * 2 ** min(self.failures - 1, 30))
            delay *= random.uniform(0.75, 1.0)
            self._next_try = now + delay
        if starts:
            self.logger.warning(
                "%s: %s is unavailable (%s); retrying with backoff until it answers",
                self.who,
                self.store,
                describe(error),
            )
        return delay

    def answered(self) -> None:
        """A try succeeded. Logs one info line when that ends an outage."""
        with self._lock:
            if self._since is None:
                return
            lasted, failures = time.monotonic() - self._since, self.failures
            self._since, self.failures, self._next_try = None, 0, 0.0
        self.logger.info(
            "%s: %s answers again after %.1f s (%d failed tries)",
            self.who,
            self.store,
            lasted,
            failures,
        )
