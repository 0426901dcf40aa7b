"""Who may call what: a bearer token, or the browser's signed session cookie.

``/api``, ``/stream``, ``/hls``, ``/thumbnails`` and ``/ws`` need a credential. The admin token
may mutate; the optional viewer token only reads. A cookie on a WebSocket (or on a
mutating request) is only accepted from an allowed Origin: the page's own, or one in
VIDFLEET_ALLOWED_ORIGINS.

The session cookie is ``v1.<role>.<issued>.<session id>.<mac>``, the MAC keyed by the
very token it was traded for: every web replica checks it without shared state, and
rotating or removing that token ends every session made with it. Signing out marks the
session id revoked in Redis for the rest of its life. Every credential input is
hostile: anything that is not exactly that shape (non-ASCII, surrogates, extra dots,
odd bytes) is simply not a credential, never an error.

Failed credentials are counted per client address; past
``VIDFLEET_AUTH_FAILURES_PER_MINUTE`` that address gets 429s until the minute is over.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from enum import StrEnum
from urllib.parse import urlsplit

from redis.exceptions import RedisError
from starlette import status
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from db import live
from db.outages import describe_failure
from db.settings import Settings
from web.errors import ApiError

logger = logging.getLogger(__name__)

SESSION_COOKIE = "vf_session"
SESSION_MAX_AGE_S = 30 * 24 * 3600
PROTECTED_PREFIXES = ("/api/", "/stream/", "/hls/", "/thumbnails/", "/artists/", "/ws")
OPEN_PATHS = frozenset({"/api/session"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_TOKEN_LENGTH = 512
FAILURE_WINDOW_S = 60
MAX_BLOCKED = 100_000
_COOKIE = re.compile(r"v1\.(admin|viewer)\.([0-9]{1,12})\.([A-Za-z0-9_-]{16,64})\.([0-9a-f]{64})")


class Role(StrEnum):
    admin = "admin"
    viewer = "viewer"


def _raw(text: str) -> bytes:
    # surrogatepass: a lone surrogate from JSON ("\ud800") compares unequal, not a crash.
    return text.encode("utf-8", "surrogatepass")


def _token_of(settings: Settings, role: Role) -> str | None:
    secret = settings.admin_token if role is Role.admin else settings.viewer_token
    return str(secret) if secret is not None else None


def role_of_token(settings: Settings, token: object) -> Role | None:
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_LENGTH:
        return None
    for role in Role:
        expected = _token_of(settings, role)
        if expected is not None and hmac.compare_digest(_raw(token), _raw(expected)):
            return role
    return None


def _mac(key: str, payload: str) -> str:
    return hmac.new(_raw(key), payload.encode(), hashlib.sha256).hexdigest()


def make_session_cookie(settings: Settings, role: Role) -> str:
    key = _token_of(settings, role)
    assert key is not None, "a session is only made for a token that exists"
    payload = f"v1.{role}.{int(time.time())}.{secrets.token_urlsafe(16)}"
    return f"{payload}.{_mac(key, payload)}"


def parse_session_cookie(settings: Settings, value: str) -> tuple[Role, str, int] | None:
    """``(role, session id, seconds left)`` of a cookie whose MAC holds under the
    role's current token; None for anything else."""
    match = _COOKIE.fullmatch(value) if value.isascii() else None
    if match is None:
        return None
    role, issued, session_id, mac = Role(match[1]), int(match[2]), match[3], match[4]
    left = issued + SESSION_MAX_AGE_S - time.time()
    key = _token_of(settings, role)
    if key is None or not 0 < left <= SESSION_MAX_AGE_S:
        return None
    payload = value.rsplit(".", 1)[0]
    if not hmac.compare_digest(mac.encode(), _mac(key, payload).encode()):
        return None
    return role, session_id, int(left)


async def session_revoked(connection: HTTPConnection, session_id: str) -> bool:
    """Whether the session signed out. While Redis cannot answer, a cookie whose MAC
    holds stays valid (reads keep working in an outage); rotating the token is the
    revocation that needs no Redis."""
    try:
        return bool(await connection.app.state.redis.exists(live.revoked_session_key(session_id)))
    except (RedisError, OSError) as exc:
        logger.warning(
            "could not check a session's revocation (%s); accepting it", describe_failure(exc)
        )
        return False


async def revoke_session(connection: HTTPConnection, session_id: str, ttl: int) -> None:
    await connection.app.state.redis.set(live.revoked_session_key(session_id), "1", ex=ttl)


def origin_allowed(settings: Settings, headers: Headers) -> bool:
    """The Origin is this site's own (same host) or one the settings allow."""
    origin = headers.get("origin")
    if origin is None:
        return False
    origin = origin.rstrip("/")
    if origin in settings.allowed_origins:
        return True
    try:
        return urlsplit(origin).netloc == headers.get("host")
    except ValueError:
        return False


