"""``/api/videos``: ask for a download, list the library, one video."""

from __future__ import annotations

import ipaddress
import re
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import selectinload
from starlette import status
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from db import job_service
from db.job_requests import Submission
from db.jobs import iso
from db.models import JobKind, Video
from db.outbox import Outbox
from db.queues import DOWNLOAD_QUEUES, Priority
from db.settings import Settings
from media.errors import UrlRejected
from media.formats import QUALITY_FORMATS
from media.urls import check_url, parse_url
from web.errors import ApiError, not_found, read_json_object
from web.jobs import job_owner, parse_limit, too_many_jobs

MAX_NAME_LENGTH = 300
MAX_ID = 2**31 - 1


def video_to_dict(video: Video, *, full: bool = False) -> dict[str, Any]:
    """A video's JSON; ``full`` adds its whole probe (every stream)."""
    widths = video.thumbnail_widths or []
    data = {
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
        # The analysis (actors/analyze.py): None until it ran.
        "analyzed_at": iso(video.analyzed_at),
        "quality": video.quality,
        "thumbnail_widths": widths,
        "thumbnail_url": thumbnail_url(video.id, widths, THUMBNAIL_WIDTH),
    }
    if full:
        data["probe"] = video.probe
    return data


#: The width of the thumbnail a video's JSON links to (others: change the name).
THUMBNAIL_WIDTH = 320
#: What ``?quality=`` may name: media.quality's labels.
QUALITY_LABEL = re.compile(r"[a-z]{1,16}")


def nearest_width(widths: list[int], width: int) -> int | None:
    """Of the ``widths`` an image set has, the one nearest ``width`` (the smaller of two
    as near); None for an empty set."""
    return min(widths, key=lambda have: (abs(have - width), have)) if widths else None


def thumbnail_url(video_id: int, widths: list[int], width: int, ext: str = "webp") -> str | None:
    """The URL of a video's thumbnail of ``width`` (the nearest it has), if it has any."""
    nearest = nearest_width(widths, width)
    return None if nearest is None else f"/thumbnails/{video_id}/{nearest}.{ext}"


def _bad(code: str, message: str, field: str) -> ApiError:
    return ApiError(status.HTTP_400_BAD_REQUEST, code, message, field=field)


def optional_text(body: dict[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_LENGTH:
        raise _bad(
            "invalid_field", f"{field} must be text of 1 to {MAX_NAME_LENGTH} characters", field
        )
    return value.strip()


def choice(body: dict[str, Any], field: str, choices: list[str], default: str) -> str:
    value = body.get(field, default)
    if value not in choices:
        raise _bad("invalid_field", f"{field} must be one of {', '.join(choices)}", field)
    return str(value)


def _resolves_by_dns(url: object) -> bool:
    """Whether checking ``url`` asks a resolver: not for a URL refused by its form
    alone, nor for an IP literal, which getaddrinfo only parses (no lookup, nothing to
    wait for), so those are checked on the event loop instead of in a thread."""
    try:
        host = urlsplit(parse_url(url)).hostname or ""
    except UrlRejected:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False


async def checked_url(url: object, *, allow_private: bool) -> str:
    """:func:`media.urls.check_url`, in a thread when it needs DNS."""
    if _resolves_by_dns(url):
        return await run_in_threadpool(check_url, url, allow_private=allow_private)
    return check_url(url, allow_private=allow_private)


async def url_field(body: dict[str, Any], settings: Settings) -> str:
    """The request's ``url``, checked as a download's (:func:`checked_url`).

    Raises:
      ApiError: a 400 naming the ``url`` field (missing, or refused, with why).
    """
    if "url" not in body:
        raise _bad("missing_field", "url is required", "url")
    try:
        return await checked_url(body["url"], allow_private=settings.allow_private_urls)
    except UrlRejected as exc:
        raise _bad("invalid_url", exc.message, "url") from None


async def request_download(request: Request) -> JSONResponse:
    body = await read_json_object(request)
    settings = request.app.state.settings
    url = await url_field(body, settings)
    quality = choice(body, "quality", list(QUALITY_FORMATS), "best")
    priority = Priority(choice(body, "priority", list(Priority), Priority.high))
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise _bad("invalid_field", "force must be true or false", "force")
    params = {
        "url": url,
        "quality": quality,
        "artist": optional_text(body, "artist"),
        "title": optional_text(body, "title"),
        "force": force,
    }
    submission, outbox = await request.app.state.store.run(
        partial(
            job_service.submit,
            kind=JobKind.download,
            queue=DOWNLOAD_QUEUES[priority],
            params=params,
            owner=job_owner(request),
            max_attempts=settings.max_attempts,
            max_active=settings.max_active_jobs,
            max_active_of_owner=settings.max_active_jobs_per_credential,
            library_url=None if force else url,
        ),
        writes=True,
    )
    if submission.video_id is not None:
        raise ApiError(
            status.HTTP_409_CONFLICT,
            "already_in_library",
            "this URL is already in the library; send force: true to download it again",
            field="url",
            video_id=submission.video_id,
        )
    return await submitted(request, submission, outbox)


async def submitted(request: Request, submission: Submission, outbox: Outbox) -> JSONResponse:
    """The answer to a job asked for: ``429`` past the job caps, ``200`` + the job
    already doing the same work, else ``202`` + the new job, once it is sent."""
    if submission.over_cap is not None:
        raise too_many_jobs(request, submission.over_cap)
    job = submission.job
    assert job is not None
    if not submission.created:
        return JSONResponse(job, status_code=status.HTTP_200_OK)
    await request.app.state.courier.deliver_async(outbox)
    return JSONResponse(
        job, status_code=status.HTTP_202_ACCEPTED, headers={"Location": f"/api/jobs/{job['id']}"}
    )


async def list_videos(request: Request) -> JSONResponse:
    """The library, newest first; ``?quality=LABEL``, ``?min_score=N`` and
    ``?better_version=true|false`` keep the videos whose analysis found that label, at
    least that score, or that a better version is (or is not) worth looking for."""
    limit = parse_limit(request)
    cursor = request.query_params.get("cursor")
    query = select(Video).options(selectinload(Video.artist)).order_by(Video.id.desc())
    if cursor is not None:
        if not cursor.isdigit() or int(cursor) > MAX_ID:
            raise _bad("invalid_cursor", "unknown cursor", "cursor")
        query = query.where(Video.id < int(cursor))
    label = request.query_params.get("quality")
    if label is not None:
        if not QUALITY_LABEL.fullmatch(label):
            raise _bad("invalid_quality", "quality must be a quality label", "quality")
        query = query.where(Video.quality_label == label)
    min_score = request.query_params.get("min_score")
    if min_score is not None:
        if not (min_score.isdigit() and 0 <= int(min_score) <= 100):
            raise _bad("invalid_min_score", "min_score must be a number from 0 to 100", "min_score")
        query = query.where(Video.quality_score >= int(min_score))
    better = request.query_params.get("better_version")
    if better is not None:
        if better not in ("true", "false"):
            raise _bad(
                "invalid_better_version", "better_version must be true or false", "better_version"
            )
        query = query.where(Video.better_version.is_(better == "true"))
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
    return JSONResponse(video_to_dict(await load_video(request), full=True))


routes = [
    Route("/api/videos/download", request_download, methods=["POST"]),
    Route("/api/videos", list_videos, methods=["GET"]),
    Route("/api/videos/{video_id:int}", get_video, methods=["GET"]),
]
