"""A worker fleet's media work runs at VIDFLEET_MEDIA_NICE: the worker processes, the
session they share (its autogroup) and a download's process in a session of its own."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import httpx

from media.priority import niceness
from tests.media.test_priority import autogroup_nice
from tests.support import descendants, procfile_workers, wait_for, wait_for_job


def session_leaders(root: int) -> list[int]:
    """The processes below ``root`` that lead a session of their own."""
    leaders = []
    for pid in descendants(root):
        with contextlib.suppress(OSError):  # gone meanwhile
            if os.getsid(pid) == pid:
                leaders.append(pid)
    return leaders


def test_a_worker_and_its_download_yield_the_cpu(
    api: httpx.Client, media_server: Any, settings: Any, tmp_path: Path
) -> None:
    assert settings.media_nice == 10  # tests/conftest.py
    job = api.post("/api/videos/download", json={"url": media_server.url("/crawl/nice.mp4")})
    assert job.status_code == 202
    job_id = job.json()["id"]
    with procfile_workers(
        tmp_path / "workers.log", VIDFLEET_WORKER_PROCESSES="1", VIDFLEET_WORKER_THREADS="1"
    ) as fleet:
        wait_for(
            lambda: api.get(f"/api/jobs/{job_id}").json()["status"] == "running",
            what="the download to start",
        )
        (download,) = wait_for(lambda: session_leaders(fleet.pid), what="the download's session")
        assert niceness(download) == 10
        assert autogroup_nice(download) in (10, None)  # None: a kernel without autogroups
        # The worker process (not Dramatiq's main process, which runs none of our code)
        # and the session the fleet started in.
        workers = [
            pid
            for pid in descendants(fleet.pid)
            if b"dramatiq" in Path(f"/proc/{pid}/cmdline").read_bytes() and niceness(pid) == 10
        ]
        assert workers
        assert autogroup_nice(fleet.pid) in (10, None)
        api.post(f"/api/jobs/{job_id}/cancel")
        assert wait_for_job(api, job_id)["status"] == "cancelled"
