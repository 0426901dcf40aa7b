"""Job transitions on a real database: SQLite always, PostgreSQL when
``TEST_DATABASE_URL`` is set (CI sets it where a server answers)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import sessionmaker

from db import jobs
from db.engine import make_engine, session_factory
from db.migrate import upgrade
from db.models import Job, JobStatus
from tests.db.databases import BACKENDS, migrated_database


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated database: a SQLite file, or a PostgreSQL schema of its own."""
    with migrated_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker]:
    engine = make_engine(database_url)
    yield session_factory(engine)
    engine.dispose()


def new_job(sessions: sessionmaker, **fields: Any) -> str:
    with sessions.begin() as session:
        job = Job(kind="download", queue="interactive", params={"url": "http://x/"}, **fields)
        session.add(job)
    return job.id


def status_of(sessions: sessionmaker, job_id: str) -> str:
    with sessions() as session:
        return str(session.scalar(select(Job.status).where(Job.id == job_id)))


def test_migrations_create_every_table(database_url: str) -> None:
    engine = make_engine(database_url)
    names = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"jobs", "videos", "artists", "alembic_version"} <= names


def test_migrating_twice_changes_nothing(database_url: str) -> None:
    upgrade(database_url)


def test_only_one_of_many_racing_workers_claims_a_job(sessions: sessionmaker) -> None:
    job_id = new_job(sessions)
    wins: list[bool] = []
    barrier = threading.Barrier(8)

    def race() -> None:
        barrier.wait()
        with sessions.begin() as session:
            wins.append(jobs.claim(session, job_id, message_id="m") is not None)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == [False] * 7 + [True]
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.status, job.attempts, job.message_id) == (JobStatus.running, 1, "m")
        assert job.started_at is not None


def test_a_finished_job_cannot_be_finished_or_claimed_again(sessions: sessionmaker) -> None:
    job_id = new_job(sessions)
    with sessions.begin() as session:
        claimed = jobs.claim(session, job_id, message_id=None)
        assert claimed is not None and claimed["status"] == "running"
        done = jobs.finish(session, job_id, JobStatus.succeeded, result={"video_id": 1})
        assert done is not None and done["status"] == "succeeded" and done["progress"] == 1.0
    with sessions.begin() as session:
        assert jobs.finish(session, job_id, JobStatus.failed, error={"message": "late"}) is None
        assert jobs.claim(session, job_id, message_id=None) is None
        assert jobs.requeue(session, job_id, error=None) is None
    assert status_of(sessions, job_id) == "succeeded"
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert job.status == JobStatus.succeeded and job.progress == 1.0
        assert job.result == {"video_id": 1} and job.error is None


def test_a_retry_returns_the_job_to_the_queue_with_its_error(sessions: sessionmaker) -> None:
    job_id = new_job(sessions)
    with sessions.begin() as session:
        jobs.claim(session, job_id, message_id=None)
        requeued = jobs.requeue(session, job_id, error={"type": "x", "message": "boom"})
        assert requeued is not None and requeued["error"]["message"] == "boom"
    assert status_of(sessions, job_id) == "queued"
    with sessions.begin() as session:
        again = jobs.claim(session, job_id, message_id=None)
        assert again is not None and again["attempts"] == 2 and again["error"] is None


def test_only_one_active_job_may_hold_a_dedupe_key(sessions: sessionmaker) -> None:
    first = new_job(sessions, dedupe_key="download:http://x/")
    with pytest.raises(IntegrityError):
        new_job(sessions, dedupe_key="download:http://x/")
    with sessions.begin() as session:
        jobs.claim(session, first, message_id=None)
        jobs.finish(session, first, JobStatus.failed, error={"message": "no"})
    # Finished jobs release the key (finish() clears it; the index only covers active ones).
    second = new_job(sessions, dedupe_key="download:http://x/")
    assert status_of(sessions, second) == "queued"


