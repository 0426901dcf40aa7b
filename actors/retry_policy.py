"""What a job's failure means: its error as the API shows it, whether another attempt may
help, and when the job goes back to its queue without using an attempt.

One policy, decided from the database's count of attempts (a claim counts one):
Dramatiq's own retry count also grows with every postponement and every graceful
shutdown, which are not attempts. Non-retryable errors (a bad URL, a 404, a file that is
not media) fail at once; others are retried with backoff (Dramatiq's Retries) until the
job's ``max_attempts`` are used up.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Shutdown, SkipMessage, TimeLimitExceeded
from redis.exceptions import RedisError

from actors.job_context import running_here
from media.errors import Cancelled, MediaError

logger = logging.getLogger(__name__)

#: The error a job keeps when its worker stops under it (it is queued again, refunded).
SHUTDOWN = {
    "type": "shutdown",
    "message": "its worker was stopped; the job waits for the next worker",
    "retryable": True,
}
#: When a message that a stopping worker sent back is delivered again.
SHUTDOWN_REDELIVERY_MS = 2_000
#: The longest backoff before a retry (Dramatiq's Retries doubles up to it).
RETRY_MAX_BACKOFF_MS = 5 * 60_000


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
    and the actor runs anyway. If the broker cannot take the message, the delivery is still
    skipped: the job stays queued in the database, and the lifeline sends it again.

    Raises:
      SkipMessage: always.
    """
    try:
        broker.enqueue(message.copy(), delay=delay_ms)
    except (RedisError, dramatiq.errors.ConnectionError):  # Redis or RabbitMQ away
        logger.warning("could not send message %s back (%s)", message.message_id, reason)
    else:
        logger.info("message %s goes back to its queue: %s", message.message_id, reason)
    raise SkipMessage()


def describe_error(exc: BaseException) -> dict[str, Any]:
    """The ``error`` JSON of a job: type, a readable message, whether to retry."""
    if isinstance(exc, MediaError):
        return {"type": exc.code, "message": exc.message, "retryable": exc.retryable}
    if isinstance(exc, TimeLimitExceeded):
        return {"type": "time_limit", "message": "the job ran out of time", "retryable": True}
    return {"type": type(exc).__name__, "message": str(exc) or repr(exc), "retryable": True}


def is_retryable(exc: BaseException) -> bool:
    return bool(describe_error(exc)["retryable"]) and not isinstance(exc, Cancelled)


def is_refunded(exc: BaseException | None) -> bool:
    """The job did not fail: it goes back to its queue and the attempt does not count."""
    return isinstance(exc, (Shutdown, Postponed))


def another_attempt(attempts: int, max_attempts: int, exc: BaseException) -> bool:
    """After attempt number ``attempts`` ended with ``exc``: does the job go again?"""
    return is_refunded(exc) or (is_retryable(exc) and attempts < max_attempts)


def retry_when(max_attempts: int) -> Any:
    """Dramatiq's ``retry_when`` for job actors: :func:`another_attempt` for the job
    running on this thread (its ``retries`` argument, which counts postponements and
    shutdowns too, only stands in when no job is known)."""

    def decide(retries: int, exc: BaseException) -> bool:
        context = running_here()  # still set: JobTracking clears it after Retries ran
        if context is None:
            return another_attempt(retries + 1, max_attempts, exc)
        return another_attempt(context.job["attempts"], context.job["max_attempts"], exc)

    return decide
