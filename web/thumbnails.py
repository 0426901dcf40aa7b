"""``GET``/``HEAD /thumbnails/{video_id}/{width}.{webp,jpg}``: a video's thumbnail, as
the analysis wrote it under ``$VIDFLEET_DATA_DIR/thumbnails/<id>/`` (actors/analyze.py).

Served with Starlette's FileResponse (``ETag``, ``Last-Modified``; ``304`` to a
conditional request) and a day of private caching; auth as for ``/stream``. A width the video
does not have is a 404; a video not analysed yet is a 404 that names the job that will
make its thumbnails, if one is queued or running.
"""

from __future__ import annotations

import re
from email.utils import parsedate

import anyio.to_thread
from sqlalchemy import select
from starlette import status
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route
from starlette.staticfiles import NotModifiedResponse

from db.jobs import dedupe_key
from db.models import ACTIVE, Job, JobKind, Video
from web.apidoc import Answer, documented, integer
from web.errors import ApiError, not_found
from web.streams import MEDIA_HEADERS
from web.videos import MAX_ID

NAME = re.compile(r"(?P<width>[0-9]{1,4})\.(?P<ext>webp|jpg)")
TYPES = {"webp": "image/webp", "jpg": "image/jpeg"}
CACHE_CONTROL = "private, max-age=86400"


THUMBNAIL_NAME = {"type": "string", "pattern": f"^{NAME.pattern}$"}


@documented(
    "A video's thumbnail",
    {
        200: Answer("The image", None, "image/*", ("ETag", "Last-Modified")),
        304: Answer("Not modified", None, None),
    },
    errors=(404,),
    path_params={"video_id": integer(0), "name": THUMBNAIL_NAME},
)
async def thumbnail(request: Request) -> Response:
    video_id = request.path_params["video_id"]
    name = NAME.fullmatch(request.path_params["name"])
    if name is None or video_id > MAX_ID:
        raise not_found("thumbnail")
    width, ext = int(name["width"]), name["ext"]
    async with request.app.state.db() as session:
        widths = await session.scalar(select(Video.thumbnail_widths).where(Video.id == video_id))
        if widths is None:
            known = await session.scalar(select(Video.id).where(Video.id == video_id))
            if known is None:
                raise not_found("video")
            analysis = await session.scalar(
                select(Job.id).where(
                    Job.dedupe_key == dedupe_key(JobKind.analyze, {"video_id": video_id}),
                    Job.status.in_(ACTIVE),
                )
            )
            raise ApiError(
                status.HTTP_404_NOT_FOUND,
                "not_ready",
                "this video has no thumbnails yet"
                + (": its analysis is under way" if analysis else ""),
                job_id=analysis,
            )
    if width not in widths:
        raise not_found("thumbnail")
    path = request.app.state.settings.thumbnails_dir / str(video_id) / f"{width}.{ext}"
    try:
        stat_result = await anyio.to_thread.run_sync(path.stat)
    except OSError:
        raise not_found("thumbnail") from None  # removed since (a new analysis is writing)
    headers = {**MEDIA_HEADERS, "Cache-Control": CACHE_CONTROL}
    response = FileResponse(path, stat_result=stat_result, media_type=TYPES[ext], headers=headers)
    if not_modified(response, request):
        return NotModifiedResponse(response.headers)
    return response


def not_modified(response: Response, request: Request) -> bool:
    """The client's copy is current. FileResponse sets the validators but answers
    conditional requests only for ``If-Range``; StaticFiles' check (the same rules:
    ``If-None-Match`` first, then ``If-Modified-Since``) is a method of its app."""
    if if_none_match := request.headers.get("if-none-match"):
        tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
        return "*" in tags or response.headers["etag"] in tags
    since = parsedate(request.headers.get("if-modified-since", ""))
    modified = parsedate(response.headers["last-modified"])
    return since is not None and modified is not None and since >= modified


routes = [Route("/thumbnails/{video_id:int}/{name}", thumbnail, methods=["GET", "HEAD"])]
