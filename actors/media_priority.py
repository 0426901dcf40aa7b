"""Each worker process runs its media work at ``VIDFLEET_MEDIA_NICE`` (media/priority.py).

A worker's downloads, FFmpeg runs and picture work can take every core; lowered, they
take what the web leaves, and the web still answers at once. The downloads and FFmpeg
processes it starts inherit the niceness and carry it into their own sessions.
"""

from __future__ import annotations

import dramatiq
from dramatiq import Middleware

from db.settings import get_settings
from media.priority import yield_cpu


class MediaPriority(Middleware):
    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        yield_cpu(0, get_settings().media_nice)
