"""``GET /stream/{id}?quality=&format=&start=``: a library file remuxed or transcoded by
FFmpeg on the fly (:mod:`media.transcode` decides which), streamed as it is made.

FFmpeg runs through ``asyncio.create_subprocess_exec`` in a process group of its own,
so nothing blocks the event loop and the whole group can be stopped at once. Its stdout
is the response body; its stderr is drained as it comes (a full pipe would stall it)
and its tail logged when it fails. Whatever ends a response (the client going away,
the end of the stream, an error, the server cancelling the request on shutdown) stops
the group in a ``finally``: SIGTERM, then SIGKILL if it has not exited within
:data:`STOP_GRACE_S`. The client going away is watched for on ``receive`` (uvicorn's
``send`` does not fail once a client is gone), so a transcode stops within moments of
a player closing, not when its next chunk is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import deque
from pathlib import Path
from typing import Any

import anyio
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.types import Receive, Scope, Send

from db import live
from db.models import Video
from media.errors import BadRequest
from media.ffmpeg import ffmpeg_path
from media.probe import MediaInfo
from media.stream_cache import partial_name, source_key, stream_entry
from media.transcode import StreamPlan, ffmpeg_argv, parse_request, plan_stream
from web.errors import ApiError
from web.sessions import StreamRegistry, StreamSession, StreamsFull, streams_full

logger = logging.getLogger(__name__)

CHUNK = 64 * 1024
STOP_GRACE_S = 1.0
STDERR_LINES = 20
TRANSCODE_PARAMS = ("quality", "format", "start")


class FfmpegProcess:
    """One FFmpeg writing a stream to its stdout, in a process group of its own."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.process: asyncio.subprocess.Process | None = None
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_LINES)
        self._drain: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own group: stopped as one, never by our signals
        )
        self._drain = asyncio.create_task(self._drain_stderr())

    async def _drain_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for line in self.process.stderr:
            self.stderr_tail.append(line.decode(errors="replace").rstrip())

    async def read(self) -> bytes:
        assert self.process is not None and self.process.stdout is not None
        return await self.process.stdout.read(CHUNK)

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    async def stop(self) -> int | None:
        """Stop the group (if it still runs) and reap it; its exit code."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            self.signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), STOP_GRACE_S)
            except TimeoutError:
                self.signal(signal.SIGKILL)
                await self.process.wait()
        # Anything the group left behind goes too (ffmpeg starts no children, but the
        # group is what we promise to stop).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self._drain is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._drain, STOP_GRACE_S)
        return self.process.returncode


class FfmpegResponse(Response):
    """Streams an FFmpeg's stdout, starting with the chunk it already produced."""

    def __init__(
        self,
        ffmpeg: FfmpegProcess,
        first: bytes,
        plan: StreamPlan,
        session: StreamSession,
        registry: StreamRegistry,
        keep_as: Path | None = None,
    ) -> None:
        # Not Response.__init__: it would set a Content-Length for an empty body.
        self.status_code = 200
        self.media_type = plan.content_type
        self.background = None
        self.init_headers(stream_headers(plan))
        self.ffmpeg = ffmpeg
        self.first = first
        self.plan = plan
        self.session = session
        self.registry = registry
        self.keep_as = keep_as  # where a complete stream is cached

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.monotonic()
        session = self.session
        gone = asyncio.Event()
        watcher = asyncio.create_task(_watch_disconnect(receive, gone, self.ffmpeg))
        copy = await CacheWriter.open(self.keep_as) if self.keep_as else None
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            chunk = self.first
            while chunk and not gone.is_set():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                session.bytes_sent += len(chunk)
                if copy is not None:
                    await copy.write(chunk)
                chunk = await self.ffmpeg.read()
            if not gone.is_set():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            with anyio.CancelScope(shield=True):
                code = await self.ffmpeg.stop()
                await self.registry.close(session)
                if copy is not None:
                    # Kept only when ffmpeg finished the whole stream and all of it went out.
                    await copy.finish(keep=code == 0 and not gone.is_set())
            ended = "the client left" if gone.is_set() else f"ffmpeg exited {code}"
            logger.info(
                "stream %s ended: video %s, %s to %s at %s, %d bytes in %.1f s, "
                "first byte after %.0f ms (%s)",
                session.id,
                session.video_id,
                self.plan.mode,
                self.plan.format,
                session.quality,
                session.bytes_sent,
                time.monotonic() - started,
                session.ttfb_ms or 0,
                ended,
            )
            if code not in (0, None, -signal.SIGTERM, -signal.SIGKILL) and not gone.is_set():
                logger.warning("ffmpeg failed: %s", " | ".join(self.ffmpeg.stderr_tail))


async def _watch_disconnect(receive: Receive, gone: asyncio.Event, ffmpeg: FfmpegProcess) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            ffmpeg.signal(signal.SIGTERM)  # its stdout ends, so a pending read returns
            return


