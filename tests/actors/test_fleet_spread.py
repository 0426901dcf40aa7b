"""Work spreads over the fleet: the Procfile's worker line takes no more messages per
queue than it has threads, so a backlog of long downloads runs on every worker
process, not on whichever fetched first (Dramatiq prefetches twice its threads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from tests.support import procfile_workers, wait_for


def workers_running_jobs(redis_client: Any) -> set[str]:
    """The worker processes (their Dramatiq broker ids) that run a job now: a running
    job's message id is in the unacked set of the process that took it."""
    from actors import stores
    from db.models import Job, JobStatus

    with stores.sessions()() as session:
        running = set(
            session.scalars(select(Job.message_id).where(Job.status == JobStatus.running))
        )
    holders = set()
    for key in redis_client.keys("dramatiq:__acks__.*"):
        if running & redis_client.smembers(key):
            holders.add(key.split(".")[1])
    return holders


def test_two_worker_processes_share_a_backlog_of_long_downloads(
    api: httpx.Client, media_server: Any, redis_client: Any, tmp_path: Path
) -> None:
    # Queued before any worker runs: the first to fetch would take them all.
    jobs = [
        api.post("/api/videos/download", json={"url": media_server.url(f"/crawl/spread-{n}.mp4")})
        for n in range(6)
    ]
    assert all(job.status_code == 202 for job in jobs), [job.text for job in jobs]
    with procfile_workers(
        tmp_path / "workers.log",
        VIDFLEET_WORKER_PROCESSES="2",
        VIDFLEET_WORKER_THREADS="4",
        # Slots for all six: what is measured is who takes the messages.
        VIDFLEET_MAX_CONCURRENT_DOWNLOADS="8",
    ):
        try:
            wait_for(
                lambda: len(workers_running_jobs(redis_client)) == 2,
                timeout=60,
                what="jobs running on both worker processes",
            )
        finally:
            for job in jobs:
                api.post(f"/api/jobs/{job.json()['id']}/cancel")
