"""Crash recovery with real worker processes (``dramatiq actors``) and a real Redis:
a SIGKILLed worker's download finishes elsewhere exactly once, and a job that kills its
worker every time fails after ``max_attempts``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from tests.support import wait_for, wait_for_job

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def worker_process(*modules: str) -> Iterator[subprocess.Popen[bytes]]:
    """``dramatiq actors`` (one process, two threads) in a process group of its own."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dramatiq",
            "actors",
            *modules,
            "--processes",
            "1",
            "--threads",
            "2",
        ],
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def count_videos() -> int:
    from actors import stores
    from db.models import Video

    with stores.sessions()() as session:
        return int(session.scalar(select(func.count()).select_from(Video)) or 0)


def test_a_download_whose_worker_is_sigkilled_finishes_on_another_worker_exactly_once(
    api: Any, media_server: Any, settings: Any
) -> None:
    job = api.post(
        "/api/videos/download", json={"url": media_server.url("/crawl/killed.mp4")}
    ).json()
    with worker_process() as first:

        def downloading() -> bool:
            current = api.get(f"/api/jobs/{job['id']}").json()
            return current["status"] == "running" and (current["progress"] or 0) > 0

        wait_for(downloading, timeout=60, what="the first worker to be downloading")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    with worker_process():
        done = wait_for_job(api, job["id"], timeout=60)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    assert count_videos() == 1
    files = [p for p in settings.media_root.rglob("*") if p.is_file()]
    assert len(files) == 1
    assert not (settings.tmp_dir / job["id"]).exists()


def test_a_job_that_kills_its_worker_every_time_fails_after_max_attempts(
    api: Any, settings: Any
) -> None:
    from actors import stores
    from actors.enqueue import enqueue_job
    from actors.recovery import recover_abandoned
    from db.models import Job
    from tests.poison import swallow_poison

    with stores.sessions().begin() as session:
        job = Job(kind="poison", queue="bulk", params={}, max_attempts=settings.max_attempts)
        session.add(job)
    enqueue_job(swallow_poison, job.id, "bulk")
    for attempt in range(1, settings.max_attempts + 1):
        with worker_process("tests.poison") as worker:
            worker.wait(60)  # the pill kills the worker process; dramatiq then exits
        current = api.get(f"/api/jobs/{job.id}").json()
        assert current["status"] == "running" and current["attempts"] == attempt
        # The scheduler's lifeline, run here: once the heartbeat expired, the job goes
        # back to the queue, or fails when its attempts are used up.
        wait_for(lambda: recover_abandoned() == 1, timeout=30, what="the heartbeat to expire")
    final = api.get(f"/api/jobs/{job.id}").json()
    assert final["status"] == "failed"
    assert final["attempts"] == settings.max_attempts
    assert final["error"]["type"] == "worker_lost"
    assert "died" in final["error"]["message"]
