"""The calls that tell others the library changed: Jellyfin's and Plex's library
refresh, and a signed webhook. Each is one HTTP request with a short timeout, no
redirect followed (a 3xx is a failure: the operator's URL is where the token may go,
nowhere else), no proxy or netrc from the environment, and an answer of
:class:`CallOutcome`, never an exception.

- Jellyfin: ``POST {url}/Library/Refresh`` with ``Authorization: MediaBrowser
  Token="<token>"`` (the scheme Jellyfin documents; the older ``X-Emby-Token`` header
  is deprecated and refused by newer servers). It answers ``204`` and scans in the
  background.
- Plex: ``GET {url}/library/sections/all/refresh`` (or ``/sections/<key>/refresh``)
  with ``X-Plex-Token``; it answers ``200``.
- Webhook: ``POST {url}`` of a JSON body, with ``X-Vidfleet-Timestamp`` (Unix seconds)
  and ``X-Vidfleet-Signature: sha256=<hex>``, the HMAC-SHA256 under the secret of
  ``<timestamp>.<body>`` (:func:`signature`): the timestamp is signed too, so a receiver
  that refuses old timestamps cannot be fed a replay.

A connection error, a timeout, ``429`` and ``5xx`` are worth another try
(``retryable``); any other answer outside 2xx is not (a ``401`` stays a ``401``).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import httpx

TIMEOUT_S = 10.0
#: How much of a failure's text is kept.
MAX_ERROR_CHARS = 200
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
SIGNATURE_HEADER = "X-Vidfleet-Signature"
TIMESTAMP_HEADER = "X-Vidfleet-Timestamp"
EVENT_HEADER = "X-Vidfleet-Event"


@dataclass(frozen=True)
class CallOutcome:
    """How one call went: ``ok`` (a 2xx), else the HTTP ``status`` it answered or the
    ``error`` that kept it from answering, and whether another try may do better."""

    ok: bool
    status: int | None = None
    error: str | None = None
    retryable: bool = False

    def summary(self) -> str:
        """``ok``, ``http 401`` or ``error: <reason>``: what the system page shows."""
        if self.ok:
            return "ok"
        if self.status is not None:
            return f"http {self.status}"
        return f"error: {self.error}"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 under ``secret`` of ``b"<timestamp>." + body``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def refresh_jellyfin(url: str, token: str, *, timeout: float = TIMEOUT_S) -> CallOutcome:
    """Ask the Jellyfin server at ``url`` to scan its libraries."""
    headers = {"Authorization": f'MediaBrowser Token="{token}"'}
    return _call("POST", f"{url}/Library/Refresh", headers, secret=token, timeout=timeout)


def refresh_plex(
    url: str, token: str, *, section: str = "", timeout: float = TIMEOUT_S
) -> CallOutcome:
    """Ask the Plex server at ``url`` to scan one library section (all when empty)."""
    target = f"{url}/library/sections/{section or 'all'}/refresh"
    return _call("GET", target, {"X-Plex-Token": token}, secret=token, timeout=timeout)


def post_webhook(
    url: str,
    secret: str,
    body: bytes,
    *,
    event: str,
    timestamp: int,
    timeout: float = TIMEOUT_S,
) -> CallOutcome:
    """POST the JSON ``body`` to ``url``, signed (:func:`signature`) at ``timestamp``."""
    headers = {
        "Content-Type": "application/json",
        EVENT_HEADER: event,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }
    return _call("POST", url, headers, content=body, secret=secret, timeout=timeout)


def _call(
    method: str,
    url: str,
    headers: dict[str, str],
    *,
    secret: str,
    timeout: float,
    content: bytes | None = None,
) -> CallOutcome:
    try:
        # trust_env=False: no proxy, netrc or CA bundle from the environment; the
        # operator's URL is the one place the request goes.
        with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            response = client.request(method, url, headers=headers, content=content)
    except httpx.HTTPError as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        # httpx's texts name no header, but never let the secret through whatever they say.
        if secret:
            reason = reason.replace(secret, "***")
        return CallOutcome(ok=False, error=reason[:MAX_ERROR_CHARS], retryable=True)
    if response.is_success:
        return CallOutcome(ok=True, status=response.status_code)
    return CallOutcome(
        ok=False,
        status=response.status_code,
        retryable=response.status_code in RETRY_STATUSES,
    )
