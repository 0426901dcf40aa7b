"""The system API on a real Redis broker and real workers: queue depths
(``/api/system/queues``), workers and the jobs they run (``/api/system/workers``), and
the dead letters (``/api/system/dead-letters``: list, requeue by the job's truth,
purge); the job search (``/api/jobs?q=``) as the web answers it."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dramatiq
import httpx
import pytest

from db import broker_keys
from db.queues import Queue, job_message
from tests.conftest import ADMIN_TOKEN, VIEWER_TOKEN
from tests.support import api_client, free_port, live_server, wait_for, wait_for_job

NAMESPACE = "dramatiq"


def broker() -> Any:
    from actors import broker as the_broker

    return the_broker


@contextmanager
def running_worker() -> Iterator[dramatiq.Worker]:
    worker = dramatiq.Worker(broker(), worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def dead_letter(queue: str) -> str:
    """Take the next message of ``queue`` as a worker does and give up on it (Dramatiq's
    nack: the message moves to the queue's dead letters); its Redis id."""
    consumer = broker().consume(queue, prefetch=1, timeout=100)
    try:
        message = wait_for(lambda: next(consumer), timeout=10, what=f"a message on {queue}")
        consumer.nack(message)
    finally:
        consumer.close()
    return str(message.options["redis_message_id"])


def queues_of(api: httpx.Client) -> dict[str, dict[str, Any]]:
    response = api.get("/api/system/queues")
    assert response.status_code == 200, response.text
    return {item["queue"]: item for item in response.json()["items"]}


def dead_letters(api: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = api.get("/api/system/dead-letters", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def download(api: httpx.Client, url: str) -> dict[str, Any]:
    response = api.post("/api/videos/download", json={"url": url})
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


# -- queues


def test_the_queues_count_ready_delayed_and_dead_messages_and_the_oldest_ready_age(
    api: httpx.Client, media_server: Any
) -> None:
    first = download(api, media_server.url("/media/q1.mp4"))
    download(api, media_server.url("/media/q2.mp4"))
    assert first["queue"] == "interactive"
    # A message sent 90 s ago at the head of "bulk", one behind it, and a retry waiting
    # out its backoff on "downloads".
    sent_long_ago = int(time.time() * 1000) - 90_000
    old = dramatiq.Message(
        queue_name="bulk", actor_name="some_task", args=(), kwargs={}, options={},
        message_timestamp=sent_long_ago,
    )  # fmt: skip
    broker().enqueue(old)
    broker().enqueue(old.copy(message_timestamp=int(time.time() * 1000)))
    broker().enqueue(old.copy(queue_name="downloads"), delay=60_000)
    # And one dead letter on "media".
    broker().enqueue(old.copy(queue_name="media"))
    dead_letter("media")

    queues = queues_of(api)
    assert list(queues) == [str(queue) for queue in Queue]
    assert {name: (q["ready"], q["delayed"], q["dead"]) for name, q in queues.items()} == {
        "interactive": (2, 0, 0),
        "downloads": (0, 1, 0),
        "media": (0, 0, 1),
        "bulk": (2, 0, 0),
        "maintenance": (0, 0, 0),
    }
    assert 90 <= queues["bulk"]["oldest_ready_age_s"] < 120  # the head, not the newest
    assert 0 <= queues["interactive"]["oldest_ready_age_s"] < 30
    for empty in ("downloads", "media", "maintenance"):
        assert "oldest_ready_age_s" not in queues[empty]
    assert api.get("/api/system/queues").json()["at"].endswith("Z")


def test_with_redis_down_the_system_routes_answer_503_naming_redis(settings: Any) -> None:
    from web.app import create_app

    app = create_app(dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    with live_server(app) as server, api_client(server.url, ADMIN_TOKEN) as client:
        for path in ("/api/system/queues", "/api/system/workers", "/api/system/dead-letters"):
            response = client.get(path)
            assert response.status_code == 503, (path, response.text)
            assert response.json()["error"]["store"] == "redis"
            assert response.headers["retry-after"]
        purge = client.post("/api/system/dead-letters/purge", json={"queue": "bulk", "all": True})
        assert purge.status_code == 503


# -- workers


def test_a_worker_is_listed_with_the_download_it_runs_and_gone_once_it_stops(
    api: httpx.Client, media_server: Any, redis_client: Any
) -> None:
    with running_worker():
        url = media_server.url("/crawl/worker-view.mp4")
        job = download(api, url)

        def downloading() -> dict[str, Any] | None:
            workers = api.get("/api/system/workers").json()["items"]
            # Its heartbeat key comes with its "running" event, just after the claim.
            running = workers and workers[0]["jobs"] and workers[0]["jobs"][0]["heartbeat"]
            return workers[0] if running else None

        worker = wait_for(downloading, timeout=30, what="the download under its worker")
        # One worker: the web process, which only sends, is not one.
        assert len(api.get("/api/system/workers").json()["items"]) == 1
        assert worker["id"] == broker().broker_id
        assert worker["host"] == socket.gethostname() and worker["pid"] == os.getpid()
        assert worker["alive"] is True and worker["last_seen"].endswith("Z")
        (shown,) = worker["jobs"]
        assert shown["id"] == job["id"] and shown["kind"] == "download"
        assert shown["title"] == url
        wait_for(
            lambda: (
                api.get("/api/system/workers").json()["items"][0]["jobs"][0]["stage"]
                == "downloading"
            ),
            timeout=30,
            what="the stage",
        )
        assert api.post(f"/api/jobs/{job['id']}/cancel").status_code == 202
        wait_for_job(api, job["id"], timeout=30)
        idle = api.get("/api/system/workers").json()
        assert idle["items"][0]["jobs"] == [] and idle["unassigned"] == []
    # Stopped: its record is gone, so it is no longer listed.
    assert api.get("/api/system/workers").json()["items"] == []
    # A worker that stopped beating (killed) is listed as not alive until Dramatiq
    # drops its heartbeat.
    silent = str(uuid.uuid4())
    redis_client.zadd(broker_keys.heartbeats_key(NAMESPACE), {silent: time.time() * 1000 - 120_000})
    redis_client.hset(broker_keys.WORKERS_KEY, silent, json.dumps({"host": "gone", "pid": 7}))
    (listed,) = api.get("/api/system/workers").json()["items"]
    assert listed["id"] == silent and listed["alive"] is False and listed["host"] == "gone"
    redis_client.zrem(broker_keys.heartbeats_key(NAMESPACE), silent)
    assert api.get("/api/system/workers").json()["items"] == []
    # A running row that no worker holds (its worker was killed): unassigned, without
    # a heartbeat, until the lifeline takes it back.
    from actors import stores
    from db.models import Job, JobStatus

    with stores.sessions().begin() as session:
        session.add(
            Job(
                id=(orphan := str(uuid.uuid4())), kind="download", queue="interactive",
                status=JobStatus.running, params={"url": "http://x/orphan.mp4"},
                stage="downloading", message_id=str(uuid.uuid4()),
            )
        )  # fmt: skip
    answer = api.get("/api/system/workers").json()
    assert answer["items"] == []
    assert answer["unassigned"] == [
        {
            "id": orphan,
            "kind": "download",
            "title": "http://x/orphan.mp4",
            "stage": "downloading",
            "progress": None,
            "heartbeat": False,
        }
    ]


# -- dead letters


def test_a_failed_jobs_dead_letter_is_listed_then_requeued_as_a_retry_that_runs(
    api: httpx.Client, media_server: Any, sample_video: Any
) -> None:
    with running_worker():
        failed = wait_for_job(api, download(api, media_server.url("/file/revive.mp4"))["id"])
        assert failed["status"] == "failed"
        (dead,) = wait_for(
            lambda: dead_letters(api, queue="interactive"), timeout=10, what="the dead letter"
        )
        assert dead["job_id"] == failed["id"] and dead["actor"] == "download_video"
        assert dead["queue"] == "interactive" and dead["dead_at"].endswith("Z")
        assert dead["reason"] == failed["error"]["message"]
        assert dead_letters(api) == [dead]  # all queues
        assert queues_of(api)["interactive"]["dead"] == 1

        media_server.files["revive.mp4"] = sample_video  # the cause is mended
        answer = api.post(
            "/api/system/dead-letters/requeue",
            json={"queue": "interactive", "message_ids": [dead["message_id"]]},
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        (item,) = body["items"]
        assert item["outcome"] == "retried" and item["job_status"] == "failed"
        assert body["counts"] == {"retried": 1} and body["remaining"] == 0
        retry = wait_for_job(api, item["retry_id"])
        assert retry["status"] == "succeeded" and retry["retry_of"] == failed["id"]
        assert dead_letters(api) == []
        # Asked again: it is no longer dead.
        again = api.post(
            "/api/system/dead-letters/requeue",
            json={"queue": "interactive", "message_ids": [dead["message_id"]]},
        ).json()
        assert again["items"] == [{"message_id": dead["message_id"], "outcome": "not_found"}]


def test_a_queued_jobs_dead_letter_is_sent_again_and_the_job_runs(
    api: httpx.Client, media_server: Any
) -> None:
    job = download(api, media_server.url("/media/resend.mp4"))
    message_id = dead_letter("interactive")
    assert api.get(f"/api/jobs/{job['id']}").json()["status"] == "queued"
    assert queues_of(api)["interactive"]["dead"] == 1
    body = api.post(
        "/api/system/dead-letters/requeue", json={"queue": "interactive", "all": True}
    ).json()
    assert body["items"] == [
        {"message_id": message_id, "job_id": job["id"], "job_status": "queued", "outcome": "resent"}
    ]
    assert queues_of(api)["interactive"] | {"oldest_ready_age_s": 0} == {
        "queue": "interactive", "ready": 1, "delayed": 0, "dead": 0, "oldest_ready_age_s": 0,
    }  # fmt: skip
    with running_worker():
        assert wait_for_job(api, job["id"])["status"] == "succeeded"
    # A copy of the succeeded job's message, dead-lettered: requeuing only drops it.
    hits = media_server.hits.get("/media/resend.mp4")
    stray = dead_letter_of_copy(job["id"])
    body = api.post(
        "/api/system/dead-letters/requeue", json={"queue": "bulk", "message_ids": [stray]}
    ).json()
    assert body["items"][0]["outcome"] == "purged"
    assert body["items"][0]["job_status"] == "succeeded"
    assert media_server.hits.get("/media/resend.mp4") == hits
    assert queues_of(api)["bulk"] == {"queue": "bulk", "ready": 0, "delayed": 0, "dead": 0}


def dead_letter_of_copy(job_id: str) -> str:
    """A dead copy of a finished job's message on "bulk" (a worker drops such a copy:
    here it is dead-lettered instead, as a worker that gave up on it would)."""
    broker().enqueue(job_message("download", job_id, "bulk"))
    return dead_letter("bulk")


def test_a_message_of_no_job_goes_back_onto_its_queue_as_it_was(api: httpx.Client) -> None:
    task = dramatiq.Message(
        queue_name="maintenance", actor_name="sweep_something", args=(1,), kwargs={}, options={}
    )
    broker().enqueue(task)
    message_id = dead_letter("maintenance")
    (listed,) = dead_letters(api, queue="maintenance")
    assert listed["actor"] == "sweep_something" and "job_id" not in listed
    body = api.post(
        "/api/system/dead-letters/requeue",
        json={"queue": "maintenance", "message_ids": [message_id, "no-such-id"]},
    ).json()
    assert body["items"] == [
        {"message_id": message_id, "outcome": "requeued"},
        {"message_id": "no-such-id", "outcome": "not_found"},
    ]
    assert body["counts"] == {"requeued": 1, "not_found": 1}
    consumer = broker().consume("maintenance", prefetch=1, timeout=100)
    try:
        again = wait_for(lambda: next(consumer), timeout=10, what="the message back")
        consumer.ack(again)
    finally:
        consumer.close()
    assert again.message_id == task.message_id and again.args == (1,)


def test_a_database_that_stops_answering_mid_requeue_leaves_the_rest_dead(
    api: httpx.Client, media_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from db import job_service

    with running_worker():
        failed = [
            wait_for_job(api, download(api, media_server.url(f"/missing/mid-{n}.mp4"))["id"])
            for n in range(2)
        ]
        wait_for(lambda: len(dead_letters(api)) == 2, timeout=10, what="two dead letters")
    retry, calls = job_service.retry, []

    def second_retry_finds_no_database(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        if len(calls) > 1:
            raise OperationalError("INSERT", {}, ConnectionError("server closed the connection"))
        return retry(*args, **kwargs)

    monkeypatch.setattr(job_service, "retry", second_retry_finds_no_database)
    body = api.post(
        "/api/system/dead-letters/requeue", json={"queue": "interactive", "all": True}
    ).json()
    assert sorted(item["outcome"] for item in body["items"]) == ["retried", "unavailable"]
    assert body["remaining"] == 1
    (undone,) = [item for item in body["items"] if item["outcome"] == "unavailable"]
    (still_dead,) = dead_letters(api)
    assert still_dead["message_id"] == undone["message_id"]
    assert still_dead["job_id"] == undone["job_id"] in {job["id"] for job in failed}
    monkeypatch.undo()
    again = api.post(
        "/api/system/dead-letters/requeue", json={"queue": "interactive", "all": True}
    ).json()
    assert [item["outcome"] for item in again["items"]] == ["retried"]
    assert dead_letters(api) == []


def test_a_retry_past_the_job_caps_leaves_its_dead_letter_dead(
    api: httpx.Client, media_server: Any, settings: Any
) -> None:
    from web.app import create_app

    with running_worker():
        failed = wait_for_job(api, download(api, media_server.url("/missing/capped.mp4"))["id"])
        (dead,) = wait_for(lambda: dead_letters(api), timeout=10, what="the dead letter")
    full = create_app(dataclasses.replace(settings, max_active_jobs=0))
    with live_server(full) as server, api_client(server.url, ADMIN_TOKEN) as client:
        body = client.post(
            "/api/system/dead-letters/requeue",
            json={"queue": "interactive", "message_ids": [dead["message_id"]]},
        ).json()
    assert body["items"] == [
        {
            "message_id": dead["message_id"],
            "job_id": failed["id"],
            "job_status": "failed",
            "outcome": "too_many_jobs",
        }
    ]
    assert body["remaining"] == 1 and dead_letters(api) == [dead]


def test_two_requeues_of_one_dead_letter_act_on_it_once(
    api: httpx.Client, server: Any, media_server: Any
) -> None:
    job = download(api, media_server.url("/media/race.mp4"))
    message_id = dead_letter("interactive")
    outcomes: list[str] = []
    start = threading.Barrier(4)

    def requeue() -> None:
        with api_client(server.url, ADMIN_TOKEN) as client:
            start.wait()
            answer = client.post(
                "/api/system/dead-letters/requeue",
                json={"queue": "interactive", "message_ids": [message_id]},
            )
            outcomes.append(answer.json()["items"][0]["outcome"])

    threads = [threading.Thread(target=requeue) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["not_found", "not_found", "not_found", "resent"]
    assert queues_of(api)["interactive"]["ready"] == 1  # sent once
    assert api.get(f"/api/jobs/{job['id']}").json()["status"] == "queued"


def test_purge_deletes_dead_letters_and_counts_them(api: httpx.Client, media_server: Any) -> None:
    for n in range(3):
        download(api, media_server.url(f"/media/purge-{n}.mp4"))
    ids = [dead_letter("interactive") for _ in range(3)]
    body = api.post(
        "/api/system/dead-letters/purge",
        json={"queue": "interactive", "message_ids": [ids[0], "unknown"]},
    ).json()
    assert body["items"] == [
        {"message_id": ids[0], "outcome": "purged"},
        {"message_id": "unknown", "outcome": "not_found"},
    ]
    assert body["remaining"] == 2
    listed = dead_letters(api, queue="interactive")
    assert {item["message_id"] for item in listed} == set(ids[1:])
    assert [item["message_id"] for item in dead_letters(api, limit=1)] == [listed[0]["message_id"]]
    everything = api.post(
        "/api/system/dead-letters/purge", json={"queue": "interactive", "all": True}
    ).json()
    assert everything == {
        "queue": "interactive",
        "items": [],
        "counts": {"purged": 2},
        "remaining": 0,
    }
    assert dead_letters(api) == []
    assert queues_of(api)["interactive"]["dead"] == 0


def test_a_viewer_reads_the_system_but_its_posts_are_refused(server: Any) -> None:
    with api_client(server.url, VIEWER_TOKEN) as viewer:
        for path in ("/api/system/queues", "/api/system/workers", "/api/system/dead-letters"):
            assert viewer.get(path).status_code == 200, path
        for action in ("requeue", "purge"):
            refused = viewer.post(
                f"/api/system/dead-letters/{action}", json={"queue": "bulk", "all": True}
            )
            assert refused.status_code == 403, refused.text


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"all": True}, "invalid_queue", "queue"),
        ({"queue": "nope", "all": True}, "invalid_queue", "queue"),
        ({"queue": ["bulk"], "all": True}, "invalid_queue", "queue"),
        ({"queue": "bulk"}, "invalid_selection", None),
        ({"queue": "bulk", "all": True, "message_ids": ["a"]}, "invalid_selection", None),
        ({"queue": "bulk", "all": False}, "invalid_selection", "all"),
        ({"queue": "bulk", "all": "yes"}, "invalid_selection", "all"),
        ({"queue": "bulk", "message_ids": "a"}, "invalid_message_ids", "message_ids"),
        ({"queue": "bulk", "message_ids": []}, "invalid_message_ids", "message_ids"),
        ({"queue": "bulk", "message_ids": [1]}, "invalid_message_ids", "message_ids"),
        ({"queue": "bulk", "message_ids": [""]}, "invalid_message_ids", "message_ids"),
        ({"queue": "bulk", "message_ids": ["x" * 129]}, "invalid_message_ids", "message_ids"),
        ({"queue": "bulk", "message_ids": ["a"] * 1001}, "invalid_message_ids", "message_ids"),
        ([], "invalid_json", None),
    ],
)
def test_hostile_dead_letter_requests_are_400s(
    api: httpx.Client, body: Any, code: str, field: str | None
) -> None:
    for action in ("requeue", "purge"):
        answer = api.post(f"/api/system/dead-letters/{action}", json=body)
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["code"] == code and error.get("field") == field


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"queue": "XQ"}, "invalid_queue"),
        ({"queue": ""}, "invalid_queue"),
        ({"queue": "bulk.XQ"}, "invalid_queue"),
        ({"limit": "0"}, "invalid_limit"),
        ({"limit": "201"}, "invalid_limit"),
        ({"limit": "1e3"}, "invalid_limit"),
    ],
)
def test_hostile_dead_letter_listings_are_400s(
    api: httpx.Client, params: dict[str, str], code: str
) -> None:
    answer = api.get("/api/system/dead-letters", params=params)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == code


