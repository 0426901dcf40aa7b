"""The analysis of a video: its full probe, its quality and its thumbnails.

Every download that files a video queues an ``analyze`` job of its own on the ``media``
queue (:func:`analyze_later`; not a child of the download, and its failure never
touches the download). The work is :func:`media.analysis.analyze`, run in a process of
its own (:func:`media.isolation.run_isolated`, memory-capped like a download): it
decodes files from the internet, and a decoder that crashes takes only that process
down (the job is retried; one that crashes every time ends failed after its attempts).
The probe is reused while the file's size and mtime are those it was taken at.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from actors import stores
from actors.broker import broker as _broker  # noqa: F401  (set before any actor)
from actors.job_context import JobContext, current_job
from actors.job_tracking import job_actor
from actors.sidecars import write_video_sidecars
from db import job_service
from db.models import Job, JobKind, Video, utcnow
from db.queues import Queue
from db.settings import get_settings
from media.analysis import analyze
from media.errors import MediaError
from media.ffmpeg import ffmpeg_path
from media.isolation import run_isolated

logger = logging.getLogger(__name__)
settings = get_settings()

ANALYZE_TIME_LIMIT_MS = 10 * 60_000


@job_actor(
    kind=JobKind.analyze,
    queue_name=Queue.media,
    time_limit=ANALYZE_TIME_LIMIT_MS,
    notify_shutdown=True,
)
def analyze_video(job_id: str) -> None:
    job = current_job()
    video_id = int(job.params["video_id"])
    job.report(stage="analyzing", progress=0.1)
    found = analyze_in_child(job, video_id)
    if found is None:
        raise MediaError(
            f"video {video_id} is no longer in the library", code="not_found", retryable=False
        )
    quality = found["quality"]
    job.result = {
        "video_id": video_id,
        "quality": quality.get("label"),
        "score": quality.get("score"),
        "thumbnails": found["thumbnails"]["widths"],
    }


def analyze_in_child(job: JobContext, video_id: int) -> dict[str, Any] | None:
    """Analyse one library video in a child process and store what was found on its
    row; None when the video is no longer in the library.

    Raises:
      MediaError: its file is gone or is not media (not retryable), or the child died
        or timed out (retryable).
    """
    with job.sessions() as session:
        video = session.get(Video, video_id)
        if video is None:
            return None
        relative, probe = video.path, video.probe
        probed_at = (video.probed_size, video.probed_mtime_ns)
    path = _library_file(relative)
    stat = path.stat()
    found: dict[str, Any] = run_isolated(
        analyze,
        kwargs={
            "path": str(path),
            "thumbnails_dir": str(settings.thumbnails_dir / str(video_id)),
            "ffmpeg_location": ffmpeg_path(),
            "previous_probe": probe if probed_at == (stat.st_size, stat.st_mtime_ns) else None,
        },
        should_cancel=job.cancelled,
        memory_limit=settings.download_memory_limit,
    )
    job.raise_if_cancelled()
    quality = found["quality"]
    with job.sessions() as session:
        stored = session.execute(
            update(Video)
            .where(Video.id == video_id)
            .values(
                probe=found["probe"],
                probed_size=stat.st_size,
                probed_mtime_ns=stat.st_mtime_ns,
                quality=quality,
                quality_label=quality.get("label"),
                quality_score=quality.get("score"),
                better_version=quality.get("better_version"),
                thumbnail_widths=found["thumbnails"]["widths"] or None,
                analyzed_at=utcnow(),
            )
        )
        session.commit()
    if not stored.rowcount:
        # Deleted while it was analysed: the delete may have come before the
        # thumbnails were written, and a later video could get this id.
        shutil.rmtree(settings.thumbnails_dir / str(video_id), ignore_errors=True)
        return None
    write_video_sidecars(video_id)  # its -thumb.jpg, in the kodi and jellyfin layouts
    return found


def _library_file(relative: str) -> Path:
    """The file a row names; never a path outside the library."""
    root = settings.media_root.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise MediaError(
            "the video's file is not in the library any more", code="file_missing", retryable=False
        )
    return path


def analyze_later(video_id: int, *, after_job: str) -> None:
    """Queue the analysis of a video the job ``after_job`` just filed, for the same
    owner. Never raises: the download is done whatever happens here (a job that was
    committed but not sent is sent by the lifeline; one that could not be committed is
    logged and can be asked for again)."""
    try:
        with stores.engine().connect() as connection:
            owner = connection.scalar(select(Job.owner).where(Job.id == after_job))
            submission, outbox = job_service.submit(
                connection,
                kind=JobKind.analyze,
                queue=Queue.media,
                params={"video_id": video_id},
                owner=owner or "system",
                max_attempts=settings.max_attempts,
                # A follow-up of work already admitted: the caps do not apply.
                max_active=sys.maxsize,
                max_active_of_owner=sys.maxsize,
            )
        stores.courier().deliver(outbox)
    except Exception:
        logger.warning("could not queue the analysis of video %s", video_id, exc_info=True)
