"""The last run of each schedule, kept in ``schedule_runs``: one row per schedule name,
replaced by each run (an upsert, on SQLite and PostgreSQL alike).

The workers record every run of a periodic actor (:mod:`actors.schedule_runs`); the web
reads them for ``GET /api/system/schedules``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.jobs import iso
from db.models import RunOutcome, ScheduleRun

RUNS: Table = ScheduleRun.__table__  # type: ignore[assignment]
#: The dialects whose ``INSERT ... ON CONFLICT DO UPDATE`` SQLAlchemy builds.
#: Both builders' statements have ``on_conflict_do_update`` and ``excluded``.
UPSERTS: dict[str, Callable[[Table], Any]] = {
    "sqlite": sqlite.insert,
    "postgresql": postgresql.insert,
}
#: The most characters of an error's message a run keeps.
ERROR_MESSAGE_CHARS = 500


@dataclass(frozen=True)
class Run:
    """One run of a schedule.

    Parameters:
      name: the schedule's (its actor's) name.
      started_at, finished_at: when the worker took and ended it (aware, UTC).
      outcome: ok, failed or skipped.
      message_id: the Dramatiq message the scheduler sent.
      job_id: the job the run created, if it created one.
      error: ``{"type", "message"}`` of a failed or skipped run.
    """

    name: str
    started_at: datetime
    finished_at: datetime
    outcome: RunOutcome
    message_id: str | None = None
    job_id: str | None = None
    error: dict[str, str] | None = None

    def public(self) -> dict[str, Any]:
        """The run as the API shows it (ISO 8601 times)."""
        return {
            **asdict(self),
            "outcome": str(self.outcome),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
        }


def error_of(exception: BaseException) -> dict[str, str]:
    """What a run keeps of the exception that failed it: its type and message."""
    return {"type": type(exception).__name__, "message": str(exception)[:ERROR_MESSAGE_CHARS]}


def record_run(connection: Connection, run: Run) -> None:
    """Store ``run`` as its schedule's last run, replacing the one before; commits.

    Raises:
      NotImplementedError: the database is neither SQLite nor PostgreSQL.
    """
    upsert = UPSERTS.get(connection.dialect.name)
    if upsert is None:
        raise NotImplementedError(f"no upsert for {connection.dialect.name}")
    values = {**asdict(run), "outcome": str(run.outcome)}
    statement = upsert(RUNS).values(values)
    statement = statement.on_conflict_do_update(
        index_elements=[RUNS.c.name],
        set_={name: statement.excluded[name] for name in values if name != "name"},
    )
    connection.execute(statement)
    connection.commit()


def last_runs(connection: Connection | Session) -> dict[str, Run]:
    """Every schedule's last run, by name."""
    rows = connection.execute(select(*RUNS.c)).mappings()
    return {row["name"]: Run(**{**row, "outcome": RunOutcome(row["outcome"])}) for row in rows}
