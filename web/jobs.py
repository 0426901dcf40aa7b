"""``/api/jobs``: the job history, one job, its live progress."""

from __future__ import annotations

import json
import logging
import uuid
from functools import partial
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette import status
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from db import job_requests, jobs, live
from db.models import ACTIVE, Job, JobKind, JobStatus
from web import dispatch
from web.errors import ApiError, not_found

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
CAP_RETRY_AFTER_S = 30


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


async def check_job_caps(request: Request, session: AsyncSession) -> str:
    """The credential asking for a new job, once it may: a 429 when the fleet or this
    credential already has as many queued and running jobs as the settings allow."""
    settings = request.app.state.settings
    owner = job_owner(request)
    in_all, of_owner = (await session.execute(jobs.active_jobs_query(owner))).one()
    if in_all >= settings.max_active_jobs:
        raise too_many_jobs(request, "fleet")
    if of_owner >= settings.max_active_jobs_per_credential:
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
    try:
        page = await request.app.state.store.run(
            partial(
                job_requests.jobs_page_json,
                status=job_status,
                kind=params.get("kind"),
                parent_id=params.get("parent_id"),
                cursor=params.get("cursor"),
                limit=limit,
            )
        )
    except jobs.InvalidCursor:
        raise ApiError(
            status.HTTP_400_BAD_REQUEST, "invalid_cursor", "unknown cursor", field="cursor"
        ) from None
    return Response(page, media_type="application/json")


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


async def cancel_job(request: Request) -> JSONResponse:
    """A queued job (and its queued children) ends ``cancelled`` here and never starts;
    a running one gets a cancel request that its worker acts on within a second."""
    job = await load_job(request, parse_job_id(request))
    if JobStatus(job.status).finished:
        raise ApiError(status.HTTP_409_CONFLICT, "finished", f"the job is already {job.status}")
    async with request.app.state.db() as session:
        targets = [job.id] + list(
            await session.scalars(
                select(Job.id).where(Job.parent_id == job.id, Job.status.in_(ACTIVE))
            )
        )
        cancelled = await session.run_sync(
            lambda s: [jobs.cancel_queued(s, job_id) for job_id in targets]
        )
        await session.commit()
    running = [job_id for job_id, done in zip(targets, cancelled, strict=True) if done is None]
    if running:
        # Queued jobs were settled above; running ones (or ones that started meanwhile)
        # are stopped by their workers, which poll these keys.
        async with request.app.state.redis.pipeline(transaction=False) as pipe:
            for job_id in running:
                pipe.set(live.cancel_key(job_id), "1", ex=live.CANCEL_TTL_S)
            await pipe.execute()
    for done in cancelled:
        if done is not None and done["kind"] == JobKind.download:
            # A queued download may be waiting for a slot in a worker: it leaves now.
            # (If Redis cannot say so, the waiter finds the job cancelled in its turn.)
            try:
                await request.app.state.download_slots.dismiss(done["id"])
            except RedisError:
                logger.warning("could not dismiss job %s from the line", done["id"])
    for done in cancelled:
        if done is not None:
            await dispatch.publish(request, done)
    data = cancelled[0] or jobs.job_to_dict(await load_job(request, job.id))
    data["cancel_requested"] = True
    return JSONResponse(data, status_code=status.HTTP_202_ACCEPTED)


async def retry_job(request: Request) -> JSONResponse:
    """A new job with ``retry_of`` set; the failed or cancelled one stays in history."""
    job_id = parse_job_id(request)
    await load_job(request, job_id)
    async with request.app.state.db() as session:
        owner = await check_job_caps(request, session)
        try:
            retry = await session.run_sync(lambda s: jobs.new_retry(s, job_id, owner=owner))
            await session.commit()
        except IntegrityError:
            raise ApiError(
                status.HTTP_409_CONFLICT,
                "already_active",
                "another job for the same work is queued or running",
            ) from None
    if retry is None:
        raise ApiError(
            status.HTTP_409_CONFLICT,
            "not_retryable",
            "only failed or cancelled jobs can be retried",
        )
    await dispatch.publish_and_send(request, retry)
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
