"""Workers and the scheduler ride out store outages (issue 14, item 3), with real faults:
a PostgreSQL server of the test's own stopped and started again, a SQLite file whose
write lock another connection holds, and the tests' Redis stopped and started again.

What must hold: a finish submitted during a database outage is committed once the
database answers (its waiter gets the real outcome, void when the lifeline took the job
over meanwhile); a claim gives up after a bounded wait without counting an attempt;
with Redis gone a running job's watcher survives, its heartbeats resume and the job
succeeds once; the scheduler's tick and the lifeline return instead of raising; and
each part logs one warning when an outage starts and one info line when it ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
import pytest
from dramatiq.middleware import CurrentMessage
from sqlalchemy import Connection, Engine, QueuePool, create_engine, update
from sqlalchemy.orm import sessionmaker

from actors.job_context import JobContext, current_job
from actors.job_tracking import job_actor
from db.models import Job, JobStatus, utcnow
from tests.support import wait_for

# -- a job actor of the tests' own: it runs until the test lets it finish

release = threading.Event()
started: list[str] = []
retries_seen: list[int] = []  # Dramatiq's count of the message's retries, at each run


@job_actor(kind="outage_probe", queue_name="bulk")
def hold_until_released(job_id: str) -> None:
    job: JobContext = current_job()
    started.append(job_id)
    message = CurrentMessage.get_current_message()
    retries_seen.append(message.options.get("retries", 0) if message else -1)
    while not release.wait(0.05):  # reporting all along, as a download does
        job.report(stage="holding", progress=None)
    job.result = {"runs": started.count(job_id)}


@pytest.fixture(autouse=True)
def fresh_probe() -> Iterator[None]:
    release.clear()
    started.clear()
    retries_seen.clear()
    yield
    release.set()  # never leave a worker thread holding


# -- helpers


def messages(caplog: pytest.LogCaptureFixture, logger: str, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelno == level]


def insert_job(sessions: sessionmaker, *, kind: str = "download", queue: str = "bulk") -> str:
    with sessions.begin() as session:
        job = Job(kind=kind, queue=queue, params={})
        session.add(job)
    return job.id


def row(sessions: sessionmaker, job_id: str) -> Job:
    with sessions() as session:
        found = session.get(Job, job_id)
        assert found is not None
        return found


def migrated_sqlite(tmp_path: Path) -> str:
    from db.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'outage.db'}"
    upgrade(url)  # WAL mode stays on the file
    return url


def impatient_sqlite_engine(url: str) -> Engine:
    """The worker's SQLite engine (one connection, BEGIN IMMEDIATE), but giving up on a
    held write lock after 0.2 s instead of the 15 s busy timeout: a lock of a second or
    two is then an outage the ledger must ride out, not a wait SQLite hides."""
    return create_engine(
        url,
        connect_args={"timeout": 0.2, "check_same_thread": False, "isolation_level": "IMMEDIATE"},
        poolclass=QueuePool,
        pool_size=1,
        max_overflow=0,
    )


@contextmanager
def write_locked(url: str) -> Iterator[Connection]:
    """Another connection holding the database's write lock (``BEGIN EXCLUSIVE``) until
    the block ends, and then committing what it wrote meanwhile."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("BEGIN EXCLUSIVE")
            try:
                yield connection
            finally:
                connection.exec_driver_sql("COMMIT")
    finally:
        engine.dispose()


class Waiter(threading.Thread):
    """A worker thread waiting on the ledger."""

    def __init__(self, call: Any) -> None:
        super().__init__(daemon=True)
        self.call = call
        self.outcome: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.outcome = self.call()
        except BaseException as exc:
            self.error = exc

    def result(self, timeout: float = 30) -> Any:
        self.join(timeout)
        assert not self.is_alive(), "the waiter never got an answer"
        if self.error is not None:
            raise self.error
        return self.outcome


# -- the job ledger through database outages


