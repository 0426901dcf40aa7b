"""``/api/artists``: the library's artists and their images.

``POST /api/artists/bulk/enrich`` (admin) ``{"ids": [...]}`` or ``{"all": true}`` looks
the artists up on MusicBrainz in the background: ``202`` + a parent job (``enrichments``)
whose parts (``enrich_chunk``, about 20 artists each, on the ``bulk`` queue) run on the
workers (:mod:`web.bulk`); what they find shows in each artist's JSON.

``PUT /api/artists/{id}/image`` (admin) takes a picture as the raw body (``image/*``)
or as the one file of a ``multipart/form-data`` body, at most
``VIDFLEET_MAX_UPLOAD_BYTES``. Its header is checked here, in a thread (format and
size, without decoding a pixel: :func:`media.images.inspect_image`), so a text file or a
50,000-pixel-wide PNG is a 4xx at once; then it is kept under the artist's folder and an
``artist_image`` job makes the sized set on a worker (``202`` + the job). Nothing long
runs in the request. ``/artists/{id}/image/{width}.{ext}`` serves the current set.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import anyio.to_thread
from sqlalchemy import select
from starlette import status
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.staticfiles import NotModifiedResponse

from db import job_service
from db.jobs import iso
from db.models import Artist, JobKind, utcnow
from db.queues import Queue
from media.errors import MediaError
from media.images import inspect_image
from web.apidoc import (
    INT,
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
)
from web.bulk import selection, selection_body, start_batch
from web.errors import ApiError, not_found, read_json_object
from web.jobs import LIMIT, check_job_caps, parse_limit
from web.streams import MEDIA_HEADERS
from web.thumbnails import CACHE_CONTROL, not_modified
from web.videos import MAX_ID, nearest_width

IMAGE_PATH = r"/api/artists/[0-9]+/image"
NAME = re.compile(r"(?P<width>[0-9]{1,4})\.(?P<ext>webp|jpg|avif)")
TYPES = {"webp": "image/webp", "jpg": "image/jpeg", "avif": "image/avif"}
#: The width of the image an artist's JSON links to.
IMAGE_WIDTH = 256


#: An image's file name in its URL, as :data:`NAME` matches it.
IMAGE_NAME = {"type": "string", "pattern": f"^{NAME.pattern}$"}
#: An artist's JSON, as :func:`artist_to_dict` makes it.
ARTIST = obj(
    {
        "id": INT,
        "name": STRING,
        "created_at": nullable(TIME),
        "image_url": nullable(STRING),
        "images": {"type": "object", "additionalProperties": {"type": "object"}},
        "mbid": nullable(STRING),
        "disambiguation": nullable(STRING),
        "country": nullable(STRING),
        "begin_year": nullable(INT),
        "genres": array(STRING),
        "source_image_url": nullable(STRING),
        "enrichment": nullable(OBJECT),
    }
)


def artist_to_dict(artist: Artist) -> dict[str, Any]:
    widths = artist.image_widths or []
    formats = artist.image_formats or []
    base = f"/artists/{artist.id}/image"
    nearest = nearest_width(widths, IMAGE_WIDTH)
    return {
        "id": artist.id,
        "name": artist.name,
        "created_at": iso(artist.created_at),
        "image_url": None if nearest is None else f"{base}/{nearest}.webp",
        "images": {
            str(width): {ext: f"{base}/{width}.{ext}" for ext in formats} for width in widths
        },
        # What enrichment found (MusicBrainz); ``image_url`` above is our own image set.
        "mbid": artist.mbid,
        "disambiguation": artist.disambiguation,
        "country": artist.country,
        "begin_year": artist.begin_year,
        "genres": artist.genres or [],
        "source_image_url": artist.image_url,
        "enrichment": artist.enrichment,
    }


def _artist_id(request: Request) -> int:
    artist_id: int = request.path_params["artist_id"]
    if artist_id > MAX_ID:
        raise not_found("artist")
    return artist_id


async def _load(request: Request, artist_id: int) -> Artist:
    async with request.app.state.db() as session:
        artist = await session.get(Artist, artist_id)
    if artist is None:
        raise not_found("artist")
    return artist


@documented(
    "The artists, by name",
    {200: page_of(ARTIST)},
    errors=(400,),
    parameters=(LIMIT, query("cursor", STRING, "the `next` of the page before")),
)
async def list_artists(request: Request) -> JSONResponse:
    """Artists by name; ``cursor`` is the last name of the page before."""
    limit = parse_limit(request)
    query = select(Artist).order_by(Artist.name).limit(limit + 1)
    if (cursor := request.query_params.get("cursor")) is not None:
        query = query.where(Artist.name > cursor[:300])
    async with request.app.state.db() as session:
        rows = list((await session.scalars(query)).all())
    page, more = rows[:limit], len(rows) > limit
    return JSONResponse(
        {"items": [artist_to_dict(a) for a in page], "next": page[-1].name if more else None}
    )


@documented("One artist", {200: ARTIST}, errors=(404,), path_params={"artist_id": integer(0)})
async def get_artist(request: Request) -> JSONResponse:
    return JSONResponse(artist_to_dict(await _load(request, _artist_id(request))))


@documented(
    "Look artists up on MusicBrainz",
    {202: Answer("The parent job", ref("Job"), headers=("Location",))},
    errors=(400, 429),
    body=selection_body(("all",)),
)
async def bulk_enrich(request: Request) -> JSONResponse:
    key, ids = selection(await read_json_object(request))
    query = select(Artist.id).order_by(Artist.id)
    if ids is not None:
        query = query.where(Artist.id.in_(ids))
    return await start_batch(
        request,
        items=query,
        kind=JobKind.enrichments,
        part_kind=JobKind.enrich_chunk,
        part_queue=Queue.bulk,
        params={"selection": key},
        asked=len(ids) if ids is not None else None,
    )


async def _upload(request: Request) -> bytes:
    """The picture: the raw body, or the one file of a multipart form."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        return await request.body()
    limit = request.app.state.settings.max_upload_bytes
    async with request.form(max_files=1, max_fields=4, max_part_size=limit) as form:
        files = [value for value in form.values() if isinstance(value, UploadFile)]
        if len(files) != 1:
            raise ApiError(
                status.HTTP_400_BAD_REQUEST, "missing_file", "send one picture", field="image"
            )
        return await files[0].read()


