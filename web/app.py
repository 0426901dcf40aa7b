"""The Starlette application: ``uvicorn --factory web.app:create_app``.

The lifespan opens the async database engine (and, for the busiest routes, a
:class:`db.engine.ConnectionRunner`), a Redis client and the ProgressHub (one
stream reader per process); every handler answers at once, and anything slow runs in a
worker, never in the request.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.routing import Mount, WebSocketRoute
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

from db import live
from db.engine import ConnectionRunner, async_session_factory, make_async_engine
from db.logs import configure_logging
from db.outbox import Courier, web_sender
from db.settings import Settings, get_settings
from web import (
    artists,
    bulk,
    dead_letters,
    fleet,
    health,
    hls,
    hooks,
    jobs,
    metrics,
    openapi,
    pages,
    playlists,
    relayout,
    session,
    sessions,
    streams,
    subtitles,
    system,
    thumbnails,
    tokens,
    users,
    videos,
)
from web.auth import AuthMiddleware, GuessLimiter
from web.body_limit import BodyLimit
from web.cookies import server_secret
from web.credentials import CredentialCache
from web.errors import exception_handlers
from web.hub import ProgressHub
from web.login_limit import LoginLimiter
from web.metrics import WebMetrics
from web.request_id import RequestId
from web.request_metrics import RequestMetrics
from web.security_headers import SecurityHeaders
from web.sessions import StreamRegistry
from web.ws import JobEvents


class PageAssets(StaticFiles):
    """The page's script and styles, revalidated on every load like the page (a 304
    while unchanged), so a new release never runs a fresh page with a stale script."""

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        return response


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    configure_logging(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Bounded, so a request on a store that is gone fails soon and answers 503
        # (web/errors.py) instead of waiting on it.
        engine = make_async_engine(
            settings.async_database_url,
            connect_timeout=settings.db_connect_timeout,
            statement_timeout=settings.db_statement_timeout,
        )
        app.state.db = async_session_factory(engine)
        # The busiest routes' unit of work, with one hand-off (see ConnectionRunner).
        app.state.store = ConnectionRunner(
            settings.database_url,
            async_engine=engine,
            connect_timeout=settings.db_connect_timeout,
            statement_timeout=settings.db_statement_timeout,
        )
        app.state.redis = live.async_client(settings.redis_url, timeout=settings.redis_timeout)
        app.state.credentials = CredentialCache(app.state.store)
        app.state.login_limiter = LoginLimiter(
            app.state.redis, limit=settings.login_failures_per_user
        )
        # What the jobs service asks of Redis goes out through it (db/outbox.py).
        app.state.courier = Courier(app.state.redis, web_sender(settings))
        app.state.hub = ProgressHub(settings.redis_url)
        await app.state.hub.start()
        app.state.streams = StreamRegistry(
            app.state.redis,
            limit=settings.max_transcodes,
            per_client=settings.max_transcodes_per_client,
            ttl_s=settings.heartbeat_timeout,
        )
        app.state.streams.start()
        # Everything built so far lives as long as the process (the modules: ~85,000
        # objects, yt-dlp's and PyAV's among them through the actors' declarations).
        # Frozen, the cyclic GC no longer scans them in every full collection, a pause
        # of tens of milliseconds that was a large part of the API's p99.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            await app.state.streams.stop()
            await app.state.hub.stop()
            await app.state.redis.aclose()
            app.state.courier.sender.close()
            app.state.store.dispose()
            await engine.dispose()

    limiter = GuessLimiter(settings)
    web_metrics = WebMetrics()
    routes = [
        *pages.routes,
        *health.routes,
        *openapi.routes,
        *session.routes,
        *users.routes,
        *tokens.routes,
        *videos.routes,
        *bulk.routes,
        *relayout.routes,
        *jobs.routes,
        *streams.routes,
        *thumbnails.routes,
        *subtitles.routes,
        *artists.routes,
        *playlists.routes,
        *hls.routes,
        *system.routes,
        *hooks.routes,
        *fleet.routes,
        *dead_letters.routes,
        *sessions.routes,
        *metrics.routes,
        WebSocketRoute("/ws", JobEvents),
        Mount("/static", PageAssets(directory=pages.STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            # Outermost: every line logged in a request has its id, and every answer
            # (the refusals of the middleware below too) is counted and timed.
            Middleware(RequestId),
            Middleware(
                RequestMetrics,
                requests=web_metrics.requests,
                latency=web_metrics.latency,
                routes=routes,
            ),
            Middleware(SecurityHeaders),  # first, so even BodyLimit's refusals get them
            # Before anything that could read a body: none is read past the cap.
            Middleware(BodyLimit, uploads={artists.IMAGE_PATH: settings.max_upload_bytes}),
            Middleware(AuthMiddleware, settings=settings, limiter=limiter),
        ],
        exception_handlers=exception_handlers,
        lifespan=lifespan,
    )
    web_metrics.watch(app.state)
    app.state.metrics = web_metrics
    app.state.settings = settings
    app.state.guess_limiter = limiter
    app.state.secret = server_secret(settings)
    return app
