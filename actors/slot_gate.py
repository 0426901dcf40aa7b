"""SlotGate: a job actor declared with ``slot="downloads"`` runs only while its job holds
one of the fleet's download slots (``VIDFLEET_MAX_CONCURRENT_DOWNLOADS``).

A job that finds none free waits in line (:class:`db.slots.FairSlots`) in the worker
thread that took its message, before it is claimed: no attempt is counted, the message
is neither sent back nor delivered again, and the job announces ``waiting`` once, with
its place in line. The line is fleet-wide and fair: higher priority first (the job's
queue), then the order the jobs were created in; a freed slot wakes exactly one waiter.
A waiter whose job is cancelled leaves at once (the web dismisses it); a worker that is
stopping sends its waiters' messages back to the queue.

Why in the thread rather than back on the queue with a delay (as before): every
postponement was a redelivery, a claim, an event pair and a retry counted by Dramatiq;
30 downloads behind 4 slots made 11 events per job. A waiting thread costs a blocked
``BLPOP`` on Redis. Workers take no more messages than they have threads (the
Procfile's prefetch), so waiters never hold a backlog that other workers could run.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware, SkipMessage
from redis.exceptions import RedisError

from actors import stores
from actors.job_tracking import JobTracking
from actors.limits import download_slots
from actors.retry_policy import SHUTDOWN_REDELIVERY_MS, postpone
from db import jobs
from db.queues import Queue

logger = logging.getLogger(__name__)

#: Place in the line by the job's queue (its priority): high, then normal, then low;
#: within one, by when the job was created (microseconds since LINE_EPOCH: exact in a
#: Redis score, a double, for decades).
QUEUE_RANKS: dict[str, int] = {Queue.interactive: 0, Queue.downloads: 1, Queue.bulk: 2}
RANK_STEP_US = 10**15
LINE_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
REDIS_WAIT_MS = 5_000


def ordinal(place: int) -> str:
    """0 -> "1st", 1 -> "2nd", 10 -> "11th"."""
    n = place + 1
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class SlotGate(Middleware):
    """Holds a slotted job's message until its job has a slot, and frees the slot once
    the job's message is processed.

    Parameters:
      tracking: the broker's JobTracking, whose reporter announces the waiting and
        which knows when the worker is stopping.
    """

    def __init__(self, *, tracking: JobTracking) -> None:
        self.tracking = tracking
        self._held: dict[str, str] = {}  # message id -> the job id holding a slot
        self._lock = threading.Lock()

    @property
    def actor_options(self) -> set[str]:
        return {"slot"}

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        try:
            slot = broker.get_actor(message.actor_name).options.get("slot")
        except dramatiq.errors.ActorNotFound:
            return
        if slot != "downloads":
            return
        job_id = message.args[0]
        with stores.engine().connect() as connection:
            created = jobs.queued_since(connection, job_id)
        if created is None:
            logger.info("dropping message %s: job %s is not queued", message.message_id, job_id)
            raise SkipMessage()
        if created.tzinfo is None:  # SQLite keeps UTC without the zone
            created = created.replace(tzinfo=UTC)
        rank = QUEUE_RANKS.get(message.queue_name, len(QUEUE_RANKS))
        turn = rank * RANK_STEP_US + (created - LINE_EPOCH) // timedelta(microseconds=1)
        try:
            has_slot = download_slots().wait(
                job_id,
                turn,
                should_stop=self.tracking.is_stopping,
                on_joined=lambda place: self._announce(job_id, place),
            )
        except RedisError:
            postpone(broker, message, "waiting: Redis is unavailable", REDIS_WAIT_MS)
        if not has_slot:
            if self.tracking.is_stopping():
                postpone(broker, message, "its worker is stopping", SHUTDOWN_REDELIVERY_MS)
            logger.info("job %s left the line for a download slot: cancelled", job_id)
            raise SkipMessage()
        with self._lock:
            self._held[message.message_id] = job_id

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: object = None,
        exception: BaseException | None = None,
    ) -> None:
        self._release(message)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._release(message)

    def _release(self, message: MessageProxy) -> None:
        with self._lock:
            job_id = self._held.pop(message.message_id, None)
        if job_id is None:
            return
        try:
            download_slots().leave(job_id)
        except RedisError:
            # It lapses by itself once the heartbeats stop renewing it.
            logger.warning("could not free the download slot of job %s", job_id, exc_info=True)

    def _announce(self, job_id: str, place: int) -> None:
        """The job's one ``waiting`` event (a failure to tell is not the job's failure)."""
        note = f"waiting for a free download slot ({ordinal(place)} in line)"
        try:
            with stores.engine().begin() as connection:
                waiting = jobs.note_waiting(connection, job_id, note)
            if waiting is not None:
                self.tracking.reporter.publish(waiting)
        except Exception:
            logger.warning("could not announce that job %s waits", job_id, exc_info=True)
