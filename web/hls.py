"""HLS for seekable transcoded playback.

``GET /hls/{video_id}/{quality}/index.m3u8`` is a VOD playlist computed from the probe
(fixed-length segments, :func:`media.transcode.hls_playlist`); nothing is transcoded
for it. ``GET /hls/{video_id}/{quality}/{n}.ts`` makes segment ``n`` on demand, FFmpeg
seeking on the input to its start, so a player can jump to minute 50 without anything
before it being made. A made segment is kept in the stream cache
(``$VIDFLEET_DATA_DIR/cache/hls/<file key>/<quality>/<n>.ts``, written to a temporary
name and renamed, so a reader never sees half a segment) and served from there with
Range afterwards. Making one takes a transcode slot like any stream session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from pathlib import Path

import anyio
from starlette import status
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from db.models import Video
from media.ffmpeg import ffmpeg_path
from media.mediainfo import MediaInfo
from media.stream_cache import hls_folder, partial_name, source_key
from media.transcode import (
    HLS_CONTENT_TYPES,
    QUALITIES,
    hls_playlist,
    hls_segment_argv,
    hls_segments,
)
from web.apidoc import Answer, choice, documented, integer
from web.errors import ApiError, not_found
from web.sessions import StreamRegistry, StreamSession, StreamsFull, streams_full
from web.streams import library_file
from web.transcode import StreamProcess
from web.videos import load_video

logger = logging.getLogger(__name__)

SEGMENT_NAME = re.compile(r"([0-9]{1,6})\.ts")
SEGMENT_TIMEOUT_S = 120.0
HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}


async def _video_and_file(request: Request) -> tuple[Video, Path, os.stat_result, str]:
    quality = request.path_params["quality"]
    if quality not in QUALITIES:
        raise ApiError(
            status.HTTP_400_BAD_REQUEST,
            "bad_quality",
            f"quality must be one of {', '.join(QUALITIES)}",
            field="quality",
        )
    video = await load_video(request)
    path, source = await library_file(request, video.path)
    if not video.duration:
        raise ApiError(
            status.HTTP_409_CONFLICT, "not_probed", "the video's duration is not known yet"
        )
    return video, path, source, quality


@documented(
    "A video's HLS playlist at a quality",
    {200: Answer("The VOD playlist", None, "application/vnd.apple.mpegurl")},
    errors=(400, 404, 409),
    path_params={"video_id": integer(0), "quality": choice(QUALITIES)},
)
async def playlist(request: Request) -> Response:
    video, _path, _source, _quality = await _video_and_file(request)
    assert video.duration is not None
    return Response(
        hls_playlist(video.duration),
        media_type=HLS_CONTENT_TYPES["m3u8"],
        headers={**HEADERS, "Cache-Control": "no-cache"},
    )


@documented(
    "One HLS segment, made on demand",
    {
        200: Answer("The MPEG-TS segment", None, "video/mp2t"),
        206: Answer("The ranges asked for", None, "video/mp2t"),
    },
    errors=(400, 404, 409, 416, 422, 503),
    path_params={
        "video_id": integer(0),
        "quality": choice(QUALITIES),
        "segment": {"type": "string", "pattern": f"^{SEGMENT_NAME.pattern}$"},
    },
)
async def segment(request: Request) -> Response:
    match = SEGMENT_NAME.fullmatch(request.path_params["segment"])
    if match is None:
        raise not_found("segment")
    video, path, source, quality = await _video_and_file(request)
    n = int(match.group(1))
    assert video.duration is not None
    if n >= len(hls_segments(video.duration)):
        raise not_found("segment")
    key = source_key(video.id, source)
    target = hls_folder(request.app.state.settings.stream_cache_dir, key, quality) / f"{n}.ts"
    hit = target.is_file()
    request.app.state.streams.cache(hit=hit)
    if not hit:
        await _make_segment(request, video, path, quality, n, target)
    with contextlib.suppress(OSError):
        os.utime(target)  # the cache evicts the least recently used first
    return FileResponse(target, media_type=HLS_CONTENT_TYPES["ts"], headers=HEADERS)


async def _make_segment(
    request: Request, video: Video, path: Path, quality: str, n: int, target: Path
) -> None:
    registry: StreamRegistry = request.app.state.streams
    session = StreamSession(
        video_id=video.id,
        mode="hls",
        quality=quality,
        format="ts",
        client=request.client.host if request.client else "unknown",
    )
    try:
        await registry.open(session)
    except StreamsFull as exc:
        raise streams_full(exc) from None
    await anyio.to_thread.run_sync(lambda: target.parent.mkdir(parents=True, exist_ok=True))
    partial = partial_name(target)
    argv = hls_segment_argv(ffmpeg_path(), path, MediaInfo.of(video), quality, n, partial)
    ffmpeg = StreamProcess(argv, nice=request.app.state.settings.media_nice)
    made = False
    try:
        await ffmpeg.start()
        assert ffmpeg.process is not None
        if await asyncio.wait_for(ffmpeg.process.wait(), SEGMENT_TIMEOUT_S) == 0 and (
            partial.is_file()
        ):
            os.replace(partial, target)
            made = True
    finally:
        with anyio.CancelScope(shield=True):
            exit_code = await ffmpeg.stop()
            await registry.close(session, failed=not made)
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    if not made:
        logger.warning(
            "ffmpeg could not make segment %d (exit %s): %s",
            n,
            exit_code,
            " | ".join(ffmpeg.stderr_tail),
        )
        # FFmpeg cannot read the library file: a corrupt or truncated one.
        raise ApiError(422, "stream_failed", "the segment could not be made from this file")


routes = [
    Route("/hls/{video_id:int}/{quality}/index.m3u8", playlist, methods=["GET", "HEAD"]),
    Route("/hls/{video_id:int}/{quality}/{segment}", segment, methods=["GET", "HEAD"]),
]
