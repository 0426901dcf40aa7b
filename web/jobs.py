"""``/api/jobs``: the job history, one job, its live progress."""

from __future__ import annotations

import json
import logging
import uuid
from functools import partial
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette import status
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from db import job_requests, job_service, jobs, live
from db.models import Job, JobStatus
from web.apidoc import (
    JOB,
    STRING,
    UUID,
    Answer,
    choice,
    documented,
    integer,
    page_of,
    query,
    ref,
    text,
)
from web.errors import ApiError, not_found, unavailable

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_QUERY_LENGTH = 200
CAP_RETRY_AFTER_S = 30


#: No control character anywhere (PostgreSQL refuses a NUL in text).
NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
LIMIT = query("limit", integer(1, MAX_LIMIT), f"1 to {MAX_LIMIT}, default {DEFAULT_LIMIT}")
#: A filter compared as it is (``kind``, ``parent_id``).
FILTER = text(0, MAX_QUERY_LENGTH, pattern=NO_CONTROL)


def job_owner(request: Request) -> str:
    """The credential asking for a new job: what the per-credential cap counts."""
    return str(request.scope.get("credential") or "")


def too_many_jobs(request: Request, whose: str) -> ApiError:
    """The 429 of a new job past the fleet's cap (``whose == "fleet"``) or the
    credential's (``"owner"``)."""
    settings = request.app.state.settings
    cap, who = (
        (settings.max_active_jobs, "the fleet has")
        if whose == "fleet"
        else (settings.max_active_jobs_per_credential, "you have")
    )
    return ApiError(
        status.HTTP_429_TOO_MANY_REQUESTS,
        "too_many_jobs",
        f"{who} {cap} jobs queued or running; try again when some have finished",
        headers={"Retry-After": str(CAP_RETRY_AFTER_S)},
    )


async def check_job_caps(request: Request, session: AsyncSession, new: int = 1) -> str:
    """The credential asking for ``new`` jobs, once it may: a 429 when the fleet or
    this credential would have more queued and running jobs than the settings allow."""
    settings = request.app.state.settings
    owner = job_owner(request)
    in_all, of_owner = (await session.execute(jobs.active_jobs_query(owner))).one()
    if in_all + new > settings.max_active_jobs:
        raise too_many_jobs(request, "fleet")
    if of_owner + new > settings.max_active_jobs_per_credential:
        raise too_many_jobs(request, "owner")
    return owner


def parse_limit(request: Request) -> int:
    raw = request.query_params.get("limit", str(DEFAULT_LIMIT))
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(
            status.HTTP_400_BAD_REQUEST,
            "invalid_limit",
            f"limit must be a number from 1 to {MAX_LIMIT}",
            field="limit",
        )
    return limit


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def parse_text_query(request: Request) -> str | None:
    """``q``, the text a job search looks for: 1 to :data:`MAX_QUERY_LENGTH` characters,
    none of them a control character (PostgreSQL refuses a NUL in text)."""
    q = request.query_params.get("q")
    if q is None:
        return None
    if not 1 <= len(q) <= MAX_QUERY_LENGTH or _has_control(q):
        raise ApiError(
            status.HTTP_400_BAD_REQUEST,
            "invalid_q",
            f"q must be 1 to {MAX_QUERY_LENGTH} characters, without control characters",
            field="q",
        )
    return q


def _plain_filter(request: Request, name: str) -> str | None:
    """A filter compared as it is (``kind``, ``parent_id``): one with a control
    character matches no job, and a NUL would make PostgreSQL refuse the query."""
    value = request.query_params.get(name)
    if value is not None and (len(value) > MAX_QUERY_LENGTH or _has_control(value)):
        raise ApiError(
            status.HTTP_400_BAD_REQUEST,
            f"invalid_{name}",
            f"{name} must be at most {MAX_QUERY_LENGTH} characters, without control characters",
            field=name,
        )
    return value


def parse_job_id(request: Request) -> str:
    raw = request.path_params["job_id"]
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise not_found("job") from None


async def load_job(request: Request, job_id: str) -> Job:
    async with request.app.state.db() as session:
        job = await session.get(Job, job_id)
    if job is None:
        raise not_found("job")
    return job


@documented(
    "The jobs, newest first",
    {200: page_of(ref("Job"))},
    errors=(400,),
    parameters=(
        query("status", choice(JobStatus)),
        query("kind", FILTER),
        query("parent_id", FILTER),
        query("q", text(1, MAX_QUERY_LENGTH, pattern=NO_CONTROL), "text in URL, title, error"),
        LIMIT,
        query("cursor", STRING, "the `next` of the page before; empty: the first page"),
    ),
)
async def list_jobs(request: Request) -> Response:
    params = request.query_params
    job_status = params.get("status")
    if job_status is not None and job_status not in JobStatus.__members__:
        raise ApiError(
            status.HTTP_400_BAD_REQUEST,
            "invalid_status",
            f"status must be one of {', '.join(JobStatus)}",
            field="status",
        )
    limit = parse_limit(request)
    q = parse_text_query(request)
    try:
        page = await request.app.state.store.run(
            partial(
                job_requests.jobs_page_json,
                status=job_status,
                kind=_plain_filter(request, "kind"),
                parent_id=_plain_filter(request, "parent_id"),
                cursor=params.get("cursor"),
                limit=limit,
                q=q,
            )
        )
    except jobs.InvalidCursor:
        raise ApiError(
            status.HTTP_400_BAD_REQUEST, "invalid_cursor", "unknown cursor", field="cursor"
        ) from None
    return Response(page, media_type="application/json")