class GuessLimiter:
    """Counts failed credentials per client address in Redis, shared by every web
    replica; a fixed one-minute window, by hand (Dramatiq's rate limiters are
    synchronous and built for workers, and this runs on the web's event loop).

    A process that counts a failure past the limit blocks that address itself until
    the window ends, so a request with a credential costs no Redis round trip: an
    address spread over N replicas gets at most N guesses more than the limit.
    """

    def __init__(self, settings: Settings) -> None:
        self.limit = settings.auth_failures_per_minute
        self.blocked: dict[str, float] = {}  # client address -> monotonic end of block

    @staticmethod
    def client(connection: HTTPConnection) -> str:
        return connection.client.host if connection.client else "unknown"

    def retry_after(self, connection: HTTPConnection) -> int | None:
        """Seconds until this client may try again, or None when it may now."""
        until = self.blocked.get(self.client(connection))
        if until is None:
            return None
        left = until - time.monotonic()
        if left <= 0:
            del self.blocked[self.client(connection)]
            return None
        return max(int(left), 1)

    async def failed(self, connection: HTTPConnection) -> None:
        client = self.client(connection)
        key = live.auth_failures_key(client)
        try:
            async with connection.app.state.redis.pipeline(transaction=True) as pipe:
                # SET NX starts the window; INCR keeps its TTL (Redis 6.2 has no EXPIRE NX).
                _, failures, ttl = await (
                    pipe.set(key, 0, ex=FAILURE_WINDOW_S, nx=True).incr(key).ttl(key).execute()
                )
        except (RedisError, OSError) as exc:
            logger.warning("could not count a failed credential (%s)", describe_failure(exc))
            return
        if int(failures) >= self.limit:
            if len(self.blocked) > MAX_BLOCKED:
                self.blocked.clear()  # bounded memory beats a perfect block list
            self.blocked[client] = time.monotonic() + max(int(ttl), 1)

    def check(self, connection: HTTPConnection) -> None:
        """Raise a 429 while this client has failed too often."""
        wait = self.retry_after(connection)
        if wait is not None:
            raise ApiError(
                status.HTTP_429_TOO_MANY_REQUESTS,
                "too_many_failures",
                f"too many failed credentials from this address; try again in {wait} s",
                headers={"Retry-After": str(wait)},
            )


class AuthMiddleware:
    """Puts ``scope["role"]`` and ``scope["credential"]`` on protected requests, or
    answers 401/403/429 itself."""

    def __init__(self, app: ASGIApp, *, settings: Settings, limiter: GuessLimiter) -> None:
        self.app = app
        self.settings = settings
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self._protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        try:
            role, via_cookie = await self._authenticate(connection)
            self._check(scope, connection, role, via_cookie)
        except ApiError as refusal:
            if scope["type"] == "websocket":
                # Closing before accept makes the server answer the handshake with 403.
                await send({"type": "websocket.close", "code": status.WS_1008_POLICY_VIOLATION})
                return
            await refusal.response()(scope, receive, send)
            return
        scope["role"] = role
        scope["credential"] = str(role)
        await self.app(scope, receive, send)

    @staticmethod
    def _protected(path: str) -> bool:
        return path not in OPEN_PATHS and (path == "/ws" or path.startswith(PROTECTED_PREFIXES))

    async def _authenticate(self, connection: HTTPConnection) -> tuple[Role | None, bool]:
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        cookie = connection.cookies.get(SESSION_COOKIE)
        if not (scheme.lower() == "bearer" and token) and not cookie:
            return None, False  # no credential at all: not a guess
        self.limiter.check(connection)
        role: Role | None = None
        if scheme.lower() == "bearer" and token:
            role, via_cookie = role_of_token(self.settings, token.strip()), False
        else:
            via_cookie = True
            session = parse_session_cookie(self.settings, cookie or "")
            if session is not None and not await session_revoked(connection, session[1]):
                role = session[0]
        if role is None:
            await self.limiter.failed(connection)
        return role, via_cookie

    def _check(
        self, scope: Scope, connection: HTTPConnection, role: Role | None, via_cookie: bool
    ) -> None:
        if role is None:
            raise ApiError(
                status.HTTP_401_UNAUTHORIZED,
                "unauthorized",
                "a valid credential is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        cross_site_risk = scope["type"] == "websocket" or scope["method"] not in SAFE_METHODS
        if via_cookie and cross_site_risk and not origin_allowed(self.settings, connection.headers):
            raise ApiError(
                status.HTTP_403_FORBIDDEN, "bad_origin", "this Origin may not use the cookie"
            )
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS and role != Role.admin:
            raise ApiError(status.HTTP_403_FORBIDDEN, "forbidden", "the viewer token can only read")
