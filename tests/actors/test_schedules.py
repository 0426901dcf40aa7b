"""The schedules: every periodic actor declared from db.schedules, the temp-dir janitor
on real folders, the nightly sweeps' batches, and each run recorded as its schedule's
last run by a real worker, as ``GET /api/system/schedules`` shows it after the real
scheduler sent it."""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pendulum
import periodiq
import pytest
from sqlalchemy import insert, select

from db.models import Job, JobStatus, Video, utcnow
from db.queues import Queue
from db.schedules import SCHEDULES
from tests.conftest import VIEWER_TOKEN
from tests.support import api_client, make_video, wait_for, wait_for_job

HOURS = 3600


def add_job(status: JobStatus) -> str:
    from actors import stores

    job_id = str(uuid.uuid4())
    with stores.engine().begin() as connection:
        connection.execute(
            insert(Job).values(
                id=job_id, kind="download", queue=Queue.interactive, params={},
                status=status, attempts=1, max_attempts=3,
            )
        )  # fmt: skip
    return job_id


def work_folder(settings: Any, name: str, *, age_s: float, fresh_file: bool = False) -> Path:
    """A download's work folder with a partial file, unchanged for ``age_s`` seconds (but
    for one file deep inside, written just now, with ``fresh_file``)."""
    folder = settings.tmp_dir / name
    (folder / "frag").mkdir(parents=True)
    then = time.time() - age_s
    for path in (folder / "video.mp4.part", folder / "frag" / "Frag1"):
        path.write_bytes(b"x" * 100)
        os.utime(path, (then, then))
    if fresh_file:
        (folder / "frag" / "Frag2").write_bytes(b"y")
    for path in (folder / "frag", folder):
        os.utime(path, (then, then))
    return folder


def add_video(settings: Any, n: int, *, clip: Path | None = None, **fields: Any) -> int:
    """A library row (and its file, a copy of ``clip``)."""
    from actors import stores

    relative = f"Sweeps/clip-{n}.mp4"
    path = settings.media_root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if clip is not None:
        shutil.copyfile(clip, path)
    with stores.sessions().begin() as session:
        video = Video(
            title=f"clip {n}", source_url=f"https://example.com/{n}", extractor="test",
            extractor_id=str(n), path=relative, size=1, **{"vcodec": "h264", **fields},
        )  # fmt: skip
        session.add(video)
        session.flush()
        return int(video.id)


def thumbnail_files(settings: Any, video_id: int, widths: list[int]) -> Path:
    folder = settings.thumbnails_dir / str(video_id)
    folder.mkdir(parents=True, exist_ok=True)
    for width in widths:
        for ext in ("webp", "jpg"):
            (folder / f"{width}.{ext}").write_bytes(b"picture")
    return folder


def batches() -> list[dict[str, Any]]:
    """Every top-level job (the sweeps' batch parents), oldest first."""
    from actors import stores

    with stores.engine().connect() as connection:
        rows = connection.execute(
            select(Job.id, Job.kind, Job.status, Job.params, Job.owner)
            .where(Job.parent_id.is_(None))
            .order_by(Job.created_at)
        )
        return [dict(row._mapping) for row in rows]


def parts_of(parent_id: str) -> list[list[int]]:
    """The videos of each part of a batch, in the order of their first video."""
    from actors import stores

    with stores.engine().connect() as connection:
        params = connection.scalars(select(Job.params).where(Job.parent_id == parent_id))
        return sorted((p["items"] for p in params), key=lambda ids: ids[0])


def test_every_periodic_actor_is_declared_by_its_schedule() -> None:
    import dramatiq

    import actors  # noqa: F401  (every actor)

    declared = {
        actor.actor_name: (str(actor.options["periodic"]), actor.queue_name)
        for actor in dramatiq.get_broker().actors.values()
        if "periodic" in actor.options
    }
    assert declared == {schedule.name: (schedule.cron, schedule.queue) for schedule in SCHEDULES}
    assert all(queue == Queue.maintenance for _, queue in declared.values())


