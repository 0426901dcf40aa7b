"""Counts every HTTP request by route template, method and status, and times it.

The route label is the template of the route that took the request
(``/api/jobs/{job_id}``), never its path: a label per raw path would let any client
grow the registry without bound. A request the auth middleware refused before routing
is matched against the routes here, so a 401 on ``/api/jobs/x`` counts under its
template too; a request no route matches is ``<unmatched>``, and a method no route
knows is ``other``. The latency is the time to the response's start (its status and
headers): the whole of a video stream would say how long the film is, not how fast
the server is. WebSockets are counted by the hub instead (web/metrics.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import Counter, Histogram
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "<unmatched>"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def template_of(route: BaseRoute) -> str:
    # path_format: the path without converters (``/api/videos/{video_id}``); a Mount's
    # ends in ``/{path}``.
    return str(getattr(route, "path_format", None) or getattr(route, "path", UNMATCHED))


class RequestMetrics:
    """Observes each HTTP request into ``requests`` (route, method, status) and
    ``latency`` (route, method).

    Parameters:
      app: the ASGI app to observe.
      requests: the counter.
      latency: the histogram, in seconds.
      routes: the app's routes, to name a request refused before it was routed.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        requests: Counter,
        latency: Histogram,
        routes: Sequence[BaseRoute],
    ) -> None:
        self.app = app
        self.requests = requests
        self.latency = latency
        self.routes = routes

    def _route(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is not None:
            return template_of(route)
        if "router" in scope:  # routed, and no route matched
            return UNMATCHED
        for candidate in self.routes:
            if candidate.matches(scope)[0] is not Match.NONE:
                return template_of(candidate)
        return UNMATCHED

    def _observe(self, scope: Scope, status: int, started: float) -> None:
        route = self._route(scope)
        method = scope["method"] if scope["method"] in METHODS else "other"
        self.latency.labels(route, method).observe(time.perf_counter() - started)
        self.requests.labels(route, method, str(status)).inc()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answered = False

        async def observed_send(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start" and not answered:
                answered = True
                self._observe(scope, message["status"], started)
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        except BaseException:
            if not answered:  # the server answers 500 for what escaped the app
                self._observe(scope, 500, started)
            raise
