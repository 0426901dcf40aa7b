"""Crash recovery with real worker processes (``dramatiq actors``) and a real Redis:
a SIGKILLed worker's download finishes elsewhere exactly once, and a job that kills its
worker every time fails after ``max_attempts``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from tests.support import (
    alive,
    child_processes,
    descendants,
    stop_process_group,
    wait_for,
    wait_for_job,
)

ROOT = Path(__file__).resolve().parents[2]
# The workers' logs, for when a crash test fails.
WORKER_LOG = Path(tempfile.gettempdir()) / "vidfleet-test-workers.log"


@contextmanager
def worker_process(*modules: str, threads: int = 2) -> Iterator[subprocess.Popen[bytes]]:
    """``dramatiq actors`` (one process, two threads) in a process group of its own."""
    log = WORKER_LOG.open("ab")
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
            str(threads),
        ],
        cwd=ROOT,
        start_new_session=True,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        log.close()
        stop_process_group(process)


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
        # The download runs in a process group of its own below the worker process.
        tree = descendants(first.pid)
        assert len(tree) >= 2
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        # Its orphaned download process notices and stops: no second writer later.
        wait_for(lambda: not any(alive(pid) for pid in tree), timeout=5, what="orphans to go")
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

            def pill_taken(attempt: int = attempt) -> bool:
                # The pill kills the worker process: its claim is in, and dramatiq's main
                # process has no live worker left. It then exits, once its log pipes close
                # (a child of the dead worker may hold them a while); it is stopped below.
                if worker.poll() is not None:
                    return True
                taken = api.get(f"/api/jobs/{job.id}").json()["attempts"] == attempt
                return taken and not child_processes(worker.pid)

            wait_for(pill_taken, timeout=60, what=f"attempt {attempt} to kill its worker")
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


def test_sigterm_returns_a_running_download_to_the_queue_and_it_resumes(
    api: Any, media_server: Any, settings: Any
) -> None:
    path = "/crawl/stopped.mp4"
    job = api.post("/api/videos/download", json={"url": media_server.url(path)}).json()
    with worker_process() as first:

        def well_under_way() -> bool:
            current = api.get(f"/api/jobs/{job['id']}").json()
            return current["status"] == "running" and (current["progress"] or 0) > 0.1

        wait_for(well_under_way, timeout=60, what="the download to be under way")
        os.killpg(first.pid, signal.SIGTERM)
        first.wait(30)
    stopped = api.get(f"/api/jobs/{job['id']}").json()
    assert stopped["status"] == "queued", stopped
    assert stopped["attempts"] == 0  # being stopped is not a failed attempt
    assert stopped["error"]["type"] == "shutdown"
    with worker_process():
        done = wait_for_job(api, job["id"], timeout=60)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1
    # The second worker continued the partial file instead of starting over.
    assert any(p == path and start > 0 for p, start in media_server.ranges)
    assert count_videos() == 1
    assert not (settings.tmp_dir / job["id"]).exists()
