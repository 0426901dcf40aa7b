"""Who may call what: a bearer token, or the browser's signed session cookie.

``/api``, ``/stream``, ``/thumbnails`` and ``/ws`` need a credential. The admin token
may mutate; the optional viewer token only reads. The cookie is an HMAC over the role
and the time it was issued, keyed by the admin token, so every web replica can check
it without shared state. A cookie on a WebSocket (or on a mutating request) is only
accepted from an allowed Origin: the page's own, or one in VIDFLEET_ALLOWED_ORIGINS.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from enum import StrEnum
from urllib.parse import urlsplit

from starlette import status
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from db.settings import Settings
from web.errors import error_response

SESSION_COOKIE = "vf_session"
SESSION_MAX_AGE_S = 30 * 24 * 3600
PROTECTED_PREFIXES = ("/api/", "/stream/", "/thumbnails/", "/ws")
OPEN_PATHS = frozenset({"/api/session"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Role(StrEnum):
    admin = "admin"
    viewer = "viewer"


def _sign(settings: Settings, payload: str) -> str:
    key = str(settings.admin_token).encode()
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()


def role_of_token(settings: Settings, token: str) -> Role | None:
    if hmac.compare_digest(token.encode(), str(settings.admin_token).encode()):
        return Role.admin
    viewer = settings.viewer_token
    if viewer is not None and hmac.compare_digest(token.encode(), str(viewer).encode()):
        return Role.viewer
    return None


def make_session_cookie(settings: Settings, role: Role) -> str:
    payload = f"{role}.{int(time.time())}"
    return f"{payload}.{_sign(settings, payload)}"


def role_of_cookie(settings: Settings, value: str) -> Role | None:
    try:
        role, issued, signature = value.split(".")
        age = time.time() - int(issued)
    except ValueError:
        return None
    if not 0 <= age <= SESSION_MAX_AGE_S:
        return None
    if not hmac.compare_digest(signature, _sign(settings, f"{role}.{issued}")):
        return None
    return Role(role) if role in Role.__members__ else None


def origin_allowed(settings: Settings, headers: Headers) -> bool:
    """The Origin is this site's own (same host) or one the settings allow."""
    origin = headers.get("origin")
    if origin is None:
        return False
    origin = origin.rstrip("/")
    if origin in settings.allowed_origins:
        return True
    return urlsplit(origin).netloc == headers.get("host")


class AuthMiddleware:
    """Puts ``scope["role"]`` on protected requests, or answers 401/403 itself."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self._protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        role, via_cookie = self._authenticate(connection)
        problem = self._refusal(scope, connection, role, via_cookie)
        if problem is not None:
            status_code, code, message = problem
            if scope["type"] == "websocket":
                # Closing before accept makes the server answer the handshake with 403.
                await send({"type": "websocket.close", "code": status.WS_1008_POLICY_VIOLATION})
                return
            response = error_response(status_code, code, message)
            if status_code == status.HTTP_401_UNAUTHORIZED:
                response.headers["WWW-Authenticate"] = "Bearer"
            await response(scope, receive, send)
            return
        scope["role"] = role
        await self.app(scope, receive, send)

    @staticmethod
    def _protected(path: str) -> bool:
        return path not in OPEN_PATHS and (path == "/ws" or path.startswith(PROTECTED_PREFIXES))

    def _authenticate(self, connection: HTTPConnection) -> tuple[Role | None, bool]:
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token:
            return role_of_token(self.settings, token.strip()), False
        cookie = connection.cookies.get(SESSION_COOKIE)
        if cookie:
            return role_of_cookie(self.settings, cookie), True
        return None, False

    def _refusal(
        self, scope: Scope, connection: HTTPConnection, role: Role | None, via_cookie: bool
    ) -> tuple[int, str, str] | None:
        if role is None:
            return status.HTTP_401_UNAUTHORIZED, "unauthorized", "a valid credential is required"
        cross_site_risk = scope["type"] == "websocket" or scope["method"] not in SAFE_METHODS
        if via_cookie and cross_site_risk and not origin_allowed(self.settings, connection.headers):
            return status.HTTP_403_FORBIDDEN, "bad_origin", "this Origin may not use the cookie"
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS and role != Role.admin:
            return status.HTTP_403_FORBIDDEN, "forbidden", "the viewer token can only read"
        return None
