"""Job history retention: finished jobs are deleted some days after they ended.

A succeeded or cancelled job is kept ``VIDFLEET_JOB_RETENTION_DAYS`` after it finished, a
failed one ``VIDFLEET_FAILED_JOB_RETENTION_DAYS`` (failures are what someone comes back
to look at); 0 keeps them forever. Bulk work is a tree of one level: a parent goes with
its children, and only once it and every child are due, so a live parent never loses
the children its progress is derived from and no child ever points at a deleted parent.
:func:`prune_batch` deletes at most one batch in one short transaction; the maintenance
actor (:mod:`actors.retention`) calls it until nothing is left or its time is up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Delete,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    delete,
    exists,
    false,
    not_,
    or_,
    select,
    update,
)

from db.models import Job, JobStatus, utcnow
from db.settings import Settings

JOBS: Table = Job.__table__  # type: ignore[assignment]
BATCH_SIZE = 1_000


@dataclass(frozen=True)
class RetentionPolicy:
    """How many days finished jobs are kept after they ended; 0 keeps them forever.

    Parameters:
      days: succeeded and cancelled jobs.
      failed_days: failed jobs.
    """

    days: int
    failed_days: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        return cls(days=settings.job_retention_days, failed_days=settings.failed_job_retention_days)

    def cutoffs(self, now: datetime) -> dict[JobStatus, datetime]:
        """Each finished status that is ever pruned, with the moment before which a job
        in it must have finished to be due."""
        days = {
            JobStatus.succeeded: self.days,
            JobStatus.cancelled: self.days,
            JobStatus.failed: self.failed_days,
        }
        return {status: now - timedelta(days=d) for status, d in days.items() if d > 0}


def _due(table: Any, statuses: Sequence[JobStatus]) -> ColumnElement[bool]:
    """A row of ``table`` finished in one of ``statuses`` before that status's cutoff
    (bound as ``cutoff_<status>``)."""
    if not statuses:
        return false()
    return or_(
        *(
            and_(
                table.c.status == status,
                table.c.finished_at < bindparam(f"cutoff_{status}", type_=JOBS.c.finished_at.type),
            )
            for status in statuses
        )
    )


@lru_cache(maxsize=16)
def _roots_statement(status: JobStatus, statuses: tuple[JobStatus, ...]) -> Select[Any]:
    # One status at a time: each is one range of ix_jobs_root_status_finished_at.
    child = JOBS.alias("child")
    return (
        select(JOBS.c.id)
        .where(
            JOBS.c.parent_id.is_(None),
            _due(JOBS, (status,)),
            ~exists().where(child.c.parent_id == JOBS.c.id, not_(_due(child, statuses))),
        )
        .limit(bindparam("rows"))
    )


@lru_cache(maxsize=8)
def _children_statement(statuses: tuple[JobStatus, ...]) -> Select[Any]:
    # Due as well: on PostgreSQL a child added since the roots were read (a retry of a
    # failed child, queued) is visible here, and must stay.
    return (
        select(JOBS.c.id)
        .where(JOBS.c.parent_id.in_(bindparam("roots", expanding=True)), _due(JOBS, statuses))
        .limit(bindparam("rows"))
    )


# A retry outlives the job it retried when that one is due sooner (a cancelled job
# retried into a failure): the link goes, as ON DELETE SET NULL would.
_UNLINK: Update = (
    update(JOBS).where(JOBS.c.retry_of.in_(bindparam("ids", expanding=True))).values(retry_of=None)
)
_DELETE: Delete = delete(JOBS).where(JOBS.c.id.in_(bindparam("ids", expanding=True)))
# Parents whose children are all gone (some may wait for a later batch).
_CHILDLESS: Select[Any] = select(JOBS.c.id).where(
    JOBS.c.id.in_(bindparam("ids", expanding=True)),
    ~exists().where(JOBS.alias("child").c.parent_id == JOBS.c.id),
)


def prune_batch(
    connection: Connection,
    policy: RetentionPolicy,
    *,
    batch_size: int = BATCH_SIZE,
    now: datetime | None = None,
) -> int:
    """Delete at most ``batch_size`` due jobs in one transaction: first the children of
    due parents, then the parents (and lone jobs) left without children. Call it again
    until it returns 0.

    Parameters:
      connection: outside a transaction; the batch commits on it.
      policy: how long each finished status is kept.
      batch_size: the most jobs one batch deletes.
      now: the moment the ages are counted from (default: the current time).

    Returns:
      How many jobs it deleted.
    """
    cutoffs = policy.cutoffs(now or utcnow())
    if not cutoffs:
        return 0
    statuses = tuple(cutoffs)
    parameters: dict[str, Any] = {f"cutoff_{status}": at for status, at in cutoffs.items()}
    with connection.begin():
        roots: list[str] = []
        for status in statuses:
            rows = connection.execute(
                _roots_statement(status, statuses),
                {**parameters, "rows": batch_size - len(roots)},
            )
            roots += rows.scalars()
            if len(roots) >= batch_size:
                break
        if not roots:
            return 0
        children = list(
            connection.execute(
                _children_statement(statuses), {**parameters, "roots": roots, "rows": batch_size}
            ).scalars()
        )
        room = batch_size - len(children)
        if children:
            _delete(connection, children)
        if room > 0:
            childless = list(connection.execute(_CHILDLESS, {"ids": roots[:room]}).scalars())
            _delete(connection, childless)
            return len(children) + len(childless)
        return len(children)


def _delete(connection: Connection, ids: list[str]) -> None:
    if ids:
        connection.execute(_UNLINK, {"ids": ids})
        connection.execute(_DELETE, {"ids": ids})