@documented(
    "One job, with its children's counts for a parent",
    {200: {**JOB, "properties": {**JOB["properties"], "children": {"type": "object"}}}},
    errors=(404,),
    path_params={"job_id": UUID},
)
async def get_job(request: Request) -> JSONResponse:
    job = await load_job(request, parse_job_id(request))
    data = jobs.job_to_dict(job)
    async with request.app.state.db() as session:
        counts = await session.execute(
            select(Job.status, func.count()).where(Job.parent_id == job.id).group_by(Job.status)
        )
        children = {str(row[0]): row[1] for row in counts}
    if children:
        data["children"] = {"total": sum(children.values()), **children}
    return JSONResponse(data)


@documented(
    "A job's latest published state",
    {200: {"type": "object", "required": ["id", "status"]}},
    errors=(404,),
    path_params={"job_id": UUID},
)
async def job_progress(request: Request) -> JSONResponse:
    """The freshest state: the snapshot the worker last published, else the row."""
    job_id = parse_job_id(request)
    snapshot: dict[str, Any] | None = None
    try:
        raw = await request.app.state.redis.get(live.snapshot_key(job_id))
        snapshot = json.loads(raw) if raw else None
    except (RedisError, OSError, ValueError):
        snapshot = None
    if snapshot is None:
        snapshot = jobs.job_to_dict(await load_job(request, job_id))
    return JSONResponse(snapshot)


@documented(
    "Cancel a job",
    {202: {**JOB, "properties": {**JOB["properties"], "cancel_requested": {"const": True}}}},
    errors=(404, 409),
    path_params={"job_id": UUID},
)
async def cancel_job(request: Request) -> JSONResponse:
    """A queued job (and its queued children) ends ``cancelled`` here and never starts;
    a running one gets a cancel request that its worker acts on within a second."""
    job = await load_job(request, parse_job_id(request))
    if JobStatus(job.status).finished:
        raise ApiError(status.HTTP_409_CONFLICT, "finished", f"the job is already {job.status}")
    async with request.app.state.db() as session:
        done, outbox = await session.run_sync(job_service.cancel, job.id)
    delivery = await request.app.state.courier.deliver_async(outbox)
    if "stop" in delivery.missed:
        # Queued jobs are settled in the database whatever Redis does; a running one
        # could not be asked to stop: nothing changed for it, say so.
        raise unavailable("redis")
    first = done.cancelled[0] if done.cancelled and done.cancelled[0]["id"] == job.id else None
    data = first or jobs.job_to_dict(await load_job(request, job.id))
    data["cancel_requested"] = True
    return JSONResponse(data, status_code=status.HTTP_202_ACCEPTED)


@documented(
    "Retry a failed or cancelled job as a new job",
    {202: Answer("The new job", ref("Job"), headers=("Location",))},
    errors=(404, 409, 429),
    path_params={"job_id": UUID},
)
async def retry_job(request: Request) -> JSONResponse:
    """A new job with ``retry_of`` set; the failed or cancelled one stays in history."""
    job_id = parse_job_id(request)
    await load_job(request, job_id)
    async with request.app.state.db() as session:
        owner = await check_job_caps(request, session)
        try:
            retry, outbox = await session.run_sync(
                lambda s: job_service.retry(s, job_id, owner=owner)
            )
        except job_service.AlreadyActive:
            raise ApiError(
                status.HTTP_409_CONFLICT,
                "already_active",
                "another job for the same work is queued or running",
            ) from None
    if retry is None:
        raise ApiError(
            status.HTTP_409_CONFLICT,
            "not_retryable",
            "only failed or cancelled jobs can be retried, and of a batch only its parts",
        )
    await request.app.state.courier.deliver_async(outbox)
    return JSONResponse(
        retry,
        status_code=status.HTTP_202_ACCEPTED,
        headers={"Location": f"/api/jobs/{retry['id']}"},
    )


routes = [
    Route("/api/jobs", list_jobs, methods=["GET"]),
    Route("/api/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
    Route("/api/jobs/{job_id}/retry", retry_job, methods=["POST"]),
    Route("/api/jobs/{job_id}", get_job, methods=["GET"]),
    Route("/api/jobs/{job_id}/progress", job_progress, methods=["GET"]),
]
