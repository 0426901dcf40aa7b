"""The broker on RabbitMQ (``BROKER_URL``): the settings and ``make_broker`` choose it,
a web whose RabbitMQ is gone keeps the job queued, and, where a RabbitMQ server answers
on 127.0.0.1:5672, the whole download runs on it with real worker processes, and the
lifeline sends again a job whose message was lost.

Each test process uses a vhost of its own (``rabbitmqctl add_vhost``, deleted after),
so parallel test processes and leftover messages do not meet; where rabbitmqctl cannot
make one, the default vhost is purged and its tests hold a lock across test processes.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from db.queues import Queue, job_message
from db.settings import SettingsError, load_settings
from tests.conftest import ADMIN_TOKEN
from tests.support import (
    api_client,
    free_port,
    live_server,
    procfile_workers,
    wait_for,
    wait_for_job,
)

RABBITMQ = ("127.0.0.1", 5672)


def rabbitmq_answers() -> bool:
    try:
        socket.create_connection(RABBITMQ, timeout=2).close()
    except OSError:
        return False
    return True


def rabbitmqctl(*args: str) -> bool:
    """Run ``rabbitmqctl``; whether it succeeded (False: missing, or not allowed)."""
    if shutil.which("rabbitmqctl") is None:
        return False
    try:
        done = subprocess.run(["rabbitmqctl", *args], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@pytest.fixture(scope="module")
def rabbitmq_url() -> Iterator[str]:
    """A RabbitMQ vhost of this test process's own, as a ``BROKER_URL``."""
    if not rabbitmq_answers():
        if os.environ.get("CI"):
            pytest.fail("no RabbitMQ on 127.0.0.1:5672, and CI must run the RabbitMQ tests")
        pytest.skip("no RabbitMQ on 127.0.0.1:5672")
    vhost = f"vidfleet-test-{uuid.uuid4().hex[:12]}"
    if rabbitmqctl("add_vhost", vhost):
        try:
            assert rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
            yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
        finally:
            rabbitmqctl("delete_vhost", vhost)
        return
    # The default vhost, one test process at a time, emptied of what others left.
    with (Path(tempfile.gettempdir()) / "vidfleet-rabbitmq-tests.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        url = "amqp://guest:guest@127.0.0.1:5672/%2F"
        broker = own_broker(url)
        broker.flush_all()
        broker.close()
        yield url


def own_broker(url: str) -> Any:
    """A broker of the tests' own on ``url``: no middleware, every queue declared."""
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    broker = RabbitmqBroker(url=url, confirm_delivery=True, middleware=[])
    for queue in Queue:
        broker.declare_queue(queue)
    return broker


def consumers(broker: Any) -> int:
    """How many consumers RabbitMQ counts on the queues (a passive declare's answer)."""
    names = [name for queue in Queue for name in (queue, f"{queue}.DQ")]
    return sum(
        broker.channel.queue_declare(name, passive=True).method.consumer_count for name in names
    )


@pytest.fixture
def rabbitmq(rabbitmq_url: str) -> Iterator[Any]:
    """A broker of the tests' own on the vhost, its queues empty and, once the workers
    of an earlier test have closed their connections, unconsumed."""
    broker = own_broker(rabbitmq_url)
    for queue in Queue:
        broker.get_queue_message_counts(queue)  # declares it (and its .DQ and .XQ)
    # Then the purge: RabbitMQ gives back what a closing consumer held.
    wait_for(lambda: consumers(broker) == 0, timeout=30, what="the earlier workers to go")
    broker.flush_all()
    yield broker
    broker.close()


@pytest.fixture
def rabbit_api(settings: Any, rabbitmq_url: str) -> Iterator[Any]:
    """A real web whose broker is the RabbitMQ vhost; an admin client of it."""
    from web.app import create_app

    app = create_app(dataclasses.replace(settings, broker_url=rabbitmq_url))
    with live_server(app) as server, api_client(server.url, ADMIN_TOKEN) as client:
        yield client


def environment(**overrides: str) -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != "BROKER_URL"} | overrides


# -- the choice of broker


def test_broker_url_takes_amqp_and_refuses_any_other_scheme_by_name() -> None:
    assert load_settings(environment()).broker_url == ""
    url = "amqps://fleet:secret@rabbit.example:5671/vidfleet"
    settings = load_settings(environment(BROKER_URL=url))
    assert settings.broker_url == url and settings.uses_rabbitmq
    for wrong in ("redis://localhost:6379/0", "kafka://broker:9092", "rabbit.example:5672"):
        with pytest.raises(SettingsError, match="BROKER_URL: expected amqp://") as raised:
            load_settings(environment(BROKER_URL=wrong))
        assert "secret" not in str(raised.value)
    with pytest.raises(SettingsError) as raised:
        load_settings(environment(BROKER_URL="http://user:secret@host/"))
    assert "secret" not in str(raised.value) and "***" in str(raised.value)


