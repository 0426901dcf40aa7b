"""The queues of DESIGN §3, how an API priority maps onto them, and the message that
sends a job to its actor.

Both sides need these: the workers consume the queues and declare the actors, the web
sends a job's message by the actor's *name*, so that it never imports an actor module
(and with it yt-dlp, PyAV and periodiq). ``tests/actors`` checks that every job actor
the workers declare is the one :data:`ACTOR_OF_KIND` names.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import dramatiq


class Queue(enum.StrEnum):
    interactive = "interactive"  # one item a person is waiting for
    downloads = "downloads"  # yt-dlp downloads from bulk/playlist work
    media = "media"  # probes, thumbnails, image chunks
    bulk = "bulk"  # parents of bulk operations, enrichment, deletes
    maintenance = "maintenance"  # periodic work


class Priority(enum.StrEnum):
    high = "high"
    normal = "normal"
    low = "low"


DOWNLOAD_QUEUES = {
    Priority.high: Queue.interactive,
    Priority.normal: Queue.downloads,
    Priority.low: Queue.bulk,
}

#: Job kind -> the name of the actor that runs jobs of that kind.
ACTOR_OF_KIND: dict[str, str] = {
    "download": "download_video",
    "analyze": "analyze_video",
    "artist_image": "make_artist_image",
    "thumbnail_chunk": "make_thumbnails",
    "delete_chunk": "delete_videos",
    "enrich_chunk": "enrich_artists",
    "playlist_sync": "sync_playlist",
    "relayout": "relayout_library",
    "relayout_chunk": "move_videos",
}


def job_message(
    kind: str, job_id: str, queue: str, *, actor_of_kind: Mapping[str, str] = ACTOR_OF_KIND
) -> dramatiq.Message:
    """The message that runs job ``job_id`` of ``kind`` on ``queue``, as the actor's own
    ``message(job_id)`` would build it, copied onto that queue.

    Raises:
      KeyError: no actor runs jobs of ``kind``.
    """
    return dramatiq.Message(
        queue_name=queue, actor_name=actor_of_kind[kind], args=(job_id,), kwargs={}, options={}
    )
