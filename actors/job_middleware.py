"""JobTracking: the middleware that ties a Dramatiq message to its ``jobs`` row.

Before a job actor runs it claims the row with a conditional UPDATE (counting the
attempt in the database, not in the broker), starts a heartbeat and publishes
``running``; afterwards it records ``succeeded``, ``failed`` or ``queued`` (when
Dramatiq's Retries will try again) and publishes that. A redelivered message for a
finished (or already running) job is acked and dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import dramatiq
import redis
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware, Shutdown, SkipMessage, TimeLimitExceeded
from redis.exceptions import RedisError
from sqlalchemy.orm import sessionmaker

from actors import stores
from actors.ledger import JobLedger
from actors.recovery import run_lifeline_if_due
from actors.reporter import JobReporter
from actors.stores import DatabaseUnavailable, redis_unavailable
from db import live
from db.models import JobStatus
from db.settings import get_settings
from media.errors import Cancelled, MediaError

logger = logging.getLogger(__name__)

SHUTDOWN = {
    "type": "shutdown",
    "message": "its worker was stopped; the job waits for the next worker",
    "retryable": True,
}
SHUTDOWN_REDELIVERY_MS = 2_000
WATCH_EVERY_S = 0.5  # how often running jobs' cancel requests are polled
DATABASE_WAIT_MS = 5_000  # when a message whose claim found no database comes back


@dataclass
class JobContext:
    """What a running job actor knows about its job."""

    job: dict[str, Any]
    reporter: JobReporter
    #: What the job produced; stored on the row when the actor returns. (Actors return
    #: None: Dramatiq discards return values unless a results backend is configured.)
    result: dict[str, Any] | None = None
    #: Set by JobTracking's watcher when someone asks the job to stop.
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    @property
    def id(self) -> str:
        return str(self.job["id"])

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.job["params"])

    @property
    def sessions(self) -> sessionmaker:
        return stores.sessions()

    def cancelled(self) -> bool:
        """Has someone asked this job to stop? (Cheap: poll it as often as you like.)"""
        return self.cancel_requested.is_set()

    def raise_if_cancelled(self) -> None:
        if self.cancelled():
            raise Cancelled()

    def report(
        self,
        *,
        stage: str | None = None,
        progress: float | None = None,
        message: str | None = None,
        **live_fields: Any,
    ) -> None:
        """Report progress (throttled); ``progress`` None means unknown."""
        self.job.update(stage=stage or self.job["stage"], progress=progress)
        if message is not None:
            self.job["message"] = message
        self.job["live"] = live_fields
        self.reporter.progress(self.job)


class Postponed(dramatiq.Retry):
    """The job cannot start yet (a limit is full): it goes back to the queue, waiting,
    without using an attempt, and is tried again after ``delay`` milliseconds."""

    def __init__(self, reason: str, delay: int) -> None:
        super().__init__(reason, delay=delay)
        self.reason = reason


def postpone(
    broker: dramatiq.Broker, message: MessageProxy, reason: str, delay_ms: int
) -> NoReturn:
    """From a ``before_process_message`` hook: send ``message`` back to its queue, to be
    delivered again in ``delay_ms``, and skip this delivery. No attempt is counted.

    Why not raise :class:`Postponed` there: Dramatiq lets only its ``MiddlewareError``s
    out of a ``before_*`` hook; anything else is logged as a failure of the middleware
    and the actor runs anyway. If Redis cannot take the message, the delivery is still
    skipped: the job stays queued in the database, and the lifeline sends it again.

    Raises:
      SkipMessage: always.
    """
    try:
        broker.enqueue(message.copy(), delay=delay_ms)
    except RedisError:
        logger.warning("could not send message %s back (%s)", message.message_id, reason)
    else:
        logger.info("message %s goes back to its queue: %s", message.message_id, reason)
    raise SkipMessage()


_current = threading.local()


def current_job() -> JobContext:
    """The job of the actor running on this thread."""
    context: JobContext | None = getattr(_current, "context", None)
    if context is None:
        raise RuntimeError("current_job() called outside a job actor")
    return context


def describe_error(exc: BaseException) -> dict[str, Any]:
    """The ``error`` JSON of a job: type, a readable message, whether to retry."""
    if isinstance(exc, MediaError):
        return {"type": exc.code, "message": exc.message, "retryable": exc.retryable}
    if isinstance(exc, TimeLimitExceeded):
        return {"type": "time_limit", "message": "the job ran out of time", "retryable": True}
    return {"type": type(exc).__name__, "message": str(exc) or repr(exc), "retryable": True}


def is_retryable(exc: BaseException) -> bool:
    return bool(describe_error(exc)["retryable"]) and not isinstance(exc, Cancelled)


class JobTracking(Middleware):
    """Claims, heartbeats and finishes the job behind every job actor. Its database and
    Redis connections are this process's (:mod:`actors.stores`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reporter: JobReporter | None = None
        self._ledger: JobLedger | None = None
        self._running: dict[str, JobContext] = {}  # message id -> context
        self._watcher: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def actor_options(self) -> set[str]:
        return {"job"}

    def is_stopping(self) -> bool:
        """Its worker is shutting down: no job may start here any more."""
        return self._stopping.is_set()

    @property
    def reporter(self) -> JobReporter:
        # Built on first use, so that forked worker processes make their own connections;
        # read without the lock once built (every message asks).
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
        if self._stopping.is_set():
            # A message delivered while the worker shuts down (a prefetched one, or a
            # download just sent back by SIGTERM): leave the job queued for another
            # worker rather than start it here.
            postpone(broker, message, "its worker is stopping", SHUTDOWN_REDELIVERY_MS)
        try:
            snapshot = self.ledger.claim(job_id, message_id=message.options.get("redis_message_id"))
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
        context = JobContext(job=snapshot, reporter=self.reporter)
        with self._lock:
            self._running[message.message_id] = context
        self._ensure_watcher()
        _current.context = context

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        with self._lock:
            context = self._running.pop(message.message_id, None)
        if context is None:
            return
        _current.context = None
        job_id, ledger, attempt = context.id, self.ledger, context.job["attempts"]
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
            outcome = ledger.finish(
                job_id, JobStatus.cancelled, attempt=attempt, error=describe_error(exception)
            )
        elif message.failed or attempt >= context.job["max_attempts"]:
            outcome = ledger.finish(
                job_id, JobStatus.failed, attempt=attempt, error=describe_error(exception)
            )
        else:
            outcome = ledger.requeue(job_id, attempt=attempt, error=describe_error(exception))
        if outcome is None:
            logger.warning("job %s attempt %d ended after it was taken over", job_id, attempt)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        with self._lock:
            self._running.pop(message.message_id, None)

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Before the consumers start: a worker started after another one stopped in the
        # same process must not find the "stopping" mark of the old one.
        self._stopping.clear()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._ensure_watcher()  # its first round runs the lifeline: the check at start

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stopping.set()

    # -- one watcher thread per worker process: cancel requests, heartbeats, lifeline
    def _ensure_watcher(self) -> None:
        watcher = self._watcher
        if watcher is not None and watcher.is_alive():
            return  # the case of every message but the first
        with self._lock:
            if self._watcher is None or not self._watcher.is_alive():
                self._stopping.clear()
                self._watcher = threading.Thread(
                    target=self._watch, name="vidfleet-job-watcher", daemon=True
                )
                self._watcher.start()

    def _watch(self) -> None:
        # At least three beats per heartbeat lifetime: one late beat does not kill a job.
        # The loop wakes every WATCH_EVERY_S, so beating that much early keeps a heartbeat
        # never older than a third of its lifetime.
        beat_every = max(WATCH_EVERY_S, get_settings().heartbeat_timeout / 3 - WATCH_EVERY_S)
        lifeline_every = get_settings().lifeline_interval
        last_beat = next_lifeline = time.monotonic()
        lifeline: threading.Thread | None = None

        def lifeline_round(every_s: float) -> None:
            try:
                run_lifeline_if_due(every_s)  # rides out store outages by itself
            except Exception:
                logger.warning("the lifeline failed a round", exc_info=True)

        while not self._stopping.wait(WATCH_EVERY_S):
            # Shared with the reporter's publishes: one Redis outage, one warning and one
            # info line per worker process, however many rounds it lasts.
            outage = self.reporter.redis_outage
            try:
                lifeline_due = time.monotonic() >= next_lifeline
                with self._lock:
                    running = list(self._running.values())
                # Jobs whose finish waits for the database keep beating too: a database
                # outage alone must not get them given up for dead.
                beating = [context.id for context in running] + self.ledger.ending_job_ids()
                if beating and (outage.due() or lifeline_due):
                    try:
                        # Beat first (and at once after an outage, when the keys may
                        # have expired): the lifeline below must find them alive.
                        if outage.down or time.monotonic() - last_beat >= beat_every:
                            self.reporter.beat(beating)
                            last_beat = time.monotonic()
                        if running:
                            self._notice_cancel_requests(running)
                    except redis.RedisError as exc:
                        if not redis_unavailable(exc):
                            raise
                        outage.failed(exc)
                    else:
                        outage.answered()
                if lifeline_due:
                    next_lifeline = time.monotonic() + lifeline_every
                    # On a thread of its own, one run at a time: its queries may wait
                    # out a database outage (connect and statement timeouts), and the
                    # heartbeats and cancel polls above must not wait with them.
                    if lifeline is None or not lifeline.is_alive():
                        lifeline = threading.Thread(
                            target=lifeline_round,
                            args=(lifeline_every,),
                            name="vidfleet-lifeline",
                            daemon=True,
                        )
                        lifeline.start()
            except Exception:
                logger.warning("the job watcher failed a round", exc_info=True)

    def _notice_cancel_requests(self, running: list[JobContext]) -> None:
        client = self.reporter.client
        flags = client.mget([live.cancel_key(context.id) for context in running])
        for context, flag in zip(running, flags, strict=True):
            if flag is not None and not context.cancel_requested.is_set():
                logger.info("job %s: cancel requested", context.id)
                context.cancel_requested.set()


def job_actor(*, kind: str, **options: Any) -> Callable[[Callable[..., Any]], dramatiq.Actor]:
    """Declare a Dramatiq actor for jobs of ``kind``: its one argument is a job id and
    JobTracking claims, heartbeats and finishes that job around it.

    Non-retryable errors (a bad URL, a 404, a file that is not media) fail at once;
    others are retried by Dramatiq's Retries with backoff until the attempts run out.
    """
    max_attempts = get_settings().max_attempts

    def retry_when(retries: int, exc: BaseException) -> bool:
        # One policy, from the database's count of attempts (claims): Dramatiq's
        # ``retries`` also counts every postponement and shutdown, which are no attempt.
        if isinstance(exc, (Shutdown, Postponed)):
            return True  # not a failure: the message must come back whatever the count
        context: JobContext | None = getattr(_current, "context", None)  # cleared after
        attempts = context.job["attempts"] if context is not None else retries + 1
        limit = context.job["max_attempts"] if context is not None else max_attempts
        return is_retryable(exc) and attempts < limit

    options.setdefault("retry_when", retry_when)

    def decorator(func: Callable[..., Any]) -> dramatiq.Actor:
        return dramatiq.actor(job=kind, **options)(func)

    return decorator
