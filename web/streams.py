"""``GET /stream/{video_id}``: the file itself; Starlette's FileResponse does Range."""

from __future__ import annotations

import mimetypes

from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import Route

from web.errors import not_found
from web.videos import load_video

MEDIA_TYPES = {".mkv": "video/x-matroska", ".webm": "video/webm", ".mp4": "video/mp4"}


async def stream_file(request: Request) -> FileResponse:
    video = await load_video(request)
    root = request.app.state.settings.media_root.resolve()
    path = (root / video.path).resolve()
    # The path comes from our own row, but a row must never lead outside the library.
    if not path.is_relative_to(root) or not path.is_file():
        raise not_found("video file")
    media_type = MEDIA_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
    return FileResponse(path, media_type=media_type or "application/octet-stream")


routes = [Route("/stream/{video_id:int}", stream_file, methods=["GET", "HEAD"])]