# -- the job search, as the web answers it


def test_the_job_search_pages_with_its_filters_and_refuses_a_bad_q(
    api: httpx.Client, media_server: Any
) -> None:
    made = [download(api, media_server.url(f"/media/Needle_{n}.mp4")) for n in range(3)]
    download(api, media_server.url("/media/haystack.mp4"))
    first = api.get("/api/jobs", params={"q": "NEEDLE_", "limit": 2}).json()
    second = api.get(
        "/api/jobs", params={"q": "NEEDLE_", "limit": 2, "cursor": first["next"]}
    ).json()
    found = [job["id"] for job in first["items"] + second["items"]]
    assert found == [job["id"] for job in reversed(made)] and second["next"] is None
    assert api.get("/api/jobs", params={"q": "needle", "status": "failed"}).json()["items"] == []
    assert len(api.get("/api/jobs", params={"q": "e_1", "kind": "download"}).json()["items"]) == 1
    assert api.get("/api/jobs", params={"q": "%"}).json()["items"] == []  # literally
    for bad in ("", "x" * 201, "a\x00b", "tab\there"):
        answer = api.get("/api/jobs", params={"q": bad})
        assert answer.status_code == 400, repr(bad)
        assert answer.json()["error"] == {
            "code": "invalid_q",
            "message": "q must be 1 to 200 characters, without control characters",
            "field": "q",
        }
    assert api.get("/api/jobs", params={"q": "x" * 200}).status_code == 200
    # The filters it combines with are as hostile (a NUL is refused by PostgreSQL).
    forged = base64.urlsafe_b64encode(b"2026-01-01T00:00:00+00:00|a\x00").decode()
    answer = api.get("/api/jobs", params={"q": "needle", "cursor": forged})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_cursor"
    for name in ("kind", "parent_id"):
        answer = api.get("/api/jobs", params={"q": "needle", name: "a\x00"})
        assert answer.status_code == 400 and answer.json()["error"]["field"] == name
