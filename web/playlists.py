"""``/api/playlists``: follow a playlist or channel, list what its syncs found, ask for
a sync, stop following it.

A playlist's URL is checked as a download's is (:func:`web.videos.checked_url`; the
listing itself runs under the egress guard on a worker), its schedule by
:mod:`db.cron`. Adding one asks for its first sync at once. A sync is a
``playlist_sync`` job (``actors/playlists.py``): nothing is listed or downloaded here.
"""

from __future__ import annotations

import sys
from functools import partial

from starlette import status
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from db import cron, playlists
from media.formats import QUALITY_FORMATS
from web.apidoc import (
    BOOL,
    INT,
    STRING,
    TIME,
    Answer,
    documented,
    integer,
    nullable,
    obj,
    page_of,
    query,
    ref,
    text,
)
from web.apidoc import choice as choice_schema
from web.errors import ApiError, not_found, read_json_object
from web.jobs import LIMIT, check_job_caps, job_owner, parse_limit
from web.videos import MAX_ID, MAX_NAME_LENGTH, choice, optional_text, submitted, url_field

CURSOR_PART = 10  # digits of each number of an entries cursor


#: A playlist's JSON (:func:`db.playlists.playlist_to_dict`).
PLAYLIST = obj(
    {
        "id": INT,
        "url": STRING,
        "name": nullable(STRING),
        "auto_download": BOOL,
        "quality": STRING,
        "schedule": nullable(STRING),
        "created_at": nullable(TIME),
        "last_sync_job_id": nullable(STRING),
        "last_sync_requested_at": nullable(TIME),
        "last_synced_at": nullable(TIME),
        "entry_count": nullable(INT),
        "entries_by_state": {"type": "object", "additionalProperties": INT},
    }
)
ENTRY = obj(
    {
        "id": INT,
        "url": STRING,
        "source_id": nullable(STRING),
        "title": nullable(STRING),
        "position": INT,
        "state": STRING,
        "reason": nullable(STRING),
        "first_seen_at": nullable(TIME),
        "removed_at": nullable(TIME),
        "download_job_id": nullable(STRING),
        "download_status": nullable(STRING),
        "video_id": nullable(INT),
    }
)
PLAYLIST_DETAILS = {
    **PLAYLIST,
    "properties": {**PLAYLIST["properties"], "entries": page_of(ENTRY)},
    "required": [*PLAYLIST["required"], "entries"],
}
PLAYLIST_CREATED = {
    **PLAYLIST_DETAILS,
    "properties": {**PLAYLIST_DETAILS["properties"], "sync_job": nullable(ref("Job"))},
}


def _bad(code: str, message: str, field: str) -> ApiError:
    return ApiError(status.HTTP_400_BAD_REQUEST, code, message, field=field)


def _normal_schedule(text: object) -> str:
    """``text`` with single spaces, once it is known to be a cron expression (UTC).

    Raises:
      ApiError: a 400 naming the ``schedule`` field.
    """
    try:
        return cron.checked(text)
    except cron.InvalidCron as exc:
        raise _bad("invalid_schedule", str(exc), "schedule") from None


def _playlist_id(request: Request) -> int:
    playlist_id: int = request.path_params["playlist_id"]
    if playlist_id > MAX_ID:
        raise not_found("playlist")
    return playlist_id


@documented(
    "Follow a playlist or channel",
    {201: Answer("The playlist, with its first sync", PLAYLIST_CREATED, headers=("Location",))},
    errors=(400, 409, 429),
    body=obj(
        {
            "url": text(1),
            "auto_download": BOOL,
            "name": nullable(text(1, MAX_NAME_LENGTH, pattern=r"\S")),
            "quality": choice_schema(QUALITY_FORMATS),
            "schedule": nullable(STRING),
        },
        required=["url", "auto_download"],
    ),
)
async def create_playlist(request: Request) -> JSONResponse:
    body = await read_json_object(request)
    settings = request.app.state.settings
    url = await url_field(body, settings)
    auto_download = body.get("auto_download")
    if not isinstance(auto_download, bool):
        raise _bad("invalid_field", "auto_download must be true or false", "auto_download")
    name = optional_text(body, "name")
    quality = choice(body, "quality", list(QUALITY_FORMATS), "best")
    schedule = body.get("schedule")
    if schedule is not None:
        schedule = _normal_schedule(schedule)
    async with request.app.state.db() as session:
        owner = await check_job_caps(request, session)  # room for its first sync
    store = request.app.state.store
    playlist_id, created = await store.run(
        partial(
            playlists.create_playlist,
            url=url,
            name=name,
            auto_download=auto_download,
            quality=quality,
            schedule=schedule,
            owner=owner,
        ),
        writes=True,
    )
    if not created:
        raise ApiError(
            status.HTTP_409_CONFLICT,
            "already_exists",
            "a playlist with this URL is already followed",
            field="url",
            playlist_id=playlist_id,
        )
    submission, outbox = await store.run(
        partial(
            playlists.request_sync,
            playlist_id=playlist_id,
            owner=owner,
            max_attempts=settings.max_attempts,
            # Admitted above, with the playlist: the caps do not apply twice.
            max_active=sys.maxsize,
            max_active_of_owner=sys.maxsize,
        ),
        writes=True,
    )
    await request.app.state.courier.deliver_async(outbox)
    data = await store.run(
        partial(playlists.playlist_details, playlist_id=playlist_id, after=None, limit=1)
    )
    data["sync_job"] = submission.job
    return JSONResponse(
        data,
        status_code=status.HTTP_201_CREATED,
        headers={"Location": f"/api/playlists/{playlist_id}"},
    )