def test_make_broker_builds_rabbitmq_with_every_queue_and_the_middleware_but_orphan_recovery(
    settings: Any,
) -> None:
    from dramatiq.brokers.rabbitmq import RabbitmqBroker
    from dramatiq.brokers.redis import RedisBroker

    from actors.broker import make_broker
    from actors.job_tracking import JobTracking
    from actors.lifeline_runner import LifelineRunner
    from actors.orphans import OrphanRecovery
    from actors.slot_gate import SlotGate

    # No server needed: RabbitMQ is reached on first use.
    rabbit = make_broker(
        dataclasses.replace(settings, broker_url=f"amqp://guest:guest@127.0.0.1:{free_port()}/")
    )
    redis = make_broker(settings)
    try:
        assert isinstance(rabbit, RabbitmqBroker) and isinstance(redis, RedisBroker)
        assert set(Queue) <= rabbit.get_declared_queues()
        assert {f"{queue}.DQ" for queue in Queue} <= rabbit.get_declared_delay_queues()
        assert not rabbit.max_priority  # priority is the queue, as on Redis
        assert rabbit.confirm_delivery
        kinds = [type(middleware) for middleware in rabbit.middleware]
        assert OrphanRecovery not in kinds
        assert OrphanRecovery in [type(middleware) for middleware in redis.middleware]
        for needed in (JobTracking, SlotGate, LifelineRunner):
            assert needed in kinds
        assert kinds.index(SlotGate) < kinds.index(JobTracking)
    finally:
        rabbit.close()
        redis.close()


def test_a_web_whose_rabbitmq_is_gone_accepts_the_download_and_keeps_it_queued(
    settings: Any, media_server: Any
) -> None:
    from actors import stores
    from db.models import Job
    from web.app import create_app

    gone = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    app = create_app(dataclasses.replace(settings, broker_url=gone))
    with live_server(app) as server, api_client(server.url, ADMIN_TOKEN) as api:
        response = api.post(
            "/api/videos/download", json={"url": media_server.url("/media/unsent.mp4")}
        )
        assert response.status_code == 202, response.text
        job = response.json()
        assert job["status"] == "queued"
        # The row is the truth: queued, for the lifeline to send once RabbitMQ is back.
        with stores.sessions()() as session:
            assert session.get(Job, job["id"]).status == "queued"
        queues = api.get("/api/system/queues")
        assert queues.status_code == 503, queues.text
        assert queues.json()["error"]["store"] == "broker"
        scrape = api.get("/metrics")  # the broker's family is absent, the scrape still answers
        assert scrape.status_code == 200, scrape.text
        assert 'vidfleet_scrape_errors_total{source="rabbitmq"} 1.0' in scrape.text
        assert "vidfleet_queue_messages{" not in scrape.text


# -- on a RabbitMQ server


def test_a_download_runs_end_to_end_on_rabbitmq(
    rabbit_api: Any, rabbitmq: Any, rabbitmq_url: str, media_server: Any, settings: Any,
    sample_video: Path, tmp_path: Path,
) -> None:  # fmt: skip
    from actors import stores
    from db.models import Job, Video

    url = media_server.url("/media/rabbit-song.mp4")
    response = rabbit_api.post("/api/videos/download", json={"url": url})
    assert response.status_code == 202, response.text
    job = response.json()
    # The message is on RabbitMQ (no worker yet), not in Redis.
    assert rabbitmq.get_queue_message_counts(job["queue"])[0] == 1
    queues = {item["queue"]: item for item in rabbit_api.get("/api/system/queues").json()["items"]}
    assert queues[job["queue"]] == {"queue": job["queue"], "ready": 1, "delayed": 0, "dead": 0}
    scrape = rabbit_api.get("/metrics").text  # RabbitMQ's counts in /metrics too
    assert f'vidfleet_queue_messages{{queue="{job["queue"]}",state="ready"}} 1.0' in scrape
    for path in ("/api/system/workers", "/api/system/dead-letters"):
        answer = rabbit_api.get(path)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_available"

    with procfile_workers(tmp_path / "workers.log", BROKER_URL=rabbitmq_url,
                          VIDFLEET_WORKER_PROCESSES="1", VIDFLEET_WORKER_THREADS="2"):  # fmt: skip
        finished = wait_for_job(rabbit_api, job["id"])
    assert finished["status"] == "succeeded", (finished, (tmp_path / "workers.log").read_text())
    assert finished["attempts"] == 1
    video = rabbit_api.get(f"/api/videos/{finished['result']['video_id']}").json()
    assert video["source_url"] == url
    assert (settings.media_root / video["path"]).read_bytes() == sample_video.read_bytes()
    with stores.sessions()() as session:
        assert session.scalar(select(func.count()).select_from(Video)) == 1
        # The delivery that claimed it, by Dramatiq's message id (RabbitMQ has no other).
        assert uuid.UUID(session.get(Job, job["id"]).message_id)
    assert rabbitmq.get_queue_message_counts(job["queue"]) == (0, 0, 0)


