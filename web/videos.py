"""``/api/videos``: ask for a download, list the library, one video.

The library is listed in one of several orders a page at a time; a page's ``next`` is
an opaque cursor carrying its order and the sort key of its last video (a keyset: the
next page starts right after that video, whatever was added or removed meanwhile)."""

from __future__ import annotations

import base64
import ipaddress
import json
import math
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
from db.library import KEY_CHARS, KEY_TYPES, LibraryQuery, VideoSort, library_page
from db.models import JobKind, Video
from db.outbox import Outbox
from db.queues import DOWNLOAD_QUEUES, Priority
from db.settings import Settings
from media.errors import UrlRejected
from media.formats import QUALITY_FORMATS
from media.urls import check_url, parse_url
from web.apidoc import (
    BOOL,
    INT,
    NUMBER,
    OBJECT,
    STRING,
    TIME,
    Answer,
    array,
    documented,
    integer,
    nullable,
    obj,
    page_of,
    query,
    ref,
    text,
)
from web.apidoc import (
    choice as choice_schema,
)
from web.errors import ApiError, not_found, read_json_object
from web.jobs import LIMIT, job_owner, parse_limit, too_many_jobs

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
        data["subtitles"] = [
            {"lang": sub["lang"], "automatic": bool(sub.get("automatic")),
             "url": f"/subtitles/{video.id}/{sub['lang']}"}
            for sub in video.subtitles or [] if isinstance(sub, dict) and sub.get("lang")
        ]  # fmt: skip
        data["chapters"] = video.chapters or []
    return data


#: A video's JSON, as :func:`video_to_dict` makes it.
VIDEO = obj(
    {
        "id": INT,
        "title": nullable(STRING),
        "artist": nullable(STRING),
        "artist_id": nullable(INT),
        "duration": nullable(NUMBER),
        "width": nullable(INT),
        "height": nullable(INT),
        "vcodec": nullable(STRING),
        "acodec": nullable(STRING),
        "container": nullable(STRING),
        "source_url": nullable(STRING),
        "extractor": nullable(STRING),
        "extractor_id": nullable(STRING),
        "path": STRING,
        "size": nullable(INT),
        "created_at": nullable(TIME),
        "stream_url": STRING,
        "analyzed_at": nullable(TIME),
        "quality": nullable(OBJECT),
        "thumbnail_widths": array(INT),
        "thumbnail_url": nullable(STRING),
        "probe": nullable(OBJECT),
        "subtitles": array(obj({"lang": STRING, "automatic": BOOL, "url": STRING})),
        "chapters": array(
            obj(
                {"start": NUMBER, "end": NUMBER, "title": STRING, "source": choice_schema(
                    ["chapters", "sponsorblock"]), "category": STRING},
                required=["start", "end", "title", "source"],
            )
        ),
    },
    required=[
        "id", "title", "artist", "artist_id", "duration", "path", "created_at", "stream_url",
        "analyzed_at", "quality", "thumbnail_widths", "thumbnail_url",
    ],
)  # fmt: skip


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


@documented(
    "Ask for a video's download",
    {
        202: Answer("The new job", ref("Job"), headers=("Location",)),
        200: Answer("The job already downloading this URL", ref("Job")),
    },
    errors=(400, 409, 429),
    body=obj(
        {
            "url": text(1),
            "quality": choice_schema(QUALITY_FORMATS),
            "priority": choice_schema(Priority),
            "artist": nullable(text(1, MAX_NAME_LENGTH, pattern=r"\S")),
            "title": nullable(text(1, MAX_NAME_LENGTH, pattern=r"\S")),
            "force": BOOL,
        },
        required=["url"],
    ),
    description="A URL already in the library is a 409 (with `video_id`) unless `force`.",
)
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


SORTS = [sort.value for sort in VideoSort]
#: A search is 1 to this many characters.
MAX_SEARCH = 200
#: A cursor longer than this was not made by us (the longest key is two texts of
#: KEY_CHARS characters, at most 6 bytes each as JSON, and two numbers).
MAX_CURSOR = 4096
# Characters a search may not hold: NUL (PostgreSQL refuses it in text) and the other
# control characters, which no title or name of ours holds either.
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


#: ``q``: 1 to MAX_SEARCH characters, none of them a control character, not only spaces.
SEARCH = text(1, MAX_SEARCH, pattern=r"^[^\x00-\x1f\x7f]*[^\x00-\x20\x7f][^\x00-\x1f\x7f]*$")


