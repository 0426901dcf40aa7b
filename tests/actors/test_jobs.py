"""Job actors on a real Redis broker and an in-process Dramatiq worker."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from tests.support import wait_for, wait_for_job


def job_row(job_id: str) -> Any:
    from actors import stores
    from db.models import Job

    with stores.sessions()() as session:
        return session.get(Job, job_id)


def video_count() -> int:
    from actors import stores
    from db.models import Video

    with stores.sessions()() as session:
        return int(session.scalar(select(func.count()).select_from(Video)) or 0)


def queue_is_empty(redis_client: Any, queue: str) -> bool:
    return not any(redis_client.hlen(f"dramatiq:{name}.msgs") for name in (queue, f"{queue}.DQ"))


def test_a_404_fails_at_once_with_a_readable_reason_and_no_retry(
    api: Any, worker: Any, media_server: Any, redis_client: Any, settings: Any
) -> None:
    job = api.post(
        "/api/videos/download", json={"url": media_server.url("/missing/gone.mp4")}
    ).json()
    done = wait_for_job(api, job["id"])
    assert done["status"] == "failed"
    assert done["attempts"] == 1
    assert done["error"]["type"] == "not_found"
    assert done["error"]["retryable"] is False
    assert "404" in done["error"]["message"]
    wait_for(lambda: queue_is_empty(redis_client, done["queue"]), what="the message to be acked")
    assert video_count() == 0
    assert not (settings.tmp_dir / job["id"]).exists()


def test_a_file_that_is_not_media_fails_and_leaves_nothing_behind(
    api: Any, worker: Any, media_server: Any, settings: Any
) -> None:
    job = api.post("/api/videos/download", json={"url": media_server.url("/text/notes.mp4")}).json()
    done = wait_for_job(api, job["id"])
    assert done["status"] == "failed"
    assert done["error"]["type"] == "not_media"
    assert video_count() == 0
    assert not (settings.tmp_dir / job["id"]).exists()
    assert not settings.media_root.exists() or not any(settings.media_root.rglob("*.mp4"))


def test_a_picture_that_claims_to_be_a_video_is_never_filed(
    api: Any, worker: Any, media_server: Any, settings: Any
) -> None:
    job = api.post("/api/videos/download", json={"url": media_server.url("/svg/x.mp4")}).json()
    done = wait_for_job(api, job["id"])
    assert done["status"] == "failed" and done["attempts"] == 1
    assert done["error"]["type"] == "not_media" and done["error"]["retryable"] is False
    assert video_count() == 0
    assert not settings.media_root.exists() or not any(settings.media_root.rglob("*.*"))


def test_a_redelivered_message_for_a_finished_job_is_dropped(
    api: Any, worker: Any, media_server: Any, redis_client: Any
) -> None:
    from actors import broker, download_video
    from actors.enqueue import enqueue_job

    url = media_server.url("/media/once.mp4")
    job = api.post("/api/videos/download", json={"url": url}).json()
    assert wait_for_job(api, job["id"])["status"] == "succeeded"
    hits = media_server.hits.get("/media/once.mp4", 0)
    enqueue_job(download_video, job["id"], job["queue"])
    broker.join(job["queue"], timeout=30_000)
    worker.join()
    row = job_row(job["id"])
    assert (row.status, row.attempts) == ("succeeded", 1)
    assert media_server.hits.get("/media/once.mp4", 0) == hits  # nothing was fetched again
    assert video_count() == 1


def test_a_priority_picks_the_queue(api: Any, media_server: Any, redis_client: Any) -> None:
    from actors.recovery import jobs_with_messages

    for priority, queue in (("high", "interactive"), ("normal", "downloads"), ("low", "bulk")):
        body = {"url": media_server.url(f"/media/{priority}.mp4"), "priority": priority}
        job = api.post("/api/videos/download", json=body).json()
        assert job["queue"] == queue
        assert job["id"] in jobs_with_messages(
            redis_client, "dramatiq", [queue], dead_after_ms=60_000
        )


def test_the_lifeline_re_enqueues_a_queued_job_whose_message_was_lost(
    api: Any, media_server: Any, redis_client: Any
) -> None:
    from actors.recovery import jobs_with_messages, requeue_lost

    job = api.post("/api/videos/download", json={"url": media_server.url("/media/lost.mp4")}).json()
    assert requeue_lost(older_than=timedelta(0)) == 0  # its message is still there
    redis_client.flushall()  # Redis lost everything
    assert requeue_lost(older_than=timedelta(0)) == 1
    assert job["id"] in jobs_with_messages(
        redis_client, "dramatiq", [job["queue"]], dead_after_ms=60_000
    )
    assert requeue_lost(older_than=timedelta(0)) == 0
    assert requeue_lost() == 0  # younger than a minute: left alone by default


def test_a_job_whose_message_was_lost_still_finishes(
    api: Any, worker: Any, media_server: Any, redis_client: Any
) -> None:
    from actors.recovery import requeue_lost

    worker.pause()
    job = api.post(
        "/api/videos/download", json={"url": media_server.url("/media/wiped.mp4")}
    ).json()
    redis_client.flushall()
    worker.resume()
    requeue_lost(older_than=timedelta(0))
    assert wait_for_job(api, job["id"])["status"] == "succeeded"
    assert video_count() == 1


def test_the_lifeline_is_a_periodic_actor_on_the_maintenance_queue() -> None:
    from actors import lifeline_sweep

    assert lifeline_sweep.queue_name == "maintenance"
    assert str(lifeline_sweep.options["periodic"]) == "* * * * *"


def test_the_reporter_throttles_progress_but_never_state_changes(
    redis_client: Any, settings: Any
) -> None:
    from actors import stores
    from actors.reporter import JobReporter
    from db import live

    reporter = JobReporter(client=redis_client, engine=stores.engine(), stream_interval=0.25)
    job = {"id": "j1", "status": "running", "progress": 0.0, "stage": "x", "message": None}
    reporter.publish(job)
    started = time.monotonic()
    calls = 0
    while time.monotonic() - started < 1.0:
        reporter.progress({**job, "progress": calls / 1e6})
        calls += 1
    reporter.publish({**job, "status": "succeeded"})
    entries = redis_client.xrange(live.EVENTS_STREAM)
    assert calls > 100
    # one state change + at most one progress event per 0.25 s in ~1 s + the last state change
    assert 3 <= len(entries) <= 1 + 5 + 1
    assert '"succeeded"' in entries[-1][1]["job"]
    marks = [fields.get(live.PROGRESS_FIELD) for _id, fields in entries]
    assert marks[0] is None and marks[-1] is None  # state changes: never to be skipped
    assert set(marks[1:-1]) == {"j1"}  # progress, of j1: a socket behind may skip it


def test_a_flaky_server_succeeds_on_the_third_attempt(
    api: Any, worker: Any, media_server: Any
) -> None:
    job = api.post(
        "/api/videos/download", json={"url": media_server.url("/flaky/shaky.mp4")}
    ).json()
    done = wait_for_job(api, job["id"])
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 3
    assert media_server.hits["/flaky/shaky.mp4"] >= 3
    assert video_count() == 1


def test_a_job_running_longer_than_the_heartbeat_timeout_is_never_run_twice(
    api: Any, worker: Any, media_server: Any, settings: Any
) -> None:
    from actors.recovery import recover_abandoned

    job = api.post("/api/videos/download", json={"url": media_server.url("/crawl/long.mp4")}).json()
    recoveries = 0
    deadline_checks = 0

    def finished() -> bool:
        nonlocal recoveries, deadline_checks
        recoveries += recover_abandoned()  # the lifeline, as often as we like
        deadline_checks += 1
        return api.get(f"/api/jobs/{job['id']}").json()["status"] == "succeeded"

    wait_for(finished, timeout=90, interval=0.5, what="the long download to finish")
    done = api.get(f"/api/jobs/{job['id']}").json()
    # Longer than the heartbeat timeout (3 s here), yet one attempt and no recovery.
    assert deadline_checks > 2 * 3  # the lifeline ran over more than three timeouts
    assert recoveries == 0
    assert done["attempts"] == 1
    assert not [path for path, _ in media_server.ranges if path == "/crawl/long.mp4"]  # no resume
    assert video_count() == 1


def test_a_message_held_by_a_dead_worker_is_sent_again(
    api: Any, media_server: Any, redis_client: Any
) -> None:
    from actors.recovery import requeue_lost

    job = api.post("/api/videos/download", json={"url": media_server.url("/media/held.mp4")}).json()
    queue = job["queue"]
    (redis_id,) = redis_client.hkeys(f"dramatiq:{queue}.msgs")
    # As Dramatiq leaves it when a worker that prefetched the message is SIGKILLed: out
    # of the queue, in the dead worker's ack set, its heartbeat long gone.
    redis_client.lrem(f"dramatiq:{queue}", 0, redis_id)
    redis_client.sadd(f"dramatiq:__acks__.dead-worker.{queue}", redis_id)
    redis_client.zadd("dramatiq:__heartbeats__", {"dead-worker": 0})
    assert requeue_lost(older_than=timedelta(0)) == 1
    assert redis_client.hlen(f"dramatiq:{queue}.msgs") == 2
    # A held message of a live worker is left alone.
    redis_client.zadd("dramatiq:__heartbeats__", {"dead-worker": int(time.time() * 1000)})
    redis_client.hdel(
        f"dramatiq:{queue}.msgs",
        *[key for key in redis_client.hkeys(f"dramatiq:{queue}.msgs") if key != redis_id],
    )
    assert requeue_lost(older_than=timedelta(0)) == 0
