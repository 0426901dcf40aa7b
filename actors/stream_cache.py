"""The stream cache's upkeep, on the ``maintenance`` queue (periodiq ticks):

- ``sweep_stream_cache`` (every 10 minutes) deletes the entries of videos no longer in
  the library and abandoned temporary files, then the least recently used entries
  until the cache fits ``VIDFLEET_STREAM_CACHE_MAX_BYTES``;
- ``warm_stream_cache`` (hourly) transcodes, ahead of the next request, the most
  watched video/quality/format combinations (counted by the web in ``vf:plays``) that
  the cache lacks, each under one of the fleet's transcode slots.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import cast

from sqlalchemy import select

from actors import stores
from actors.periodic import periodic_actor
from db import live
from db.models import Video
from db.settings import get_settings
from db.slots import Slots
from media.ffmpeg import ffmpeg_path, run_to_end
from media.mediainfo import MediaInfo
from media.stream_cache import partial_name, source_key, stream_entry, sweep
from media.transcode import QUALITIES, StreamPlan, StreamRequest, ffmpeg_argv, plan_stream

logger = logging.getLogger(__name__)

WARM_TIMEOUT_S = 1800
WARM_AT_MOST = 3  # transcodes per run


@periodic_actor()
def sweep_stream_cache() -> None:
    settings = get_settings()
    with stores.sessions()() as session:
        rows = session.execute(select(Video.id, Video.path)).all()
    live_keys = []
    for video_id, path in rows:
        try:
            live_keys.append(source_key(video_id, (settings.media_root / path).stat()))
        except OSError:
            continue  # no file: its entries go
    result = sweep(
        settings.stream_cache_dir, max_bytes=settings.stream_cache_max_bytes, live_keys=live_keys
    )
    logger.info(
        "stream cache: removed %d entries (%d bytes), %d bytes kept",
        result.removed,
        result.freed_bytes,
        result.kept_bytes,
    )


@periodic_actor(time_limit=(WARM_AT_MOST * WARM_TIMEOUT_S + 60) * 1000)
def warm_stream_cache() -> None:
    settings = get_settings()
    client = stores.redis_client()
    # A slot per warm-up transcode, held at most as long as one may take.
    slots = Slots(
        client, live.TRANSCODE_SLOTS_KEY, limit=settings.max_transcodes, ttl_s=WARM_TIMEOUT_S
    )
    warmed = 0
    for member in cast(list[str], client.zrevrange(live.PLAYS_KEY, 0, 10 * WARM_AT_MOST)):
        if warmed >= WARM_AT_MOST:
            break
        video_id, quality, format = _parse(member)
        if video_id is None:
            client.zrem(live.PLAYS_KEY, member)
            continue
        with stores.sessions()() as session:
            video = session.get(Video, video_id)
        if video is None:
            client.zrem(live.PLAYS_KEY, member)  # deleted: nobody will ask again
            continue
        source = (settings.media_root / video.path).resolve()
        if not source.is_relative_to(settings.media_root.resolve()) or not source.is_file():
            continue
        key = source_key(video_id, source.stat())
        target = stream_entry(settings.stream_cache_dir, key, quality, format)
        if target.is_file():
            continue
        info = MediaInfo.of(video)
        plan = plan_stream(info, StreamRequest(quality=quality, format=format))
        if plan.mode != "transcode":
            continue  # a remux starts at once anyway
        holder = f"warm:{uuid.uuid4().hex}"
        if not slots.acquire(holder):
            logger.info("stream cache warm-up stopped: every transcode slot is taken")
            return
        try:
            _transcode(source, info, plan, target)
            warmed += 1
        finally:
            slots.release(holder)


def _parse(member: str) -> tuple[int | None, str, str]:
    video, _, rest = member.partition(":")
    quality, _, format = rest.partition(":")
    if (
        not (video.isascii() and video.isdigit())
        or quality not in QUALITIES
        or format not in ("mp4", "webm")
    ):
        return None, "", ""
    return int(video), quality, format


def _transcode(source: Path, info: MediaInfo, plan: StreamPlan, target: Path) -> None:
    """Transcode into the cache: a temporary file, renamed once FFmpeg finished well."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_name(target)
    try:
        code, stderr = run_to_end(
            ffmpeg_argv(ffmpeg_path(), source, plan, info, output=str(partial)),
            timeout=WARM_TIMEOUT_S,
        )
        if code != 0:
            logger.warning("stream cache warm-up of %s failed (%s): %s", target, code, stderr)
            return
        os.replace(partial, target)
        logger.info("stream cache: warmed %s", target)
    finally:
        partial.unlink(missing_ok=True)
