"""``/api/session``: the browser trades a user's name and password, or a token, for a
signed, HttpOnly session cookie, so the page never keeps a secret in script-readable
storage; signing out revokes the session server-side.

Every answer is ``{"user": {"id", "name"} | null, "role", "csrf"}``: ``user`` is null
for the bootstrap admin/viewer tokens, and ``csrf`` is what the page sends as
``X-CSRF-Token`` on every mutating request (web/auth.py). Signing in or out is only
accepted from an allowed Origin (no login CSRF). Token guesses and wrong passwords
count against the client's address like any failed credential, and wrong passwords
against the user name too (web/login_limit.py). An unknown name and a wrong password
take the same time and get the same 401. Signing out with a valid cookie needs its
CSRF token too.

``POST /api/session/password`` changes the signed-in user's own password: every other
session of the user ends (its epoch moves on), and the answer carries a fresh cookie.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from redis.exceptions import RedisError
from starlette import status
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from db import users
from db.models import Role
from db.users import InvalidInput, UserAuth
from web.apidoc import INT, STRING, Answer, choice, documented, nullable, obj, text
from web.auth import (
    CSRF_HEADER,
    GuessLimiter,
    Principal,
    cookie_principal,
    origin_allowed,
    principal_of,
    revoke_session,
    role_of_token,
)
from web.cookies import (
    SESSION_COOKIE,
    csrf_matches,
    csrf_of_cookie,
    parse_cookie,
    set_session_cookie,
    token_cookie,
    user_cookie,
)
from web.credentials import CredentialCache
from web.errors import ApiError, read_json_object, unavailable
from web.login_limit import LoginLimiter

SESSION = obj(
    {
        "user": nullable(obj({"id": INT, "name": STRING})),
        "role": choice(Role),
        "csrf": STRING,
    }
)


def _check_origin(request: Request) -> None:
    if not origin_allowed(request.app.state.settings, request.headers):
        raise ApiError(
            status.HTTP_403_FORBIDDEN, "bad_origin", "sign-in is only accepted from our own page"
        )


def _bad(field: str, message: str) -> ApiError:
    return ApiError(status.HTTP_400_BAD_REQUEST, "invalid_field", message, field=field)


def _text(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value:
        raise _bad(field, f"{field} must be non-empty text")
    return value


def session_answer(
    request: Request, cookie: str, role: Role, user: UserAuth | None
) -> JSONResponse:
    """The session's JSON, with ``cookie`` set."""
    response = JSONResponse(
        {
            "user": None if user is None else {"id": user.id, "name": user.name},
            "role": role,
            "csrf": csrf_of_cookie(request.app.state.secret, cookie),
        }
    )
    set_session_cookie(response, request, cookie)
    return response


def user_session(request: Request, user: UserAuth) -> JSONResponse:
    return session_answer(
        request, user_cookie(request.app.state.secret, user.id, user.session_epoch), user.role, user
    )


async def verified(request: Request, login: users.Login | None, password: str) -> bool:
    """Whether ``password`` is the user's, checked in a thread (argon2 is slow on
    purpose); a hash made under older parameters is replaced."""
    password_hash = login.password_hash if login is not None else None
    if not await run_in_threadpool(users.verify_password, password_hash, password):
        return False
    assert login is not None and password_hash is not None
    if users.needs_rehash(password_hash):
        fresh = await run_in_threadpool(users.hash_password, password)
        await request.app.state.store.run(
            partial(
                users.set_password, user_id=login.user.id, password_hash=fresh, end_sessions=False
            ),
            writes=True,
        )
    return True


def _wrong(field: str) -> ApiError:
    return ApiError(
        status.HTTP_401_UNAUTHORIZED, "unauthorized", "unknown user name or password", field=field
    )


async def _password_sign_in(request: Request, body: dict[str, Any]) -> JSONResponse:
    name, password = _text(body, "username"), _text(body, "password")
    limiter: GuessLimiter = request.app.state.guess_limiter
    by_name: LoginLimiter = request.app.state.login_limiter
    await by_name.check(name)
    # No name or password that could never be a user's reaches argon2 (nor a 1 MB one).
    plausible = len(name) <= users.MAX_NAME_LENGTH and len(password) <= users.MAX_PASSWORD_LENGTH
    login = await request.app.state.store.run(users.find_login, name) if plausible else None
    if not plausible or not await verified(request, login, password):
        await limiter.failed(request)
        await by_name.failed(name)
        raise _wrong("password")
    assert login is not None
    await by_name.succeeded(name)
    return user_session(request, login.user)


