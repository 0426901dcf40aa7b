"""The web's two busiest job requests (db.job_requests) and the ConnectionRunner that
runs them, on a real database: SQLite always, PostgreSQL when ``TEST_DATABASE_URL`` is
set."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from sqlalchemy import Connection, event, func, select

from db import jobs
from db.engine import ConnectionRunner, make_async_engine, make_engine
from db.job_requests import jobs_page_json, submit_job
from db.models import Job, JobStatus, Video
from tests.db.test_jobs import database_url  # noqa: F401  # the fixture

T0 = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)
LIBRARY_VIDEO = {
    "title": "t",
    "source_url": "http://x/had.mp4",
    "extractor": "generic",
    "extractor_id": "had",
    "path": "a/t.mp4",
    "size": 1,
}
CAPS = {"max_active": 100, "max_active_of_owner": 100}


def async_url(url: str) -> str:
    return url.replace("sqlite:", "sqlite+aiosqlite:", 1) if url.startswith("sqlite:") else url


def run(url: str, work: Any) -> Any:
    """``work(connection)`` through a ConnectionRunner, as the web runs it."""

    async def main() -> Any:
        engine = make_async_engine(async_url(url))
        runner = ConnectionRunner(url, async_engine=engine)
        try:
            return await runner.run(work)
        finally:
            runner.dispose()
            await engine.dispose()

    return asyncio.run(main())


def submit(url: str, media_url: str, **options: Any) -> Any:
    arguments: dict[str, Any] = {
        "kind": "download",
        "queue": "interactive",
        "params": {"url": media_url},
        "owner": "admin",
        "max_attempts": 3,
        "library_url": media_url,
        **CAPS,
    }
    return run(url, partial(submit_job, **{**arguments, **options}))


def add_rows(url: str, *rows: Any) -> None:
    engine = make_engine(url)
    with engine.begin() as connection:
        for table, values in rows:
            connection.execute(table.insert().values(**values))
    engine.dispose()


def count_jobs(url: str) -> int:
    engine = make_engine(url)
    with engine.connect() as connection:
        count = connection.scalar(select(func.count()).select_from(jobs.JOBS))
    engine.dispose()
    return int(count or 0)


def a_job(number: int, **values: Any) -> tuple[Any, dict[str, Any]]:
    created = T0 + timedelta(seconds=number // 2)  # pairs share a time: ties break by id
    row = {
        "id": f"00000000-0000-0000-0000-{number:012d}",
        "kind": "download",
        "status": JobStatus.succeeded,
        "queue": "interactive",
        "params": {"url": f"http://x/{number}"},
        "attempts": 1,
        "max_attempts": 3,
        "created_at": created,
        "updated_at": created.replace(microsecond=0) if number % 2 else created,
        **values,
    }
    return jobs.JOBS, row


def test_every_page_of_jobs_is_the_json_of_what_the_list_query_reads(database_url: str) -> None:  # noqa: F811
    parent = a_job(0, kind="bulk")
    add_rows(
        database_url,
        parent,
        *(
            a_job(
                n,
                status=JobStatus.failed if n % 3 else JobStatus.queued,
                parent_id=parent[1]["id"] if n % 2 else None,
                result={"video_id": n} if n % 4 else None,
                error={"type": "x", "message": "é"} if n % 3 else None,
            )
            for n in range(1, 12)
        ),
    )
    engine = make_engine(database_url)

    def expected_pages(filters: dict[str, Any]) -> list[tuple[list[dict[str, Any]], str | None]]:
        pages, cursor = [], None
        with engine.connect() as connection:
            while True:
                query = jobs.list_jobs_query(cursor=cursor, limit=4, **filters)
                rows = list(connection.execute(query).mappings())
                page, more = rows[:4], len(rows) > 4
                cursor = jobs.encode_cursor(page[-1]) if more else None
                pages.append(([jobs.job_to_dict(row) for row in page], cursor))
                if cursor is None:
                    return pages

    for filters in (
        {},
        {"status": "failed"},
        {"kind": "download"},
        {"parent_id": parent[1]["id"]},
        {"status": "queued", "parent_id": parent[1]["id"]},
    ):
        pages, cursor = [], None
        while True:
            page = json.loads(
                run(database_url, partial(jobs_page_json, cursor=cursor, limit=4, **filters))
            )
            items, cursor = page["items"], page["next"]
            pages.append((items, cursor))
            if cursor is None:
                break
        assert pages == expected_pages(filters), filters
        assert sum(len(items) for items, _ in pages) >= 1
    engine.dispose()
    with pytest.raises(jobs.InvalidCursor):
        run(database_url, partial(jobs_page_json, cursor="@@not-ours@@"))


def test_a_submission_is_a_new_queued_job_committed_with_its_owner(database_url: str) -> None:  # noqa: F811
    made = submit(database_url, "http://x/new.mp4", owner="viewer-ish", queue="bulk")
    assert made.created and made.video_id is None and made.over_cap is None
    job = made.job
    assert job["status"] == "queued" and job["queue"] == "bulk" and job["attempts"] == 0
    assert job["params"] == {"url": "http://x/new.mp4"} and job["created_at"].endswith("Z")
    engine = make_engine(database_url)
    with engine.connect() as connection:
        row = connection.execute(select(Job.owner, Job.dedupe_key).where(Job.id == job["id"]))
        assert tuple(row.one()) == ("viewer-ish", "download:http://x/new.mp4")
    engine.dispose()
    # The same work again: the job that holds it, nothing new.
    again = submit(database_url, "http://x/new.mp4")
    assert (again.job, again.created) == (job, False)


def test_a_submission_is_refused_for_the_library_then_the_fleets_cap_then_the_owners(
    database_url: str,  # noqa: F811
) -> None:
    add_rows(
        database_url,
        (Video.__table__, LIBRARY_VIDEO),
        a_job(1, status=JobStatus.queued, owner="admin"),
        a_job(2, status=JobStatus.running, owner="other"),
        a_job(3, status=JobStatus.failed, owner="admin"),  # finished: not counted
    )
    assert submit(database_url, "http://x/had.mp4").video_id is not None
    forced = submit(database_url, "http://x/had.mp4", library_url=None)
    assert forced.created
    # Three active jobs now, two of them the admin's.
    assert submit(database_url, "http://x/a.mp4", max_active=3).over_cap == "fleet"
    assert submit(database_url, "http://x/a.mp4", max_active_of_owner=2).over_cap == "owner"
    assert submit(database_url, "http://x/a.mp4", owner="third", max_active_of_owner=1).created
    assert count_jobs(database_url) == 5


def test_a_submission_that_loses_the_race_answers_with_the_winners_job(
    database_url: str,  # noqa: F811
) -> None:
    """Another web replica commits the same work between our check and our insert: the
    unique index refuses our row, and we answer with theirs."""
    _, winner = a_job(7, status=JobStatus.queued, dedupe_key="download:http://x/race.mp4")
    rival = make_engine(database_url)
    ours = make_engine(database_url)

    @event.listens_for(ours, "before_cursor_execute")
    def the_rival_commits_first(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO JOBS"):
            with rival.begin() as other:
                other.execute(jobs.JOBS.insert().values(**winner))

    with ours.connect() as connection:
        lost = submit_job(
            connection,
            kind="download",
            queue="interactive",
            params={"url": "http://x/race.mp4"},
            owner="admin",
            max_attempts=3,
            **CAPS,
        )
    assert not lost.created and lost.job is not None and lost.job["id"] == winner["id"]
    assert count_jobs(database_url) == 1
    ours.dispose()
    rival.dispose()


def test_the_runner_keeps_what_the_work_committed_and_rolls_back_the_rest(
    database_url: str,  # noqa: F811
) -> None:
    def work(connection: Connection) -> str:
        connection.execute(jobs.JOBS.insert().values(**a_job(1)[1]))
        connection.commit()
        connection.execute(jobs.JOBS.insert().values(**a_job(2)[1]))  # never committed
        return "done"

    assert run(database_url, work) == "done"
    assert count_jobs(database_url) == 1

    def fails(connection: Connection) -> None:
        connection.execute(jobs.JOBS.insert().values(**a_job(3)[1]))
        raise LookupError("the work's own error")

    with pytest.raises(LookupError, match="the work's own error"):
        run(database_url, fails)
    assert count_jobs(database_url) == 1


def test_the_runners_writes_follow_each_other_without_meeting_sqlites_lock(tmp_path: Any) -> None:
    """20 concurrent write units, each holding SQLite's write lock a while, on
    connections that would fail at once on a lock held by another (busy_timeout 0):
    run as writes, all commit; run as reads (several threads), they collide — the
    collisions that, with a busy timeout, were sleeps in SQLite's busy handler."""
    url = f"sqlite:///{tmp_path}/runner.db"
    with make_engine(url).begin() as connection:
        connection.exec_driver_sql("CREATE TABLE written (n INTEGER)")

    def write(connection: Connection, n: int) -> None:
        connection.exec_driver_sql("PRAGMA busy_timeout = 0")
        connection.exec_driver_sql("INSERT INTO written VALUES (?)", (n,))
        time.sleep(0.005)  # a slow write: holds the write lock
        connection.commit()

    async def main(writes: bool) -> list[Any]:
        engine = make_async_engine(async_url(url))
        runner = ConnectionRunner(url, async_engine=engine)
        try:
            return await asyncio.gather(
                *(runner.run(write, n, writes=writes) for n in range(20)), return_exceptions=True
            )
        finally:
            runner.dispose()
            await engine.dispose()

    assert asyncio.run(main(writes=True)) == [None] * 20
    collided = [r for r in asyncio.run(main(writes=False)) if isinstance(r, Exception)]
    assert collided and all("locked" in str(error) for error in collided)
    with make_engine(url).connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM written").scalar() == 40 - len(
            collided
        )


