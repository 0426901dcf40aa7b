"""What the scheduled sweeps select, and their batches: one at a time per schedule, on
SQLite and PostgreSQL (when ``TEST_DATABASE_URL`` is set)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, insert, select

from db import job_service, sweeps
from db.engine import make_engine
from db.models import Job, JobStatus, Video, utcnow
from tests.db.databases import BACKENDS, migrated_database


@pytest.fixture(params=BACKENDS)
def connection(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Connection]:
    with migrated_database(request.param, tmp_path) as url:
        engine: Engine = make_engine(url)
        with engine.connect() as connection:
            yield connection
        engine.dispose()


def video(connection: Connection, n: int, **fields: Any) -> int:
    values = {
        "title": f"clip {n}", "source_url": f"https://example.com/{n}", "extractor": "test",
        "extractor_id": str(n), "path": f"a/{n}.mp4", "size": 1, "vcodec": "h264", **fields,
    }  # fmt: skip
    video_id = connection.scalar(insert(Video).values(values).returning(Video.id))
    connection.commit()
    assert video_id is not None
    return video_id


def job(connection: Connection, status: JobStatus) -> str:
    job_id = str(uuid.uuid4())
    connection.execute(
        insert(Job).values(
            id=job_id, kind="download", queue="interactive", params={}, status=status,
            attempts=0, max_attempts=3,
        )
    )  # fmt: skip
    connection.commit()
    return job_id


def test_only_queued_and_running_jobs_count_as_active(connection: Connection) -> None:
    queued, running = job(connection, JobStatus.queued), job(connection, JobStatus.running)
    ended = [job(connection, status) for status in ("succeeded", "failed", "cancelled")]
    unknown = str(uuid.uuid4())
    many = [str(uuid.uuid4()) for _ in range(sweeps.IDS_PER_QUERY + 5)]  # past one IN list
    asked = [*many, queued, *ended, unknown, running]
    assert sweeps.active_job_ids(connection, asked) == {queued, running}


def test_the_sweeps_select_unanalysed_videos_and_analysed_ones_with_a_picture(
    connection: Connection,
) -> None:
    now = utcnow()
    fresh = video(connection, 1)
    done = video(connection, 2, analyzed_at=now, thumbnail_widths=[160, 320])
    blank = video(connection, 3, analyzed_at=now)  # analysed, no thumbnails made
    video(connection, 4, analyzed_at=now, vcodec=None)  # audio only: no picture
    older = video(connection, 5)
    assert sweeps.unanalysed_videos(connection) == [fresh, older]
    assert sweeps.unanalysed_videos(connection, limit=1) == [fresh]
    assert sweeps.analysed_video_thumbnails(connection) == [(done, [160, 320]), (blank, None)]


def test_a_schedule_has_one_batch_at_a_time(connection: Connection) -> None:
    ids = list(range(1, 46))
    assert sweeps.submit_sweep(
        connection, schedule="nightly", selection="unanalysed", video_ids=[], max_attempts=3
    ) == (None, job_service.Outbox())
    assert sweeps.running_batch(connection, "nightly") is None

    parent, outbox = sweeps.submit_sweep(
        connection, schedule="nightly", selection="unanalysed", video_ids=ids, max_attempts=3
    )
    assert parent is not None and parent["status"] == "running"
    owner = connection.scalar(select(Job.owner).where(Job.id == parent["id"]))
    assert owner is None  # the system's, counted against no credential
    assert parent["kind"] == "analyses"
    assert parent["params"] == {"selection": "unanalysed", "items": 45, "schedule": "nightly"}
    assert [part["params"]["items"] for part in outbox.send] == [ids[:20], ids[20:40], ids[40:]]
    assert {part["kind"] for part in outbox.send} == {"thumbnail_chunk"}
    assert sweeps.running_batch(connection, "nightly") == parent["id"]

    # While it runs, a second one is refused by the database itself (a race past the
    # check); another schedule's batch is not.
    again = sweeps.submit_sweep(
        connection, schedule="nightly", selection="unanalysed", video_ids=ids, max_attempts=3
    )
    assert again == (None, job_service.Outbox())
    other, _ = sweeps.submit_sweep(
        connection, schedule="thumbs", selection="missing", video_ids=[7], max_attempts=3
    )
    assert other is not None and sweeps.running_batch(connection, "thumbs") == other["id"]
    parents = connection.scalars(select(Job.id).where(Job.parent_id.is_(None))).all()
    assert sorted(parents) == sorted([parent["id"], other["id"]])

    # Once it ended, the next night's batch goes in.
    job_service.cancel(connection, parent["id"])
    assert sweeps.running_batch(connection, "nightly") is None
    later, _ = sweeps.submit_sweep(
        connection, schedule="nightly", selection="unanalysed", video_ids=[1], max_attempts=3
    )
    assert later is not None and later["id"] != parent["id"]
