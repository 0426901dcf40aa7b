"""The jobs service on the real stores: each operation commits, and its outbox, delivered
by a courier on a sync client, publishes, sends, sets stop flags and dismisses waiters,
in one round trip, riding out a Redis that lost its scripts or is gone."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, select

from db import job_service, live
from db.models import Job, JobStatus
from db.outbox import Courier, Outbox, web_sender
from db.slots import FairSlots
from tests.support import free_port


@pytest.fixture
def courier(settings: Any, redis_client: Any) -> Iterator[Courier]:
    courier = Courier(redis_client, web_sender(settings))
    yield courier
    courier.sender.broker.close()


@pytest.fixture
def connection(settings: Any) -> Iterator[Connection]:
    from actors import stores

    with stores.engine().connect() as connection:
        yield connection


def submit(connection: Connection, url: str, **fields: Any) -> tuple[Any, Outbox]:
    request = {
        "kind": "download",
        "queue": "interactive",
        "params": {"url": url},
        "owner": "admin",
        "max_attempts": 3,
        "max_active": 100,
        "max_active_of_owner": 100,
    }
    return job_service.submit(connection, **{**request, **fields})


def events(redis_client: Any) -> list[tuple[str, str]]:
    """(job id, status) of every event in the stream."""
    return [
        (job["id"], job["status"])
        for job in (json.loads(f["job"]) for _, f in redis_client.xrange(live.EVENTS_STREAM))
    ]


def queued_messages(redis_client: Any, queue: str) -> list[list[Any]]:
    stored = redis_client.hgetall(f"dramatiq:{queue}.msgs")
    return [json.loads(stored[i])["args"] for i in redis_client.lrange(f"dramatiq:{queue}", 0, -1)]


def set_status(connection: Connection, job_id: str, status: JobStatus, **fields: Any) -> None:
    connection.execute(
        Job.__table__.update().where(Job.id == job_id).values(status=status, **fields)
    )
    connection.commit()


def test_a_submitted_job_is_committed_published_and_sent_once(
    connection: Connection, courier: Courier, redis_client: Any
) -> None:
    submission, outbox = submit(connection, "http://x/a.mp4")
    assert submission.created
    job_id = submission.job["id"]
    assert courier.deliver(outbox).ok
    assert events(redis_client) == [(job_id, "queued")]
    assert queued_messages(redis_client, "interactive") == [[job_id]]

    again, nothing = submit(connection, "http://x/a.mp4")  # the same work: the same job
    assert (again.created, again.job["id"], bool(nothing)) == (False, job_id, False)
    assert courier.deliver(nothing).ok
    assert len(queued_messages(redis_client, "interactive")) == 1


def test_cancel_ends_queued_jobs_stops_running_ones_and_dismisses_waiters(
    connection: Connection, courier: Courier, redis_client: Any
) -> None:
    parent = submit(connection, "http://x/parent.mp4")[0].job["id"]
    waiting = submit(connection, "http://x/waiting.mp4")[0].job["id"]
    running = submit(connection, "http://x/running.mp4")[0].job["id"]
    for child in (waiting, running):
        connection.execute(Job.__table__.update().where(Job.id == child).values(parent_id=parent))
    set_status(connection, running, JobStatus.running, attempts=1)
    line = FairSlots(redis_client, live.DOWNLOAD_SLOTS_KEY, limit=0, ttl_s=30)
    assert line.take_or_join(waiting, 1)[:2] == (False, True)  # in line for a slot

    done, outbox = job_service.cancel(connection, parent)
    assert {job["id"] for job in done.cancelled} == {parent, waiting}
    assert done.stopping == [running]
    assert courier.deliver(outbox).ok

    statuses = dict(connection.execute(select(Job.id, Job.status)).all())
    assert statuses == {parent: "cancelled", waiting: "cancelled", running: "running"}
    assert redis_client.get(live.cancel_key(running)) == "1"
    assert not redis_client.exists(live.cancel_key(waiting))
    assert redis_client.lrange(line.wake_prefix + waiting, 0, -1) == ["leave"]
    assert redis_client.zscore(line.line_key, waiting) is None
    assert sorted(events(redis_client)) == sorted([(parent, "cancelled"), (waiting, "cancelled")])


def test_retry_makes_a_new_job_and_refuses_active_or_unfinished_work(
    connection: Connection, courier: Courier, redis_client: Any
) -> None:
    old = submit(connection, "http://x/retry.mp4")[0].job["id"]
    assert job_service.retry(connection, old, owner="admin") == (None, Outbox())  # queued
    set_status(connection, old, JobStatus.failed)

    retry, outbox = job_service.retry(connection, old, owner="admin")
    assert retry is not None and retry["retry_of"] == old and retry["status"] == "queued"
    assert courier.deliver(outbox).ok
    assert queued_messages(redis_client, "interactive") == [[retry["id"]]]
    assert events(redis_client) == [(retry["id"], "queued")]

    with pytest.raises(job_service.AlreadyActive):  # the retry holds the same URL
        job_service.retry(connection, old, owner="admin")
    assert connection.execute(select(Job.id)).all()  # the connection is usable again


def test_jobs_of_a_lost_worker_go_back_to_their_queue_or_fail_when_out_of_attempts(
    connection: Connection, courier: Courier, redis_client: Any
) -> None:
    again = submit(connection, "http://x/again.mp4")[0].job["id"]
    spent = submit(connection, "http://x/spent.mp4")[0].job["id"]
    set_status(connection, again, JobStatus.running, attempts=1)
    set_status(connection, spent, JobStatus.running, attempts=3)
    rows = connection.execute(
        select(Job.id, Job.attempts, Job.max_attempts).where(Job.id.in_([again, spent]))
    ).all()

    outbox = job_service.give_up_lost_workers(connection, rows)
    assert courier.deliver(outbox).ok
    assert sorted(events(redis_client)) == sorted([(again, "queued"), (spent, "failed")])
    assert queued_messages(redis_client, "interactive") == [[again]]
    spent_error = connection.execute(select(Job.error).where(Job.id == spent)).scalar_one()
    assert spent_error["type"] == "worker_lost" and spent_error["retryable"] is False


def test_a_courier_loads_scripts_that_redis_lost(
    connection: Connection, courier: Courier, redis_client: Any, caplog: Any
) -> None:
    caplog.set_level(logging.WARNING, logger="db.outbox")
    submission, outbox = submit(connection, "http://x/flushed.mp4")
    redis_client.script_flush()  # as after a Redis restart
    assert courier.deliver(outbox).ok
    job_id = submission.job["id"]
    assert events(redis_client) == [(job_id, "queued")]
    assert queued_messages(redis_client, "interactive") == [[job_id]]
    assert caplog.records == []


def test_a_courier_without_redis_reports_the_failure_and_keeps_the_row(
    connection: Connection, settings: Any, caplog: Any
) -> None:
    caplog.set_level(logging.WARNING, logger="db.outbox")
    client = live.sync_client(f"redis://127.0.0.1:{free_port()}/0", timeout=1, retries=0)
    courier = Courier(client, web_sender(settings))
    courier.sender.learn_unpack_size(1000)
    submission, outbox = submit(connection, "http://x/no-redis.mp4")
    assert courier.deliver(outbox).missed == {"publish", "send"}
    assert any("the lifeline will" in record.getMessage() for record in caplog.records)
    status = connection.execute(select(Job.status).where(Job.id == submission.job["id"]))
    assert status.scalar_one() == "queued"  # the truth is kept; the lifeline sends it
    courier.sender.broker.close()


def batch(connection: Connection, parts: int) -> tuple[dict[str, Any], Outbox]:
    return job_service.submit_batch(
        connection,
        kind="thumbnails",
        queue="bulk",
        params={"selection": "all"},
        owner="admin",
        max_attempts=3,
        children=[
            ("thumbnail_chunk", "media", {"items": [10 * n + 1, 10 * n + 2]}) for n in range(parts)
        ],
    )


def end_child(connection: Connection, job_id: str, status: JobStatus, **fields: Any) -> None:
    set_status(connection, job_id, status, **fields)


def test_a_batch_derives_its_progress_and_summary_from_its_parts(
    connection: Connection, courier: Courier, redis_client: Any
) -> None:
    parent, outbox = batch(connection, 3)
    assert parent["status"] == "running" and parent["progress"] == 0
    assert courier.deliver(outbox).ok
    assert [args[0] for args in queued_messages(redis_client, "media")] == [
        job["id"] for job in outbox.send
    ]
    first, second, third = (job["id"] for job in outbox.send)
    result = {"done": 1, "skipped": 0, "failed": [{"id": 2, "reason": "not media"}]}
    end_child(connection, first, JobStatus.succeeded, result=result)
    assert job_service.roll_up(connection, parent["id"]).publish[0]["progress"] == 1 / 3
    # A roll-up that saw fewer parts done, committing late, does not move it back.
    end_child(connection, second, JobStatus.failed, error={"message": "the part failed twice"})
    late = job_service.roll_up(connection, parent["id"])
    assert late.publish[0]["progress"] == 2 / 3
    set_status(connection, second, JobStatus.running)  # as the stale roll-up saw it
    assert not job_service.roll_up(connection, parent["id"])  # 1/3 < 2/3: no change
    set_status(connection, second, JobStatus.failed)
    assert job_service.unsettled_parents(connection) == []  # a part is still queued
    end_child(connection, third, JobStatus.cancelled)

    assert job_service.unsettled_parents(connection) == [parent["id"]]
    (ended,) = job_service.roll_up(connection, parent["id"]).publish
    assert ended["status"] == "succeeded" and ended["progress"] == 1 and ended["finished_at"]
    assert ended["result"] == {
        "done": 1,
        "failed": [
            {"id": 2, "reason": "not media"},
            {"id": 11, "reason": "the part failed twice"},
            {"id": 12, "reason": "the part failed twice"},
        ],
        "failed_count": 3,
        "skipped": 0,
        "cancelled": 2,
    }
    assert not job_service.roll_up(connection, parent["id"])  # ended once
    assert job_service.unsettled_parents(connection) == []


def test_a_relayout_that_planned_becomes_the_parent_of_its_parts_fenced_by_its_attempt(
    connection: Connection, courier: Courier, redis_client: Any
) -> None:
    submission, _ = submit(connection, "", kind="relayout", queue="bulk", params={"dry_run": False})
    job_id = submission.job["id"]
    set_status(connection, job_id, JobStatus.running, attempts=2)
    assert job_service.unsettled_parents(connection) == []  # planning: a job of its own
    parts = [("relayout_chunk", "bulk", {"items": [1], "moves": []})] * 2
    handed = dict(params={"dry_run": False, "items": 2}, stage="moving", children=parts)
    # An attempt the lifeline gave up for dead hands nothing over.
    assert job_service.hand_to_parts(connection, job_id, attempt=1, **handed) is None
    outbox = job_service.hand_to_parts(connection, job_id, attempt=2, **handed)
    assert outbox is not None and len(outbox.send) == 2
    parent, *children = outbox.publish
    assert parent["status"] == "running" and parent["params"]["items"] == 2
    assert {child["parent_id"] for child in children} == {job_id}
    assert courier.deliver(outbox).ok
    assert len(queued_messages(redis_client, "bulk")) == 2
    for child in children:
        end_child(connection, child["id"], JobStatus.succeeded, result={"done": 1})
    # Both roll-ups lost: the lifeline settles it as any batch.
    assert job_service.unsettled_parents(connection) == [job_id]
    (ended,) = job_service.roll_up(connection, job_id).publish
    assert ended["status"] == "succeeded" and ended["result"]["done"] == 2


def test_cancelling_a_batch_cancels_its_queued_parts_and_ends_it(
    connection: Connection, courier: Courier, redis_client: Any
) -> None:
    parent, _ = batch(connection, 2)
    done, outbox = job_service.cancel(connection, parent["id"])
    assert len(done.cancelled) == 2 and done.stopping == [parent["id"]]
    ended = [job for job in outbox.publish if job["id"] == parent["id"]]
    assert ended[-1]["status"] == "cancelled" and ended[-1]["result"]["cancelled"] == 4
    assert courier.deliver(outbox).ok


def test_a_batch_parent_is_not_retried_but_its_parts_are(connection: Connection) -> None:
    parent, outbox = batch(connection, 1)
    (part,) = outbox.send
    set_status(connection, parent["id"], JobStatus.failed)
    set_status(connection, part["id"], JobStatus.failed)
    assert job_service.retry(connection, parent["id"], owner="admin") == (None, Outbox())
    again, sent = job_service.retry(connection, part["id"], owner="admin")
    assert again is not None and again["parent_id"] == parent["id"] and sent.send == [again]


def test_an_empty_batch_is_done_at_once(connection: Connection) -> None:
    parent, outbox = batch(connection, 0)
    assert parent["status"] == "succeeded" and parent["result"]["done"] == 0
    assert outbox.send == [] and outbox.publish == [parent]


def test_a_retried_part_of_a_finished_batch_reopens_it_and_the_summary_is_summed_anew(
    connection: Connection,
) -> None:
    parent, outbox = batch(connection, 2)
    first, second = (job["id"] for job in outbox.send)
    end_child(connection, first, JobStatus.succeeded, result={"done": 2, "failed": []})
    end_child(connection, second, JobStatus.failed, error={"message": "the database was down"})
    (ended,) = job_service.roll_up(connection, parent["id"]).publish
    assert ended["status"] == "succeeded" and ended["result"]["failed_count"] == 2

    again, sent = job_service.retry(connection, second, owner="admin")
    assert again is not None
    reopened = next(job for job in sent.publish if job["id"] == parent["id"])
    assert reopened["status"] == "running" and reopened["finished_at"] is None
    assert not job_service.roll_up(connection, parent["id"])  # the retry is still queued
    end_child(connection, again["id"], JobStatus.succeeded, result={"done": 2, "failed": []})
    (summed,) = job_service.roll_up(connection, parent["id"]).publish
    assert summed["status"] == "succeeded"
    assert summed["result"]["done"] == 4 and summed["result"]["failed_count"] == 0


def test_revive_follows_each_jobs_truth(
    connection: Connection, courier: Courier, redis_client: Any
) -> None:
    ids = {
        name: submit(connection, f"http://x/{name}.mp4")[0].job["id"]
        for name in ("queued", "running", "succeeded", "held", "failed", "cancelled", "capped")
    }
    for name in ("running", "succeeded", "failed", "cancelled", "capped"):
        set_status(connection, ids[name], JobStatus(name if name != "capped" else "failed"))
    set_status(connection, ids["held"], JobStatus.failed)
    # Another job already holds the work of "held": its retry would be a duplicate.
    holder = submit(connection, "http://x/held.mp4")[0].job["id"]
    gone = "00000000-0000-0000-0000-00000000dead"
    asked = [*ids.values(), ids["queued"], gone]

    revivals, outbox = job_service.revive(connection, asked, owner="admin", room=2)
    outcomes = {name: revivals[job_id].outcome for name, job_id in ids.items()}
    assert outcomes == {
        "queued": "resent",
        "running": "purged",
        "succeeded": "purged",
        "failed": "retried",
        "cancelled": "retried",
        "capped": "too_many_jobs",  # room for two retries only
        "held": "already_active",
    }
    assert revivals[gone] == job_service.Revival("purged", None)
    assert revivals[ids["capped"]].status == "failed"
    retried = {revivals[ids[name]].retry_id for name in ("failed", "cancelled")}
    # Sent: the queued job once (asked twice) and the two retries, nothing else.
    assert sorted(job["id"] for job in outbox.send) == sorted({ids["queued"], *retried})
    assert courier.deliver(outbox).ok
    assert sorted(args[0] for args in queued_messages(redis_client, "interactive")) == sorted(
        {ids["queued"], *retried}
    )
    rows = dict(connection.execute(select(Job.id, Job.retry_of)).all())
    assert {rows[job_id] for job_id in retried} == {ids["failed"], ids["cancelled"]}
    assert holder in rows and len(rows) == len(ids) + 1 + 2
