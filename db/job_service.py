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

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from db import jobs
from db.job_requests import Submission, submit_job
from db.models import ACTIVE, FINISHED, Job, JobKind, JobStatus, utcnow
from db.outages import unavailable_store
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
        publish=list(cancelled),
        stop=list(stopping),
        dismiss=[job["id"] for job in cancelled if job["kind"] == JobKind.download],
    )
    for parent in {job_id, *(job["parent_id"] for job in cancelled if job["parent_id"])}:
        outbox.add(roll_up(connection, parent))  # a batch whose parts all ended ends
    return Cancellation(cancelled=cancelled, stopping=stopping), outbox


def retry(
    connection: Connection | Session, job_id: str, *, owner: str | None
) -> tuple[dict[str, Any] | None, Outbox]:
    """A new queued job with ``retry_of`` set, published and sent; None when the job is
    not failed or cancelled, or is a batch's parent (its parts are retried one by one;
    the old job stays in history as it is).

    Raises:
      AlreadyActive: another active job holds the same work.
    """
    kind = connection.scalar(select(Job.kind).where(Job.id == job_id))
    if kind in PARENT_KINDS:
        return None, Outbox()
    try:
        job = jobs.new_retry(connection, job_id, owner=owner)
        reopened = _reopen_parent(connection, job["parent_id"]) if job else None
        connection.commit()
    except IntegrityError:
        connection.rollback()
        raise AlreadyActive() from None
    if job is None:
        return None, Outbox()
    return job, Outbox(publish=[job] if reopened is None else [reopened, job], send=[job])


def _reopen_parent(
    connection: Connection | Session, parent_id: str | None
) -> dict[str, Any] | None:
    """A part of a finished batch is retried: the batch runs again until that part
    ends, and then sums its parts anew (the retry in place of the part it retries)."""
    if parent_id is None:
        return None
    reopened = (
        connection.execute(
            update(Job)
            .where(Job.id == parent_id, Job.status.in_(FINISHED))
            .values(
                status=JobStatus.running,
                finished_at=None,
                result=None,
                message="a part is retried",
                updated_at=utcnow(),
            )
            .returning(*jobs.PUBLIC_COLUMNS)
        )
        .mappings()
        .first()
    )
    return jobs.job_to_dict(reopened) if reopened is not None else None


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
    outbox = Outbox(
        publish=changed, send=[job for job in changed if job["status"] == JobStatus.queued]
    )
    for parent in {job["parent_id"] for job in changed if job["parent_id"]}:
        outbox.add(roll_up(connection, parent))
    return outbox


# -- batches: a parent job whose children do the work (bulk thumbnails, analyses, deletes)

#: Kinds of parents: ``running`` from their submission until their last child finished,
#: with no worker and no heartbeat of their own (the lifeline leaves them alone).
PARENT_KINDS = frozenset(
    {JobKind.thumbnails, JobKind.analyses, JobKind.deletes, JobKind.enrichments}
)
#: Kinds that plan on a worker first (a job of their own, with heartbeats and attempts)
#: and then hand the job to the parts they submit (:func:`hand_to_parts`): from then on
#: a parent like the ones above.
PLANNING_PARENT_KINDS = frozenset({JobKind.relayout})
#: The most item failures a batch's summary lists (their count is always exact).
SUMMARY_FAILURES = 100
#: Items per part of a batch: a part takes seconds, so parts spread over the fleet.
PART_SIZE = 20


def parts(items: list[Any], size: int | None = None) -> list[list[Any]]:
    """``items`` in parts of ``size`` (default :data:`PART_SIZE`, read at each call);
    the last one may be smaller."""
    size = size or PART_SIZE
    return [items[start : start + size] for start in range(0, len(items), size)]


def submit_batch(
    connection: Connection | Session,
    *,
    kind: str,
    queue: str,
    params: dict[str, Any],
    owner: str | None,
    max_attempts: int,
    children: list[tuple[str, str, dict[str, Any]]],
    dedupe_key: str | None = None,
) -> tuple[dict[str, Any], Outbox]:
    """A parent job (``running`` at once) and its ``children`` (kind, queue, params:
    each queued), in one transaction; the parent and the children are published and the
    children sent. A batch without children is ``succeeded`` at once, with an empty
    summary. With ``dedupe_key``, no two such batches are active at once.

    Raises:
      AlreadyActive: an active batch holds ``dedupe_key``.
    """
    now = utcnow()
    parent_id = str(uuid.uuid4())
    common = {"owner": owner, "max_attempts": max_attempts, "created_at": now, "updated_at": now}
    empty = not children
    parent = {
        **common,
        "id": parent_id,
        "kind": kind,
        "queue": queue,
        "params": params,
        "attempts": 0,
        "status": JobStatus.succeeded if empty else JobStatus.running,
        "started_at": now,
        "finished_at": now if empty else None,
        "progress": 1.0 if empty else 0.0,
        "result": _summary([]) if empty else None,
        "dedupe_key": None if empty else dedupe_key,
    }
    rows = _part_rows(parent_id, common, children)
    try:
        created = connection.execute(insert(Job).returning(*jobs.PUBLIC_COLUMNS), [parent])
    except IntegrityError:
        connection.rollback()
        raise AlreadyActive() from None
    parent_job = jobs.job_to_dict(created.mappings().one())
    child_jobs = []
    if rows:
        inserted = connection.execute(insert(Job).returning(*jobs.PUBLIC_COLUMNS), rows)
        child_jobs = [jobs.job_to_dict(row) for row in inserted.mappings()]
    connection.commit()
    return parent_job, Outbox(publish=[parent_job, *child_jobs], send=child_jobs)