def test_a_finish_during_a_postgres_outage_is_committed_once_the_server_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from actors.ledger import JobLedger
    from db.engine import make_engine, session_factory
    from db.migrate import upgrade
    from tests.db.pg_cluster import pg_cluster

    caplog.set_level(logging.INFO, logger="actors.ledger")
    with pg_cluster() as cluster:
        upgrade(cluster.url)
        engine = make_engine(cluster.url, connect_timeout=2, statement_timeout=5)
        try:
            sessions = session_factory(engine)
            committed: list[dict[str, Any]] = []
            ledger = JobLedger(engine, on_commit=committed.extend)
            job_id = insert_job(sessions)
            claimed = ledger.claim(job_id, message_id="m-1")
            assert claimed is not None and claimed["attempts"] == 1

            cluster.stop()  # "fast": every session ends, as for an upgrade
            finish = Waiter(
                lambda: ledger.finish(
                    job_id, JobStatus.succeeded, attempt=1, result={"file": "a.mp4"}
                )
            )
            finish.start()
            wait_for(lambda: ledger.outage.failures >= 3, timeout=20, what="tries to fail")
            assert finish.is_alive(), "the finish was given up instead of kept"
            cluster.start()

            outcome = finish.result()
            assert outcome is not None
            assert (outcome["status"], outcome["result"]) == ("succeeded", {"file": "a.mp4"})
            assert row(sessions, job_id).status == "succeeded"
            assert [job["status"] for job in committed] == ["running", "succeeded"]
            assert ledger._writer is not None and ledger._writer.is_alive()
            # The next transition goes through at once.
            assert ledger.claim(insert_job(sessions), message_id="m-2") is not None
        finally:
            engine.dispose()
    (warning,) = messages(caplog, "actors.ledger", logging.WARNING)
    assert "the database is unavailable" in warning
    (info,) = messages(caplog, "actors.ledger", logging.INFO)
    assert "answers again" in info


def test_a_finish_waits_out_a_locked_sqlite_database_and_then_commits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from actors.ledger import JobLedger
    from db.engine import session_factory

    caplog.set_level(logging.INFO, logger="actors.ledger")
    url = migrated_sqlite(tmp_path)
    engine = impatient_sqlite_engine(url)
    sessions = session_factory(engine)
    ledger = JobLedger(engine)
    job_id = insert_job(sessions)
    assert ledger.claim(job_id, message_id="m") is not None

    with write_locked(url):
        finish = Waiter(lambda: ledger.finish(job_id, JobStatus.failed, attempt=1, error={}))
        finish.start()
        wait_for(lambda: ledger.outage.failures >= 3, what="tries to hit the lock")
        assert finish.is_alive()
    outcome = finish.result()
    assert outcome is not None and outcome["status"] == "failed"
    assert row(sessions, job_id).status == "failed"
    assert ledger._writer is not None and ledger._writer.is_alive()
    assert len(messages(caplog, "actors.ledger", logging.WARNING)) == 1
    assert len(messages(caplog, "actors.ledger", logging.INFO)) == 1
    engine.dispose()


def test_a_late_finish_is_void_when_the_lifeline_requeued_the_job_meanwhile(
    tmp_path: Path,
) -> None:
    from actors.ledger import JobLedger
    from db import jobs
    from db.engine import session_factory

    url = migrated_sqlite(tmp_path)
    engine = impatient_sqlite_engine(url)
    sessions = session_factory(engine)
    ledger = JobLedger(engine)
    job_id = insert_job(sessions)
    assert ledger.claim(job_id, message_id="m") is not None

    with write_locked(url) as lifeline:
        finish = Waiter(lambda: ledger.finish(job_id, JobStatus.succeeded, attempt=1))
        finish.start()
        wait_for(lambda: ledger.outage.failures >= 2, what="the finish to wait")
        # What the lifeline does to a job whose heartbeat expired, while the finish waits.
        lost = {"type": "worker_lost", "message": "its worker stopped", "retryable": True}
        assert jobs.requeue(lifeline, job_id, error=lost, attempt=1) is not None
    assert finish.result() is None  # fenced: the attempt was taken over
    job = row(sessions, job_id)
    assert (job.status, job.error) == ("queued", lost)
    engine.dispose()


def test_a_claim_gives_up_after_its_patience_without_counting_an_attempt(
    tmp_path: Path,
) -> None:
    from actors.ledger import JobLedger
    from actors.stores import DatabaseUnavailable
    from db.engine import session_factory

    url = migrated_sqlite(tmp_path)
    engine = impatient_sqlite_engine(url)
    sessions = session_factory(engine)
    ledger = JobLedger(engine, claim_patience=0.5)
    job_id = insert_job(sessions)

    with write_locked(url):
        began = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            ledger.claim(job_id, message_id="m-1")
        assert time.monotonic() - began < 5
    assert row(sessions, job_id).attempts == 0
    claimed = ledger.claim(job_id, message_id="m-2")
    assert claimed is not None and claimed["attempts"] == 1
    engine.dispose()


