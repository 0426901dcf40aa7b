"""A cap on the size of every HTTP request body, before any route or middleware reads it.

A ``Content-Length`` above the cap is answered 413 at once, without reading a byte of
the body, and a malformed one 400. A body without a length (chunked) is counted as the
server hands it over: the first chunk past the cap raises an :class:`ApiError` from
``receive``, which the app's exception handlers turn into the JSON 413, so no route
ever holds more than the cap in memory. Every refusal closes the connection, since the
rest of an unread body would otherwise have to be read and thrown away.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from starlette import status
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web.errors import MAX_JSON_BODY, ApiError, error_response

# A length with more digits is too large anyway; int() of a huge digit string is slow.
MAX_LENGTH_DIGITS = 18


class BodyLimit:
    """Refuse HTTP request bodies larger than ``max_body`` bytes.

    Parameters:
      app: the ASGI app to protect.
      max_body: the largest body accepted, in bytes.
      uploads: path pattern (a full match) -> the largest body a PUT or POST to such a
        path may have instead (an upload's route).
    """

    def __init__(
        self, app: ASGIApp, *, max_body: int = MAX_JSON_BODY, uploads: Mapping[str, int] = {}
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.uploads = [(re.compile(pattern), limit) for pattern, limit in uploads.items()]

    def _limit(self, scope: Scope) -> int:
        if scope["method"] in ("PUT", "POST"):
            for pattern, limit in self.uploads:
                if pattern.fullmatch(scope["path"]):
                    return limit
        return self.max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # WebSocket messages are capped by --ws-max-size
            await self.app(scope, receive, send)
            return
        max_body = self._limit(scope)
        lengths = {value for name, value in scope["headers"] if name.lower() == b"content-length"}
        if lengths:
            length = _parse_length(lengths)
            if length is None:
                await self._refuse(scope, receive, send, status.HTTP_400_BAD_REQUEST, max_body)
                return
            if length > max_body:
                await self._refuse(
                    scope, receive, send, status.HTTP_413_CONTENT_TOO_LARGE, max_body
                )
                return
        received = 0
        refused = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_body:
                    refused = True
                    raise ApiError(
                        status.HTTP_413_CONTENT_TOO_LARGE, "too_large", _too_large(max_body)
                    )
            return message

        async def closing_send(message: Message) -> None:
            if refused and message["type"] == "http.response.start":
                message.setdefault("headers", [])  # optional in ASGI
                MutableHeaders(scope=message)["Connection"] = "close"
            await send(message)

        await self.app(scope, counted_receive, closing_send)

    @staticmethod
    async def _refuse(
        scope: Scope, receive: Receive, send: Send, status_code: int, max_body: int
    ) -> None:
        if status_code == status.HTTP_413_CONTENT_TOO_LARGE:
            response = error_response(status_code, "too_large", _too_large(max_body))
        else:
            response = error_response(status_code, "bad_request", "malformed Content-Length")
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


def _parse_length(values: set[bytes]) -> int | None:
    """The one length all Content-Length headers agree on, or None when malformed."""
    if len(values) != 1:
        return None
    (value,) = values
    if not (value.isascii() and value.isdigit()):  # "²".isdigit(), and int() refuses it
        return None
    return int(value) if len(value) <= MAX_LENGTH_DIGITS else 10**MAX_LENGTH_DIGITS


def _too_large(max_body: int) -> str:
    return f"request body larger than {max_body} bytes"
