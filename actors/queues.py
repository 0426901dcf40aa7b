"""The queues of DESIGN §3 and how an API priority maps onto them."""

from __future__ import annotations

import enum


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
