"""One part of a bulk analysis (``POST /api/videos/bulk/thumbnails`` and
``/bulk/analyze``, the nightly sweeps): about 20 videos' analyses (probe, quality,
thumbnails: the same work as after a download), each in a process of its own. One bad
file fails its item, not its part (:func:`actors.batch_part.run_part`); its parent
batch sums its parts (:func:`db.job_service.roll_up`).

Parts are jobs on the ``media`` queue, so every worker machine takes some; inside a
worker each thread runs one part, and each item's decoding and encoding runs in its own
child process, so a worker uses as many cores as it has threads.
"""

from __future__ import annotations

from typing import Any

from actors.analyze import analyze_in_child
from actors.batch_part import run_part
from actors.broker import broker as _broker  # noqa: F401  (set before any actor)
from actors.job_context import JobContext, current_job
from actors.job_tracking import job_actor
from db.models import JobKind
from db.queues import Queue
from media.errors import MediaError

#: Tries of one video whose process dies or times out: a file that crashes its decoder
#: fails as an item (the poison-pill cap of a part), not the whole part.
ITEM_TRIES = 2


@job_actor(kind=JobKind.thumbnail_chunk, queue_name=Queue.media, time_limit=30 * 60_000)
def make_thumbnails(job_id: str) -> None:
    job = current_job()
    run_part(job, lambda video_id: _analyze_item(job, int(video_id)) is not None, stage="analyzing")


def _analyze_item(job: JobContext, video_id: int) -> dict[str, Any] | None:
    """One video's analysis, tried again once if its process died or timed out."""
    for tries in range(1, ITEM_TRIES + 1):
        try:
            return analyze_in_child(job, video_id)
        except MediaError as exc:
            if not exc.retryable or job.cancelled():
                raise
            if tries == ITEM_TRIES:
                raise MediaError(
                    f"{exc.message}, on each of {tries} tries", code=exc.code, retryable=False
                ) from exc
    return None  # not reached: the last try returns or raises