def _part_rows(
    parent_id: str, common: dict[str, Any], children: list[tuple[str, str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """The rows of a batch's parts (kind, queue, params: each queued)."""
    return [
        {
            **common,
            "id": str(uuid.uuid4()),
            "kind": child_kind,
            "queue": child_queue,
            "params": child_params,
            "attempts": 0,
            "status": JobStatus.queued,
            "parent_id": parent_id,
        }
        for child_kind, child_queue, child_params in children
    ]


def hand_to_parts(
    connection: Connection | Session,
    job_id: str,
    *,
    attempt: int,
    params: dict[str, Any],
    stage: str,
    children: list[tuple[str, str, dict[str, Any]]],
) -> Outbox | None:
    """A running job of :data:`PLANNING_PARENT_KINDS` that planned its work becomes the
    parent of ``children`` (kind, queue, params: each queued), in one transaction with
    its new ``params`` and ``stage``: it stays ``running``, and its parts' roll-ups
    (:func:`roll_up`) give its progress and its end. The children are published and
    sent. None, and nothing written, when attempt ``attempt`` no longer holds the job
    (the lifeline gave its worker up for dead)."""
    now = utcnow()
    parent = (
        connection.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.running, Job.attempts == attempt)
            .values(params=params, stage=stage, progress=0.0, message=None, updated_at=now)
            .returning(*jobs.PUBLIC_COLUMNS, Job.owner)
        )
        .mappings()
        .first()
    )
    if parent is None:
        connection.rollback()
        return None
    common = {
        "owner": parent["owner"],
        "max_attempts": parent["max_attempts"],
        "created_at": now,
        "updated_at": now,
    }
    inserted = connection.execute(
        insert(Job).returning(*jobs.PUBLIC_COLUMNS), _part_rows(job_id, common, children)
    )
    child_jobs = [jobs.job_to_dict(row) for row in inserted.mappings()]
    connection.commit()
    parent_job = jobs.job_to_dict(parent)
    return Outbox(publish=[parent_job, *child_jobs], send=child_jobs)


def roll_up(connection: Connection | Session, parent_id: str) -> Outbox:
    """Derive a parent's progress (its finished children over all) and, once none is
    queued or running, its end: ``succeeded`` with the summary of its children's items
    (``cancelled`` when every child was). Progress only grows, whichever of two
    concurrent roll-ups commits last; the end is written once."""
    # A part that was retried counts no more: its retry stands in for it.
    retry = Job.__table__.alias("retry")
    current = (Job.parent_id == parent_id) & ~select(retry.c.id).where(
        retry.c.retry_of == Job.id
    ).exists()
    counts: dict[str, int] = dict(
        connection.execute(  # type: ignore[arg-type]
            select(Job.status, func.count()).where(current).group_by(Job.status)
        ).all()
    )
    total = sum(counts.values())
    if total == 0:
        return Outbox()
    finished = sum(count for status, count in counts.items() if status in FINISHED)
    progress = finished / total
    values: dict[str, Any] = {
        "progress": progress,
        "message": f"{finished} of {total} parts done",
        "updated_at": utcnow(),
    }
    condition: ColumnElement[bool] = Job.progress.is_(None) | (Job.progress < progress)
    if finished == total:
        children = connection.execute(
            select(Job.status, Job.result, Job.error, Job.params).where(current)
        ).all()
        all_cancelled = counts.get(JobStatus.cancelled, 0) == total
        values.update(
            status=JobStatus.cancelled if all_cancelled else JobStatus.succeeded,
            result=_summary(children),
            finished_at=utcnow(),
            stage=None,
            dedupe_key=None,
        )
        condition = Job.status == JobStatus.running
    changed = (
        connection.execute(
            update(Job)
            .where(Job.id == parent_id, Job.status == JobStatus.running, condition)
            .values(**values)
            .returning(*jobs.PUBLIC_COLUMNS)
        )
        .mappings()
        .first()
    )
    connection.commit()
    return Outbox(publish=[jobs.job_to_dict(changed)]) if changed is not None else Outbox()


def unsettled_parents(connection: Connection | Session, limit: int = 100) -> list[str]:
    """Running parents none of whose children is active any more: a roll-up was lost
    (its worker died between the child's end and the parent's update)."""
    child = Job.__table__.alias("child")
    active = select(child.c.id).where(child.c.parent_id == Job.id, child.c.status.in_(ACTIVE))
    # A planning kind is a parent once it has parts; while it plans it is a job of its own.
    parent = Job.kind.in_(PARENT_KINDS) | (
        Job.kind.in_(PLANNING_PARENT_KINDS)
        & select(child.c.id).where(child.c.parent_id == Job.id).exists()
    )
    rows = connection.scalars(
        select(Job.id).where(Job.status == JobStatus.running, parent, ~active.exists()).limit(limit)
    )
    return list(rows)


def batch_items(params: dict[str, Any]) -> list[Any]:
    """The items of one part of a batch (ids of videos, artists...). Parts queued
    before items had a name of their own carry ``video_ids``."""
    return list(params.get("items", params.get("video_ids", [])))


def _item_order(failure: dict[str, Any]) -> tuple[bool, str]:
    # Item ids are ints (videos, artists) or strings: numbers first, each in order.
    item = failure.get("id")
    return not isinstance(item, int), str(item).zfill(20)


def _summary(children: Sequence[Row[Any]]) -> dict[str, Any]:
    """A batch's result, summed over its parts: items ``done``, ``failed`` (the first
    :data:`SUMMARY_FAILURES` as ``{id, reason}``; ``failed_count`` is exact),
    ``skipped`` (nothing to do) and ``cancelled`` (not done because the batch was
    cancelled). A part that failed as a whole counts its items as failed with its
    error; one cancelled before it started counts them as cancelled."""
    done = skipped = cancelled = failed_count = 0
    failed: list[dict[str, Any]] = []
    for status, result, error, params in children:
        items = batch_items(params)
        if result and status in (JobStatus.succeeded, JobStatus.cancelled):
            done += int(result.get("done", 0))
            skipped += int(result.get("skipped", 0))
            cancelled += int(result.get("cancelled", 0))
            failed_count += len(result.get("failed", []))
            failed += result.get("failed", [])
        elif status == JobStatus.cancelled:
            cancelled += len(items)
        else:
            reason = (error or {}).get("message", "the part failed")
            failed_count += len(items)
            failed += [{"id": item, "reason": reason} for item in items]
    failed.sort(key=_item_order)
    return {
        "done": done,
        "failed": failed[:SUMMARY_FAILURES],
        "failed_count": failed_count,
        "skipped": skipped,
        "cancelled": cancelled,
    }


# -- dead letters: a message Dramatiq gave up on, brought back by the job's truth


@dataclass(frozen=True)
class Revival:
    """What became of a dead-lettered message of a job (:func:`revive`).

    ``outcome``: ``resent`` (the job is still queued: its message was sent again),
    ``retried`` (it failed or was cancelled: ``retry_id`` is the new job),
    ``already_active`` (it ended, and another job already holds the same work),
    ``too_many_jobs`` (it ended, and a retry would pass the job caps: nothing done),
    ``unavailable`` (the database stopped answering before its turn: nothing done) or
    ``purged`` (it runs or succeeded, is a batch's parent, or is gone: nothing to do).
    ``status``: the job's status, None when it is gone.
    """

    outcome: str
    status: str | None
    retry_id: str | None = None


def revive(
    connection: Connection | Session, job_ids: Sequence[str], *, owner: str | None, room: int
) -> tuple[dict[str, Revival], Outbox]:
    """Decide, for each job whose message was dead-lettered, what the message becomes
    (:class:`Revival`): a queued job's message is sent again (:func:`resend`), a failed
    or cancelled job is retried (:func:`retry`, a new job asked for by ``owner``; at
    most ``room`` of them), anything else needs no message. Each retry is committed as
    it is made; if the database stops answering on the way, the jobs not done yet are
    ``unavailable`` (those done stay done). A database that does not answer the first
    read raises: nothing was decided."""
    rows = connection.execute(
        select(Job.id, Job.kind, Job.queue, Job.status).where(Job.id.in_(list(job_ids)))
    ).all()
    connection.commit()  # end the read: each retry commits on its own
    found = {row.id: row for row in rows}
    revivals: dict[str, Revival] = {}
    outbox = Outbox()
    lost: list[dict[str, Any]] = []
    for job_id in job_ids:
        row = found.get(job_id)
        status = str(row.status) if row is not None else None
        if row is None or job_id in revivals:
            revivals[job_id] = revivals.get(job_id) or Revival("purged", status)
        elif row.status == JobStatus.queued:
            lost.append({"id": row.id, "kind": row.kind, "queue": row.queue})
            revivals[job_id] = Revival("resent", status)
        elif row.status in (JobStatus.failed, JobStatus.cancelled):
            if room <= 0:
                revivals[job_id] = Revival("too_many_jobs", status)
                continue
            try:
                job, sent = retry(connection, job_id, owner=owner)
            except AlreadyActive:
                revivals[job_id] = Revival("already_active", status)
                continue
            except Exception as exc:
                if unavailable_store(exc) is None:
                    raise
                for undone in job_ids:
                    known = found.get(undone)
                    status = str(known.status) if known is not None else None
                    revivals.setdefault(undone, Revival("unavailable", status))
                break
            if job is None:
                revivals[job_id] = Revival("purged", status)
            else:
                room -= 1
                outbox.add(sent)
                revivals[job_id] = Revival("retried", status, retry_id=job["id"])
        else:
            revivals[job_id] = Revival("purged", status)
    return revivals, outbox.add(resend(lost))
