"""JobTracking: the middleware that ties a Dramatiq message to its ``jobs`` row, and
:func:`job_actor`, which declares an actor it tracks.

Before a job actor runs it claims the row with a conditional UPDATE (counting the
attempt in the database, not in the broker) and publishes ``running``; a watcher thread
(:class:`actors.job_watcher.JobWatcher`) keeps the job's heartbeat and hears its cancel
request. Afterwards it records ``succeeded``, ``failed`` or ``queued`` (when another
attempt follows, :mod:`actors.retry_policy`) and publishes that. A redelivered message
for a finished (or already running) job is acked and dropped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware, Shutdown, SkipMessage

from actors import stores
from actors.job_context import JobContext, run_here
from actors.job_watcher import JobWatcher
from actors.ledger import JobLedger
from actors.reporter import JobReporter
from actors.retry_policy import (
    SHUTDOWN,
    SHUTDOWN_REDELIVERY_MS,
    Postponed,
    describe_error,
    postpone,
    retry_when,
)
from actors.stores import DatabaseUnavailable
from db import job_service
from db.logs import JOB_ID
from db.models import JobStatus
from db.settings import get_settings
from media.errors import Cancelled

logger = logging.getLogger(__name__)

DATABASE_WAIT_MS = 5_000  # when a message whose claim found no database comes back


class JobTracking(Middleware):
    """Claims, heartbeats and finishes the job behind every job actor. Its database and
    Redis connections are this process's (:mod:`actors.stores`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reporter: JobReporter | None = None
        self._ledger: JobLedger | None = None
        self._watcher: JobWatcher | None = None
        self._running: dict[str, JobContext] = {}  # message id -> context
        self._stopping = threading.Event()

    @property
    def actor_options(self) -> set[str]:
        return {"job"}

    def is_stopping(self) -> bool:
        """Its worker is shutting down: no job may start here any more."""
        return self._stopping.is_set()

    # Built on first use, so that forked worker processes make their own connections;
    # read without the lock once built (every message asks).
    @property
    def reporter(self) -> JobReporter:
        reporter = self._reporter
        if reporter is None:
            with self._lock:
                if self._reporter is None:
                    self._reporter = JobReporter(
                        client=stores.redis_client(),
                        engine=stores.engine(),
                        heartbeat_ttl=get_settings().heartbeat_timeout,
                    )
                reporter = self._reporter
        return reporter

    @property
    def ledger(self) -> JobLedger:
        ledger = self._ledger
        if ledger is None:
            with self._lock:
                if self._ledger is None:
                    self._ledger = JobLedger(stores.engine(), on_commit=self._publish)
                ledger = self._ledger
        return ledger

    @property
    def watcher(self) -> JobWatcher:
        watcher = self._watcher
        if watcher is None:
            reporter = self.reporter
            with self._lock:
                if self._watcher is None:
                    self._watcher = JobWatcher(
                        reporter=reporter,
                        running=self.running,
                        ending=self.ending,
                        heartbeat_timeout=get_settings().heartbeat_timeout,
                    )
                watcher = self._watcher
        return watcher

    def running(self) -> list[JobContext]:
        """The jobs running in this process now."""
        with self._lock:
            return list(self._running.values())

    def ending(self) -> list[str]:
        """The jobs whose finish waits for the database."""
        return self.ledger.ending_job_ids()

    def _publish(self, changed: list[dict[str, Any]]) -> None:
        self.reporter.publish_many(changed)

    @staticmethod
    def _is_job(broker: dramatiq.Broker, message: MessageProxy) -> bool:
        try:
            return bool(broker.get_actor(message.actor_name).options.get("job"))
        except dramatiq.errors.ActorNotFound:
            return False

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        if not self._is_job(broker, message):
            return
        job_id = message.args[0]
        # Every line this thread logs until the job's end carries its id (db/logs.py).
        JOB_ID.set(str(job_id))
        if self._stopping.is_set():
            # A message delivered while the worker shuts down (a prefetched one, or a
            # download just sent back by SIGTERM): leave the job queued for another
            # worker rather than start it here.
            postpone(broker, message, "its worker is stopping", SHUTDOWN_REDELIVERY_MS)
        # The claim returns at its commit, while its ``running`` event is on the way:
        # the job's progress waits for ``announced``, its ack for its finish, which is
        # announced after the claim.
        announced = threading.Event()
        try:
            snapshot = self.ledger.claim(
                job_id, message_id=claiming_id(message), announced=announced
            )
        except DatabaseUnavailable as exc:
            # The ledger waited out what it could (see JobLedger.claim). Nothing was
            # written and no attempt counted: the message goes back to the queue, and
            # if Redis is gone too and it is lost, the job is still queued in the
            # database and the lifeline sends it again.
            logger.info("job %s waits: %s", job_id, exc)
            postpone(broker, message, "the database is unavailable", DATABASE_WAIT_MS)
        if snapshot is None:
            logger.info("dropping message %s: job %s is not queued", message.message_id, job_id)
            raise SkipMessage()
        context = JobContext(job=snapshot, reporter=self.reporter, announced=announced)
        with self._lock:
            self._running[message.message_id] = context
        self.watcher.ensure_running()
        run_here(context)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        try:
            self._finish(message, exception)
        finally:
            JOB_ID.set(None)

    def _finish(self, message: MessageProxy, exception: BaseException | None) -> None:
        """Record how the job's attempt ended."""
        with self._lock:
            context = self._running.pop(message.message_id, None)
        if context is None:
            return
        run_here(None)
        job_id, ledger, attempt = context.id, self.ledger, context.job["attempts"]
        if exception is None and context.handed_to_parts:
            return  # still running: a parent now, which its parts' roll-ups end
        # The ledger publishes each change once it is committed. Each is fenced by the
        # attempt: if the lifeline gave this worker up for dead, its outcome is void.
        if exception is None:
            outcome = ledger.finish(
                job_id, JobStatus.succeeded, attempt=attempt, result=context.result
            )
        elif isinstance(exception, Shutdown):
            # SIGTERM: back to the queue without using up an attempt; the next worker
            # resumes the download where this one stopped.
            outcome = ledger.requeue(job_id, attempt=attempt, error=SHUTDOWN, refund=True)
        elif isinstance(exception, Postponed):
            outcome = ledger.requeue(
                job_id, attempt=attempt, error=None, refund=True, note=exception.reason
            )
        elif isinstance(exception, Cancelled):
            # A part of a batch says how far it got (actors.batch_part).
            outcome = ledger.finish(
                job_id,
                JobStatus.cancelled,
                attempt=attempt,
                result=context.result,
                error=describe_error(exception),
            )
        elif message.failed or attempt >= context.job["max_attempts"]:
            outcome = ledger.finish(
                job_id, JobStatus.failed, attempt=attempt, error=describe_error(exception)
            )
        else:
            outcome = ledger.requeue(job_id, attempt=attempt, error=describe_error(exception))
        if outcome is None:
            logger.warning("job %s attempt %d ended after it was taken over", job_id, attempt)
        elif outcome["parent_id"] and outcome["status"] != JobStatus.queued:
            roll_up_parent(outcome["parent_id"])

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        with self._lock:
            self._running.pop(message.message_id, None)
        JOB_ID.set(None)

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Before the consumers start: a worker started after another one stopped in the
        # same process must not find the "stopping" mark of the old one.
        self._stopping.clear()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.watcher.ensure_running()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.stop()


