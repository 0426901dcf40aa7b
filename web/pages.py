"""The browser UI's pages: static HTML shells, one per page, that load their data from
the API with the session cookie (so a page itself needs no credential and holds no data).

Each page is a file in ``web/static`` with its script and styles beside it (the
Content-Security-Policy allows no inline script or style); ``/static`` serves those with
ETags, and the pages themselves revalidate on every load, so a release never pairs a
fresh page with a stale script.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import Route

from web.apidoc import Answer, documented

STATIC = Path(__file__).with_name("static")

# path -> the page's file in web/static
PAGES = {
    "/": "jobs.html",
    "/login": "login.html",
    "/library": "library.html",
    "/library/artists/{artist_id:int}": "artist.html",
    "/library/videos/{video_id:int}": "video.html",
    "/system": "system.html",
}


def _serve(name: str) -> Callable[[Request], Awaitable[FileResponse]]:
    @documented(
        "A page of the browser UI (a static shell; its data comes from the API)",
        {200: Answer("The page", None, "text/html")},
    )
    async def serve(request: Request) -> FileResponse:
        return FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    return serve


routes = [Route(path, _serve(name), methods=["GET", "HEAD"]) for path, name in PAGES.items()]
