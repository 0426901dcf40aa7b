"""The session cookie and the CSRF token, signed so every web replica checks them
without shared state.

Two shapes of cookie:

- ``v1.<role>.<issued>.<session id>.<mac>``: traded for the admin or viewer token, the
  MAC keyed by that very token, so rotating or removing the token ends its sessions.
- ``v2.<user id>.<epoch>.<issued>.<session id>.<mac>``: a user's, the MAC keyed by the
  server secret. The epoch is the user's ``session_epoch`` when it was made: a password
  change or removal makes it stale (checked in web/auth.py).

The server secret is ``VIDFLEET_SECRET_KEY``, else derived from the admin token, which
every replica already shares: rotating either ends every user session (and makes every
CSRF token stale). The CSRF token is an HMAC of the session id under that secret:
stateless, the same on every replica, and worthless without the HttpOnly cookie it
belongs to.

Every cookie is hostile input: anything not exactly one of these shapes (non-ASCII,
surrogates, extra dots, odd bytes) is simply not a session, never an error.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from db.models import Role
from db.settings import Settings

SESSION_COOKIE = "vf_session"
SESSION_MAX_AGE_S = 30 * 24 * 3600
MAX_ID_DIGITS = 12
_V1 = re.compile(r"v1\.(admin|viewer)\.([0-9]{1,12})\.([A-Za-z0-9_-]{16,64})\.([0-9a-f]{64})")
_V2 = re.compile(
    r"v2\.([1-9][0-9]{0,11})\.([0-9]{1,12})\.([0-9]{1,12})\.([A-Za-z0-9_-]{16,64})\.([0-9a-f]{64})"
)


@dataclass(frozen=True)
class CookieSession:
    """What a cookie whose MAC holds says: a bootstrap ``role`` (v1) or a ``user_id``
    and its ``epoch`` (v2), the session id, and the seconds it has left."""

    session_id: str
    seconds_left: int
    role: Role | None = None
    user_id: int | None = None
    epoch: int | None = None


def raw(text: str) -> bytes:
    # surrogatepass: a lone surrogate from JSON ("\ud800") compares unequal, not a crash.
    return text.encode("utf-8", "surrogatepass")


def token_of(settings: Settings, role: Role) -> str | None:
    secret = settings.admin_token if role is Role.admin else settings.viewer_token
    return str(secret) if secret is not None else None


def server_secret(settings: Settings) -> bytes:
    """The key of user cookies and CSRF tokens."""
    if settings.secret_key is not None:
        return raw(str(settings.secret_key))
    # A key of its own, not the token itself: a MAC under it says nothing of the token.
    return hmac.new(raw(str(settings.admin_token)), b"vidfleet session key", "sha256").digest()


def _mac(key: bytes, payload: str) -> str:
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()


def _session_id() -> str:
    return secrets.token_urlsafe(16)


def token_cookie(settings: Settings, role: Role) -> str:
    """A v1 cookie for the admin or viewer token."""
    key = token_of(settings, role)
    assert key is not None, "a session is only made for a token that exists"
    payload = f"v1.{role}.{int(time.time())}.{_session_id()}"
    return f"{payload}.{_mac(raw(key), payload)}"


def user_cookie(secret: bytes, user_id: int, epoch: int) -> str:
    """A v2 cookie for a user at its current session epoch."""
    payload = f"v2.{user_id}.{epoch}.{int(time.time())}.{_session_id()}"
    return f"{payload}.{_mac(secret, payload)}"


def _left(issued: int) -> int | None:
    left = issued + SESSION_MAX_AGE_S - time.time()
    return int(left) if 0 < left <= SESSION_MAX_AGE_S else None


def parse_cookie(settings: Settings, secret: bytes, value: str) -> CookieSession | None:
    """The session of a cookie whose MAC holds and that has not expired; None for
    anything else."""
    if not value.isascii():
        return None
    payload, _, mac = value.rpartition(".")
    if (match := _V1.fullmatch(value)) is not None:
        role, issued, session_id = Role(match[1]), int(match[2]), match[3]
        key = token_of(settings, role)
        left = _left(issued)
        if key is None or left is None or not hmac.compare_digest(mac, _mac(raw(key), payload)):
            return None
        return CookieSession(session_id=session_id, seconds_left=left, role=role)
    if (match := _V2.fullmatch(value)) is not None:
        user_id, epoch, issued, session_id = int(match[1]), int(match[2]), int(match[3]), match[4]
        left = _left(issued)
        if left is None or not hmac.compare_digest(mac, _mac(secret, payload)):
            return None
        return CookieSession(session_id=session_id, seconds_left=left, user_id=user_id, epoch=epoch)
    return None


def csrf_token(secret: bytes, session_id: str) -> str:
    return _mac(secret, f"csrf.{session_id}")


def csrf_matches(secret: bytes, session_id: str, given: str | None) -> bool:
    if given is None or not given.isascii():
        return False
    return hmac.compare_digest(given, csrf_token(secret, session_id))


def csrf_of_cookie(secret: bytes, cookie: str) -> str:
    """The CSRF token that goes with a cookie just made."""
    return csrf_token(secret, cookie.split(".")[-2])


def set_session_cookie(response: Response, request: Request, value: str) -> None:
    # Lax, not Strict: a link from elsewhere (a chat, a bookmark page) opens the page
    # signed in; a cross-site POST still goes without the cookie, and CSRF and Origin
    # checks refuse what a same-site one could try.
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=SESSION_MAX_AGE_S,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
