"""A request id on every request: in each line logged while it is handled, and in the
response's ``X-Request-ID``.

The id is the caller's own ``X-Request-ID`` when that is a plausible id (a proxy or a
client that already tagged the request: up to 64 letters, digits and ``-._:``), else a
fresh one; anything else a client sends there (too long, spaces, quotes, control
characters, a forged log line) is ignored, so it never reaches a log or a header.
WebSocket handshakes get one too, for their log lines.
"""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from db.logs import REQUEST_ID

HEADER = b"x-request-id"
VALID_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")


def request_id_of(scope: Scope) -> str:
    """The caller's valid ``X-Request-ID``, or a new id."""
    for name, value in scope["headers"]:
        if name == HEADER:  # ASGI servers lower-case header names
            if VALID_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return uuid.uuid4().hex


class RequestId:
    """Sets :data:`db.logs.REQUEST_ID` for the request and answers with it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        # Not reset at the end: the server runs each request in a task of its own, whose
        # context ends with it, and so uvicorn's line about an exception that escaped
        # the app still carries the id.
        REQUEST_ID.set(request_id)
        header = (HEADER, request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_id if scope["type"] == "http" else send)