def test_the_janitor_removes_dead_downloads_folders_and_keeps_active_and_recent_ones(
    settings: Any,
) -> None:
    from actors import sweep_temp_downloads

    failed = work_folder(settings, add_job(JobStatus.failed), age_s=8 * HOURS)
    pruned = work_folder(settings, str(uuid.uuid4()), age_s=8 * HOURS)  # no row any more
    running = work_folder(settings, add_job(JobStatus.running), age_s=30 * HOURS)
    retrying = work_folder(settings, add_job(JobStatus.queued), age_s=30 * HOURS)
    recent = work_folder(settings, add_job(JobStatus.failed), age_s=1 * HOURS)
    still_written = work_folder(
        settings, add_job(JobStatus.cancelled), age_s=8 * HOURS, fresh_file=True
    )
    not_a_download = work_folder(settings, "keep-me", age_s=30 * HOURS)
    outside = settings.data_dir / "outside.txt"
    outside.write_text("not in the work folder")
    link = settings.tmp_dir / str(uuid.uuid4())  # a stale name that is a link out
    link.symlink_to(outside)
    os.utime(link, (time.time() - 8 * HOURS,) * 2, follow_symlinks=False)

    sweep_temp_downloads()

    assert not failed.exists() and not pruned.exists() and not link.is_symlink()
    assert outside.read_text() == "not in the work folder"
    for kept in (running, retrying, recent, still_written, not_a_download):
        assert (kept / "video.mp4.part").stat().st_size == 100, kept
    sweep_temp_downloads()  # nothing left to do is no error
    shutil.rmtree(settings.tmp_dir)
    sweep_temp_downloads()  # nor is no work folder at all


def test_the_nightly_analysis_sends_unanalysed_videos_in_one_batch_and_no_second(
    settings: Any, redis_client: Any
) -> None:
    from actors import analyze_unanalysed_videos

    analyze_unanalysed_videos()
    assert batches() == []  # nothing due: no batch

    analysed = add_video(settings, 0, analyzed_at=utcnow(), thumbnail_widths=[160])
    due = [add_video(settings, n) for n in range(1, 24)]
    analyze_unanalysed_videos()
    (batch,) = batches()
    assert batch["kind"] == "analyses" and batch["status"] == JobStatus.running
    assert batch["owner"] is None
    assert batch["params"] == {
        "selection": "unanalysed", "items": 23, "schedule": "analyze_unanalysed_videos",
    }  # fmt: skip
    assert parts_of(batch["id"]) == [due[:20], due[20:]]
    assert analysed not in sum(parts_of(batch["id"]), [])
    assert redis_client.llen("dramatiq:media") == 2  # the parts were sent

    analyze_unanalysed_videos()  # the batch still runs: none more
    assert len(batches()) == 1

    from actors import stores
    from db import job_service

    with stores.engine().connect() as connection:
        job_service.cancel(connection, batch["id"])
    analyze_unanalysed_videos()  # ended: the next night's batch takes what is still due
    assert len(batches()) == 2 and batches()[1]["status"] == JobStatus.running


def test_the_thumbnail_sweep_sends_videos_whose_thumbnails_are_missing_and_no_second(
    settings: Any,
) -> None:
    from actors import sweep_missing_thumbnails

    now = utcnow()
    whole = add_video(settings, 1, analyzed_at=now, thumbnail_widths=[160, 320])
    thumbnail_files(settings, whole, [160, 320])
    add_video(settings, 2, analyzed_at=now, vcodec=None)  # audio only: no thumbnails
    add_video(settings, 3)  # not analysed: the nightly analysis's
    sweep_missing_thumbnails()
    assert batches() == []

    lost_one = add_video(settings, 4, analyzed_at=now, thumbnail_widths=[160, 320])
    (thumbnail_files(settings, lost_one, [160, 320]) / "320.webp").unlink()
    lost_all = add_video(settings, 5, analyzed_at=now, thumbnail_widths=[160])
    never_made = add_video(settings, 6, analyzed_at=now)
    sweep_missing_thumbnails()
    (batch,) = batches()
    assert batch["params"]["selection"] == "missing_thumbnails"
    assert parts_of(batch["id"]) == [[lost_one, lost_all, never_made]]

    sweep_missing_thumbnails()  # the batch still runs
    assert len(batches()) == 1


