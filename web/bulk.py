"""Bulk work on the library: ``POST /api/videos/bulk/thumbnails``.

A bulk request answers at once with a parent job (``202``); its parts are child jobs of
about 20 items each (:data:`db.job_service.PART_SIZE`) that any worker machine takes,
and the parent's progress and summary (done, failed with reasons, skipped) follow from
its parts (:func:`db.job_service.roll_up`). Cancelling the parent cancels the parts.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from starlette import status
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from db import job_service
from db.models import JobKind, Video
from db.queues import Queue
from web.errors import ApiError, read_json_object
from web.jobs import check_job_caps
from web.videos import MAX_ID

#: The most ids one request may name (``all`` or ``missing`` for the whole library).
MAX_IDS = 10_000


def _bad(code: str, message: str, field: str | None = None) -> ApiError:
    return ApiError(status.HTTP_400_BAD_REQUEST, code, message, field=field)


def _selection(body: dict[str, Any]) -> tuple[str, Any]:
    """Which videos: ``("ids", [...])``, ``("all", None)`` or ``("missing", None)``."""
    chosen = [key for key in ("ids", "all", "missing") if key in body]
    if len(chosen) != 1 or set(body) - {"ids", "all", "missing"}:
        raise _bad("invalid_selection", 'send one of "ids": [...], "all": true, "missing": true')
    key = chosen[0]
    if key == "ids":
        ids = body["ids"]
        if (
            not isinstance(ids, list)
            or not 1 <= len(ids) <= MAX_IDS
            or not all(type(i) is int and 1 <= i <= MAX_ID for i in ids)
        ):
            raise _bad("invalid_ids", f"ids must be 1 to {MAX_IDS} video ids", "ids")
        return key, sorted(set(ids))
    if body[key] is not True:
        raise _bad("invalid_selection", f"{key} must be true", key)
    return key, None


async def bulk_thumbnails(request: Request) -> JSONResponse:
    key, ids = _selection(await read_json_object(request))
    query = select(Video.id).order_by(Video.id)
    if key == "ids":
        query = query.where(Video.id.in_(ids))
    elif key == "missing":
        query = query.where(Video.thumbnail_widths.is_(None))
    settings = request.app.state.settings
    async with request.app.state.db() as session:
        found = list((await session.scalars(query)).all())
        batches = job_service.parts(found)
        owner = await check_job_caps(request, session, new=len(batches) + 1)
        params = {"selection": key, "videos": len(found)}
        if ids is not None:
            params["not_found"] = len(ids) - len(found)
        parent, outbox = await session.run_sync(
            lambda sync: job_service.submit_batch(
                sync,
                kind=JobKind.thumbnails,
                queue=Queue.bulk,
                params=params,
                owner=owner,
                max_attempts=settings.max_attempts,
                children=[
                    (JobKind.thumbnail_chunk, Queue.media, {"video_ids": part}) for part in batches
                ],
            )
        )
    await request.app.state.courier.deliver_async(outbox)
    return JSONResponse(
        parent,
        status_code=status.HTTP_202_ACCEPTED,
        headers={"Location": f"/api/jobs/{parent['id']}"},
    )


routes = [Route("/api/videos/bulk/thumbnails", bulk_thumbnails, methods=["POST"])]
