"""JSON errors: ``{"error": {"code", "message", "field"}}`` with a 4xx status.

Every failure a client can cause becomes an :class:`ApiError`; Starlette's own
HTTPExceptions (404 for an unknown route, 405) are rendered the same way.

A store that cannot answer (the database or Redis refused, timed out, read-only, out of
memory) is not a bug either: every route's failure of that kind becomes a ``503`` with
``Retry-After`` and ``{"error": {"code": "unavailable", "message", "store"}}`` naming
the store but never its address, and one warning line in the log, no traceback. A
WebSocket is closed with 1013 (try again later) instead. Anything else a driver raises
(an IntegrityError, a syntax error) stays a 500 with its traceback: that is a bug.
These handlers run inside Starlette's ExceptionMiddleware, so they cover the routes and
not the pure-ASGI middleware around them, which must catch store errors themselves
(AuthMiddleware does).
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

import redis.exceptions
import sqlalchemy.exc
from starlette import status
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.websockets import WebSocket, WebSocketDisconnect

from db.outages import describe_failure, unavailable_store

logger = logging.getLogger(__name__)

MAX_JSON_BODY = 64 * 1024
STORE_RETRY_AFTER_S = 5


class ApiError(Exception):
    """A failure the client caused: rendered as the JSON error with ``status_code``;
    ``headers`` go on the response (``Retry-After``), ``extra`` into the error body."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}
        self.extra = extra

    def response(self) -> JSONResponse:
        response = error_response(
            self.status_code, self.code, self.message, self.field, **self.extra
        )
        response.headers.update(self.headers)
        return response


def error_response(
    status_code: int, code: str, message: str, field: str | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    body.update(extra)
    return JSONResponse({"error": body}, status_code=status_code)


def not_found(what: str) -> ApiError:
    return ApiError(status.HTTP_404_NOT_FOUND, "not_found", f"{what} not found")


async def read_json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400/413."""
    body = await request.body()
    if len(body) > MAX_JSON_BODY:
        raise ApiError(status.HTTP_413_CONTENT_TOO_LARGE, "too_large", "request body too large")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(
            status.HTTP_400_BAD_REQUEST, "invalid_json", "request body is not valid JSON"
        ) from None
    if not isinstance(data, dict):
        raise ApiError(status.HTTP_400_BAD_REQUEST, "invalid_json", "expected a JSON object")
    return data


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    response = error_response(
        exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail)
    )
    response.headers.update(exc.headers or {})
    if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        # RFC 9110: Allow names every method of the resource; Starlette's names only
        # those of the first route of the path (GET and POST of a path are two routes).
        response.headers["Allow"] = ", ".join(sorted(allowed_methods(request)))
    return response


def allowed_methods(request: Request) -> set[str]:
    """The methods of every route whose path matches the request's."""
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.matches(request.scope)[0] != Match.NONE:
            methods |= route.methods or set()
    return methods


def unavailable(store: str) -> ApiError:
    return ApiError(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        "unavailable",
        f"the {store} is unavailable; try again shortly",
        headers={"Retry-After": str(STORE_RETRY_AFTER_S)},
        store=store,
    )


async def handle_store_unavailable(conn: HTTPConnection, exc: Exception) -> Response | None:
    store = unavailable_store(exc)
    if store is None:
        raise exc  # not an outage: the 500 and traceback of any other bug
    what = "WEBSOCKET" if isinstance(conn, WebSocket) else conn.scope.get("method", "")
    logger.warning(
        "%s %s: the %s is unavailable (%s)", what, conn.url.path, store, describe_failure(exc)
    )
    if isinstance(conn, WebSocket):
        # Before the handshake this refuses it; after, it is the close frame.
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            await conn.close(
                status.WS_1013_TRY_AGAIN_LATER, f"the {store} is unavailable; reconnect shortly"
            )
        return None
    return unavailable(store).response()


exception_handlers: dict[Any, Any] = {
    ApiError: handle_api_error,
    HTTPException: handle_http_exception,
    **dict.fromkeys(
        (
            sqlalchemy.exc.OperationalError,
            sqlalchemy.exc.InterfaceError,
            sqlalchemy.exc.InternalError,
            sqlalchemy.exc.DisconnectionError,
            sqlalchemy.exc.TimeoutError,
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            redis.exceptions.ResponseError,
        ),
        handle_store_unavailable,
    ),
}
