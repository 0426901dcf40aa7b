"""The last run of each schedule: one row per name, replaced by each run, on SQLite and
PostgreSQL (when ``TEST_DATABASE_URL`` is set)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, func, select

from db.models import RunOutcome, ScheduleRun, utcnow
from db.schedule_runs import Run, error_of, last_runs, record_run


def test_each_run_replaces_the_last_run_of_its_schedule_only(engine: Engine) -> None:
    then = utcnow() - timedelta(minutes=5)
    first = Run("sweep", then, then + timedelta(seconds=2), RunOutcome.ok, "m-1", job_id="j-1")
    other = Run("lifeline", then, then, RunOutcome.skipped, "m-2")
    try:
        raise PermissionError("the work folder is read-only")
    except PermissionError as exc:
        failure = error_of(exc)
    now = utcnow()
    second = Run("sweep", now, now, RunOutcome.failed, "m-3", error=failure)
    with engine.connect() as connection:
        record_run(connection, first)
        record_run(connection, other)
        record_run(connection, second)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(ScheduleRun)) == 2
        runs = last_runs(connection)
    assert set(runs) == {"sweep", "lifeline"}
    shown = runs["sweep"].public()
    assert shown["outcome"] == "failed" and shown["message_id"] == "m-3"
    assert shown["job_id"] is None  # the second run created none
    assert shown["error"] == {"type": "PermissionError", "message": "the work folder is read-only"}
    assert shown["started_at"] == now.replace(tzinfo=None).isoformat() + "Z"
    assert runs["lifeline"].public()["outcome"] == "skipped"