@documented(
    "The playlists, newest first",
    {200: page_of(PLAYLIST)},
    errors=(400,),
    parameters=(LIMIT, query("cursor", {"type": "string", "pattern": r"^[0-9]+$"})),
)
async def list_playlists(request: Request) -> JSONResponse:
    """Playlists, newest first; each with its entries counted by state."""
    limit = parse_limit(request)
    cursor = request.query_params.get("cursor")
    if cursor is not None and not (cursor.isascii() and cursor.isdigit() and int(cursor) <= MAX_ID):
        raise _bad("invalid_cursor", "unknown cursor", "cursor")
    items, after = await request.app.state.store.run(
        partial(
            playlists.list_playlists, after=None if cursor is None else int(cursor), limit=limit
        )
    )
    return JSONResponse({"items": items, "next": None if after is None else str(after)})


def _entries_cursor(request: Request) -> tuple[int, int] | None:
    cursor = request.query_params.get("cursor")
    if cursor is None:
        return None
    position, _, entry_id = cursor.partition(".")
    if not all(
        part.isascii() and part.isdigit() and len(part) <= CURSOR_PART
        for part in (position, entry_id)
    ):
        raise _bad("invalid_cursor", "unknown cursor", "cursor")
    return int(position), int(entry_id)


@documented(
    "One playlist and a page of its entries",
    {200: PLAYLIST_DETAILS},
    errors=(400, 404),
    parameters=(
        LIMIT,
        query("cursor", {"type": "string", "pattern": r"^[0-9]{1,10}\.[0-9]{1,10}$"}),
    ),
    path_params={"playlist_id": integer(0)},
)
async def get_playlist(request: Request) -> JSONResponse:
    """A playlist and a page of its entries in its order (``limit``, ``cursor``), each
    with its state."""
    playlist_id = _playlist_id(request)
    limit = parse_limit(request)
    after = _entries_cursor(request)
    data = await request.app.state.store.run(
        partial(playlists.playlist_details, playlist_id=playlist_id, after=after, limit=limit)
    )
    if data is None:
        raise not_found("playlist")
    return JSONResponse(data)


@documented(
    "Sync a playlist now",
    {
        202: Answer("The new sync", ref("Job"), headers=("Location",)),
        200: Answer("The sync already queued or running", ref("Job")),
    },
    errors=(404, 429),
    path_params={"playlist_id": integer(0)},
)
async def sync_playlist(request: Request) -> JSONResponse:
    """``202`` + a new sync job; ``200`` + the sync already queued or running."""
    playlist_id = _playlist_id(request)
    settings = request.app.state.settings
    try:
        submission, outbox = await request.app.state.store.run(
            partial(
                playlists.request_sync,
                playlist_id=playlist_id,
                owner=job_owner(request),
                max_attempts=settings.max_attempts,
                max_active=settings.max_active_jobs,
                max_active_of_owner=settings.max_active_jobs_per_credential,
            ),
            writes=True,
        )
    except playlists.PlaylistGone:
        raise not_found("playlist") from None
    return await submitted(request, submission, outbox)


@documented(
    "Stop following a playlist",
    {200: obj({"id": INT, "deleted": {"const": True}, "entries_deleted": INT})},
    errors=(404,),
    path_params={"playlist_id": integer(0)},
)
async def delete_playlist(request: Request) -> JSONResponse:
    """The playlist and its entries go (a sync under way is cancelled); the videos its
    downloads filed stay in the library."""
    playlist_id = _playlist_id(request)
    entries, outbox = await request.app.state.store.run(
        partial(playlists.delete_playlist, playlist_id=playlist_id), writes=True
    )
    if entries is None:
        raise not_found("playlist")
    await request.app.state.courier.deliver_async(outbox)
    return JSONResponse({"id": playlist_id, "deleted": True, "entries_deleted": entries})


routes = [
    Route("/api/playlists", list_playlists, methods=["GET"]),
    Route("/api/playlists", create_playlist, methods=["POST"]),
    Route("/api/playlists/{playlist_id:int}", get_playlist, methods=["GET"]),
    Route("/api/playlists/{playlist_id:int}", delete_playlist, methods=["DELETE"]),
    Route("/api/playlists/{playlist_id:int}/sync", sync_playlist, methods=["POST"]),
]
