"""``GET``/``HEAD /subtitles/{video_id}/{lang}``: a video's subtitles in one language,
the WebVTT file its row names beside the video (actors/download.py).

Only the row says which file: the language in the path is compared with the row's,
never joined into a path, and the file must lie under the media root (as for
``/stream``). Auth as for ``/stream``: a viewer may read. Served with Starlette's
FileResponse (``ETag``, ``Last-Modified``) as ``text/vtt``, with the media headers
(``nosniff``, a sandbox policy) so that a browser never renders it as anything else.
"""

from __future__ import annotations

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.staticfiles import NotModifiedResponse

from db.models import Video
from media.subtitles import LANG_BYTES
from web.apidoc import Answer, documented, integer, text
from web.errors import ApiError, not_found
from web.streams import MEDIA_HEADERS, MediaFile, library_file
from web.thumbnails import CACHE_CONTROL, not_modified
from web.videos import MAX_ID

VTT = "text/vtt; charset=utf-8"


@documented(
    "A video's subtitles in one language (WebVTT)",
    {
        200: Answer("The WebVTT file", None, "text/vtt", ("ETag", "Last-Modified")),
        304: Answer("Not modified", None, None),
    },
    errors=(404,),
    path_params={"video_id": integer(0), "lang": text(1, LANG_BYTES)},
    description="The languages a video has, with their URLs: `subtitles` of "
    "`GET /api/videos/{video_id}`.",
)
async def subtitles(request: Request) -> Response:
    video_id, lang = request.path_params["video_id"], request.path_params["lang"]
    if video_id > MAX_ID:
        raise not_found("video")
    async with request.app.state.db() as session:
        row = (
            await session.execute(select(Video.id, Video.subtitles).where(Video.id == video_id))
        ).first()
    if row is None:
        raise not_found("video")
    named = [
        sub for sub in row.subtitles or [] if isinstance(sub, dict) and sub.get("lang") == lang
    ]
    if not named or not isinstance(named[0].get("path"), str):
        raise not_found("subtitles")
    try:
        path, stat_result = await library_file(request, named[0]["path"])
    except ApiError:
        raise not_found("subtitles file") from None
    headers = {**MEDIA_HEADERS, "Cache-Control": CACHE_CONTROL}
    response = MediaFile(path, stat_result=stat_result, media_type=VTT, headers=headers)
    if not_modified(response, request):
        return NotModifiedResponse(response.headers)
    return response


routes = [Route("/subtitles/{video_id:int}/{lang}", subtitles, methods=["GET", "HEAD"])]
