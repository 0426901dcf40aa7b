"""Redis is not the truth: after a Redis restart (AOF) or a Redis wiped empty, every
accepted job still ends ``succeeded``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.support import wait_for


def statuses(api: Any, job_ids: list[str]) -> list[str]:
    return [api.get(f"/api/jobs/{job_id}").json()["status"] for job_id in job_ids]


def accept(api: Any, media_server: Any, names: list[str]) -> list[str]:
    job_ids = []
    for name in names:
        response = api.post("/api/videos/download", json={"url": media_server.url(name)})
        assert response.status_code == 202
        job_ids.append(response.json()["id"])
    return job_ids


def test_every_job_finishes_across_a_redis_restart(
    api: Any, worker: Any, media_server: Any, redis_server: Any
) -> None:
    job_ids = accept(api, media_server, [f"/slow/restart-{n}.mp4" for n in range(4)])
    wait_for(lambda: "running" in statuses(api, job_ids), what="a job to start")
    redis_server.restart()
    wait_for(
        lambda: statuses(api, job_ids) == ["succeeded"] * 4,
        timeout=90,
        interval=0.5,
        what="every job to succeed after the restart",
    )


def test_every_job_finishes_after_redis_is_wiped(
    api: Any, worker: Any, media_server: Any, redis_server: Any
) -> None:
    from actors.recovery import recover_abandoned, requeue_lost

    worker.pause()  # the jobs are accepted but none has started
    job_ids = accept(api, media_server, [f"/media/wiped-{n}.mp4" for n in range(4)])
    redis_server.restart(wipe=True)
    worker.resume()

    def all_succeeded() -> bool:
        # The scheduler's lifeline, run here without waiting for its minute.
        recover_abandoned()
        requeue_lost(older_than=timedelta(0))
        return statuses(api, job_ids) == ["succeeded"] * 4

    wait_for(all_succeeded, timeout=90, interval=0.5, what="every job to succeed")
