"""``GET /stream/{video_id}``: the file itself; Starlette's FileResponse does Range.

Only media is ever served here: the content type comes from the container the worker
probed (never from the file name), ``nosniff`` stops a browser from guessing another,
and ``Content-Security-Policy: sandbox`` keeps anything a browser might still render
from running as our origin.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from media.probe import content_type
from web.errors import not_found
from web.transcode import media_info, transcoded, wants_transcode
from web.videos import load_video

MEDIA_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}


async def stream_file(request: Request) -> Response:
    video = await load_video(request)
    root = request.app.state.settings.media_root.resolve()
    path = (root / video.path).resolve()
    # The path comes from our own row, but a row must never lead outside the library.
    if not path.is_relative_to(root) or not path.is_file():
        raise not_found("video file")
    if wants_transcode(request):
        return await transcoded(request, video.id, path, media_info(video))
    return FileResponse(
        path,
        media_type=content_type(video.container, video.vcodec, video.acodec),
        headers=MEDIA_HEADERS,
    )


routes = [Route("/stream/{video_id:int}", stream_file, methods=["GET", "HEAD"])]