def test_a_search_finds_its_text_in_urls_titles_and_errors_in_any_case_literally(
    database_url: str,  # noqa: F811
) -> None:
    add_rows(
        database_url,
        a_job(1, params={"url": "http://x/Blue-Monday.mp4"}),
        a_job(2, params={"url": "http://x/2", "title": "Blue Monday (live)"}),
        a_job(3, status=JobStatus.failed, error={"type": "x", "message": "BLUE screen"}),
        a_job(4, params={"url": "http://x/100%_real.mp4"}),
        a_job(5, params={"url": "http://x/1000_real.mp4"}),
        a_job(6, params={"url": "http://x/a\\b.mp4"}),
        a_job(7, params={"url": "http://x/ab.mp4", "title": "url"}),
        a_job(8, params={"items": [1, 2]}),  # no URL, no title, no error: never found
    )

    def found(**query: Any) -> list[str]:
        page = json.loads(run(database_url, partial(jobs_page_json, **query)))
        return [job["id"][-2:] for job in page["items"]]

    assert found(q="blue") == ["03", "02", "01"]
    assert found(q="blue", status="failed") == ["03"]
    assert found(q="blue", kind="download", status="succeeded") == ["02", "01"]
    assert found(q="blue", kind="upload") == []
    # LIKE's wildcards and escape character are the characters themselves.
    assert found(q="100%_") == ["04"]
    assert found(q="%") == ["04"]
    assert found(q="_real") == ["05", "04"]
    assert found(q="a\\b") == ["06"]
    assert found(q="\\") == ["06"]
    # The JSON keys are not the text: "url" is found in a title only.
    assert found(q="url") == ["07"]
    assert found(q="items") == []
    # Paging with the search: the cursor of a searched page goes on with the search.
    pages, cursor = [], None
    while True:
        page = json.loads(
            run(database_url, partial(jobs_page_json, q="http://x/", limit=2, cursor=cursor))
        )
        pages.append([job["id"][-2:] for job in page["items"]])
        cursor = page["next"]
        if cursor is None:
            break
    assert pages == [["07", "06"], ["05", "04"], ["03", "02"], ["01"]]
    # The list query (the reference the page is checked against) finds the same.
    engine = make_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(jobs.list_jobs_query(q="_REAL")).mappings().all()
    engine.dispose()
    assert [row["id"][-2:] for row in rows] == ["05", "04"]
