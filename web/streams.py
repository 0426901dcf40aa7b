"""``GET``/``HEAD /stream/{video_id}``: the file itself (direct play). Starlette's
FileResponse does Range (206 + ``Content-Range``, a multipart answer for several
ranges), ``If-Range`` against its ``ETag``/``Last-Modified``, and 416 with
``Content-Range: bytes */size`` for a range past the end; :class:`MediaFile` only
changes two of its numbers.

With ``VIDFLEET_X_ACCEL_PREFIX`` set (nginx in front, as docker-compose.yml runs it),
direct play answers ``X-Accel-Redirect`` after the credential and the row are checked,
and nginx sends the file from its internal location for the library.

Only media is ever served here: the content type comes from the container the worker
probed (never from the file name), ``nosniff`` stops a browser from guessing another,
and ``Content-Security-Policy: sandbox`` keeps anything a browser might still render
from running as our origin.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import quote

import anyio.to_thread
from sqlalchemy import Row, bindparam, select
from starlette import status
from starlette.requests import Request
from starlette.responses import FileResponse, MalformedRangeHeader, RangeNotSatisfiable, Response
from starlette.routing import Route

from db.models import Video
from media.mediainfo import MediaInfo, content_type
from media.transcode import FORMAT_CODECS, QUALITIES
from web.apidoc import Answer, choice, documented, integer, query
from web.errors import ApiError, not_found
from web.transcode import transcoded, wants_transcode
from web.videos import MAX_ID, load_video

MEDIA_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}
CHUNK_BYTES = 1024 * 1024
MAX_RANGES = 16
# Built once with a bind parameter: what a stream needs of its row, no ORM objects.
# Building a statement and its cache key costs more than running it, and a player
# that asks for many small ranges pays the lookup on every one.
FILE_OF_VIDEO = select(Video.path, Video.container, Video.vcodec, Video.acodec).where(
    Video.id == bindparam("video_id")
)


class MediaFile(FileResponse):
    """A FileResponse that reads 1 MiB at a time and ignores a Range of more than
    ``MAX_RANGES`` ranges.

    Each chunk is a read in a worker thread and a write on the event loop, so the
    chunk size sets the CPU per byte: with Starlette's 64 KiB one process spent about
    2.4 CPU seconds per GB sent, with 1 MiB about 0.9 (bench/README.md, section 5);
    larger chunks saved no more and held more memory per connection (a connection
    holds about two chunks while its client reads). A Range header with more ranges than
    the cap is ignored (RFC 9110 lets a server ignore Range) and the whole file is
    sent with 200: no more work than ``bytes=0-``, and a player still gets its bytes.
    Starlette merges overlapping ranges of the ones under the cap.
    """

    chunk_size = CHUNK_BYTES
    max_ranges = MAX_RANGES

    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        # Starlette answers a bad Range in plain text; every error of the API is JSON. An
        # ApiError raised here reaches the app's handlers (nothing is sent yet). Starlette's
        # parser is a private method: setup.cfg pins starlette below 2, and the streaming
        # tests fail if it is no longer called.
        try:
            return super()._parse_range_header(http_range, file_size)
        except MalformedRangeHeader as exc:
            raise ApiError(
                status.HTTP_400_BAD_REQUEST, "invalid_range", exc.content, field="Range"
            ) from None
        except RangeNotSatisfiable as exc:
            raise ApiError(
                status.HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                f"the range starts past the end of the file ({exc.max_size} bytes)",
                field="Range",
                headers={"Content-Range": f"bytes */{exc.max_size}"},
            ) from None


def _library_file(root: Path, relative: str) -> tuple[Path, os.stat_result] | None:
    """The file a row names and its stat, or None when it is gone or not a regular
    file under the library (the path comes from our own row, but a row must never
    lead outside it)."""
    root = root.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        return None
    try:
        stat_result = path.stat()
    except OSError:
        return None
    return (path, stat_result) if stat.S_ISREG(stat_result.st_mode) else None


async def library_file(request: Request, relative: str) -> tuple[Path, os.stat_result]:
    """The library file a row names and its stat, looked up in a thread (on a network
    filesystem the lookups can block).

    Raises:
      ApiError: 404 when it is gone or not a regular file under the library.
    """
    root = request.app.state.settings.media_root
    found = await anyio.to_thread.run_sync(_library_file, root, relative)
    if found is None:
        raise not_found("video file")
    return found


async def _file_row(request: Request) -> Row[tuple[str, str | None, str | None, str | None]]:
    video_id = request.path_params["video_id"]
    row = None
    if video_id <= MAX_ID:
        async with request.app.state.db() as session:
            row = (await session.execute(FILE_OF_VIDEO, {"video_id": video_id})).first()
    if row is None:
        raise not_found("video")
    return row


@documented(
    "A library file: the file itself (with Range), or remuxed/transcoded as it streams",
    {
        200: Answer("The file, or the stream", None, "video/*", ("ETag", "Last-Modified")),
        206: Answer("The ranges asked for", None, "video/*", ("Content-Range",)),
        304: Answer("Not modified", None, None),
    },
    errors=(400, 404, 416, 422, 503),
    parameters=(
        query("quality", choice(QUALITIES)),
        query("format", choice(FORMAT_CODECS)),
        query("start", {"type": "number", "minimum": 0}, "seconds into the file"),
    ),
    path_params={"video_id": integer(0)},
    description="Any of `quality`, `format`, `start` asks for a remux or transcode "
    "(`X-Stream-Mode`); none, the file itself.",
)
async def stream_file(request: Request) -> Response:
    if wants_transcode(request):
        return await _transcoded(request)
    video = await _file_row(request)
    path, stat_result = await library_file(request, video.path)
    media_type = content_type(video.container, video.vcodec, video.acodec)
    prefix = request.app.state.settings.x_accel_prefix
    if prefix:
        # Behind nginx: it sends the file (sendfile, Range and all) from its internal
        # location for the library, once we have said who may have it.
        relative = path.relative_to(request.app.state.settings.media_root.resolve())
        headers = {**MEDIA_HEADERS, "X-Accel-Redirect": prefix + quote(relative.as_posix())}
        return Response(media_type=media_type, headers=headers)
    return MediaFile(
        path,
        stat_result=stat_result,
        media_type=media_type,
        headers=MEDIA_HEADERS,
    )


async def _transcoded(request: Request) -> Response:
    """``?quality=&format=&start=``: remuxed or transcoded (web/transcode.py), which
    needs the whole probe of the row."""
    video = await load_video(request)
    path, stat_result = await library_file(request, video.path)
    return await transcoded(request, video.id, path, stat_result, MediaInfo.of(video))


routes = [Route("/stream/{video_id:int}", stream_file, methods=["GET", "HEAD"])]
