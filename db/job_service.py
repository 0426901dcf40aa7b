"""The jobs service: the one place where jobs are submitted, cancelled, retried, sent
again and given up for lost.

Each operation commits its change in the database (the truth) and returns, beside its
result, the :class:`db.outbox.Outbox` of what Redis must then hear: the events to
publish, the messages to send, the stop flags, the dismissals from the download line.
Its caller hands the outbox to its :class:`db.outbox.Courier`: the web on its asyncio
client (``await courier.deliver_async(outbox)``), the lifeline and bulk actors on a
sync one (``courier.deliver(outbox)``). The operations are plain functions of a
connection, so both run the same code: the web through its database runner or
``AsyncSession.run_sync``.

A running job's own transitions (claim, finish, requeue, progress) are its worker's:
``actors.ledger`` commits them and ``actors.reporter`` publishes them, with the same
script (:data:`db.live.PUBLISH_SCRIPT`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Row, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db import jobs
from db.job_requests import Submission, submit_job
from db.models import ACTIVE, Job, JobKind, JobStatus
from db.outbox import Outbox

WORKER_LOST = {
    "type": "worker_lost",
    "message": "its worker stopped (killed, out of memory or cut off)",
    "retryable": True,
}


class AlreadyActive(Exception):
    """Another queued or running job already holds the same work."""


def submit(connection: Connection, **request: Any) -> tuple[Submission, Outbox]:
    """:func:`db.job_requests.submit_job` (same arguments); a new job is published
    (``queued``) and sent."""
    submission = submit_job(connection, **request)
    if not submission.created or submission.job is None:
        return submission, Outbox()
    return submission, Outbox(publish=[submission.job], send=[submission.job])


@dataclass(frozen=True)
class Cancellation:
    """What a cancel did: the queued jobs that ended ``cancelled`` at once, and the
    running ones asked to stop (their workers end them within a second)."""

    cancelled: list[dict[str, Any]] = field(default_factory=list)
    stopping: list[str] = field(default_factory=list)


def cancel(connection: Connection | Session, job_id: str) -> tuple[Cancellation, Outbox]:
    """Cancel a job and its active children: a queued one ends ``cancelled`` here and
    never starts (a download waiting for a slot is dismissed from the line); a running
    one (or one that started meanwhile) gets a stop flag its worker polls."""
    children = connection.scalars(
        select(Job.id).where(Job.parent_id == job_id, Job.status.in_(ACTIVE))
    )
    targets = [job_id, *children]
    ended = [jobs.cancel_queued(connection, target) for target in targets]
    connection.commit()
    cancelled = [job for job in ended if job is not None]
    stopping = [target for target, job in zip(targets, ended, strict=True) if job is None]
    outbox = Outbox(
        publish=cancelled,
        stop=stopping,
        dismiss=[job["id"] for job in cancelled if job["kind"] == JobKind.download],
    )
    return Cancellation(cancelled=cancelled, stopping=stopping), outbox


def retry(
    connection: Connection | Session, job_id: str, *, owner: str | None
) -> tuple[dict[str, Any] | None, Outbox]:
    """A new queued job with ``retry_of`` set, published and sent; None when the job is
    not failed or cancelled (the old one stays in history as it is).

    Raises:
      AlreadyActive: another active job holds the same work.
    """
    try:
        job = jobs.new_retry(connection, job_id, owner=owner)
        connection.commit()
    except IntegrityError:
        connection.rollback()
        raise AlreadyActive() from None
    if job is None:
        return None, Outbox()
    return job, Outbox(publish=[job], send=[job])


def resend(lost: list[dict[str, Any]]) -> Outbox:
    """Send again the messages of queued jobs whose message the broker lost (each a
    mapping with ``id``, ``kind`` and ``queue``). Nothing changes in the database: a
    second message of the same job finds it taken and is dropped."""
    return Outbox(send=list(lost))


def give_up_lost_workers(connection: Connection, running: list[Row[Any]]) -> Outbox:
    """Running jobs whose worker stopped beating (rows with ``id``, ``attempts`` and
    ``max_attempts``): queued again while attempts remain, else failed with that reason.
    Each change is fenced by the attempt it saw, so a slow worker that comes back
    cannot also finish the job."""
    changed: list[dict[str, Any]] = []
    for row in running:
        if row.attempts < row.max_attempts:
            outcome = jobs.requeue(connection, row.id, error=WORKER_LOST, attempt=row.attempts)
        else:
            error = {
                "type": "worker_lost",
                "message": f"its worker died on each of its {row.attempts} attempts",
                "retryable": False,
            }
            outcome = jobs.finish(
                connection, row.id, JobStatus.failed, error=error, attempt=row.attempts
            )
        if outcome is not None:
            changed.append(outcome)
    connection.commit()
    return Outbox(
        publish=changed, send=[job for job in changed if job["status"] == JobStatus.queued]
    )
