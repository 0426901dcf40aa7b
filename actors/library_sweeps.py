"""The library's nightly sweeps, on ``maintenance``; each hands what it finds to one
batch of its own (:func:`db.sweeps.submit_sweep`: the analysis and thumbnails of about
20 videos per part, on the ``media`` queue, as ``POST /api/videos/bulk/thumbnails``):

- ``analyze_unanalysed_videos``: every video the analysis has not run on (its job was
  lost, failed, or the video came before the analysis existed);
- ``sweep_missing_thumbnails``: every analysed video with a picture whose thumbnails
  were not made, or whose files are gone.

Nothing found, no batch; while a sweep's last batch still runs, it submits none. A run
records the batch it created (:func:`actors.schedule_runs.created_job`).
"""

from __future__ import annotations

import logging

from actors import stores
from actors.periodic import periodic_actor
from actors.schedule_runs import created_job
from db import sweeps
from db.settings import get_settings
from media.thumbnails import thumbnails_missing

logger = logging.getLogger(__name__)


@periodic_actor()
def analyze_unanalysed_videos() -> None:
    schedule = "analyze_unanalysed_videos"
    if _still_running(schedule):
        return
    with stores.engine().connect() as connection:
        video_ids = sweeps.unanalysed_videos(connection)
    _submit(schedule, "unanalysed", video_ids)


@periodic_actor()
def sweep_missing_thumbnails() -> None:
    schedule = "sweep_missing_thumbnails"
    if _still_running(schedule):
        return
    with stores.engine().connect() as connection:
        analysed = sweeps.analysed_video_thumbnails(connection)
    folder = get_settings().thumbnails_dir
    lacking = [
        video_id
        for video_id, widths in analysed
        if not widths or thumbnails_missing(folder / str(video_id), widths)
    ]
    _submit(schedule, "missing_thumbnails", lacking[: sweeps.MAX_VIDEOS_PER_RUN])


def _still_running(schedule: str) -> bool:
    with stores.engine().connect() as connection:
        running = sweeps.running_batch(connection, schedule)
    if running is not None:
        logger.info("%s: its batch %s is still running: none submitted", schedule, running)
    return running is not None


def _submit(schedule: str, selection: str, video_ids: list[int]) -> None:
    with stores.engine().connect() as connection:
        parent, outbox = sweeps.submit_sweep(
            connection,
            schedule=schedule,
            selection=selection,
            video_ids=video_ids,
            max_attempts=get_settings().max_attempts,
        )
    stores.courier().deliver(outbox)
    if parent is None:
        logger.info("%s: no batch (%d videos due)", schedule, len(video_ids))
        return
    created_job(parent["id"])
    logger.info("%s: batch %s for %d videos", schedule, parent["id"], len(video_ids))
