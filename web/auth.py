"""Who may call what: a bearer token, or the browser's signed session cookie.

``/api``, ``/stream``, ``/hls``, ``/thumbnails``, ``/subtitles``, ``/artists``, ``/ws``
and ``/metrics`` need a credential; this middleware refuses every request there that has
none (default deny: a new route cannot forget a decorator). Credentials:

- the admin token (may mutate) and the optional viewer token (only reads): the
  bootstrap credentials from the settings;
- a user's API token (``vf_...``, db/users.py), acting as its user with its role;
- on ``/metrics`` only, the scrape token (``VIDFLEET_METRICS_TOKEN``), which reads
  nothing else;
- the session cookie (web/cookies.py) traded for one of those tokens or for a user's
  name and password; a user's cookie stops counting when the user's session epoch
  moves on (a password change) or the user is removed.

A cookie on a WebSocket or a mutating request is only accepted from an allowed
Origin (the page's own, or one in VIDFLEET_ALLOWED_ORIGINS), and a mutating request
with a cookie must also carry the session's CSRF token in ``X-CSRF-Token``: a plain
cross-site form can send neither. Bearer requests need neither, as no browser adds
them by itself. Signing out marks the session id revoked in Redis for the rest of its
life. Every credential input is hostile: anything that is not exactly a credential is
simply not one, never an error.

Viewers get a 403 on every mutating request, except on the few self-service routes
(own password, own API tokens) that check ownership themselves.

Failed credentials are counted per client address; past
``VIDFLEET_AUTH_FAILURES_PER_MINUTE`` that address gets 429s until the minute is over.
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from redis.exceptions import RedisError
from starlette import status
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from db import live
from db.models import Role
from db.outages import describe_failure, unavailable_store
from db.settings import Settings
from db.users import UserAuth
from web.cookies import SESSION_COOKIE, CookieSession, csrf_matches, parse_cookie, raw, token_of
from web.credentials import CredentialCache
from web.errors import ApiError, unavailable

logger = logging.getLogger(__name__)

PROTECTED_PREFIXES = (
    "/api/", "/stream/", "/hls/", "/thumbnails/", "/subtitles/", "/artists/", "/ws",
)  # fmt: skip
PROTECTED_PATHS = frozenset({"/ws", "/metrics"})
METRICS_PATH = "/metrics"
#: The credential of the scrape token: a viewer's reads, and only on ``/metrics``.
SCRAPER = "metrics"
OPEN_PATHS = frozenset({"/api/session"})
#: Mutating routes a viewer may call: each one lets a caller change only what is its own.
SELF_SERVICE_PATHS = frozenset({"/api/session/password", "/api/tokens"})
SELF_SERVICE_PREFIXES = ("/api/tokens/",)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
MAX_TOKEN_LENGTH = 512
FAILURE_WINDOW_S = 60
MAX_BLOCKED = 100_000


@dataclass(frozen=True)
class Principal:
    """Who a request is: its role, the user (None for a bootstrap token), the stable
    id per-credential caps count (``user:<id>``, or the bootstrap role), and the
    cookie's session when it came with one."""

    role: Role
    credential: str
    user: UserAuth | None = None
    session: CookieSession | None = None


def role_of_token(settings: Settings, token: object) -> Role | None:
    """The bootstrap role of the admin or viewer token; None for anything else."""
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_LENGTH:
        return None
    for role in Role:
        expected = token_of(settings, role)
        if expected is not None and hmac.compare_digest(raw(token), raw(expected)):
            return role
    return None


def of_user(user: UserAuth, session: CookieSession | None = None) -> Principal:
    return Principal(role=user.role, credential=f"user:{user.id}", user=user, session=session)


def principal_of(connection: HTTPConnection) -> Principal:
    """The request's principal, set by :class:`AuthMiddleware` on protected paths."""
    principal = connection.scope.get("principal")
    assert isinstance(principal, Principal), "only protected paths have a principal"
    return principal


async def session_revoked(connection: HTTPConnection, session_id: str) -> bool:
    """Whether the session signed out. While Redis cannot answer, a cookie whose MAC
    holds stays valid (reads keep working in an outage); rotating the token or the
    secret is the revocation that needs no Redis."""
    try:
        return bool(await connection.app.state.redis.exists(live.revoked_session_key(session_id)))
    except (RedisError, OSError) as exc:
        logger.warning(
            "could not check a session's revocation (%s); accepting it", describe_failure(exc)
        )
        return False


async def revoke_session(connection: HTTPConnection, session_id: str, ttl: int) -> None:
    await connection.app.state.redis.set(live.revoked_session_key(session_id), "1", ex=ttl)


