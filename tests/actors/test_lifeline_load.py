"""The lifeline's scan grows with the backlog (it reads every message the broker holds),
but it runs on a thread of its own: a running job's heartbeat stays on time however
long the scan takes."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

from actors.job_middleware import current_job, job_actor
from tests.support import wait_for

BACKLOG = 10_000
release = threading.Event()


@job_actor(kind="lifeline_probe", queue_name="bulk")
def hold_while_the_lifeline_scans(job_id: str) -> None:
    current_job()
    release.wait(60)


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
    assert max(scans) > 0.05, scans  # the scans were real work
    assert max(ages) < settings.heartbeat_timeout / 3, (max(ages), scans)
    with stores.sessions()() as session:
        queued = session.query(Job).filter(Job.status == JobStatus.queued).count()
    assert queued == BACKLOG  # nothing sent twice: every job's message was found
