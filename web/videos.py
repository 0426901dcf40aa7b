"""``/api/videos``: ask for a download, list the library, one video."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from starlette import status
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from actors.queues import DOWNLOAD_QUEUES, Priority
from db import jobs
from db.jobs import iso
from db.models import ACTIVE, Job, JobKind, JobStatus, Video
from media.download import QUALITY_FORMATS
from media.errors import UrlRejected
from media.urls import check_url
from web import dispatch
from web.errors import ApiError, not_found, read_json_object
from web.jobs import check_job_caps, parse_limit

MAX_NAME_LENGTH = 300
MAX_ID = 2**31 - 1


def video_to_dict(video: Video) -> dict[str, Any]:
    return {
        "id": video.id,
        "title": video.title,
        "artist": video.artist.name if video.artist else None,
        "artist_id": video.artist_id,
        "duration": video.duration,
        "width": video.width,
        "height": video.height,
        "vcodec": video.vcodec,
        "acodec": video.acodec,
        "container": video.container,
        "source_url": video.source_url,
        "extractor": video.extractor,
        "extractor_id": video.extractor_id,
        "path": video.path,
        "size": video.size,
        "created_at": iso(video.created_at),
        "stream_url": f"/stream/{video.id}",
    }


def _bad(code: str, message: str, field: str) -> ApiError:
    return ApiError(status.HTTP_400_BAD_REQUEST, code, message, field=field)


def _optional_text(body: dict[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_LENGTH:
        raise _bad(
            "invalid_field", f"{field} must be text of 1 to {MAX_NAME_LENGTH} characters", field
        )
    return value.strip()


def _choice(body: dict[str, Any], field: str, choices: list[str], default: str) -> str:
    value = body.get(field, default)
    if value not in choices:
        raise _bad("invalid_field", f"{field} must be one of {', '.join(choices)}", field)
    return str(value)


async def request_download(request: Request) -> JSONResponse:
    body = await read_json_object(request)
    settings = request.app.state.settings
    if "url" not in body:
        raise _bad("missing_field", "url is required", "url")
    try:
        url = await run_in_threadpool(
            check_url, body["url"], allow_private=settings.allow_private_urls
        )
    except UrlRejected as exc:
        raise _bad("invalid_url", exc.message, "url") from None
    quality = _choice(body, "quality", list(QUALITY_FORMATS), "best")
    priority = Priority(_choice(body, "priority", list(Priority), Priority.high))
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise _bad("invalid_field", "force must be true or false", "force")
    params = {
        "url": url,
        "quality": quality,
        "artist": _optional_text(body, "artist"),
        "title": _optional_text(body, "title"),
        "force": force,
    }
    dedupe_key = jobs.dedupe_key(JobKind.download, params)
    db = request.app.state.db

    async with db() as session:
        active = await _active_job(session, dedupe_key)
        if active is not None:
            return JSONResponse(jobs.job_to_dict(active), status_code=status.HTTP_200_OK)
        if not force:
            existing = await session.scalar(select(Video.id).where(Video.source_url == url))
            if existing is not None:
                raise ApiError(
                    status.HTTP_409_CONFLICT,
                    "already_in_library",
                    "this URL is already in the library; send force: true to download it again",
                    field="url",
                    video_id=existing,
                )
        owner = await check_job_caps(request, session)
        job = Job(
            owner=owner,
            kind=JobKind.download,
            status=JobStatus.queued,
            queue=DOWNLOAD_QUEUES[priority],
            params=params,
            max_attempts=settings.max_attempts,
            dedupe_key=dedupe_key,
        )
        session.add(job)
        try:
            await session.commit()
        except IntegrityError:
            # Another request for the same URL won the race: answer with its job.
            await session.rollback()
            active = await _active_job(session, dedupe_key)
            if active is None:
                raise
            return JSONResponse(jobs.job_to_dict(active), status_code=status.HTTP_200_OK)

    data = jobs.job_to_dict(job)
    await dispatch.publish(request, data)
    await dispatch.send(data)
    return JSONResponse(
        data, status_code=status.HTTP_202_ACCEPTED, headers={"Location": f"/api/jobs/{job.id}"}
    )


async def _active_job(session: AsyncSession, dedupe_key: str | None) -> Job | None:
    """The queued or running job that holds ``dedupe_key``, if any."""
    return await session.scalar(
        select(Job).where(Job.dedupe_key == dedupe_key, Job.status.in_(ACTIVE))
    )


async def list_videos(request: Request) -> JSONResponse:
    limit = parse_limit(request)
    cursor = request.query_params.get("cursor")
    query = select(Video).options(selectinload(Video.artist)).order_by(Video.id.desc())
    if cursor is not None:
        if not cursor.isdigit():
            raise _bad("invalid_cursor", "unknown cursor", "cursor")
        query = query.where(Video.id < int(cursor))
    async with request.app.state.db() as session:
        rows = list((await session.scalars(query.limit(limit + 1))).all())
    page, more = rows[:limit], len(rows) > limit
    return JSONResponse(
        {"items": [video_to_dict(v) for v in page], "next": str(page[-1].id) if more else None}
    )


async def load_video(request: Request) -> Video:
    video_id = request.path_params["video_id"]
    if video_id > MAX_ID:
        raise not_found("video")
    async with request.app.state.db() as session:
        video = await session.scalar(
            select(Video).options(selectinload(Video.artist)).where(Video.id == video_id)
        )
    if video is None:
        raise not_found("video")
    return video


async def get_video(request: Request) -> JSONResponse:
    return JSONResponse(video_to_dict(await load_video(request)))


routes = [
    Route("/api/videos/download", request_download, methods=["POST"]),
    Route("/api/videos", list_videos, methods=["GET"]),
    Route("/api/videos/{video_id:int}", get_video, methods=["GET"]),
]