class CacheWriter:
    """A copy of a stream, written beside its cache entry and renamed into place once
    complete (a reader never sees half of one)."""

    def __init__(self, target: Path, partial: Path, file: Any) -> None:
        self.target = target
        self.partial = partial
        self.file = file

    @classmethod
    async def open(cls, target: Path) -> CacheWriter | None:
        partial = partial_name(target)

        def create() -> Any:
            target.parent.mkdir(parents=True, exist_ok=True)
            return partial.open("wb")

        try:
            return cls(target, partial, await anyio.to_thread.run_sync(create))
        except OSError as exc:
            logger.warning("not caching a stream: %s", exc)
            return None

    async def write(self, chunk: bytes) -> None:
        await anyio.to_thread.run_sync(self.file.write, chunk)

    async def finish(self, *, keep: bool) -> None:
        def done() -> None:
            self.file.close()
            if keep:
                os.replace(self.partial, self.target)
            else:
                self.partial.unlink(missing_ok=True)

        try:
            await anyio.to_thread.run_sync(done)
        except OSError as exc:
            logger.warning("could not keep a stream in the cache: %s", exc)
            with contextlib.suppress(OSError):
                self.partial.unlink(missing_ok=True)


async def count_play(request: Request, video_id: int, quality: str, plan: StreamPlan) -> None:
    """Count what is watched from the start, for the cache warmer (a lost count is no
    loss)."""
    if plan.mode != "transcode" or plan.start:
        return
    member = f"{video_id}:{quality}:{plan.format}"
    with contextlib.suppress(RedisError, OSError):
        await request.app.state.redis.zincrby(live.PLAYS_KEY, 1, member)


def stream_headers(plan: StreamPlan) -> dict[str, str]:
    return {
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
        "Cache-Control": "no-store",
        "X-Stream-Mode": plan.mode,
    }


def wants_transcode(request: Request) -> bool:
    return any(name in request.query_params for name in TRANSCODE_PARAMS)


async def transcoded(request: Request, video_id: int, path: Path, info: MediaInfo) -> Response:
    """The remuxed or transcoded stream of ``path`` as the query asks.

    Raises:
      ApiError: 400 naming the field for a bad ``quality``, ``format`` or ``start``;
        503 ``too_many_streams`` (with ``Retry-After``) when no transcode slot is free;
        500 ``stream_failed`` when FFmpeg ends without producing anything.
    """
    query = request.query_params
    try:
        asked = parse_request(query.get("quality"), query.get("format"), query.get("start"))
        plan = plan_stream(info, asked)
    except BadRequest as exc:
        raise ApiError(400, exc.code, exc.message, field=exc.field) from None
    settings = request.app.state.settings
    cached = None
    if plan.mode == "transcode" and not plan.start:
        key = source_key(video_id, path.stat())
        cached = stream_entry(settings.stream_cache_dir, key, asked.quality, plan.format)
        if cached.is_file():
            with contextlib.suppress(OSError):
                os.utime(cached)  # the cache evicts the least recently used first
            headers = {**stream_headers(plan), "X-Stream-Mode": "cache"}
            return FileResponse(cached, media_type=plan.content_type, headers=headers)
    if request.method == "HEAD":
        return Response(media_type=plan.content_type, headers=stream_headers(plan))
    await count_play(request, video_id, asked.quality, plan)
    registry: StreamRegistry = request.app.state.streams
    session = StreamSession(
        video_id=video_id,
        mode=plan.mode,
        quality=asked.quality,
        format=plan.format,
        client=request.client.host if request.client else "unknown",
    )
    try:
        await registry.open(session)
    except StreamsFull as exc:
        raise streams_full(exc) from None
    started = time.monotonic()
    ffmpeg = FfmpegProcess(ffmpeg_argv(ffmpeg_path(), path, plan, info))
    try:
        await ffmpeg.start()
        first = await ffmpeg.read()
    except BaseException:
        with anyio.CancelScope(shield=True):
            await ffmpeg.stop()
            await registry.close(session)
        raise
    session.ttfb_ms = round((time.monotonic() - started) * 1000, 1)
    await registry.update(session)
    if not first:
        code = await ffmpeg.stop()
        await registry.close(session)
        logger.warning(
            "ffmpeg produced nothing (exit %s): %s", code, " | ".join(ffmpeg.stderr_tail)
        )
        raise ApiError(500, "stream_failed", "the file could not be streamed in this form")
    return FfmpegResponse(ffmpeg, first, plan, session, registry, keep_as=cached)


def media_info(video: Video) -> MediaInfo:
    """A library row's probe, as :mod:`media.transcode` takes it."""
    return MediaInfo(
        duration=video.duration,
        width=video.width,
        height=video.height,
        vcodec=video.vcodec,
        acodec=video.acodec,
        container=video.container or "",
    )