async def cookie_principal(connection: HTTPConnection, value: str) -> Principal | None:
    """The principal of a session cookie that is valid now: its MAC holds, it has not
    expired or signed out, and a user's is of the user's current session epoch."""
    state = connection.app.state
    session = parse_cookie(state.settings, state.secret, value)
    if session is None or await session_revoked(connection, session.session_id):
        return None
    if session.role is not None:
        return Principal(role=session.role, credential=str(session.role), session=session)
    assert session.user_id is not None
    credentials: CredentialCache = state.credentials
    user = await credentials.user(session.user_id)
    if user is None or user.session_epoch != session.epoch:
        return None
    return of_user(user, session)


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
    """Puts ``scope["principal"]``, ``scope["role"]`` and ``scope["credential"]`` on
    protected requests, or answers 401/403/429 (503 while the database cannot say who
    a user is) itself."""

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
            principal, via_cookie = await self._authenticate(connection)
            self._check(scope, connection, principal, via_cookie)
        except Exception as exc:
            refusal = exc if isinstance(exc, ApiError) else self._outage(exc)
            if scope["type"] == "websocket":
                # Closing before accept makes the server answer the handshake with 403.
                code = (
                    status.WS_1013_TRY_AGAIN_LATER
                    if refusal.status_code == status.HTTP_503_SERVICE_UNAVAILABLE
                    else status.WS_1008_POLICY_VIOLATION
                )
                await send({"type": "websocket.close", "code": code})
                return
            await refusal.response()(scope, receive, send)
            return
        assert principal is not None
        scope["principal"] = principal
        scope["role"] = principal.role
        scope["credential"] = principal.credential
        await self.app(scope, receive, send)

    @staticmethod
    def _outage(exc: Exception) -> ApiError:
        """A store that could not answer becomes a 503; anything else is a bug."""
        store = unavailable_store(exc)
        if store is None:
            raise exc
        logger.warning("could not check a credential: the %s is unavailable", store)
        return unavailable(store)

    @staticmethod
    def _protected(path: str) -> bool:
        return path not in OPEN_PATHS and (
            path in PROTECTED_PATHS or path.startswith(PROTECTED_PREFIXES)
        )

    async def _authenticate(self, connection: HTTPConnection) -> tuple[Principal | None, bool]:
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        bearer = scheme.lower() == "bearer" and bool(token)
        cookie = connection.cookies.get(SESSION_COOKIE)
        if not bearer and not cookie:
            return None, False  # no credential at all: not a guess
        self.limiter.check(connection)
        principal: Principal | None = None
        if bearer:
            principal = await self._bearer(connection, token.strip())
        else:
            principal = await cookie_principal(connection, cookie or "")
        if principal is None:
            await self.limiter.failed(connection)
        return principal, not bearer

    async def _bearer(self, connection: HTTPConnection, token: str) -> Principal | None:
        if len(token) > MAX_TOKEN_LENGTH:
            return None
        role = role_of_token(self.settings, token)
        if role is not None:
            return Principal(role=role, credential=str(role))
        scrape_token = self.settings.metrics_token
        if (
            connection.scope["path"] == METRICS_PATH
            and scrape_token is not None
            and hmac.compare_digest(raw(token), raw(str(scrape_token)))
        ):
            return Principal(role=Role.viewer, credential=SCRAPER)
        credentials: CredentialCache = connection.app.state.credentials
        found = await credentials.token(token)
        return None if found is None else of_user(found.user)

    @staticmethod
    def _self_service(path: str) -> bool:
        return path in SELF_SERVICE_PATHS or path.startswith(SELF_SERVICE_PREFIXES)

    def _check(
        self,
        scope: Scope,
        connection: HTTPConnection,
        principal: Principal | None,
        via_cookie: bool,
    ) -> None:
        if principal is None:
            raise ApiError(
                status.HTTP_401_UNAUTHORIZED,
                "unauthorized",
                "a valid credential is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        mutating = scope["type"] == "http" and scope["method"] not in SAFE_METHODS
        cross_site_risk = mutating or scope["type"] == "websocket"
        if via_cookie and cross_site_risk and not origin_allowed(self.settings, connection.headers):
            raise ApiError(
                status.HTTP_403_FORBIDDEN, "bad_origin", "this Origin may not use the cookie"
            )
        if via_cookie and mutating:
            assert principal.session is not None
            given = connection.headers.get(CSRF_HEADER)
            if not csrf_matches(connection.app.state.secret, principal.session.session_id, given):
                raise ApiError(
                    status.HTTP_403_FORBIDDEN,
                    "csrf",
                    "a request with the session cookie must carry its X-CSRF-Token "
                    "(from /api/session)",
                )
        if mutating and principal.role != Role.admin and not self._self_service(scope["path"]):
            raise ApiError(status.HTTP_403_FORBIDDEN, "forbidden", "a viewer can only read")