def encode_cursor(sort: VideoSort, key: tuple[Any, ...]) -> str:
    """The opaque cursor of the page after a video whose sort key is ``key``."""
    raw = json.dumps([sort.value, *key], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _key_part(value: object, kind: type) -> bool:
    """Whether ``value`` is a well-formed part of a key of that type."""
    if kind is int:
        return type(value) is int and 0 <= value <= MAX_ID
    if kind is float:
        # An int of hundreds of digits would overflow float(): bound it first.
        if type(value) is int:
            return abs(value) <= MAX_ID
        return type(value) is float and math.isfinite(value)
    return isinstance(value, str) and len(value) <= KEY_CHARS and "\x00" not in value


def decode_cursor(cursor: str, sort: VideoSort) -> tuple[Any, ...]:
    """The sort key a cursor of :func:`encode_cursor` carries.

    Raises:
      ApiError: 400 (``field: cursor``) for anything else, or a cursor of another sort.
    """
    unknown = _bad("invalid_cursor", "unknown cursor", "cursor")
    if len(cursor) > MAX_CURSOR:
        raise unknown
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, RecursionError):  # not base64, not JSON, or nested too deep
        raise unknown from None
    if not isinstance(decoded, list) or not decoded or decoded[0] not in SORTS:
        raise unknown
    if decoded[0] != sort.value:
        raise _bad(
            "invalid_cursor",
            f"this cursor pages the {decoded[0]} order, not {sort.value}: start without it",
            "cursor",
        )
    key, kinds = decoded[1:], KEY_TYPES[sort]
    if len(key) != len(kinds) or not all(map(_key_part, key, kinds)):
        raise unknown
    return tuple(
        float(part) if kind is float else part for part, kind in zip(key, kinds, strict=True)
    )


def library_query(request: Request) -> LibraryQuery:
    """``sort``, ``q``, ``artist_id`` and ``cursor``, checked.

    Raises:
      ApiError: 400 naming the parameter that is wrong.
    """
    params = request.query_params
    raw_sort = params.get("sort", VideoSort.newest.value)
    if raw_sort not in SORTS:
        raise _bad("invalid_sort", f"sort must be one of {', '.join(SORTS)}", "sort")
    sort = VideoSort(raw_sort)
    search = params.get("q")
    if search is not None and (
        not 1 <= len(search) <= MAX_SEARCH or CONTROL.search(search) or not search.strip()
    ):
        raise _bad("invalid_search", f"q must be text of 1 to {MAX_SEARCH} characters", "q")
    artist_id = params.get("artist_id")
    if artist_id is not None and not (
        artist_id.isascii() and artist_id.isdigit() and 1 <= int(artist_id) <= MAX_ID
    ):
        raise _bad("invalid_artist_id", "artist_id must be an artist's id", "artist_id")
    cursor = params.get("cursor")
    return LibraryQuery(
        sort=sort,
        search=search,
        artist_id=None if artist_id is None else int(artist_id),
        after=None if cursor is None else decode_cursor(cursor, sort),
    )


@documented(
    "The library, a page at a time",
    {200: page_of(VIDEO)},
    errors=(400,),
    parameters=(
        LIMIT,
        query("cursor", text(1, MAX_CURSOR), "the `next` of the page before, same `sort`"),
        query("sort", choice_schema(SORTS)),
        query("q", SEARCH, "text in titles or artists' names"),
        query("artist_id", integer(1, MAX_ID)),
        query("quality", {"type": "string", "pattern": QUALITY_LABEL.pattern}),
        query("min_score", integer(0, 100)),
        query("better_version", choice_schema(["true", "false"])),
    ),
)
async def list_videos(request: Request) -> JSONResponse:
    """The library in one of its orders (``sort``, newest first by default), a page at a
    time; ``q`` finds a text in titles and artists' names, ``artist_id`` one artist's
    videos; ``?quality=LABEL``, ``?min_score=N`` and ``?better_version=true|false`` keep
    the videos whose analysis found that label, at least that score, or that a better
    version is (or is not) worth looking for."""
    limit = parse_limit(request)
    asked = library_query(request)
    query = library_page(asked, limit + 1)
    label = request.query_params.get("quality")
    if label is not None:
        if not QUALITY_LABEL.fullmatch(label):
            raise _bad("invalid_quality", "quality must be a quality label", "quality")
        query = query.where(Video.quality_label == label)
    min_score = request.query_params.get("min_score")
    if min_score is not None:
        if not (min_score.isascii() and min_score.isdigit() and 0 <= int(min_score) <= 100):
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
        rows = list((await session.execute(query)).all())
    page, more = rows[:limit], len(rows) > limit
    return JSONResponse(
        {
            "items": [video_to_dict(row[0]) for row in page],
            "next": encode_cursor(asked.sort, tuple(page[-1][1:])) if more else None,
        }
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


@documented(
    "One video, with its whole probe",
    {200: {**VIDEO, "required": [*VIDEO["required"], "probe", "subtitles", "chapters"]}},
    errors=(404,),
    path_params={"video_id": integer(0)},
)
async def get_video(request: Request) -> JSONResponse:
    """With its subtitles (``{lang, automatic, url}``, the URL of ``/subtitles``) and
    chapters (``{start, end, title, source}``, SponsorBlock's with their ``category``)."""
    return JSONResponse(video_to_dict(await load_video(request), full=True))


routes = [
    Route("/api/videos/download", request_download, methods=["POST"]),
    Route("/api/videos", list_videos, methods=["GET"]),
    Route("/api/videos/{video_id:int}", get_video, methods=["GET"]),
]
