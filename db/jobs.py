"""Job state changes and queries, shared by the web (async) and the actors (sync).

Each transition is one conditional UPDATE (``WHERE status = ...``): the caller learns
from the row count whether it won, so two workers can never both run one job.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, or_, select, update
from sqlalchemy.orm import Session

from db.models import Job, JobStatus, utcnow

PUBLIC_FIELDS = (
    "id", "kind", "status", "queue", "params", "result", "error", "progress", "stage",
    "message", "attempts", "max_attempts", "parent_id", "retry_of",
)  # fmt: skip
TIME_FIELDS = ("created_at", "started_at", "finished_at", "updated_at")


class InvalidCursor(ValueError):
    """A list cursor that we did not hand out."""


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC; SQLite hands back naive datetimes, which are UTC here."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def job_to_dict(job: Job) -> dict[str, Any]:
    """The public JSON form of a job (the API and the progress events use it)."""
    data: dict[str, Any] = {name: getattr(job, name) for name in PUBLIC_FIELDS}
    data["status"] = str(job.status)
    for name in TIME_FIELDS:
        data[name] = iso(getattr(job, name))
    return data


def claim(session: Session, job_id: str, *, message_id: str | None) -> bool:
    """queued -> running; counts the attempt. False when someone else owns the job."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.queued)
        .values(
            status=JobStatus.running,
            attempts=Job.attempts + 1,
            started_at=now,
            updated_at=now,
            message_id=message_id,
            stage="starting",
            error=None,
        )
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def finish(
    session: Session,
    job_id: str,
    status: JobStatus,
    *,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> bool:
    """running -> succeeded | failed | cancelled."""
    now = utcnow()
    values: dict[str, Any] = {
        "status": status,
        "finished_at": now,
        "updated_at": now,
        "dedupe_key": None,
        "error": error,
        "stage": str(status),
    }
    if result is not None:
        values["result"] = result
    if status is JobStatus.succeeded:
        values["progress"] = 1.0
    outcome = session.execute(
        update(Job).where(Job.id == job_id, Job.status == JobStatus.running).values(**values)
    )
    return outcome.rowcount == 1  # type: ignore[attr-defined]


def requeue(session: Session, job_id: str, *, error: dict[str, Any] | None) -> bool:
    """running -> queued, for a retry: the error of the attempt stays visible."""
    outcome = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.running)
        .values(status=JobStatus.queued, error=error, stage="retrying", updated_at=utcnow())
    )
    return outcome.rowcount == 1  # type: ignore[attr-defined]


def save_progress(session: Session, job_id: str, fields: dict[str, Any]) -> None:
    """Store the latest progress of a running job (throttled by the reporter)."""
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.running)
        .values(**fields, updated_at=utcnow())
    )


def set_message_id(session: Session, job_id: str, message_id: str) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(message_id=message_id))


def encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, job_id = raw.split("|", 1)
        return datetime.fromisoformat(created), job_id
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursor(cursor) from exc


def list_jobs_query(
    *,
    status: str | None = None,
    kind: str | None = None,
    parent_id: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Select[tuple[Job]]:
    """Newest first; fetch ``limit + 1`` rows to know whether there is a next page."""
    query = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    if status:
        query = query.where(Job.status == status)
    if kind:
        query = query.where(Job.kind == kind)
    if parent_id:
        query = query.where(Job.parent_id == parent_id)
    if cursor:
        created, job_id = decode_cursor(cursor)
        query = query.where(
            or_(Job.created_at < created, and_(Job.created_at == created, Job.id < job_id))
        )
    return query
