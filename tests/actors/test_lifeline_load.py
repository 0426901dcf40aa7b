"""The lifeline's scan for lost messages grows with the backlog (it reads every message
of the queues that hold old queued jobs), but it runs on a thread of its own: a running
job's heartbeat stays on time however long the scan takes; and it runs at most once a
minute, while every round checks the running jobs."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest

from actors.job_context import current_job
from actors.job_tracking import job_actor
from tests.support import wait_for

BACKLOG = 10_000
release = threading.Event()


@job_actor(kind="lifeline_probe", queue_name="bulk")
def hold_while_the_lifeline_scans(job_id: str) -> None:
    current_job()
    release.wait(60)


@pytest.mark.serial
def test_heartbeats_stay_on_time_while_the_lifeline_scans_ten_thousand_queued_messages(
    worker: Any, settings: Any, redis_client: Any
) -> None:
    from actors import recovery, stores
    from actors.enqueue import enqueue_job
    from db import live
    from db.models import Job, JobStatus, utcnow

    # 10,000 queued jobs old enough for the lifeline to look for their messages, each
    # with its message in the broker's hash (only there: no worker fetches them). The
    # messages first: the worker's own lifeline may run at any moment.
    stale = utcnow() - timedelta(minutes=5)
    backlog = [str(uuid.uuid4()) for _ in range(BACKLOG)]
    with redis_client.pipeline(transaction=False) as pipe:
        for job_id in backlog:
            message = {"queue_name": "bulk", "actor_name": "download_video", "args": [job_id]}
            pipe.hset("dramatiq:bulk.msgs", str(uuid.uuid4()), json.dumps(message))
        pipe.execute()
    with stores.sessions().begin() as session:
        session.add_all(
            Job(id=job_id, kind="download", queue="bulk", params={}, updated_at=stale)
            for job_id in backlog
        )

    release.clear()
    with stores.sessions().begin() as session:
        probe = Job(kind="lifeline_probe", queue="bulk", params={})
        session.add(probe)
    enqueue_job(hold_while_the_lifeline_scans, probe.id, "bulk")
    heartbeat = live.heartbeat_key(probe.id)
    wait_for(lambda: redis_client.exists(heartbeat), what="the probe job to run")

    scans: list[float] = []
    scanning = True

    def scan() -> None:
        while scanning:
            started = time.monotonic()
            recovery.run_lifeline()
            scans.append(time.monotonic() - started)

    scanner = threading.Thread(target=scan)
    scanner.start()
    ages = []
    try:
        deadline = time.monotonic() + 4 * settings.heartbeat_timeout
        while time.monotonic() < deadline or len(scans) < 3:
            left_ms = redis_client.pttl(heartbeat)
            assert left_ms > 0, "the heartbeat expired"
            ages.append(settings.heartbeat_timeout - left_ms / 1000)
            time.sleep(0.02)  # the sampling interval
    finally:
        scanning = False
        scanner.join(60)
        release.set()
    assert max(scans) > 0.02, scans  # the scans were real work
    assert max(ages) < settings.heartbeat_timeout / 3, (max(ages), scans)
    with stores.sessions()() as session:
        queued = session.query(Job).filter(Job.status == JobStatus.queued).count()
    assert queued == BACKLOG  # nothing sent twice: every job's message was found


def test_a_lifeline_round_scans_for_lost_messages_at_most_once_a_minute(
    redis_client: Any, monkeypatch: Any
) -> None:
    """Every round checks the running jobs (its cost grows with them); the scan of the
    queued jobs' messages (its cost grows with the backlog) waits for its own lease."""
    from actors import recovery

    rounds: list[str] = []
    monkeypatch.setattr(recovery, "recover_abandoned", lambda: rounds.append("running") or 0)
    monkeypatch.setattr(recovery, "requeue_lost", lambda: rounds.append("scan") or 0)
    for _ in range(3):
        redis_client.delete(recovery.LEASE_KEY)  # as if a lifeline interval had passed
        assert recovery.run_lifeline_if_due(15)
    assert not recovery.run_lifeline_if_due(15)  # within the interval: another ran it
    assert rounds == ["running", "scan", "running", "running"]
    assert 0 < redis_client.ttl(recovery.SCAN_LEASE_KEY) <= recovery.SCAN_EVERY_S
