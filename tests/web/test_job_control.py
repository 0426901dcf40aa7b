"""Cancel and retry: ``POST /api/jobs/{id}/cancel`` and ``/retry``."""

from __future__ import annotations

import os
import time
from typing import Any

import httpx
import pytest

from tests.support import child_processes, wait_for, wait_for_job


def job_of(api: httpx.Client, job_id: str) -> dict[str, Any]:
    return api.get(f"/api/jobs/{job_id}").json()


def test_a_cancelled_queued_job_never_starts(
    api: httpx.Client, media_server: Any, settings: Any
) -> None:
    import dramatiq

    from actors import broker

    job = api.post(
        "/api/videos/download", json={"url": media_server.url("/media/never.mp4")}
    ).json()
    cancelled = api.post(f"/api/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 202
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["error"]["type"] == "cancelled"
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        broker.join(job["queue"], timeout=30_000)
        worker.join()
    finally:
        worker.stop()
    assert job_of(api, job["id"])["status"] == "cancelled"
    assert media_server.hits.get("/media/never.mp4", 0) == 0
    assert api.get("/api/videos").json()["items"] == []
    # The URL is free again: a new request makes a new job.
    again = api.post("/api/videos/download", json={"url": media_server.url("/media/never.mp4")})
    assert again.status_code == 202 and again.json()["id"] != job["id"]


@pytest.mark.serial
def test_a_running_download_stops_within_two_seconds_and_leaves_nothing(
    api: httpx.Client, worker: Any, media_server: Any, settings: Any
) -> None:
    before = child_processes(os.getpid())
    job = api.post(
        "/api/videos/download", json={"url": media_server.url("/crawl/stop-me.mp4")}
    ).json()

    def downloading() -> bool:
        current = job_of(api, job["id"])
        return current["status"] == "running" and current["stage"] == "downloading"

    wait_for(downloading, timeout=30, what="the download to start")
    # The download runs in a process group of its own (the worker is in this process).
    assert len(child_processes(os.getpid())) == len(before) + 1
    asked = time.monotonic()
    response = api.post(f"/api/jobs/{job['id']}/cancel")
    assert response.status_code == 202
    assert response.json()["cancel_requested"] is True
    done = wait_for_job(api, job["id"], timeout=10)
    took = time.monotonic() - asked
    assert done["status"] == "cancelled", done
    assert took < 2.0, f"cancel took {took:.2f}s"
    assert child_processes(os.getpid()) == before, "a process of the download was left"
    assert done["error"]["type"] == "cancelled"
    assert not (settings.tmp_dir / job["id"]).exists()
    assert api.get("/api/videos").json()["items"] == []
    assert not settings.media_root.exists() or not any(settings.media_root.rglob("*.mp4"))


def test_cancelling_a_finished_job_is_a_409(
    api: httpx.Client, worker: Any, media_server: Any
) -> None:
    job = api.post("/api/videos/download", json={"url": media_server.url("/media/done.mp4")}).json()
    assert wait_for_job(api, job["id"])["status"] == "succeeded"
    response = api.post(f"/api/jobs/{job['id']}/cancel")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "finished"
    assert api.post("/api/jobs/8f14e45f-ceea-467a-9a4f-1f7b2c4e0c11/cancel").status_code == 404


def test_cancelling_a_parent_cancels_its_children(api: httpx.Client) -> None:
    from actors import stores
    from db.models import Job

    with stores.sessions().begin() as session:
        parent = Job(kind="download", queue="bulk", params={})
        session.add(parent)
        session.flush()
        children = [
            Job(kind="download", queue="bulk", params={}, parent_id=parent.id) for _ in range(3)
        ]
        session.add_all(children)
    response = api.post(f"/api/jobs/{parent.id}/cancel")
    assert response.status_code == 202
    listed = api.get("/api/jobs", params={"parent_id": parent.id}).json()["items"]
    assert sorted(job["status"] for job in listed) == ["cancelled"] * 3
    assert job_of(api, parent.id)["children"] == {"total": 3, "cancelled": 3}


def test_a_failed_job_can_be_retried_and_history_keeps_both(
    api: httpx.Client, worker: Any, media_server: Any
) -> None:
    job = api.post("/api/videos/download", json={"url": media_server.url("/missing/x.mp4")}).json()
    failed = wait_for_job(api, job["id"])
    assert failed["status"] == "failed"
    retry = api.post(f"/api/jobs/{job['id']}/retry")
    assert retry.status_code == 202
    new = retry.json()
    assert new["retry_of"] == job["id"] and new["id"] != job["id"]
    assert new["status"] == "queued" and new["attempts"] == 0
    assert retry.headers["location"] == f"/api/jobs/{new['id']}"
    assert wait_for_job(api, new["id"])["status"] == "failed"
    assert job_of(api, job["id"])["status"] == "failed"
    assert len(api.get("/api/jobs").json()["items"]) == 2


def test_a_cancelled_job_can_be_retried_to_success(api: httpx.Client, media_server: Any) -> None:
    import dramatiq

    from actors import broker

    job = api.post(
        "/api/videos/download", json={"url": media_server.url("/media/later.mp4")}
    ).json()
    api.post(f"/api/jobs/{job['id']}/cancel")
    new = api.post(f"/api/jobs/{job['id']}/retry").json()
    # A second retry while the first is active would be the same work twice.
    assert api.post(f"/api/jobs/{job['id']}/retry").status_code == 409
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        assert wait_for_job(api, new["id"])["status"] == "succeeded"
    finally:
        worker.stop()


def test_only_failed_or_cancelled_jobs_can_be_retried(api: httpx.Client, media_server: Any) -> None:
    job = api.post("/api/videos/download", json={"url": media_server.url("/media/q.mp4")}).json()
    response = api.post(f"/api/jobs/{job['id']}/retry")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_retryable"
