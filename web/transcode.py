"""``GET /stream/{id}?quality=&format=&start=``: a library file remuxed or transcoded by
FFmpeg (or cvlc, ``VIDFLEET_STREAM_BACKEND=vlc``) on the fly (:mod:`media.transcode`
decides which), streamed as it is made, under a stream session (:mod:`web.sessions`);
a finished whole transcode is kept in the stream cache and served from there later.

The process runs through ``asyncio.create_subprocess_exec`` in a process group of its own,
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
from media.errors import BadRequest
from media.ffmpeg import ffmpeg_path
from media.mediainfo import MediaInfo
from media.priority import yield_cpu
from media.stream_cache import partial_name, source_key, stream_entry
from media.transcode import StreamPlan, ffmpeg_argv, parse_request, plan_stream
from media.vlc import cvlc_path, vlc_argv
from web.errors import ApiError
from web.sessions import StreamRegistry, StreamSession, StreamsFull, streams_full

logger = logging.getLogger(__name__)

CHUNK = 64 * 1024
STOP_GRACE_S = 1.0
STDERR_LINES = 20
TRANSCODE_PARAMS = ("quality", "format", "start")


class StreamProcess:
    """One FFmpeg (or cvlc) writing a stream to its stdout, in a process group of its own.

    Parameters:
      argv: the command.
      source: a file to give it on stdin (cvlc reads the file that way).
      name: what it is, for logs and the response's ``X-Stream-Backend``.
      nice: its niceness (``VIDFLEET_MEDIA_NICE``): it yields the CPU to the web.
    """

    def __init__(
        self,
        argv: list[str],
        *,
        source: Path | None = None,
        name: str = "ffmpeg",
        nice: int = 0,
    ):
        self.argv = argv
        self.name = name
        self.nice = nice
        self.source = source
        self.process: asyncio.subprocess.Process | None = None
        self.stdout: asyncio.StreamReader | None = None
        self._stdout_transport: asyncio.ReadTransport | None = None
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_LINES)
        self._drain: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # stdout is a pipe of our own: uvloop would hand the child one end of a socket
        # pair, and cvlc never exits after writing its stream to one.
        read_end, write_end = os.pipe()
        stdin = self.source.open("rb") if self.source else None
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=stdin or asyncio.subprocess.DEVNULL,
                stdout=write_end,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own group: stopped as one, never by our signals
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)  # the child has its own copies of both
            if stdin is not None:
                stdin.close()
        yield_cpu(self.process.pid, self.nice)
        self.stdout = asyncio.StreamReader(limit=4 * CHUNK)
        protocol = asyncio.StreamReaderProtocol(self.stdout)
        self._stdout_transport, _ = await asyncio.get_running_loop().connect_read_pipe(
            lambda: protocol, os.fdopen(read_end, "rb", buffering=0)
        )
        self._drain = asyncio.create_task(self._drain_stderr())

    async def _drain_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for line in self.process.stderr:
            self.stderr_tail.append(line.decode(errors="replace").rstrip())

    async def read(self) -> bytes:
        assert self.stdout is not None
        return await self.stdout.read(CHUNK)

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
        if self._stdout_transport is not None:
            self._stdout_transport.close()
        if self._drain is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._drain, STOP_GRACE_S)
        return self.process.returncode


class StreamResponse(Response):
    """Streams a :class:`StreamProcess`'s stdout, starting with the chunk it already
    produced, and ends its session however the response ends."""

    def __init__(
        self,
        process: StreamProcess,
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
        self.init_headers({**stream_headers(plan), "X-Stream-Backend": process.name})
        self.process = process
        self.first = first
        self.plan = plan
        self.session = session
        self.registry = registry
        self.keep_as = keep_as  # where a complete stream is cached

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.monotonic()
        session = self.session
        gone = asyncio.Event()
        watcher = asyncio.create_task(_watch_disconnect(receive, gone, self.process))
        copy: CacheWriter | None = None
        try:
            if self.keep_as is not None:
                copy = await CacheWriter.open(self.keep_as)
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            chunk = self.first
            while chunk and not gone.is_set():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                session.bytes_sent += len(chunk)
                if copy is not None:
                    await copy.write(chunk)
                chunk = await self.process.read()
            if not gone.is_set():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            with anyio.CancelScope(shield=True):
                code = await self.process.stop()
                failed = code not in (0, None, -signal.SIGTERM, -signal.SIGKILL)
                failed = failed and not gone.is_set()
                await self.registry.close(session, failed=failed)
                if copy is not None:
                    # Kept only when ffmpeg finished the whole stream and all of it went out.
                    await copy.finish(keep=code == 0 and not gone.is_set())
            ended = "the client left" if gone.is_set() else f"{self.process.name} exited {code}"
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
            if failed:
                logger.warning(
                    "%s failed: %s", self.process.name, " | ".join(self.process.stderr_tail)
                )


async def _watch_disconnect(receive: Receive, gone: asyncio.Event, process: StreamProcess) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            process.signal(signal.SIGTERM)  # its stdout ends, so a pending read returns
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


_counting: set[asyncio.Task[None]] = set()  # the loop keeps only weak references


def count_play(request: Request, video_id: int, quality: str, plan: StreamPlan) -> None:
    """Count what is watched from the start, for the cache warmer: in the background,
    so a Redis that does not answer never holds the stream (a lost count is no loss)."""
    if plan.mode != "transcode" or plan.start:
        return
    member = f"{video_id}:{quality}:{plan.format}"

    async def count() -> None:
        with contextlib.suppress(RedisError, OSError):
            await request.app.state.redis.zincrby(live.PLAYS_KEY, 1, member)

    task = asyncio.create_task(count())
    _counting.add(task)
    task.add_done_callback(_counting.discard)


def stream_headers(plan: StreamPlan) -> dict[str, str]:
    return {
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
        "Cache-Control": "no-store",
        "X-Stream-Mode": plan.mode,
    }


def wants_transcode(request: Request) -> bool:
    return any(name in request.query_params for name in TRANSCODE_PARAMS)


async def transcoded(
    request: Request, video_id: int, path: Path, source: os.stat_result, info: MediaInfo
) -> Response:
    """The remuxed or transcoded stream of ``path`` as the query asks.

    Raises:
      ApiError: 400 naming the field for a bad ``quality``, ``format`` or ``start``;
        503 ``too_many_streams`` (with ``Retry-After``) when no transcode slot is free;
        422 ``stream_failed`` when FFmpeg ends without producing anything: it cannot
        read the library file (a corrupt or truncated file; the log has its stderr).
    """
    query = request.query_params
    try:
        asked = parse_request(query.get("quality"), query.get("format"), query.get("start"))
        plan = plan_stream(info, asked)
    except BadRequest as exc:
        raise ApiError(400, exc.code, exc.message, field=exc.field) from None
    settings = request.app.state.settings
    registry: StreamRegistry = request.app.state.streams
    cached = None
    if plan.mode == "transcode" and not plan.start:
        key = source_key(video_id, source)
        cached = stream_entry(settings.stream_cache_dir, key, asked.quality, plan.format)
        if cached.is_file():
            registry.cache(hit=True)
            with contextlib.suppress(OSError):
                os.utime(cached)  # the cache evicts the least recently used first
            headers = {**stream_headers(plan), "X-Stream-Mode": "cache"}
            return FileResponse(cached, media_type=plan.content_type, headers=headers)
        if request.method != "HEAD":
            registry.cache(hit=False)
    if request.method == "HEAD":
        return Response(media_type=plan.content_type, headers=stream_headers(plan))
    count_play(request, video_id, asked.quality, plan)
    session = StreamSession(
        video_id=video_id,
        mode=plan.mode,
        quality=asked.quality,
        format=plan.format,
        client=request.client.host if request.client else "unknown",
        backend=settings.stream_backend,
    )
    try:
        await registry.open(session)
    except StreamsFull as exc:
        raise streams_full(exc) from None
    started = time.monotonic()
    process = stream_process(settings.stream_backend, path, plan, info, nice=settings.media_nice)
    try:
        await process.start()
        first = await process.read()
    except BaseException:
        with anyio.CancelScope(shield=True):
            await process.stop()
            await registry.close(session)
        raise
    session.ttfb_ms = round((time.monotonic() - started) * 1000, 1)
    await registry.update(session)
    if not first:
        code = await process.stop()
        await registry.close(session, failed=True)
        logger.warning(
            "%s produced nothing (exit %s): %s",
            settings.stream_backend,
            code,
            " | ".join(process.stderr_tail),
        )
        raise ApiError(422, "stream_failed", "the file could not be streamed in this form")
    return StreamResponse(process, first, plan, session, registry, keep_as=cached)


def stream_process(
    backend: str, path: Path, plan: StreamPlan, info: MediaInfo, *, nice: int = 0
) -> StreamProcess:
    """The process that makes ``plan``'s stream with the configured backend."""
    if backend == "vlc":
        cvlc = cvlc_path()
        if cvlc is None:
            raise ApiError(
                503, "backend_unavailable", "VIDFLEET_STREAM_BACKEND is vlc, but cvlc is missing"
            )
        # cvlc refuses to run as root: a root web runs it as an unprivileged user.
        argv = vlc_argv(cvlc, plan, info, as_root=os.geteuid() == 0)
        return StreamProcess(argv, source=path, name="cvlc", nice=nice)
    return StreamProcess(ffmpeg_argv(ffmpeg_path(), path, plan, info), name="ffmpeg", nice=nice)
