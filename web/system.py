"""The system's state, for the system page:

- ``GET /api/system/storage``: the free space of the work folder's and the library's
  filesystems against the reserve (``VIDFLEET_MIN_FREE_MB``); ``/readyz`` reports the
  same numbers. Sizes only, never the server's paths.
- ``GET /api/system/schedules``: every schedule (:mod:`db.schedules`) with its queue,
  cron, last run (``schedule_runs``) and next run (:mod:`db.cron`, from now).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from db import cron
from db.jobs import iso
from db.schedule_runs import last_runs
from db.schedules import SCHEDULES
from db.settings import Settings
from media.disk import disk_usage
from web.apidoc import BOOL, INT, STRING, array, documented, nullable, obj

STATVFS_TIMEOUT_S = 2.0


USAGE = nullable(obj({"free_bytes": INT, "total_bytes": INT}))
STORAGE = obj({"work": USAGE, "library": USAGE, "reserve_bytes": INT, "degraded": BOOL})


async def _usage(path: Path) -> dict[str, int] | None:
    """Free and total bytes, or None when the filesystem does not answer in time (a
    hung NFS mount) or at all."""
    # Not starlette's run_in_threadpool: on a timeout it would wait for the stuck
    # statvfs anyway; abandoning the thread lets the answer go out.
    with anyio.move_on_after(STATVFS_TIMEOUT_S):
        try:
            usage = await anyio.to_thread.run_sync(disk_usage, path, abandon_on_cancel=True)
        except OSError:
            return None
        return {"free_bytes": usage.free_bytes, "total_bytes": usage.total_bytes}
    return None


async def storage(settings: Settings) -> dict[str, Any]:
    """``{"work": {free_bytes, total_bytes} or None, "library": ..., "reserve_bytes"}``."""
    work, library = await asyncio.gather(_usage(settings.tmp_dir), _usage(settings.media_root))
    return {"work": work, "library": library, "reserve_bytes": settings.min_free_bytes}


def is_low(report: dict[str, Any]) -> bool:
    """Whether either place is below the reserve, or could not be measured."""
    return any(
        place is None or place["free_bytes"] < report["reserve_bytes"]
        for place in (report["work"], report["library"])
    )


@documented("Free space of the work folder and the library", {200: STORAGE})
async def system_storage(request: Request) -> JSONResponse:
    report = await storage(request.app.state.settings)
    return JSONResponse({**report, "degraded": is_low(report)})


@documented(
    "Every schedule, its last and next runs",
    {
        200: obj(
            {
                "items": array(
                    obj(
                        {
                            "name": STRING,
                            "queue": STRING,
                            "cron": STRING,
                            "does": STRING,
                            "last_run": nullable({"type": "object"}),
                            "next_run": nullable(STRING),
                        }
                    )
                ),
                "next": {"type": "null"},
            }
        )
    },
)
async def system_schedules(request: Request) -> JSONResponse:
    async with request.app.state.db() as session:
        runs = await session.run_sync(last_runs)
    now = datetime.now().astimezone()  # periodiq reads crons in the local time zone
    items = [
        {
            "name": schedule.name,
            "queue": str(schedule.queue),
            "cron": schedule.cron,
            "does": schedule.does,
            "last_run": runs[schedule.name].public() if schedule.name in runs else None,
            "next_run": iso(cron.next_run(schedule.cron, now)),
        }
        for schedule in SCHEDULES
    ]
    return JSONResponse({"items": items, "next": None})


routes = [
    Route("/api/system/storage", system_storage, methods=["GET"]),
    Route("/api/system/schedules", system_schedules, methods=["GET"]),
]
