"""OrphanRecovery: each worker process gives back the messages it fetched but never got.

Dramatiq's Redis broker fetches with a script that moves message ids from a queue's list
into the worker's ack set (``<namespace>:__acks__.<broker id>.<queue>``) and returns the
messages. When the reply is lost (Redis stalled past the client's socket timeout, then
ran the script), those ids sit in the ack set of a worker that is alive and never
learns of them: Dramatiq gives back only the ack sets of dead workers, and the lifeline
counts a message held by a live worker as present, so their jobs would stay ``queued``
until the worker restarts. The same befalls what a consumer held (its message cache, its
delayed messages) when an error or a pause makes Dramatiq replace it.

So a thread of each worker process reads the ack sets of its own consumers every
``every_s`` seconds and compares them with every place the process keeps a fetched
message: a consumer's cache and its outstanding message ids, the worker's work queue,
the consumers' delay queues, and the messages a worker thread took (from
``before_process_message``, this middleware being first, until their ack or nack is
done). An id found unknown on checks ``grace_s`` apart (by default a second more than
the broker's client waits for a reply, which it takes until then) goes back with the
broker's own ``requeue`` command. That removes it from the ack set and, if its message
still exists, pushes it back on its queue, atomically; an id no longer in the ack set
(acked meanwhile) is left alone, so nothing is ever sent back twice.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Iterable
from queue import PriorityQueue
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.errors import DecodeError
from dramatiq.message import Message
from dramatiq.middleware import Middleware

from actors.stores import Outage, redis_unavailable

logger = logging.getLogger(__name__)

CHECK_EVERY_S = 5.0
UNBOUNDED_GRACE_S = 30.0  # when the broker's client waits for replies for ever
REQUEUE_BATCH = 500


def ack_set_key(broker: RedisBroker, queue_name: str) -> str:
    """The Redis set of the ids this broker fetched from ``queue_name`` and has not
    acked (see dramatiq/brokers/redis/dispatch.lua)."""
    return f"{broker.namespace}:__acks__.{broker.broker_id}.{queue_name}"


def reply_timeout(client: redis.Redis) -> float | None:
    """How long ``client`` waits for a reply, in seconds (None: for ever).

    From its pool's connection options, else the connection class's default: a broker
    made from a URL passes its timeouts to no connection (redis-py's default applies)."""
    pool = client.connection_pool
    if "socket_timeout" in pool.connection_kwargs:
        return pool.connection_kwargs["socket_timeout"]
    default = inspect.signature(pool.connection_class).parameters.get("socket_timeout")
    return None if default is None else default.default


def _redis_id(message: Any) -> str | None:
    options = getattr(message, "options", None) or {}
    return options.get("redis_message_id")


def _queued_items(queue: PriorityQueue[Any]) -> list[Any]:
    with queue.mutex:
        return list(queue.queue)


class OrphanRecovery(Middleware):
    """Gives back to their queues the messages this worker process's consumers fetched
    but never received. Does nothing on a broker other than Redis.

    Parameters:
      every_s: seconds between two checks.
      grace_s: how long an id must stay unknown before it is given back; None for a
        second more than the broker's client waits for a reply.
    """

    def __init__(self, *, every_s: float = CHECK_EVERY_S, grace_s: float | None = None) -> None:
        self.every_s = every_s
        self.grace_s = grace_s
        self.outage = Outage("orphan check", "Redis", logger=logger)
        self._lock = threading.Lock()
        self._broker: RedisBroker | None = None
        self._workers: dict[dramatiq.Worker, bool] = {}  # worker -> is it stopping?
        self._taken: set[str] = set()  # redis ids a worker thread took, until acked
        self._unknown: dict[tuple[str, str], float] = {}  # (queue, redis id) -> since
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    # -- what the worker threads hold
    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        redis_id = _redis_id(message)
        if redis_id is not None:
            with self._lock:
                self._taken.add(redis_id)

    def before_ack(self, broker: dramatiq.Broker, message: Any) -> None:
        # Also a delayed message the consumer acks after sending it on, and an ack that
        # Dramatiq retries through a Redis outage: until it is done, the id is ours. An
        # ack Dramatiq gives up on (an error other than a lost connection) leaves its id
        # here for good: that message was processed, it must not go back.
        self.before_process_message(broker, message)

    before_nack = before_ack

    def after_ack(self, broker: dramatiq.Broker, message: Any) -> None:
        redis_id = _redis_id(message)
        if redis_id is not None:
            with self._lock:
                self._taken.discard(redis_id)

    after_nack = after_ack

    # -- the checking thread: one per process, while a worker runs
    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if not isinstance(broker, RedisBroker):
            return
        with self._lock:
            self._broker = broker
            self._workers[worker] = False
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="vidfleet-orphan-check", daemon=True
                )
                self._thread.start()
        self._wake.set()  # a thread still waiting out an earlier pace takes this one

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # A stopping worker gives back what it holds itself: no check until it is gone.
        with self._lock:
            if worker in self._workers:
                self._workers[worker] = True

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        with self._lock:
            self._workers.pop(worker, None)
            if not self._workers:
                self._taken.clear()
                self._unknown.clear()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.every_s)
            self._wake.clear()
            with self._lock:
                if not self._workers:
                    self._thread = None
                    return
                if any(self._workers.values()):
                    continue
                workers, broker = list(self._workers), self._broker
            if broker is None:
                continue
            try:
                self.check(broker, workers)
            except Exception as exc:
                if redis_unavailable(exc):
                    self.outage.failed(exc)
                else:
                    logger.warning("the orphan check failed a round", exc_info=True)
            else:
                self.outage.answered()

    # -- one check
    def check(self, broker: RedisBroker, workers: list[dramatiq.Worker]) -> int:
        """Give back the ids that have been in this process's ack sets, unknown to it,
        for ``grace_s`` or longer; returns how many were given back."""
        queue_names = sorted({name for worker in workers for name in dict(worker.consumers)})
        with broker.client.pipeline(transaction=False) as pipe:
            for name in queue_names:
                pipe.smembers(ack_set_key(broker, name))
            members: list[set[bytes | str]] = pipe.execute()
        # Only after reading Redis: an id fetched in between is then found in memory.
        known, outstanding = self._in_memory(workers)
        unknown = {
            (name, member.decode() if isinstance(member, bytes) else member)
            for name, ids in zip(queue_names, members, strict=True)
            for member in ids
        }
        unknown = {key for key in unknown if key[1] not in known}
        if unknown and outstanding:
            unknown -= self._outstanding(broker, unknown, outstanding)
        now, grace = time.monotonic(), self._grace(broker)
        with self._lock:
            self._unknown = {key: self._unknown.get(key, now) for key in unknown}
            orphans = [key for key, since in self._unknown.items() if now - since >= grace]
        given_back = 0
        for name in queue_names:
            ids = [redis_id for queue, redis_id in orphans if queue == name]
            for start in range(0, len(ids), REQUEUE_BATCH):
                broker.do_requeue(name, *ids[start : start + REQUEUE_BATCH])
            if ids:
                logger.info(
                    "gave back %d message(s) that this worker fetched from %s but never "
                    "received: %s",
                    len(ids),
                    name,
                    ", ".join(ids),
                )
                given_back += len(ids)
        with self._lock:
            for key in orphans:
                self._unknown.pop(key, None)
        return given_back

    def _grace(self, broker: RedisBroker) -> float:
        if self.grace_s is not None:
            return self.grace_s
        timeout = reply_timeout(broker.client)
        return UNBOUNDED_GRACE_S if timeout is None else float(timeout) + 1.0

    def _in_memory(self, workers: list[dramatiq.Worker]) -> tuple[set[str], set[str]]:
        """The redis ids of the messages this process holds, and the Dramatiq message
        ids its consumers count as outstanding (from decoding until acked)."""
        with self._lock:
            known = set(self._taken)
        outstanding: set[str] = set()
        for worker in workers:
            known.update(_ids(item.message for item in _queued_items(worker.work_queue)))
            for thread in list(worker.consumers.values()):
                known.update(_ids(item.message for item in _queued_items(thread.delay_queue)))
                consumer = thread.consumer
                outstanding.update(getattr(consumer, "queued_message_ids", set()).copy())
                for data in list(getattr(consumer, "message_cache", [])):
                    if data is None:
                        continue
                    try:
                        known.update(_ids([Message.decode(data)]))
                    except DecodeError:
                        continue
        return known, outstanding

    @staticmethod
    def _outstanding(
        broker: RedisBroker, unknown: set[tuple[str, str]], outstanding: set[str]
    ) -> set[tuple[str, str]]:
        """Those of ``unknown`` whose message a consumer counts as outstanding (by its
        Dramatiq message id: a delayed message being sent on is in no queue)."""
        keys = sorted(unknown)
        with broker.client.pipeline(transaction=False) as pipe:
            for name, redis_id in keys:
                pipe.hget(f"{broker.namespace}:{name}.msgs", redis_id)
            encoded = pipe.execute()
        found = set()
        for key, data in zip(keys, encoded, strict=True):
            if data is None:
                continue  # its message is gone: nothing holds it
            try:
                if Message.decode(data).message_id in outstanding:
                    found.add(key)
            except DecodeError:
                continue
        return found


def _ids(messages: Iterable[Any]) -> set[str]:
    return {redis_id for message in messages if (redis_id := _redis_id(message)) is not None}
