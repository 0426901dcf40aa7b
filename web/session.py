"""``/api/session``: the browser trades a token for a signed, HttpOnly session cookie,
so the page never keeps the token in script-readable storage."""

from __future__ import annotations

from starlette import status
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from web.auth import SESSION_COOKIE, SESSION_MAX_AGE_S, make_session_cookie, role_of_token
from web.errors import ApiError, read_json_object


async def create_session(request: Request) -> JSONResponse:
    body = await read_json_object(request)
    token = body.get("token")
    role = role_of_token(request.app.state.settings, token) if isinstance(token, str) else None
    if role is None:
        raise ApiError(status.HTTP_401_UNAUTHORIZED, "unauthorized", "unknown token", field="token")
    response = JSONResponse({"role": role})
    response.set_cookie(
        SESSION_COOKIE,
        make_session_cookie(request.app.state.settings, role),
        max_age=SESSION_MAX_AGE_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def delete_session(request: Request) -> JSONResponse:
    response = JSONResponse({"role": None})
    response.delete_cookie(SESSION_COOKIE)
    return response


routes = [
    Route("/api/session", create_session, methods=["POST"]),
    Route("/api/session", delete_session, methods=["DELETE"]),
]
