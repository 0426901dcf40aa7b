"""The Starlette application: ``uvicorn --factory web.app:create_app``.

The lifespan opens the async database engine, a Redis client and the ProgressHub (one
stream reader per process); every handler answers at once, and anything slow runs in a
worker, never in the request.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import FileResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from db import live
from db.engine import async_session_factory, make_async_engine
from db.settings import Settings, get_settings
from web import health, jobs, session, streams, videos
from web.auth import AuthMiddleware
from web.errors import exception_handlers
from web.hub import ProgressHub
from web.ws import JobEvents

STATIC = Path(__file__).with_name("static")


async def index(request: object) -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = make_async_engine(settings.async_database_url)
        app.state.db = async_session_factory(engine)
        app.state.redis = live.async_client(settings.redis_url, socket_timeout=10)
        app.state.publish = app.state.redis.register_script(live.PUBLISH_SCRIPT)
        app.state.hub = ProgressHub(settings.redis_url)
        await app.state.hub.start()
        try:
            yield
        finally:
            await app.state.hub.stop()
            await app.state.redis.aclose()
            await engine.dispose()

    app = Starlette(
        routes=[
            Route("/", index),
            *health.routes,
            *session.routes,
            *videos.routes,
            *jobs.routes,
            *streams.routes,
            WebSocketRoute("/ws", JobEvents),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[Middleware(AuthMiddleware, settings=settings)],
        exception_handlers=exception_handlers,
        lifespan=lifespan,
    )
    app.state.settings = settings
    return app
