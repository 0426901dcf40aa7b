"""Security headers on every HTTP response, set where the response starts.

Every response gets ``X-Content-Type-Options: nosniff`` (a browser never guesses a
type, so a JSON body or a downloaded file can't run as HTML or script) and
``Referrer-Policy: no-referrer`` (no URL of ours, with its ids and query, is sent on to
another site). A response without a ``Content-Security-Policy`` of its own gets one:
the page may load only our own scripts, styles and connections (no inline script, so
an injected string can't run); any other response, opened as a document, loads
nothing, runs sandboxed and can't be framed. A route that sets a policy itself
(``/stream`` sends ``sandbox``) keeps it.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTML_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        # The player's HLS (hls.js) feeds the <video> through Media Source Extensions,
        # whose source is a blob: URL of the page's own making. Its transmuxing worker
        # is a file of ours (script-src 'self' covers it), never a blob: worker.
        "media-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
OTHER_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"


class SecurityHeaders:
    """Add the headers above to every ``http.response.start``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])  # optional in ASGI
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                if "content-security-policy" not in headers:
                    html = headers.get("content-type", "").lower().startswith("text/html")
                    headers["Content-Security-Policy"] = HTML_POLICY if html else OTHER_POLICY
            await send(message)

        await self.app(scope, receive, send_with_headers)