def test_the_job_list_pages_by_cursor_without_gaps(sessions: sessionmaker) -> None:
    created = [new_job(sessions) for _ in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        with sessions() as session:
            rows = list(session.execute(jobs.list_jobs_query(cursor=cursor, limit=3)).mappings())
        page = rows[:3]
        seen += [job["id"] for job in page]
        if len(rows) <= 3:
            break
        cursor = jobs.encode_cursor(page[-1])
    assert seen == created[::-1]


def test_a_bad_cursor_is_refused() -> None:
    with pytest.raises(jobs.InvalidCursor):
        jobs.list_jobs_query(cursor="@@not-ours@@")


def test_job_times_are_iso_utc(sessions: sessionmaker) -> None:
    job_id = new_job(sessions)
    with sessions() as session:
        data = jobs.job_to_dict(session.get(Job, job_id))  # type: ignore[arg-type]
    assert data["created_at"].endswith("Z")
    assert data["status"] == "queued"
    assert data["started_at"] is None


def test_two_library_entries_can_never_share_one_file(sessions: sessionmaker) -> None:
    from db import library

    def entry(extractor: str) -> library.NewVideo:
        return library.NewVideo(
            title="T", artist="A", source_url=f"http://{extractor}/x", extractor=extractor,
            extractor_id="x1", path="A/T_[x1].mp4", size=1, duration=None, width=None,
            height=None, vcodec=None, acodec=None, container=None,
        )  # fmt: skip

    with sessions.begin() as session:
        library.save_video(session, entry("youtube"))
    with pytest.raises(IntegrityError), sessions.begin() as session:
        library.save_video(session, entry("vimeo"))


def test_the_migration_to_unique_paths_keeps_rows_that_shared_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0001")
    engine = make_engine(url)
    with engine.begin() as connection:
        for video_id, extractor in ((1, "youtube"), (2, "vimeo")):
            connection.execute(
                text(
                    "INSERT INTO videos (id, title, source_url, extractor, extractor_id, path,"
                    " size, created_at) VALUES (:id, 'T', 'u', :ex, 'x1', 'A/T_[x1].mp4', 1,"
                    " CURRENT_TIMESTAMP)"
                ),
                {"id": video_id, "ex": extractor},
            )
    upgrade(url)
    with engine.connect() as connection:
        paths = dict(connection.execute(text("SELECT id, path FROM videos")).all())
    engine.dispose()
    # The file holds the later download; the older row no longer points at it.
    assert paths == {2: "A/T_[x1].mp4", 1: "A/T_[x1].mp4.missing-1"}


def test_one_claim_of_many_jobs_wins_only_the_queued_ones_and_records_each_message(
    sessions: sessionmaker,
) -> None:
    queued = [new_job(sessions) for _ in range(3)]
    finished = new_job(sessions, status=JobStatus.succeeded)
    with sessions.begin() as session:
        won = jobs.claim_many(session, {job_id: f"m-{job_id}" for job_id in [*queued, finished]})
    assert sorted(won) == sorted(queued)
    assert all(job["status"] == "running" and job["attempts"] == 1 for job in won.values())
    with sessions() as session:
        rows = {row.id: row for row in session.scalars(select(Job))}
    assert all(rows[job_id].message_id == f"m-{job_id}" for job_id in queued)
    assert rows[finished].status == JobStatus.succeeded and rows[finished].message_id is None


def test_many_jobs_finish_in_one_statement_and_a_stale_attempt_is_fenced_off(
    sessions: sessionmaker,
) -> None:
    job_ids = [new_job(sessions) for _ in range(4)]
    taken_over = job_ids[-1]
    with sessions.begin() as session:
        jobs.claim_many(session, dict.fromkeys(job_ids))
    # The lifeline gave attempt 1 of the last job up and another worker claimed it.
    with sessions.begin() as session:
        assert jobs.requeue(session, taken_over, error=None, attempt=1) is not None
        assert jobs.claim(session, taken_over, message_id="m2") is not None
    with sessions.begin() as session:
        moved = jobs.finish_many(
            session,
            JobStatus.succeeded,
            [(job_id, 1) for job_id in job_ids],
            result={"video_id": 7},
        )
    assert sorted(moved) == sorted(job_ids[:-1])
    for job in moved.values():
        assert job["status"] == "succeeded" and job["attempts"] == 1
        assert job["result"] == {"video_id": 7} and job["progress"] == 1.0
        assert job["finished_at"] is not None
    with sessions() as session:
        fenced = session.get(Job, taken_over)
        assert fenced is not None
        assert (fenced.status, fenced.attempts, fenced.result) == (JobStatus.running, 2, None)
    # One statement holding both attempts of that job: only the current one moves it.
    with sessions.begin() as session:
        moved = jobs.finish_many(
            session, JobStatus.failed, [(taken_over, 1), (taken_over, 2)], error={"type": "x"}
        )
    assert list(moved) == [taken_over] and moved[taken_over]["attempts"] == 2
    assert status_of(sessions, taken_over) == "failed"
    with sessions.begin() as session:
        assert jobs.finish_many(session, JobStatus.failed, []) == {}


def test_sqlite_finds_the_jobs_of_a_claim_or_a_batched_finish_by_id(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plans.db'}"
    upgrade(url)
    engine = make_engine(url)
    statements = [jobs._claim_statement(4), jobs._fenced_many_statement(("status",), 4)]
    with engine.connect() as connection:
        for statement in statements:
            compiled = statement.compile(dialect=engine.dialect)
            parameters = [None] * len(compiled.positiontup or [])
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", tuple(parameters))
            details = " ".join(str(row[-1]) for row in plan)
            assert "sqlite_autoindex_jobs_1 (id=?)" in details, details
            assert "ix_jobs_status" not in details and "SCAN jobs" not in details, details
    engine.dispose()


def test_a_transition_on_the_driver_returns_what_sqlalchemy_returned_for_the_same_statement(
    database_url: str,
) -> None:
    """The transitions run their compiled SQL on the DB-API cursor: the public form must
    be the one SQLAlchemy's own execution of that statement gave, value for value."""
    engine = make_engine(database_url)
    sessions = session_factory(engine)
    job_ids = [new_job(sessions) for _ in range(2)]
    now = jobs.utcnow()

    def both_ways(statement: Any, parameters: dict[str, Any]) -> list[dict[str, Any]]:
        with engine.connect() as connection:
            rows = connection.execute(statement, parameters).mappings()
            expected = sorted((jobs.job_to_dict(row) for row in rows), key=lambda job: job["id"])
            connection.rollback()
            driver = jobs._driver_statement(statement, connection.dialect)
            got = sorted(driver.run(connection, parameters), key=lambda job: job["id"])
            connection.commit()
        assert got == expected and len(got) == len(job_ids)
        return got

    claimed = both_ways(
        jobs._claim_statement(2),
        {"queued": JobStatus.queued, "running": JobStatus.running, "now": now}
        | {f"job_id_{index}": job_id for index, job_id in enumerate(job_ids)}
        | {f"message_id_{index}": f"m-{index}" for index in range(2)},
    )
    assert [job["params"] for job in claimed] == [{"url": "http://x/"}] * 2
    values = jobs._finish_values(
        JobStatus.failed, {"title": "Motörhead ✓", "n": 1.5}, {"type": "x", "retryable": False}
    )
    values["updated_at"] = now
    finished = both_ways(
        jobs._fenced_many_statement(tuple(sorted(values)), 2),
        {f"new_{name}": value for name, value in values.items()}
        | {"from_status": JobStatus.running}
        | {f"job_id_{index}": job_id for index, job_id in enumerate(job_ids)}
        | {f"attempt_{index}": 1 for index in range(2)},
    )
    assert finished[0]["result"] == {"title": "Motörhead ✓", "n": 1.5}
    assert finished[0]["finished_at"].endswith("Z") and finished[0]["progress"] is None
    engine.dispose()


def test_a_transition_outside_a_transaction_begins_one_that_commit_keeps(
    sessions: sessionmaker, database_url: str
) -> None:
    job_id = new_job(sessions)
    engine = make_engine(database_url)
    with engine.connect() as connection:
        assert jobs.claim(connection, job_id, message_id="m") is not None
        connection.commit()
    engine.dispose()
    assert status_of(sessions, job_id) == "running"


def test_a_driver_error_in_a_transition_is_raised_as_sqlalchemy_raises_it(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    with engine.connect() as connection:
        connection.execute(text("ALTER TABLE jobs RENAME TO jobs_elsewhere"))
        with pytest.raises(DBAPIError) as raised:
            jobs.claim(connection, "no-such-job", message_id=None)
        assert isinstance(raised.value.orig, connection.dialect.loaded_dbapi.Error)
        assert "jobs" in str(raised.value)
        connection.rollback()
    engine.dispose()