@documented(
    "Upload an artist's picture",
    {202: Answer("The job making the image set", ref("Job"), headers=("Location",))},
    errors=(400, 404, 413, 415, 429),
    body={"type": "string", "format": "binary"},
    body_types=("image/jpeg", "image/png", "image/webp", "image/gif", "image/avif"),
    path_params={"artist_id": integer(0)},
    description="The raw picture, or the one file of a `multipart/form-data` body.",
)
async def put_image(request: Request) -> JSONResponse:
    artist_id = _artist_id(request)
    await _load(request, artist_id)
    data = await _upload(request)
    if not data:
        raise ApiError(status.HTTP_400_BAD_REQUEST, "missing_file", "the picture is empty")
    try:
        facts = await anyio.to_thread.run_sync(inspect_image, data)
    except MediaError as exc:
        code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
        if exc.code != "invalid_image" or not exc.message.startswith("not a picture"):
            code = status.HTTP_400_BAD_REQUEST  # too many pixels, or damaged
        raise ApiError(code, exc.code, exc.message, field="image") from None
    settings = request.app.state.settings
    folder = settings.artists_dir / str(artist_id)
    upload = f"upload-{uuid.uuid4()}"
    await anyio.to_thread.run_sync(_keep, folder, upload, data)
    async with request.app.state.db() as session:
        owner = await check_job_caps(request, session)
    submission, outbox = await request.app.state.store.run(
        lambda connection: job_service.submit(
            connection,
            kind=JobKind.artist_image,
            queue=Queue.media,
            params={"artist_id": artist_id, "upload": upload, "uploaded_at": utcnow().isoformat()},
            owner=owner,
            max_attempts=settings.max_attempts,
            max_active=settings.max_active_jobs,
            max_active_of_owner=settings.max_active_jobs_per_credential,
        ),
        writes=True,
    )
    job = submission.job
    if job is None:  # over a cap just now
        await anyio.to_thread.run_sync(lambda: (folder / upload).unlink(missing_ok=True))
        raise ApiError(status.HTTP_429_TOO_MANY_REQUESTS, "too_many_jobs", "too many jobs")
    await request.app.state.courier.deliver_async(outbox)
    job["image"] = {"format": facts.format, "width": facts.width, "height": facts.height}
    return JSONResponse(
        job, status_code=status.HTTP_202_ACCEPTED, headers={"Location": f"/api/jobs/{job['id']}"}
    )


def _keep(folder: Path, name: str, data: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{name}"
    partial.write_bytes(data)
    partial.replace(folder / name)


@documented(
    "An artist's image",
    {
        200: Answer("The image", None, "image/*", ("ETag", "Last-Modified")),
        304: Answer("Not modified", None, None),
    },
    errors=(404,),
    path_params={"artist_id": integer(0), "name": IMAGE_NAME},
)
async def image(request: Request) -> Response:
    artist_id = _artist_id(request)
    name = NAME.fullmatch(request.path_params["name"])
    if name is None:
        raise not_found("image")
    artist = await _load(request, artist_id)
    width, ext = int(name["width"]), name["ext"]
    if width not in (artist.image_widths or []) or ext not in (artist.image_formats or []):
        raise not_found("image")
    path = request.app.state.settings.artists_dir / str(artist_id) / str(artist.image_version)
    path = path / f"{width}.{ext}"
    try:
        stat_result = await anyio.to_thread.run_sync(path.stat)
    except OSError:
        raise not_found("image") from None
    headers = {**MEDIA_HEADERS, "Cache-Control": CACHE_CONTROL}
    response = FileResponse(path, stat_result=stat_result, media_type=TYPES[ext], headers=headers)
    if not_modified(response, request):
        return NotModifiedResponse(response.headers)
    return response


routes = [
    Route("/api/artists", list_artists, methods=["GET"]),
    Route("/api/artists/{artist_id:int}", get_artist, methods=["GET"]),
    Route("/api/artists/bulk/enrich", bulk_enrich, methods=["POST"]),
    Route("/api/artists/{artist_id:int}/image", put_image, methods=["PUT"]),
    Route("/artists/{artist_id:int}/image/{name}", image, methods=["GET", "HEAD"]),
]
