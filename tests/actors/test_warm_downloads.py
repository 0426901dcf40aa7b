"""Downloads in a worker with a warm fork server (WarmMediaProcesses): a download child
killed by SIGKILL, or cancelled, leaves no process and no file behind, and the next
download runs normally from the same server."""

from __future__ import annotations

import os
import signal
from typing import Any

import httpx

from tests.support import alive, child_processes, descendants, wait_for, wait_for_job


def job_of(api: httpx.Client, job_id: str) -> dict[str, Any]:
    return api.get(f"/api/jobs/{job_id}").json()


def download_children() -> list[int]:
    """This process's children in process groups of their own: the running downloads."""
    found = []
    for pid in descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and int(fields[2]) == pid:
            found.append(pid)
    return found


def library_files(settings: Any) -> list[Any]:
    return [path for path in settings.media_root.rglob("*") if path.is_file()]


def test_a_sigkilled_download_child_is_retried_and_files_the_video_once(
    api: httpx.Client, worker: Any, media_server: Any, settings: Any
) -> None:
    before = child_processes(os.getpid())
    job = api.post("/api/videos/download", json={"url": media_server.url("/slow/w-kill.mp4")})
    job_id = job.json()["id"]

    def downloading() -> bool:
        current = job_of(api, job_id)
        return current["status"] == "running" and (current["progress"] or 0) > 0

    wait_for(downloading, timeout=30, what="the download to be under way")
    (child,) = download_children()
    group = {child} | descendants(child)
    os.kill(child, signal.SIGKILL)
    done = wait_for_job(api, job_id, timeout=60)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    assert not any(alive(pid) for pid in group)
    assert child_processes(os.getpid()) == before
    assert len(library_files(settings)) == 1
    assert not (settings.tmp_dir / job_id).exists()


def test_after_a_cancelled_download_the_next_one_runs_normally(
    api: httpx.Client, worker: Any, media_server: Any, settings: Any
) -> None:
    before = child_processes(os.getpid())
    job_id = api.post(
        "/api/videos/download", json={"url": media_server.url("/crawl/w-cancel.mp4")}
    ).json()["id"]

    def downloading() -> bool:
        current = job_of(api, job_id)
        return current["status"] == "running" and current["stage"] == "downloading"

    wait_for(downloading, timeout=30, what="the download to start")
    wait_for(download_children, timeout=10, what="the download's process")
    assert api.post(f"/api/jobs/{job_id}/cancel").status_code == 202
    assert wait_for_job(api, job_id, timeout=10)["status"] == "cancelled"
    assert child_processes(os.getpid()) == before
    assert not (settings.tmp_dir / job_id).exists()
    assert library_files(settings) == []

    next_id = api.post(
        "/api/videos/download", json={"url": media_server.url("/media/w-next.mp4")}
    ).json()["id"]
    done = wait_for_job(api, next_id, timeout=60)
    assert done["status"] == "succeeded" and done["attempts"] == 1, done
    assert child_processes(os.getpid()) == before
    assert len(library_files(settings)) == 1
    assert not (settings.tmp_dir / next_id).exists()
