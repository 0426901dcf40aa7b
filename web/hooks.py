"""``GET /api/system/hooks`` (admin): the refresh hooks as the system page shows them
(what they do: :mod:`actors.refresh_hooks`). For each target, Jellyfin, Plex and the
webhook: whether it is configured, its URL (any query hidden) and its token as a mask,
never the token, the last call's time and outcome, the last success, failed calls in a
row and the changes waiting for the next call."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from db import refresh_hooks
from db.settings import HookSettings
from web.apidoc import BOOL, INT, NUMBER, STRING, TIME, array, choice, documented, nullable, obj
from web.users import require_admin

MASK = "********"

TARGET = obj(
    {
        "target": choice(refresh_hooks.TARGETS),
        "configured": BOOL,
        "url": nullable(STRING),
        "token": nullable(STRING),
        "last_attempt": nullable(TIME),
        "last_ok": nullable(TIME),
        "last_outcome": nullable(STRING),
        "failures": INT,
        "pending": INT,
    }
)


def shown_url(url: str) -> str | None:
    """``url`` without its query's values (a key may hide there); None when unset."""
    if not url:
        return None
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query="***" if parts.query else ""))


def configuration(hooks: HookSettings) -> dict[str, tuple[str, bool]]:
    """Each target's URL and whether a token (or secret) is set."""
    return {
        "jellyfin": (hooks.jellyfin_url, hooks.jellyfin_token is not None),
        "plex": (hooks.plex_url, hooks.plex_token is not None),
        "webhook": (hooks.webhook_url, hooks.webhook_secret is not None),
    }


@documented(
    "The media-server refresh and webhook calls: configuration and last outcomes (admin)",
    {
        200: obj(
            {"items": array(TARGET), "delay_s": NUMBER, "min_interval_s": NUMBER},
        )
    },
    errors=(403,),
)
async def system_hooks(request: Request) -> JSONResponse:
    require_admin(request)
    hooks: HookSettings = request.app.state.settings.hooks
    states = await refresh_hooks.statuses(request.app.state.redis)
    items: list[dict[str, Any]] = []
    for target, (url, has_token) in configuration(hooks).items():
        items.append(
            {
                "target": target,
                "configured": bool(url),
                "url": shown_url(url),
                "token": MASK if url and has_token else None,
                **states[target],
            }
        )
    return JSONResponse(
        {"items": items, "delay_s": hooks.delay, "min_interval_s": hooks.min_interval}
    )


routes = [Route("/api/system/hooks", system_hooks, methods=["GET"])]
