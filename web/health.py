"""``/healthz`` (the process answers) and ``/readyz`` (Redis and the database answer;
``degraded``, still 200, when the work folder or the library is below the reserve)."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from starlette import status
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from web import system
from web.apidoc import STRING, Answer, documented, obj

CHECK_TIMEOUT_S = 2.0


READY = obj(
    {
        "status": {"enum": ["ok", "degraded", "unavailable"]},
        "checks": obj({"database": STRING, "redis": STRING}),
        "storage": {"type": "object"},
    }
)


@documented("The process answers", {200: obj({"status": {"const": "ok"}})})
async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


@documented(
    "Redis and the database answer",
    {
        200: READY,
        503: Answer("A store does not answer: `checks` says which", READY),
    },
)
async def readyz(request: Request) -> JSONResponse:
    async def database() -> None:
        async with request.app.state.db() as session:
            await session.execute(text("SELECT 1"))

    async def redis() -> None:
        await request.app.state.redis.ping()

    checks = {}
    for name, check in (("database", database), ("redis", redis)):
        try:
            await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"error: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    # Low disk still serves (streams, reads); downloads fail with disk_full meanwhile.
    storage = await system.storage(request.app.state.settings)
    state = "unavailable" if not ready else "degraded" if system.is_low(storage) else "ok"
    return JSONResponse(
        {"status": state, "checks": checks, "storage": storage},
        status_code=status.HTTP_200_OK if ready else status.HTTP_503_SERVICE_UNAVAILABLE,
    )


routes = [Route("/healthz", healthz), Route("/readyz", readyz)]
