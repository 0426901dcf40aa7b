"""Bulk work on the library: ``POST /api/videos/bulk/{thumbnails,analyze,delete}``, and
``DELETE /api/videos/{id}`` (a batch of one, through the same parts).

A bulk request answers at once with a parent job (``202``); its parts are child jobs of
about 20 items each (:data:`db.job_service.PART_SIZE`) that any worker machine takes,
and the parent's progress and summary (done, failed with reasons, skipped) follow from
its parts (:func:`db.job_service.roll_up`). Cancelling the parent cancels the parts.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, select
from starlette import status
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from db import job_service
from db.models import JobKind, Video
from db.queues import Queue
from web.apidoc import Answer, Schema, array, documented, integer, obj, ref
from web.errors import ApiError, not_found, read_json_object
from web.jobs import check_job_caps
from web.videos import MAX_ID

#: The most ids one request may name (``all`` or ``missing`` for the whole library).
MAX_IDS = 10_000


def _bad(code: str, message: str, field: str | None = None) -> ApiError:
    return ApiError(status.HTTP_400_BAD_REQUEST, code, message, field=field)


def _is_id(value: object) -> bool:
    """A video's or artist's id: JSON's ``7`` or ``7.0`` (one number to JSON, and to
    the JSON Schema of ``/openapi.json``), never ``true`` or ``7.5``."""
    if type(value) is float and value.is_integer():
        value = int(value)
    return type(value) is int and 1 <= value <= MAX_ID


def selection(body: dict[str, Any], flags: tuple[str, ...] = ("all",)) -> tuple[str, Any]:
    """Which items a bulk request names: ``("ids", [sorted unique ids])``, or
    ``(flag, None)`` for one of ``flags`` set to true (``all``; ``missing`` where the
    operation has it).

    Raises:
      ApiError: 400 unless exactly one of them is given, with 1 to :data:`MAX_IDS`
        positive ids.
    """
    keys = ("ids", *flags)
    chosen = [key for key in keys if key in body]
    if len(chosen) != 1 or set(body) - set(keys):
        choices = ", ".join([f'"{key}": true' for key in flags])
        raise _bad("invalid_selection", f'send one of "ids": [...], {choices}')
    key = chosen[0]
    if key == "ids":
        ids = body["ids"]
        if (
            not isinstance(ids, list)
            or not 1 <= len(ids) <= MAX_IDS
            or not all(_is_id(i) for i in ids)
        ):
            raise _bad("invalid_ids", f"ids must be 1 to {MAX_IDS} ids", "ids")
        return key, sorted({int(i) for i in ids})
    if body[key] is not True:
        raise _bad("invalid_selection", f"{key} must be true", key)
    return key, None


def selection_body(flags: tuple[str, ...]) -> Schema:
    """The schema of what :func:`selection` takes: exactly one of ``ids`` or a flag."""
    ids = array(integer(1, MAX_ID), minItems=1, maxItems=MAX_IDS)
    choices = [obj({"ids": ids}, closed=True)]
    choices += [obj({flag: {"const": True}}, closed=True) for flag in flags]
    return {"oneOf": choices}


async def start_batch(
    request: Request,
    *,
    items: Select[Any],
    kind: str,
    part_kind: str,
    part_queue: str,
    params: dict[str, Any],
    asked: int | None = None,
) -> JSONResponse:
    """Answer a bulk request: a parent job of ``kind`` (202, ``Location`` its URL) whose
    parts of :data:`db.job_service.PART_SIZE` items (the ids ``items`` selects) are jobs
    of ``part_kind`` on ``part_queue``. ``asked``: how many ids the request named (the
    parent's ``not_found`` says how many of them do not exist). Counts against the
    owner's job caps."""
    settings = request.app.state.settings
    async with request.app.state.db() as session:
        found = list((await session.scalars(items)).all())
        batches = job_service.parts(found)
        owner = await check_job_caps(request, session, new=len(batches) + 1)
        params = {**params, "items": len(found)}
        if asked is not None:
            params["not_found"] = asked - len(found)
        parent, outbox = await session.run_sync(
            lambda sync: job_service.submit_batch(
                sync,
                kind=kind,
                queue=Queue.bulk,
                params=params,
                owner=owner,
                max_attempts=settings.max_attempts,
                children=[(part_kind, part_queue, {"items": part}) for part in batches],
            )
        )
    await request.app.state.courier.deliver_async(outbox)
    return JSONResponse(
        parent,
        status_code=status.HTTP_202_ACCEPTED,
        headers={"Location": f"/api/jobs/{parent['id']}"},
    )


#: The subsets of the library a bulk request may name instead of ids.
SUBSETS: dict[str, ColumnElement[bool]] = {
    "missing": Video.thumbnail_widths.is_(None),  # no thumbnails yet
    "unanalyzed": Video.analyzed_at.is_(None),
}


async def _bulk_on_videos(
    request: Request, *, kind: str, part_kind: str, part_queue: str, flags: tuple[str, ...]
) -> JSONResponse:
    """A batch over the videos a bulk request names (ids, ``all`` or a subset)."""
    key, ids = selection(await read_json_object(request), flags)
    query = select(Video.id).order_by(Video.id)
    if key == "ids":
        query = query.where(Video.id.in_(ids))
    elif key in SUBSETS:
        query = query.where(SUBSETS[key])
    return await start_batch(
        request,
        items=query,
        kind=kind,
        part_kind=part_kind,
        part_queue=part_queue,
        params={"selection": key},
        asked=len(ids) if ids is not None else None,
    )


@documented(
    "Make the thumbnails of videos",
    {202: Answer("The parent job", ref("Job"), headers=("Location",))},
    errors=(400, 429),
    body=selection_body(("all", "missing")),
)
async def bulk_thumbnails(request: Request) -> JSONResponse:
    return await _bulk_on_videos(
        request,
        kind=JobKind.thumbnails,
        part_kind=JobKind.thumbnail_chunk,
        part_queue=Queue.media,
        flags=("all", "missing"),
    )


@documented(
    "Analyse videos (the quality sweep)",
    {202: Answer("The parent job", ref("Job"), headers=("Location",))},
    errors=(400, 429),
    body=selection_body(("all", "unanalyzed")),
)
async def bulk_analyze(request: Request) -> JSONResponse:
    """The quality sweep: each video's analysis (probe, quality, thumbnails), as after
    a download; ``unanalyzed`` names the videos never analysed."""
    return await _bulk_on_videos(
        request,
        kind=JobKind.analyses,
        part_kind=JobKind.thumbnail_chunk,
        part_queue=Queue.media,
        flags=("all", "unanalyzed"),
    )


@documented(
    "Delete videos",
    {202: Answer("The parent job", ref("Job"), headers=("Location",))},
    errors=(400, 429),
    body=selection_body(("all",)),
)
async def bulk_delete(request: Request) -> JSONResponse:
    return await _bulk_on_videos(
        request,
        kind=JobKind.deletes,
        part_kind=JobKind.delete_chunk,
        part_queue=Queue.bulk,
        flags=("all",),
    )


@documented(
    "Delete one video",
    {202: Answer("The parent job", ref("Job"), headers=("Location",))},
    errors=(404, 429),
    path_params={"video_id": integer(0)},
)
async def delete_video(request: Request) -> JSONResponse:
    """One video deleted as a batch of one: ``202`` + the parent job, or ``404``."""
    video_id = request.path_params["video_id"]
    if video_id > MAX_ID:
        raise not_found("video")
    async with request.app.state.db() as session:
        if await session.scalar(select(Video.id).where(Video.id == video_id)) is None:
            raise not_found("video")
    return await start_batch(
        request,
        items=select(Video.id).where(Video.id == video_id),
        kind=JobKind.deletes,
        part_kind=JobKind.delete_chunk,
        part_queue=Queue.bulk,
        params={"selection": "ids"},
        asked=1,
    )


routes = [
    Route("/api/videos/bulk/thumbnails", bulk_thumbnails, methods=["POST"]),
    Route("/api/videos/bulk/analyze", bulk_analyze, methods=["POST"]),
    Route("/api/videos/bulk/delete", bulk_delete, methods=["POST"]),
    Route("/api/videos/{video_id:int}", delete_video, methods=["DELETE"]),
]
