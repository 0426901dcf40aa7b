"""What the scheduled sweeps select, and the batch a library sweep submits.

- The temp-dir janitor (:mod:`actors.temp_janitor`) asks which of the jobs named by
  the work folders it found are still active (:func:`active_job_ids`).
- The nightly analysis and the missing-thumbnail sweep (:mod:`actors.library_sweeps`)
  select videos (:func:`unanalysed_videos`, :func:`analysed_video_thumbnails`) and hand
  them to one batch of their own (:func:`submit_sweep`), as ``POST
  /api/videos/bulk/thumbnails`` would: a ``thumbnails`` parent whose
  ``thumbnail_chunk`` parts analyse the videos and make their thumbnails. A schedule
  never has two batches active: each batch holds the dedupe key ``schedule:<name>``
  while it runs, so a sweep that finds its last batch still running submits nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, select, text

from db import job_service
from db.job_service import AlreadyActive
from db.models import ACTIVE, Job, JobKind, Video
from db.outbox import Outbox
from db.queues import Queue

#: The most videos one sweep hands to its batch (as one bulk request may name); the
#: rest wait for the next run.
MAX_VIDEOS_PER_RUN = 10_000
#: Ids per ``IN (...)`` list (SQLite's bound-parameter limit is far above).
IDS_PER_QUERY = 500


def active_job_ids(connection: Connection, ids: Iterable[str]) -> set[str]:
    """Which of ``ids`` name a queued or running job."""
    wanted = list(ids)
    active: set[str] = set()
    for start in range(0, len(wanted), IDS_PER_QUERY):
        chunk = wanted[start : start + IDS_PER_QUERY]
        active.update(
            connection.scalars(select(Job.id).where(Job.id.in_(chunk), Job.status.in_(ACTIVE)))
        )
    return active


def unanalysed_videos(connection: Connection, limit: int = MAX_VIDEOS_PER_RUN) -> list[int]:
    """Videos the analysis has not run on (yet, or successfully), oldest first."""
    query = select(Video.id).where(Video.analyzed_at.is_(None)).order_by(Video.id).limit(limit)
    return list(connection.scalars(query))


def analysed_video_thumbnails(connection: Connection) -> list[tuple[int, list[int] | None]]:
    """Every analysed video that has a picture (a video stream), with the thumbnail
    widths its analysis recorded (None or empty: it made none), oldest first. Which of
    them lack a thumbnail file, the caller sees on disk."""
    query = (
        select(Video.id, Video.thumbnail_widths)
        .where(Video.analyzed_at.is_not(None), Video.vcodec.is_not(None))
        .order_by(Video.id)
    )
    return [(row.id, row.thumbnail_widths) for row in connection.execute(query)]


def dedupe_key(schedule: str) -> str:
    """The key an active batch of ``schedule`` holds."""
    return f"schedule:{schedule}"


def running_batch(connection: Connection, schedule: str) -> str | None:
    """The id of the batch ``schedule`` submitted that is still running, if any."""
    return connection.scalar(
        select(Job.id).where(
            Job.dedupe_key == dedupe_key(schedule),
            # Spelled as the partial unique index's WHERE, so SQLite uses it.
            text("jobs.status IN ('queued', 'running')"),
        )
    )


def submit_sweep(
    connection: Connection,
    *,
    schedule: str,
    selection: str,
    video_ids: list[int],
    max_attempts: int,
) -> tuple[dict[str, Any] | None, Outbox]:
    """One batch of ``schedule`` analysing ``video_ids`` (owner None: the system's);
    None, and nothing to deliver, when there is no video or the schedule's previous
    batch is still running."""
    if not video_ids:
        return None, Outbox()
    params = {"selection": selection, "items": len(video_ids), "schedule": schedule}
    children: list[tuple[str, str, dict[str, Any]]] = [
        (JobKind.thumbnail_chunk, Queue.media, {"items": part})
        for part in job_service.parts(video_ids)
    ]
    try:
        return job_service.submit_batch(
            connection,
            # The nightly analysis is a quality sweep; the other remakes thumbnails.
            kind=JobKind.analyses if selection == "unanalysed" else JobKind.thumbnails,
            queue=Queue.maintenance,
            params=params,
            owner=None,
            max_attempts=max_attempts,
            children=children,
            dedupe_key=dedupe_key(schedule),
        )
    except AlreadyActive:
        return None, Outbox()
