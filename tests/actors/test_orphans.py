"""A worker gives back the messages it fetched but never received (the fetch moved their
ids into its ack set, and the reply was lost), and never one that it holds: the real
Redis broker and an in-process worker, checking every 0.1 s with a 0.5 s grace."""

from __future__ import annotations

import logging
import os
import signal
from collections import Counter
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from dramatiq.message import Message
from dramatiq.middleware import Middleware

from actors.orphans import OrphanRecovery, ack_set_key
from actors.stores import Outage
from tests.support import MediaServer, wait_for

# Run alone (make test's serial step): in the parallel step, one run out of three saw
# every test of this module time out on the same xdist worker (2026-12-07, cause not
# found yet); run alone, as in every sequential run before, they pass.
pytestmark = pytest.mark.serial

LOGGER = "actors.orphans"


def logged(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if (r.name, r.levelno) == (LOGGER, level)]


def given_back(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [line for line in logged(caplog, logging.INFO) if "gave back" in line]


@pytest.fixture
def recovery(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Any:
    from actors import broker

    found = next(m for m in broker.middleware if isinstance(m, OrphanRecovery))
    monkeypatch.setattr(found, "every_s", 0.1)
    monkeypatch.setattr(found, "grace_s", 0.5)
    # A fresh record of outages: an earlier test may have ended in one.
    monkeypatch.setattr(
        found, "outage", Outage("orphan check", "Redis", logger=found.outage.logger)
    )
    caplog.set_level(logging.INFO, logger=LOGGER)
    return found


@pytest.fixture
def worker(recovery: Any, worker: Any) -> Any:
    """The conftest's worker, started once the checks are quick."""
    return worker


@pytest.fixture
def deliveries() -> Iterator[Counter[str]]:
    """How many times a job's message reached a worker thread, by job id."""
    from actors import broker

    seen: Counter[str] = Counter()

    class CountDeliveries(Middleware):
        def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
            if message.actor_name == "download_video":
                seen[str(message.args[0])] += 1

    counter = CountDeliveries()
    broker.add_middleware(counter)
    yield seen
    broker.middleware.remove(counter)


def submit(api: Any, url: str) -> dict[str, Any]:
    response = api.post("/api/videos/download", json={"url": url})
    assert response.status_code == 202
    return dict(response.json())


def job_row(job_id: str) -> Any:
    from actors import stores
    from db.models import Job

    with stores.sessions()() as session:
        return session.get(Job, job_id)


def lose_a_fetch_reply(
    worker: Any, api: Any, redis_client: Any, url: str, *, delayed: bool = False
) -> tuple[str, str]:
    """Submit a download and move its message id from its queue (``delayed``: from the
    delay queue, as the message of a job waiting for a retry) into this worker's ack
    set, as a fetch whose reply was lost does; ``(job id, redis message id)``."""
    from actors import broker

    worker.pause()  # so that its consumers do not fetch the message first
    try:
        job = submit(api, url)
        queue = job["queue"]
        (redis_id,) = redis_client.lrange(f"{broker.namespace}:{queue}", 0, -1)
        if delayed:
            data = redis_client.hget(f"{broker.namespace}:{queue}.msgs", redis_id)
            with redis_client.pipeline(transaction=True) as pipe:
                pipe.lrem(f"{broker.namespace}:{queue}", 0, redis_id)
                pipe.hdel(f"{broker.namespace}:{queue}.msgs", redis_id)
                pipe.execute()
            message = broker.enqueue(Message.decode(data.encode()), delay=100)
            queue, redis_id = message.queue_name, message.options["redis_message_id"]
        # A live worker: Dramatiq's maintenance, which frees dead workers' ack sets,
        # leaves this one alone.
        assert redis_client.zscore(f"{broker.namespace}:__heartbeats__", broker.broker_id)
        with redis_client.pipeline(transaction=True) as pipe:
            pipe.lrem(f"{broker.namespace}:{queue}", 0, redis_id)
            pipe.sadd(ack_set_key(broker, queue), redis_id)
            pipe.execute()
    finally:
        worker.resume()
    return job["id"], redis_id


def test_a_message_whose_fetch_reply_was_lost_goes_back_to_its_queue_and_its_job_succeeds(
    api: Any, worker: Any, media_server: Any, redis_client: Any, caplog: Any
) -> None:
    job_id, redis_id = lose_a_fetch_reply(
        worker, api, redis_client, media_server.url("/media/lost-reply.mp4")
    )
    wait_for(lambda: job_row(job_id).status == "succeeded", timeout=30, what="the job to succeed")
    job = job_row(job_id)
    assert job.attempts == 1
    assert job.message_id == redis_id  # the very message, not one the lifeline sent again
    (line,) = given_back(caplog)
    assert redis_id in line


def test_a_delayed_message_whose_fetch_reply_was_lost_goes_back_to_the_delay_queue(
    api: Any,
    worker: Any,
    media_server: Any,
    redis_client: Any,
    deliveries: Counter[str],
    caplog: Any,
) -> None:
    job_id, redis_id = lose_a_fetch_reply(
        worker, api, redis_client, media_server.url("/media/lost-delayed.mp4"), delayed=True
    )
    wait_for(lambda: job_row(job_id).status == "succeeded", timeout=30, what="the job to succeed")
    assert job_row(job_id).attempts == 1
    assert deliveries == Counter({job_id: 1})
    (line,) = given_back(caplog)
    assert redis_id in line and ".DQ" in line


def test_a_job_whose_fetch_reply_is_lost_while_redis_is_stalled_still_succeeds(
    api: Any,
    worker: Any,
    media_server: Any,
    redis_server: Any,
    redis_client: Any,
    caplog: Any,
) -> None:
    # The chaos trial itself: Redis stopped (SIGSTOP) past the broker's socket timeout
    # while the consumers fetch. A fetch sent on an open connection runs once Redis
    # resumes, for nobody (its ids stay in the ack set: given back); one that needed a
    # new connection never got past the handshake (its ids stay in the queue). Seen
    # both ways: either way the job succeeds, once, on its own message.
    from actors import broker

    worker.pause()
    try:
        job = submit(api, media_server.url("/media/stalled.mp4"))
        (redis_id,) = redis_client.lrange(f"{broker.namespace}:{job['queue']}", 0, -1)
        os.kill(redis_server.process.pid, signal.SIGSTOP)
    finally:
        worker.resume()
    try:
        wait_for(
            lambda: any(
                r.name.endswith(f"ConsumerThread({job['queue']})")
                and r.levelno == logging.CRITICAL  # "Consumer encountered a connection error"
                for r in caplog.records
            ),
            what="the consumer's fetch to time out",
        )
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    wait_for(lambda: job_row(job["id"]).status == "succeeded", timeout=30, what="success")
    assert (job_row(job["id"]).attempts, job_row(job["id"]).message_id) == (1, redis_id)
    assert len(given_back(caplog)) <= 1


def test_messages_the_worker_holds_are_never_given_back(
    api: Any, worker: Any, media_server: Any, deliveries: Counter[str], caplog: Any
) -> None:
    # Three downloads of about 3 s each on two threads: two run while the third waits
    # in the work queue, each for many times the grace, checked every 0.1 s.
    jobs = [submit(api, media_server.url(f"/slow/held-{n}.mp4"))["id"] for n in range(3)]
    wait_for(
        lambda: all(job_row(job_id).status == "succeeded" for job_id in jobs),
        timeout=60,
        interval=0.2,
        what="every download to succeed",
    )
    assert [job_row(job_id).attempts for job_id in jobs] == [1, 1, 1]
    assert deliveries == Counter({job_id: 1 for job_id in jobs})  # no second delivery
    assert given_back(caplog) == []


def test_a_download_running_when_its_consumer_is_replaced_is_not_given_back(
    api: Any,
    worker: Any,
    sample_video: Any,
    redis_server: Any,
    deliveries: Counter[str],
    caplog: Any,
) -> None:
    # A Redis outage makes Dramatiq replace the worker's consumers, and the new ones
    # know nothing of the messages the old ones fetched: this download's (about 9 s).
    server = MediaServer(video=sample_video, slow_delay=0.2).start()
    try:
        job_id = submit(api, server.url("/slow/replaced.mp4"))["id"]

        def downloading() -> bool:
            job = api.get(f"/api/jobs/{job_id}").json()
            return bool(job["status"] == "running" and (job["progress"] or 0) > 0)

        wait_for(downloading, what="the download to be under way")
        thread = worker.consumers[job_row(job_id).queue]
        consumer = thread.consumer
        redis_server.stop()
        try:
            wait_for(lambda: thread.consumer is not consumer, what="a new consumer")
        finally:
            redis_server.start()
        wait_for(
            lambda: job_row(job_id).status == "succeeded", timeout=60, what="the job to succeed"
        )
    finally:
        server.stop()
    assert job_row(job_id).attempts == 1
    assert deliveries == Counter({job_id: 1})
    assert given_back(caplog) == []


def test_a_redis_error_during_the_check_does_not_stop_the_worker(
    api: Any,
    worker: Any,
    recovery: Any,
    media_server: Any,
    redis_server: Any,
    redis_client: Any,
    caplog: Any,
) -> None:
    from actors import broker

    # Redis is gone for a few checks ...
    redis_server.stop()
    try:
        wait_for(lambda: recovery.outage.failures >= 3, what="checks to fail")
    finally:
        redis_server.start()
    wait_for(lambda: not recovery.outage.down, what="the check to see Redis again")
    # ... then answers a check with an error that is no outage (a key of the wrong type).
    key = ack_set_key(broker, "maintenance")
    redis_client.set(key, "not a set")
    try:
        wait_for(
            lambda: any("failed a round" in line for line in logged(caplog, logging.WARNING)),
            what="a check to fail on the key",
        )
    finally:
        redis_client.delete(key)
    # The worker runs jobs, and the checks go on.
    job_id, redis_id = lose_a_fetch_reply(
        worker, api, redis_client, media_server.url("/media/after-errors.mp4")
    )
    wait_for(lambda: job_row(job_id).status == "succeeded", timeout=60, what="the job to succeed")
    assert job_row(job_id).message_id == redis_id
    assert any(redis_id in line for line in given_back(caplog))
    # One warning for the outage, one for each round that met the key (more than one
    # when a round came before the test removed it); nothing else.
    outage, *failed_rounds = logged(caplog, logging.WARNING)
    assert "Redis is unavailable" in outage
    assert failed_rounds and all("failed a round" in line for line in failed_rounds)
    wrong_type = [r for r in caplog.records if r.name == LOGGER and r.exc_info]
    assert all("WRONGTYPE" in str(r.exc_info[1]) for r in wrong_type)


stalled_notes: list[str] = []


@dramatiq.actor(queue_name="bulk", max_retries=0)
def note_after_a_delay(text: str) -> None:
    stalled_notes.append(text)


def test_consumers_outlive_a_redis_that_times_out_and_their_delayed_messages_still_run(
    worker: Any, recovery: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Every command of the consumers times out for a while (as with Redis stopped past
    the socket timeout), while a delay-queue consumer holds a delayed message: no consumer
    thread ends, and the message runs once Redis answers (given back from the ack set)."""
    import redis

    from actors import broker

    stalled_notes.clear()
    note_after_a_delay.send_with_options(args=("delayed",), delay=1_000)
    wait_for(
        lambda: any(t.delay_queue.qsize() for t in worker.consumers.values()),
        what="the delay-queue consumer to hold the message",
    )

    def timed_out(*args: Any) -> Any:
        raise redis.TimeoutError("Timeout reading from socket")

    commands = ("do_fetch", "do_requeue", "do_ack", "do_nack", "do_enqueue")
    for command in commands:
        setattr(broker, command, timed_out)
    try:
        # Long enough for the delayed message to fall due and every consumer to meet it.
        wait_for(
            lambda: (
                sum(r.levelno == logging.CRITICAL for r in caplog.records) >= len(worker.consumers)
            ),
            timeout=20,
            what="every consumer to meet the timeouts",
        )
    finally:
        for command in commands:
            delattr(broker, command)
    assert all(thread.is_alive() for thread in worker.consumers.values())
    assert not [m for m in caplog.messages if "unexpected error" in m]  # a lost connection
    wait_for(lambda: stalled_notes == ["delayed"], timeout=20, what="the delayed message to run")