def test_a_message_whose_claim_found_no_database_runs_once_the_database_is_back(
    worker: Any, settings: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from actors import broker, job_tracking, stores
    from actors.enqueue import enqueue_job
    from actors.job_tracking import JobTracking
    from actors.ledger import JobLedger

    caplog.set_level(logging.INFO, logger="actors.retry_policy")
    tracking = next(m for m in broker.middleware if isinstance(m, JobTracking))
    # The worker's ledger on an engine that gives up on the lock quickly, and a short
    # patience and redelivery delay, so the outage fits in a test.
    ledger = JobLedger(
        impatient_sqlite_engine(settings.database_url),
        on_commit=tracking._publish,
        claim_patience=0.3,
    )
    monkeypatch.setattr(tracking, "_ledger", ledger)
    monkeypatch.setattr(job_tracking, "DATABASE_WAIT_MS", 200)
    job_id = insert_job(stores.sessions(), kind="outage_probe")

    def sent_back() -> int:
        return sum("goes back to its queue" in line for line in caplog.messages)

    with write_locked(settings.database_url):
        enqueue_job(hold_until_released, job_id, "bulk")
        wait_for(lambda: sent_back() >= 2, what="two claims to be given up")
        assert started == []
    wait_for(lambda: started == [job_id], what="the job to start once the lock is gone")
    release.set()
    wait_for(lambda: row(stores.sessions(), job_id).status == "succeeded", what="success")
    assert row(stores.sessions(), job_id).attempts == 1
    assert started == [job_id]
    # Sent back at least twice, yet none of the message's retries was used up.
    assert retries_seen == [0]
    ledger.engine.dispose()


def test_a_job_whose_finish_waits_for_the_database_keeps_beating_and_then_succeeds(
    worker: Any, settings: Any, monkeypatch: pytest.MonkeyPatch, redis_client: Any
) -> None:
    from actors import broker, stores
    from actors.enqueue import enqueue_job
    from actors.job_tracking import JobTracking
    from actors.ledger import JobLedger
    from db import live

    tracking = next(m for m in broker.middleware if isinstance(m, JobTracking))
    ledger = JobLedger(impatient_sqlite_engine(settings.database_url), on_commit=tracking._publish)
    monkeypatch.setattr(tracking, "_ledger", ledger)
    job_id = insert_job(stores.sessions(), kind="outage_probe")
    enqueue_job(hold_until_released, job_id, "bulk")
    wait_for(lambda: started == [job_id], what="the job to start")

    with write_locked(settings.database_url):
        release.set()  # the job is done; its finish meets the locked database
        wait_for(lambda: job_id in ledger.ending_job_ids(), what="the finish to wait")
        outlasted = time.monotonic() + settings.heartbeat_timeout + 0.5
        wait_for(lambda: time.monotonic() > outlasted, timeout=10, what="a heartbeat lifetime")
        # Still beating, so no lifeline anywhere takes the job for abandoned.
        assert redis_client.exists(live.heartbeat_key(job_id))
        assert ledger.outage.down
    wait_for(lambda: row(stores.sessions(), job_id).status == "succeeded", what="success")
    job = row(stores.sessions(), job_id)
    assert (job.attempts, job.result) == (1, {"runs": 1})
    ledger.engine.dispose()


# -- Redis outages


def test_a_running_job_rides_out_a_redis_outage(
    worker: Any,
    redis_server: Any,
    redis_client: Any,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from actors import broker, stores
    from actors.enqueue import enqueue_job
    from actors.job_tracking import JobTracking
    from actors.recovery import recover_abandoned
    from actors.stores import Outage
    from db import live

    for name in ("actors.reporter", "actors.job_watcher", "actors.recovery"):
        caplog.set_level(logging.INFO, logger=name)
    tracking = next(m for m in broker.middleware if isinstance(m, JobTracking))
    # A fresh record of outages (an earlier test may have ended in one), as the
    # reporter makes it.
    outage = Outage(
        "job events and heartbeats", "Redis", logger=logging.getLogger("actors.reporter"),
        max_delay=settings.heartbeat_timeout / 3,
    )  # fmt: skip
    monkeypatch.setattr(tracking.reporter, "redis_outage", outage)
    job_id = insert_job(stores.sessions(), kind="outage_probe")
    enqueue_job(hold_until_released, job_id, "bulk")
    wait_for(lambda: started == [job_id], what="the job to start")
    wait_for(lambda: redis_client.exists(live.heartbeat_key(job_id)), what="a heartbeat")
    watcher = tracking.watcher._thread
    assert watcher is not None

    redis_server.stop()
    stopped = time.monotonic()
    try:
        # Long enough that the job's heartbeat key expires while Redis is down.
        wait_for(
            lambda: (
                outage.failures >= 3 and time.monotonic() - stopped > settings.heartbeat_timeout
            ),
            timeout=20,
            what="the outage to outlast a heartbeat",
        )
    finally:
        redis_server.start()
    wait_for(lambda: redis_client.exists(live.heartbeat_key(job_id)), what="heartbeats to resume")
    wait_for(lambda: not outage.down, what="the watcher to see Redis again")
    # Once Redis has been up for a heartbeat lifetime the lifeline trusts heartbeats
    # again: this job's is there, so it is not given up.
    wait_for(
        lambda: int(redis_client.info("server")["uptime_in_seconds"]) > settings.heartbeat_timeout,
        what="Redis to be up for a heartbeat lifetime",
    )
    assert recover_abandoned() == 0
    assert row(stores.sessions(), job_id).status == "running"

    release.set()
    wait_for(lambda: row(stores.sessions(), job_id).status == "succeeded", what="success")
    job = row(stores.sessions(), job_id)
    assert (job.attempts, job.result) == (1, {"runs": 1})
    assert started == [job_id]
    assert watcher.is_alive() and tracking.watcher._thread is watcher
    (warning,) = messages(caplog, "actors.reporter", logging.WARNING)
    assert "Redis is unavailable" in warning
    assert len(messages(caplog, "actors.reporter", logging.INFO)) == 1
    assert not messages(caplog, "actors.job_watcher", logging.WARNING)  # no failed rounds
    assert len(messages(caplog, "actors.recovery", logging.WARNING)) <= 1


def test_the_lifeline_rides_out_a_redis_outage_and_waits_for_heartbeats_after_it(
    redis_server: Any, settings: Any, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    from actors import recovery, stores
    from actors.stores import Outage

    caplog.set_level(logging.INFO, logger="actors.recovery")
    monkeypatch.setattr(
        recovery, "REDIS_OUTAGE", Outage("lifeline", "Redis", logger=recovery.logger)
    )
    # A running job whose worker died long ago: no heartbeat.
    job_id = insert_job(stores.sessions())
    with stores.sessions().begin() as session:
        long_ago = utcnow() - timedelta(minutes=5)
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status=JobStatus.running, attempts=1, started_at=long_ago)
        )

    redis_server.stop()
    try:
        assert recovery.run_lifeline_if_due(1) is False
        recovery.run_lifeline()  # its database part runs; its Redis part waits
        assert recovery.REDIS_OUTAGE.failures >= 2
    finally:
        redis_server.start()
    assert row(stores.sessions(), job_id).status == "running"
    # Redis just started: a missing heartbeat says nothing yet.
    assert recovery.recover_abandoned() == 0
    wait_for(
        lambda: (
            recovery.run_lifeline_if_due(1) and row(stores.sessions(), job_id).status == "queued"
        ),
        timeout=settings.heartbeat_timeout + 10,
        interval=0.2,
        what="the lifeline to give the job up after a heartbeat lifetime",
    )
    assert len(messages(caplog, "actors.recovery", logging.WARNING)) == 2  # outage, job lost
    assert any(
        "answers again" in line for line in messages(caplog, "actors.recovery", logging.INFO)
    )


def test_the_scheduler_rides_out_a_redis_outage(
    redis_server: Any, redis_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from actors import lifeline_sweep, stores
    from actors.scheduler import LeasedScheduler, SchedulerLease

    caplog.set_level(logging.INFO, logger="actors.scheduler")
    periodic = [lifeline_sweep]
    scheduler = LeasedScheduler(
        periodic, lease=SchedulerLease(stores.redis_client()), send_patience=1.0
    )
    scheduler.outage.max_delay = 0.5  # so the tick sees Redis back soon after it is
    now = pendulum.now()
    redis_server.stop()
    try:
        # Two ticks in the outage: each is let go, neither raises.
        scheduler.send_actors(periodic, now)
        scheduler.send_actors(periodic, now.add(minutes=1))
        # A tick during which Redis comes back: it keeps trying and then sends.
        scheduler.send_patience = 30
        tick = Waiter(lambda: scheduler.send_actors(periodic, now.add(minutes=2)))
        tick.start()
        failed_so_far = scheduler.outage.failures
        wait_for(lambda: scheduler.outage.failures > failed_so_far, what="the tick to retry")
    finally:
        redis_server.start()
    tick.result()
    assert int(redis_client.hlen("dramatiq:maintenance.msgs")) == 1
    (warning,) = messages(caplog, "actors.scheduler", logging.WARNING)
    assert "Redis is unavailable" in warning
    assert any(
        "answers again" in line for line in messages(caplog, "actors.scheduler", logging.INFO)
    )
    # And the next tick is an ordinary one.
    scheduler.send_actors(periodic, now.add(minutes=3))
    assert int(redis_client.hlen("dramatiq:maintenance.msgs")) == 2