def claiming_id(message: MessageProxy) -> str:
    """The id the job's row records for the delivery that claims it: on Redis the
    broker's own id of the message (the system page finds it in its worker's ack set),
    on RabbitMQ, which has no such id, Dramatiq's message id."""
    return str(message.options.get("redis_message_id") or message.message_id)


def roll_up_parent(parent_id: str) -> None:
    """A part of a batch ended: its parent's progress (and maybe its end) follows. If
    this fails, the lifeline settles the parent later."""
    try:
        with stores.engine().connect() as connection:
            outbox = job_service.roll_up(connection, parent_id)
        stores.courier().deliver(outbox)
    except Exception:
        logger.warning("could not update the batch %s", parent_id, exc_info=True)


def job_actor(*, kind: str, **options: Any) -> Callable[[Callable[..., Any]], dramatiq.Actor]:
    """Declare a Dramatiq actor for jobs of ``kind``: its one argument is a job id and
    JobTracking claims, heartbeats and finishes that job around it; whether a failed
    attempt is followed by another is :mod:`actors.retry_policy`'s decision."""
    options.setdefault("retry_when", retry_when(get_settings().max_attempts))

    def decorator(func: Callable[..., Any]) -> dramatiq.Actor:
        return dramatiq.actor(job=kind, **options)(func)

    return decorator