def test_the_lifeline_sends_a_lost_message_again_and_a_duplicate_for_a_finished_job_does_nothing(
    rabbit_api: Any, rabbitmq: Any, rabbitmq_url: str, media_server: Any, tmp_path: Path
) -> None:
    from actors import stores
    from db.models import Job, Video, utcnow

    response = rabbit_api.post(
        "/api/videos/download", json={"url": media_server.url("/media/lost-song.mp4")}
    )
    assert response.status_code == 202, response.text
    job = response.json()
    # The message is lost after the job was committed, and the job is old enough to be
    # missed by the lifeline.
    rabbitmq.flush(job["queue"])
    assert rabbitmq.get_queue_message_counts(job["queue"]) == (0, 0, 0)
    with stores.engine().begin() as connection:
        connection.execute(
            update(Job)
            .where(Job.id == job["id"])
            .values(updated_at=utcnow() - timedelta(minutes=2))
        )

    log = tmp_path / "workers.log"
    # One worker thread: messages of one queue run in the order they arrive.
    with procfile_workers(log, BROKER_URL=rabbitmq_url,
                          VIDFLEET_WORKER_PROCESSES="1", VIDFLEET_WORKER_THREADS="1"):  # fmt: skip
        finished = wait_for_job(rabbit_api, job["id"])
        assert finished["status"] == "succeeded", (finished, log.read_text())
        assert finished["attempts"] == 1
        assert f"re-enqueueing job {job['id']}" in log.read_text()

        # A duplicate of the finished job's message, then a new job behind it: once the
        # new job is done, the duplicate has been taken (and dropped) before it.
        rabbitmq.enqueue(job_message("download", job["id"], job["queue"]))
        behind = rabbit_api.post(
            "/api/videos/download", json={"url": media_server.url("/media/behind-song.mp4")}
        ).json()
        assert behind["queue"] == job["queue"]
        assert wait_for_job(rabbit_api, behind["id"])["status"] == "succeeded"

    again = rabbit_api.get(f"/api/jobs/{job['id']}").json()
    assert again["status"] == "succeeded"
    assert again["attempts"] == 1
    assert again["finished_at"] == finished["finished_at"]
    with stores.sessions()() as session:
        assert session.scalar(select(func.count()).select_from(Video)) == 2
    assert rabbitmq.get_queue_message_counts(job["queue"]) == (0, 0, 0)


def test_the_rabbitmq_lifeline_resends_only_jobs_nothing_explains(
    rabbitmq: Any, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from actors import recovery, stores
    from actors.limits import download_slots
    from db.models import Job, utcnow
    from db.outbox import Courier
    from db.rabbitmq import BrokerSender

    monkeypatch.setattr(stores, "courier", lambda: Courier(redis_client, BrokerSender(rabbitmq)))
    old = utcnow() - timedelta(minutes=2)
    lost, waiting, retried, behind, fresh = (str(uuid.uuid4()) for _ in range(5))
    with stores.sessions().begin() as session:
        session.add_all(
            [
                Job(id=lost, kind="download", queue="downloads", params={}, updated_at=old),
                # A worker thread holds its message while it waits for a download slot.
                Job(id=waiting, kind="download", queue="downloads", params={}, updated_at=old),
                # Tried before: its next attempt may wait out a retry backoff.
                Job(id=retried, kind="download", queue="downloads", params={}, attempts=1,
                    updated_at=old),
                # Its queue has a backlog: its message may be in it.
                Job(id=behind, kind="analyze", queue="media", params={}, updated_at=old),
                Job(id=fresh, kind="download", queue="downloads", params={}),
            ]
        )  # fmt: skip
    redis_client.zadd(download_slots().line_key, {waiting: 1})
    rabbitmq.enqueue(job_message("analyze", str(uuid.uuid4()), "media"))

    assert recovery.requeue_lost_on_rabbitmq(rabbitmq) == 1
    ready, _, _ = rabbitmq.get_queue_message_counts("downloads")
    assert ready == 1
    _, _, body = rabbitmq.channel.basic_get("downloads", auto_ack=True)
    assert json.loads(body)["args"] == [lost]
    assert rabbitmq.get_queue_message_counts("media")[0] == 1