@documented(
    "Sign the browser in: with a user's name and password, or a token",
    {200: Answer("Signed in; the session cookie is set", SESSION, headers=("Set-Cookie",))},
    errors=(400, 401, 403, 429),
    body={
        "oneOf": [
            obj({"username": text(1), "password": text(1)}, closed=True),
            obj({"token": text(1)}, closed=True),
        ]
    },
    description="Only from our own page's Origin (else `403 bad_origin`).",
)
async def create_session(request: Request) -> JSONResponse:
    _check_origin(request)
    settings = request.app.state.settings
    limiter: GuessLimiter = request.app.state.guess_limiter  # shared with AuthMiddleware
    limiter.check(request)
    body = await read_json_object(request)
    if "username" in body or "password" in body:
        return await _password_sign_in(request, body)
    role = role_of_token(settings, body.get("token"))
    if role is None:
        await limiter.failed(request)
        raise ApiError(status.HTTP_401_UNAUTHORIZED, "unauthorized", "unknown token", field="token")
    return session_answer(request, token_cookie(settings, role), role, None)


async def _signed_in(request: Request) -> Principal | None:
    return await cookie_principal(request, request.cookies.get(SESSION_COOKIE, ""))


@documented("Who is signed in", {200: SESSION}, errors=(401,))
async def read_session(request: Request) -> JSONResponse:
    """The signed-in session of this cookie, for the page; 401 without one."""
    principal = await _signed_in(request)
    if principal is None or principal.session is None:
        raise ApiError(status.HTTP_401_UNAUTHORIZED, "unauthorized", "not signed in")
    user = principal.user
    return JSONResponse(
        {
            "user": None if user is None else {"id": user.id, "name": user.name},
            "role": principal.role,
            "csrf": csrf_of_cookie(request.app.state.secret, request.cookies[SESSION_COOKIE]),
        }
    )


@documented(
    "Sign out",
    {200: obj({"role": {"type": "null"}})},
    errors=(403,),
    description="Only from our own page's Origin; with a valid cookie, its `X-CSRF-Token` too.",
)
async def delete_session(request: Request) -> JSONResponse:
    _check_origin(request)
    state = request.app.state
    session = parse_cookie(state.settings, state.secret, request.cookies.get(SESSION_COOKIE, ""))
    response = JSONResponse({"role": None})
    if session is not None:
        # A cookie mutation like any other: a cross-site page may not sign you out.
        if not csrf_matches(state.secret, session.session_id, request.headers.get(CSRF_HEADER)):
            raise ApiError(
                status.HTTP_403_FORBIDDEN, "csrf", "signing out needs the session's X-CSRF-Token"
            )
        try:
            await revoke_session(request, session.session_id, session.seconds_left)
        except (RedisError, OSError):
            # Signed out in this browser all the same (the cookie is deleted below).
            response = unavailable("redis").response()
    response.delete_cookie(SESSION_COOKIE)
    return response


@documented(
    "Change your own password",
    {200: Answer("A fresh session; every other one ends", SESSION, headers=("Set-Cookie",))},
    errors=(400, 401),
    body=obj(
        {
            "current": text(1),
            "new": text(users.MIN_PASSWORD_LENGTH, users.MAX_PASSWORD_LENGTH),
        }
    ),
)
async def change_password(request: Request) -> JSONResponse:
    """``{"current", "new"}``: the signed-in user's own password."""
    principal = principal_of(request)
    user = principal.user
    if user is None:
        raise ApiError(
            status.HTTP_400_BAD_REQUEST,
            "no_user",
            "the admin and viewer tokens have no password; sign in as a user",
        )
    body = await read_json_object(request)
    current = _text(body, "current")
    try:
        new = users.checked_password(body.get("new"), "new")
    except InvalidInput as exc:
        raise _bad(exc.field, str(exc)) from None
    by_name: LoginLimiter = request.app.state.login_limiter
    await by_name.check(user.name)
    store = request.app.state.store
    login = await store.run(users.find_login, user.name)
    if login is None or login.user.id != user.id:
        raise ApiError(status.HTTP_401_UNAUTHORIZED, "unauthorized", "this user was removed")
    if len(current) > users.MAX_PASSWORD_LENGTH or not await verified(request, login, current):
        await by_name.failed(user.name)
        raise ApiError(
            status.HTTP_400_BAD_REQUEST,
            "wrong_password",
            "the current password is not right",
            field="current",
        )
    fresh = await run_in_threadpool(users.hash_password, new)
    changed = await store.run(
        partial(users.set_password, user_id=user.id, password_hash=fresh), writes=True
    )
    credentials: CredentialCache = request.app.state.credentials
    credentials.forget_user(user.id)
    if changed is None:
        raise ApiError(status.HTTP_401_UNAUTHORIZED, "unauthorized", "this user was removed")
    return user_session(request, changed)


routes = [
    Route("/api/session", create_session, methods=["POST"]),
    Route("/api/session", read_session, methods=["GET"]),
    Route("/api/session", delete_session, methods=["DELETE"]),
    Route("/api/session/password", change_password, methods=["POST"]),
]
