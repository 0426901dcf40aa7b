"""``/api/session``: the browser trades a token for a signed, HttpOnly session cookie,
so the page never keeps the token in script-readable storage; signing out revokes the
session server-side. Both only from an allowed Origin (no login CSRF), and token
guesses count against the client's address like any failed credential."""

from __future__ import annotations

from redis.exceptions import RedisError
from starlette import status
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from web.auth import (
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    GuessLimiter,
    make_session_cookie,
    origin_allowed,
    parse_session_cookie,
    revoke_session,
    role_of_token,
    session_revoked,
)
from web.errors import ApiError, read_json_object, unavailable


def _check_origin(request: Request) -> None:
    if not origin_allowed(request.app.state.settings, request.headers):
        raise ApiError(
            status.HTTP_403_FORBIDDEN, "bad_origin", "sign-in is only accepted from our own page"
        )


async def create_session(request: Request) -> JSONResponse:
    _check_origin(request)
    settings = request.app.state.settings
    limiter: GuessLimiter = request.app.state.guess_limiter  # shared with AuthMiddleware
    limiter.check(request)
    body = await read_json_object(request)
    role = role_of_token(settings, body.get("token"))
    if role is None:
        await limiter.failed(request)
        raise ApiError(status.HTTP_401_UNAUTHORIZED, "unauthorized", "unknown token", field="token")
    response = JSONResponse({"user": None, "role": role, "csrf": None})
    response.set_cookie(
        SESSION_COOKIE,
        make_session_cookie(settings, role),
        max_age=SESSION_MAX_AGE_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def read_session(request: Request) -> JSONResponse:
    """The signed-in session of this cookie, for the page; 401 without one."""
    session = parse_session_cookie(
        request.app.state.settings, request.cookies.get(SESSION_COOKIE, "")
    )
    if session is None or await session_revoked(request, session[1]):
        raise ApiError(status.HTTP_401_UNAUTHORIZED, "unauthorized", "not signed in")
    return JSONResponse({"user": None, "role": session[0], "csrf": None})


async def delete_session(request: Request) -> JSONResponse:
    _check_origin(request)
    session = parse_session_cookie(
        request.app.state.settings, request.cookies.get(SESSION_COOKIE, "")
    )
    response = JSONResponse({"role": None})
    if session is not None:
        _role, session_id, left = session
        try:
            await revoke_session(request, session_id, left)
        except (RedisError, OSError):
            # Signed out in this browser all the same (the cookie is deleted below).
            response = unavailable("redis").response()
    response.delete_cookie(SESSION_COOKIE)
    return response


routes = [
    Route("/api/session", create_session, methods=["POST"]),
    Route("/api/session", read_session, methods=["GET"]),
    Route("/api/session", delete_session, methods=["DELETE"]),
]
