"""JSON errors: ``{"error": {"code", "message", "field"}}`` with a 4xx status.

Every failure a client can cause becomes an :class:`ApiError`; Starlette's own
HTTPExceptions (404 for an unknown route, 405) are rendered the same way.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette import status
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

logger = logging.getLogger(__name__)

MAX_JSON_BODY = 64 * 1024


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
    return error_response(
        exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail)
    )


exception_handlers = {ApiError: handle_api_error, HTTPException: handle_http_exception}
