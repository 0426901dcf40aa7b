"""The download slots' waiting line (db.slots.FairSlots, actors.slot_gate): a job that
finds no slot free waits in its worker thread, in turn, without a redelivery, a claim
or an attempt, and says so once."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import pytest
from dramatiq.middleware import Middleware

from tests.support import wait_for, wait_for_job


@pytest.fixture
def line(redis_client: Any) -> Any:
    from db.slots import FairSlots

    return FairSlots(redis_client, "test:slots", limit=1, ttl_s=30)


def test_a_freed_slot_goes_to_the_head_of_the_line_and_wakes_only_it(
    line: Any, redis_client: Any
) -> None:
    assert line.take_or_join("a", 10) == (True, False, 0)
    assert line.take_or_join("b", 11) == (False, True, 0)
    assert line.take_or_join("c", 12) == (False, True, 1)
    assert line.take_or_join("high", 5) == (False, True, 0)  # an earlier turn goes first
    assert line.take_or_join("b", 13) == (False, False, 1)  # coming back keeps its place
    line.leave("a")
    assert line.holders() == ["high"]
    assert redis_client.lrange(line.wake_prefix + "high", 0, -1) == ["slot"]
    assert not redis_client.exists(line.wake_prefix + "b", line.wake_prefix + "c")
    assert line.take_or_join("high", 5) == (True, False, 0)
    line.leave("high")
    assert line.holders() == ["b"]  # then first come, first served
    assert line.take_or_join("newcomer", 0) == (False, True, 0)  # but b has the slot


def test_a_waiter_that_stopped_coming_back_drops_out_and_a_dead_holders_slot_is_handed_on(
    line: Any,
) -> None:
    now = time.time()
    line.clock = lambda: now
    assert line.take_or_join("holder", 0)[0]
    assert line.take_or_join("dead-waiter", 0) == (False, True, 0)
    now += line.ALIVE_S / 2
    assert line.take_or_join("live-waiter", 0) == (False, True, 1)
    # Neither the holder renewed its slot nor the first waiter came back.
    now += line.ttl_s
    assert line.take_or_join("live-waiter", 0) == (True, False, 0)
    assert line.client.zrange(line.key, 0, -1) == ["live-waiter"]
    assert line.client.zcard(line.line_key) == 0  # the dead waiter is out


def test_waiting_ends_with_the_slot_handed_over_or_with_a_dismissal(line: Any) -> None:
    line.take_or_join("holder", 0)
    outcomes: dict[str, bool] = {}
    joined: dict[str, int] = {}

    def wait(holder: str) -> None:
        outcomes[holder] = line.wait(
            holder,
            0,
            should_stop=lambda: False,
            on_joined=lambda place: joined.setdefault(holder, place),
        )

    waiters = [threading.Thread(target=wait, args=(name,)) for name in ("first", "second")]
    waiters[0].start()
    wait_for(lambda: "first" in joined, what="the first waiter in line")
    waiters[1].start()
    wait_for(lambda: "second" in joined, what="the second waiter in line")
    assert joined == {"first": 0, "second": 1}
    line.dismiss("second")  # its job was cancelled
    waiters[1].join(5)
    assert outcomes == {"second": False}
    line.leave("holder")
    waiters[0].join(5)
    assert outcomes == {"second": False, "first": True}
    assert line.holders() == ["first"]


OTHER = "someone-else"


@pytest.fixture
def slots(monkeypatch: Any) -> Any:
    """The fleet's download slots, cut to one, held by another job (long enough for
    any test: it renews nothing)."""
    from actors.limits import download_slots

    slots = download_slots()
    monkeypatch.setattr(slots, "limit", 1)
    monkeypatch.setattr(slots, "ttl_s", 600)
    assert slots.take_or_join(OTHER, 0)[0]
    return slots


class CountsDeliveries(Middleware):
    def __init__(self) -> None:
        self.delivered: Counter[str] = Counter()

    def before_process_message(self, broker: Any, message: Any) -> None:
        if message.actor_name == "test_slotted_job":
            self.delivered[message.args[0]] += 1


def test_a_backlog_behind_two_slots_runs_each_job_once_in_turn_with_a_high_one_first(
    redis_client: Any, monkeypatch: Any
) -> None:
    """200 jobs queued on `downloads` (normal), then one on `interactive` (high), behind
    2 slots and 8 worker threads: each is delivered and started once, at attempt 1,
    with at most one `waiting` event; the normal ones start in the order they were
    created, and the high one before the backlog."""
    from actors import broker, stores
    from actors.enqueue import enqueue_job
    from actors.job_tracking import job_actor
    from actors.limits import download_slots
    from db import live
    from db.models import Job, JobStatus

    monkeypatch.setattr(download_slots(), "limit", 2)
    started: list[str] = []
    running = Counter[str]()
    most_at_once = 0
    lock = threading.Lock()

    def test_slotted_job(job_id: str) -> None:
        nonlocal most_at_once
        with lock:
            started.append(job_id)
            running["now"] += 1
            most_at_once = max(most_at_once, running["now"])
        time.sleep(0.005)  # the work itself, holding the slot a moment
        with lock:
            running["now"] -= 1

    actor = job_actor(kind="slotted", slot="downloads", actor_name="test_slotted_job")(
        test_slotted_job
    )
    normal = [str(uuid.uuid4()) for _ in range(200)]
    high = str(uuid.uuid4())
    created = datetime.now(UTC)
    with stores.sessions().begin() as session:
        for n, (job_id, queue) in enumerate(
            [*((j, "downloads") for j in normal), (high, "interactive")]
        ):
            session.add(
                Job(
                    id=job_id,
                    kind="slotted",
                    status=JobStatus.queued,
                    queue=queue,
                    created_at=created + timedelta(milliseconds=n),
                )
            )
    for job_id in normal:
        enqueue_job(actor, job_id, "downloads")
    enqueue_job(actor, high, "interactive")
    deliveries = CountsDeliveries()
    broker.middleware.insert(0, deliveries)
    worker = dramatiq.Worker(broker, worker_threads=8, worker_timeout=100)
    worker.start()
    try:
        wait_for(lambda: len(started) == 201, timeout=120, what="every job to start")
        broker.join("downloads", timeout=60_000)
        broker.join("interactive", timeout=60_000)
        worker.join()
    finally:
        worker.stop()
        broker.middleware.remove(deliveries)
        del broker.actors["test_slotted_job"]

    assert most_at_once <= 2
    assert Counter(started) == Counter({job_id: 1 for job_id in [*normal, high]})
    assert set(deliveries.delivered.values()) == {1}
    # In line, jobs go in the order they were created. Jobs that reach the line at once
    # while a slot is free (a batch just fetched) are served as they reach it: a job
    # starts at most a worker's threads away from its place.
    normal_started = [job_id for job_id in started if job_id != high]
    assert all(abs(normal_started.index(job_id) - n) <= 8 for n, job_id in enumerate(normal))
    assert started.index(high) < 20
    with stores.sessions()() as session:
        rows = session.query(Job.status, Job.attempts).filter(Job.kind == "slotted").all()
    assert set(rows) == {(JobStatus.succeeded, 1)}
    events = Counter[tuple[str, str]]()
    for _id, fields in redis_client.xrange(live.EVENTS_STREAM):
        job = json.loads(fields["job"])
        events[(job["id"], job["stage"] if job["status"] == "queued" else job["status"])] += 1
    waiting = [job_id for (job_id, state) in events if state == "waiting"]
    assert len(waiting) > 150  # nearly every job waited ...
    assert all(events[(job_id, "waiting")] == 1 for job_id in waiting)  # ... and said so once
    for job_id in [*normal, high]:
        assert events[(job_id, "running")] == events[(job_id, "succeeded")] == 1
    assert sum(events.values()) <= 3 * 201


def test_a_download_that_waited_for_a_slot_still_has_all_its_attempts(
    api: Any, worker: Any, media_server: Any, slots: Any
) -> None:
    """Held behind the only slot for a while, then two transient failures (503): it
    succeeds at attempt 3. Waiting used to be redeliveries that Dramatiq counted as
    retries, so such a download failed at attempt 1."""
    job = api.post(
        "/api/videos/download", json={"url": media_server.url("/flaky/waited.mp4")}
    ).json()
    waiting = wait_for(
        lambda: (found := api.get(f"/api/jobs/{job['id']}").json())["stage"] == "waiting" and found,
        what="the download to wait for the slot",
    )
    assert waiting["status"] == "queued" and waiting["attempts"] == 0
    assert "1st in line" in waiting["message"]
    slots.leave(OTHER)
    done = wait_for_job(api, job["id"])
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 3
    assert media_server.hits["/flaky/waited.mp4"] >= 3


def test_a_download_cancelled_while_it_waits_for_a_slot_leaves_the_line_at_once(
    api: Any, worker: Any, media_server: Any, slots: Any, redis_client: Any
) -> None:
    job = api.post(
        "/api/videos/download", json={"url": media_server.url("/media/cancelled-waiter.mp4")}
    ).json()
    wait_for(
        lambda: redis_client.zscore(slots.line_key, job["id"]) is not None,
        what="the download in line",
    )
    assert api.post(f"/api/jobs/{job['id']}/cancel").status_code == 202
    wait_for(
        lambda: (
            redis_client.zscore(slots.line_key, job["id"]) is None
            and not redis_client.exists(slots.wake_prefix + job["id"])
        ),
        timeout=5,
        what="the waiter to leave",
    )
    assert api.get(f"/api/jobs/{job['id']}").json()["status"] == "cancelled"
    assert slots.holders() == [OTHER]
    slots.leave(OTHER)
    assert media_server.hits.get("/media/cancelled-waiter.mp4", 0) == 0


def test_a_thousand_queued_downloads_leave_the_resume_history_intact(
    api: Any, worker: Any, media_server: Any, slots: Any, redis_client: Any
) -> None:
    """1,000 downloads queued behind a busy fleet: one `queued` event each, one
    `waiting` for each a worker thread holds, nothing else; a client that saw the
    events before them resumes from there (`since`) without a gap."""
    from db import live

    before = str(redis_client.xadd(live.EVENTS_STREAM, live.encode_event({"id": "earlier"})))
    jobs = []
    for n in range(1_000):
        answer = api.post(
            "/api/videos/download",
            json={"url": media_server.url(f"/media/backlog-{n}.mp4"), "priority": "low"},
        )
        assert answer.status_code == 202, answer.text
        jobs.append(answer.json()["id"])
    held = worker.worker_threads
    wait_for(
        lambda: redis_client.zcard(slots.line_key) == held,
        what="the worker's threads to wait in line",
    )
    entries = redis_client.xrange(live.EVENTS_STREAM, min=before)
    assert entries[0][0] == before  # still there: the history before the backlog
    states = Counter(
        (job["status"], job["stage"])
        for job in (json.loads(fields["job"]) for _id, fields in entries[1:])
    )
    assert states == {("queued", None): 1_000, ("queued", "waiting"): held}
    slots.leave(OTHER)
    for job_id in jobs:
        api.post(f"/api/jobs/{job_id}/cancel")