@pytest.fixture
def scheduler(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A factory of the scheduler process's LeasedScheduler, whose ``schedule()`` (one
    tick: send what is due, then compute the next wake-up) runs here as in
    ``python -m actors.scheduler``, but sets no SIGALRM (pytest-timeout's) and does not
    sleep towards the next minute."""
    from actors import stores
    from actors.scheduler import LeasedScheduler, SchedulerLease

    monkeypatch.setattr(periodiq, "alarm", lambda seconds: None)
    monkeypatch.setattr(periodiq, "signal", lambda signum, handler: None)
    monkeypatch.setattr(periodiq, "sleep", lambda seconds: None)

    def make(actors: list[Any]) -> LeasedScheduler:
        return LeasedScheduler(actors, lease=SchedulerLease(stores.redis_client()))

    return make


def schedules_of(api: httpx.Client) -> dict[str, dict[str, Any]]:
    response = api.get("/api/system/schedules")
    assert response.status_code == 200, response.text
    return {item["name"]: item for item in response.json()["items"]}


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.removesuffix("Z")).replace(tzinfo=UTC)


def test_the_schedules_route_shows_the_runs_the_scheduler_sent_and_the_next_ones(
    api: httpx.Client,
    server: Any,
    worker: Any,
    settings: Any,
    scheduler: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from actors import analyze_unanalysed_videos, lifeline_sweep

    clip = make_video(tmp_path / "clip.mp4", seconds=1, size="160x90", bitrate="200k")
    unanalysed = add_video(settings, 1, clip=clip)
    before = schedules_of(api)
    assert set(before) == {schedule.name for schedule in SCHEDULES}
    assert all(item["last_run"] is None for item in before.values())

    # The lifeline's cron is every minute; the nightly analysis gets one as short for
    # this tick, so the scheduler sends both now.
    monkeypatch.setitem(analyze_unanalysed_videos.options, "periodic", periodiq.cron("* * * * *"))
    started = datetime.now(UTC)
    scheduler([lifeline_sweep, analyze_unanalysed_videos]).schedule()

    def both_ran() -> dict[str, dict[str, Any]] | None:
        items = schedules_of(api)
        names = ("lifeline_sweep", "analyze_unanalysed_videos")
        return items if all(items[name]["last_run"] for name in names) else None

    items = wait_for(both_ran, timeout=30, what="both runs to be recorded")
    lifeline, nightly = items["lifeline_sweep"], items["analyze_unanalysed_videos"]
    assert (lifeline["cron"], lifeline["queue"]) == ("* * * * *", "maintenance")
    assert nightly["cron"] == "23 3 * * *"  # as declared: the test's cron was for one tick
    for item in (lifeline, nightly):
        run = item["last_run"]
        assert run["outcome"] == "ok" and run["error"] is None, run
        assert run["message_id"] and run["started_at"] <= run["finished_at"]
        assert started.replace(microsecond=0) <= parse_time(run["started_at"])
        assert parse_time(item["next_run"]) > datetime.now(UTC)
    assert lifeline["last_run"]["job_id"] is None
    assert parse_time(lifeline["next_run"]) <= started.replace(second=0) + timedelta(minutes=2)
    batch = wait_for_job(api, nightly["last_run"]["job_id"])
    assert batch["kind"] == "analyses" and batch["status"] == "succeeded", batch
    assert api.get(f"/api/videos/{unanalysed}").json()["analyzed_at"]

    # A viewer reads it too; no credential, no schedules.
    with api_client(server.url, VIEWER_TOKEN) as viewer:
        assert viewer.get("/api/system/schedules").status_code == 200
    with api_client(server.url, None) as anonymous:
        assert anonymous.get("/api/system/schedules").status_code == 401


def test_a_failed_and_a_skipped_run_are_recorded_and_a_lost_record_fails_no_run(
    settings: Any,
    worker: Any,
    redis_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import actors.schedule_runs
    import actors.temp_janitor
    from actors import broker, stores, sweep_temp_downloads
    from db.schedule_runs import last_runs

    def runs() -> dict[str, Any]:
        with stores.engine().connect() as connection:
            return last_runs(connection)

    def run_once() -> None:
        sweep_temp_downloads.send_with_options(scheduled_at=str(pendulum.now()))
        broker.join(Queue.maintenance, timeout=30_000)
        worker.join()

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError("the work folder is not ours")

    monkeypatch.setattr(actors.temp_janitor, "stale_work_folders", refuse)
    run_once()
    failed = runs()["sweep_temp_downloads"]
    assert failed.outcome == "failed"
    assert failed.error == {"type": "PermissionError", "message": "the work folder is not ours"}
    monkeypatch.undo()

    # Sent for a tick long gone (the workers were down): periodiq drops it, unrun.
    stale = work_folder(settings, add_job(JobStatus.failed), age_s=8 * HOURS)
    sweep_temp_downloads.send_with_options(scheduled_at=str(pendulum.now().subtract(minutes=5)))
    broker.join(Queue.maintenance, timeout=30_000)
    worker.join()
    skipped = runs()["sweep_temp_downloads"]
    assert skipped.outcome == "skipped" and skipped.message_id != failed.message_id
    assert stale.exists()

    # The database refuses the record: the run itself still succeeds (its message is
    # not dead-lettered), and one warning says the record was lost.
    def no_database(*args: Any, **kwargs: Any) -> None:
        raise PermissionError("attempt to write a readonly database")

    monkeypatch.setattr(actors.schedule_runs, "record_run", no_database)
    caplog.set_level(logging.WARNING, logger="actors.schedule_runs")
    dead_letters = redis_client.zcard("dramatiq:maintenance.XQ")  # the failed run's
    run_once()
    assert not stale.exists()  # it ran
    assert redis_client.zcard("dramatiq:maintenance.XQ") == dead_letters
    assert runs()["sweep_temp_downloads"].outcome == "skipped"  # unchanged
    (warning,) = [r for r in caplog.records if r.name == "actors.schedule_runs"]
    assert "sweep_temp_downloads" in warning.getMessage()
    assert "readonly" in warning.getMessage()
