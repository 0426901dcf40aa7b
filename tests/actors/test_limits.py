"""Limits and politeness: a fleet-wide cap on concurrent downloads, a per-site limit,
and no second download of a video already in the library."""

from __future__ import annotations

import dataclasses
from typing import Any

import dramatiq
import pytest

from tests.support import wait_for, wait_for_job


@pytest.fixture
def wide_worker() -> Any:
    from actors import broker

    worker = dramatiq.Worker(broker, worker_threads=4, worker_timeout=100)
    worker.start()
    yield worker
    worker.stop()


def test_no_more_downloads_run_at_once_than_the_cap(
    api: Any, wide_worker: Any, media_server: Any, redis_client: Any, monkeypatch: Any
) -> None:
    from actors.limits import download_slots
    from db import live

    monkeypatch.setattr(download_slots(), "limit", 1)
    job_ids = [
        api.post(
            "/api/videos/download", json={"url": media_server.url(f"/slow/cap-{n}.mp4")}
        ).json()["id"]
        for n in range(3)
    ]
    most = 0
    waited = False

    def all_done() -> bool:
        nonlocal most, waited
        most = max(most, redis_client.zcard(live.DOWNLOAD_SLOTS_KEY))
        jobs = [api.get(f"/api/jobs/{job_id}").json() for job_id in job_ids]
        waited = waited or any(job["stage"] == "waiting" for job in jobs)
        return all(job["status"] == "succeeded" for job in jobs)

    wait_for(all_done, timeout=120, interval=0.1, what="all capped downloads to finish")
    assert most == 1
    assert waited, "no download ever waited for a slot"
    # Waiting for a slot is not a failed attempt.
    assert [api.get(f"/api/jobs/{job_id}").json()["attempts"] for job_id in job_ids] == [1, 1, 1]
    assert redis_client.zcard(live.DOWNLOAD_SLOTS_KEY) == 0


def test_a_site_over_its_per_minute_limit_waits(
    api: Any, worker: Any, media_server: Any, settings: Any, monkeypatch: Any
) -> None:
    import actors.limits

    limited = dataclasses.replace(settings, site_downloads_per_minute=1)
    monkeypatch.setattr(actors.limits, "get_settings", lambda: limited)
    first = api.post("/api/videos/download", json={"url": media_server.url("/media/s1.mp4")}).json()
    assert wait_for_job(api, first["id"])["status"] == "succeeded"
    second = api.post(
        "/api/videos/download", json={"url": media_server.url("/media/s2.mp4")}
    ).json()

    def waiting() -> dict[str, Any] | None:
        job = api.get(f"/api/jobs/{second['id']}").json()
        return job if job["stage"] == "waiting" else None

    job = wait_for(waiting, timeout=30, what="the second download to wait")
    assert job["status"] == "queued" and "127.0.0.1" in job["message"]
    assert job["attempts"] == 0
    assert media_server.hits.get("/media/s2.mp4", 0) == 0
    api.post(f"/api/jobs/{second['id']}/cancel")


def test_the_same_video_under_another_url_is_not_downloaded_twice(
    api: Any, worker: Any, media_server: Any, settings: Any
) -> None:
    first = api.post(
        "/api/videos/download", json={"url": media_server.url("/media/same.mp4")}
    ).json()
    video_id = wait_for_job(api, first["id"])["result"]["video_id"]
    again = api.post(
        "/api/videos/download", json={"url": media_server.url("/media/same.mp4?ref=elsewhere")}
    )
    assert again.status_code == 202  # another URL: the library can't tell before extraction
    done = wait_for_job(api, again.json()["id"])
    assert done["status"] == "succeeded"
    assert done["result"] == {"video_id": video_id, "already_in_library": True}
    assert len(api.get("/api/videos").json()["items"]) == 1
    assert len([p for p in settings.media_root.rglob("*") if p.is_file()]) == 1
