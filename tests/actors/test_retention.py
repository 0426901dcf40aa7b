"""The job history's periodic pruning, declared for the scheduler and run by a real
in-process worker on the real Redis broker."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from sqlalchemy import insert, select

from db.engine import make_engine
from db.models import Job, JobStatus, utcnow
from db.queues import Queue


def add_job(settings: Any, job_id: str, status: JobStatus, *, days_ago: float) -> None:
    at = utcnow() - timedelta(days=days_ago)
    engine = make_engine(settings.database_url)
    with engine.begin() as connection:
        connection.execute(
            insert(Job).values(
                id=job_id,
                kind="download",
                queue=Queue.downloads,
                params={},
                status=status,
                attempts=1,
                max_attempts=3,
                created_at=at,
                updated_at=at,
                finished_at=at if status.finished else None,
            )
        )
    engine.dispose()


def test_the_scheduler_sends_the_pruning_hourly_on_the_maintenance_queue() -> None:
    import dramatiq

    from actors import prune_job_history

    periodic = [a for a in dramatiq.get_broker().actors.values() if "periodic" in a.options]
    assert prune_job_history in periodic
    assert prune_job_history.queue_name == Queue.maintenance
    cron = prune_job_history.options["periodic"]
    hour = pendulum.datetime(2026, 12, 6, 14, 0, tz="UTC")
    due = [minute for minute in range(24 * 60) if cron.validate(hour.add(minutes=minute))]
    assert len(due) == 24 and {minute % 60 for minute in due} == {41}


def test_a_run_through_a_worker_prunes_the_jobs_past_their_retention(
    settings: Any, worker: Any
) -> None:
    from actors import broker, prune_job_history, stores
    from actors.scheduler import LeasedScheduler, SchedulerLease

    add_job(settings, "old-success", JobStatus.succeeded, days_ago=31)
    add_job(settings, "old-failure", JobStatus.failed, days_ago=91)
    add_job(settings, "recent-failure", JobStatus.failed, days_ago=31)
    add_job(settings, "waiting", JobStatus.queued, days_ago=100)

    # As the scheduler sends it on its tick (a message older than periodiq's skip delay
    # would be dropped by the worker).
    scheduler = LeasedScheduler([prune_job_history], lease=SchedulerLease(stores.redis_client()))
    scheduler.send_actors([prune_job_history], pendulum.now())
    broker.join(Queue.maintenance, timeout=30_000)
    worker.join()

    engine = make_engine(settings.database_url)
    with engine.connect() as connection:
        left = set(connection.execute(select(Job.id)).scalars())
    engine.dispose()
    assert left == {"recent-failure", "waiting"}
