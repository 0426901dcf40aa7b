"""ScheduleRuns: the middleware that records every run of a periodic actor as its
schedule's last run (``schedule_runs``, :mod:`db.schedule_runs`), for
``GET /api/system/schedules``.

A run is recorded when it ends: ``ok``, ``failed`` (with the error's type and message)
or ``skipped`` (a message older than periodiq's skip delay when a worker took it is
dropped unrun). A run that created a job (a sweep's batch) says so with
:func:`created_job`. Recording is best effort: a database that cannot take the row costs
one warning, never the run itself.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from actors import stores
from db.models import RunOutcome, utcnow
from db.schedule_runs import Run, error_of, record_run

logger = logging.getLogger(__name__)

# The run on this worker thread: a message's hooks and its actor run on one thread.
_current = threading.local()


def created_job(job_id: str) -> None:
    """Note that the periodic run on this thread created job ``job_id``."""
    _current.job_id = job_id


class ScheduleRuns(Middleware):
    """Records the runs of the actors declared with a ``periodic`` option."""

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        if _periodic(broker, message):
            _current.started_at = utcnow()
            _current.job_id = None

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: object = None,
        exception: BaseException | None = None,
    ) -> None:
        if not _periodic(broker, message):
            return
        started_at, job_id = _take_current()
        if exception is None:
            outcome, error = RunOutcome.ok, None
        else:
            outcome, error = RunOutcome.failed, error_of(exception)
        self._record(message, started_at, outcome, job_id=job_id, error=error)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        if _periodic(broker, message):
            started_at, _ = _take_current()
            self._record(message, started_at, RunOutcome.skipped)

    def _record(
        self,
        message: MessageProxy,
        started_at: datetime | None,
        outcome: RunOutcome,
        *,
        job_id: str | None = None,
        error: dict[str, str] | None = None,
    ) -> None:
        finished_at = utcnow()
        run = Run(
            name=message.actor_name,
            started_at=started_at or finished_at,
            finished_at=finished_at,
            outcome=outcome,
            message_id=message.message_id,
            job_id=job_id,
            error=error,
        )
        try:
            with stores.engine().connect() as connection:
                record_run(connection, run)
        except Exception as exc:
            logger.warning(
                "the %s run of %s was not recorded: %s",
                outcome,
                message.actor_name,
                stores.describe(exc),
            )


def _periodic(broker: dramatiq.Broker, message: MessageProxy) -> bool:
    actor = broker.actors.get(message.actor_name)
    return actor is not None and "periodic" in actor.options


def _take_current() -> tuple[datetime | None, str | None]:
    started_at = getattr(_current, "started_at", None)
    job_id = getattr(_current, "job_id", None)
    _current.started_at = _current.job_id = None
    return started_at, job_id
