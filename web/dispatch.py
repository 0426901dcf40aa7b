"""How the web hands work on: publish a job's new state to the event stream, and send
its message to the workers. Both can fail without losing the job: the row is the truth
and the lifeline re-sends a queued job whose message never arrived."""

from __future__ import annotations

import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from actors.enqueue import enqueue_job, job_actors
from db import live

logger = logging.getLogger(__name__)


async def publish(request: Request, job: dict[str, Any]) -> None:
    keys, args = live.publish_arguments(job)
    try:
        await request.app.state.publish(keys=keys, args=args)
    except Exception:
        logger.warning("could not publish job %s", job["id"], exc_info=True)


async def send(job: dict[str, Any]) -> None:
    """Enqueue the job's message (Dramatiq's client is synchronous: a worker thread)."""
    actor = job_actors()[job["kind"]]
    try:
        await run_in_threadpool(enqueue_job, actor, job["id"], job["queue"])
    except Exception:
        logger.warning("could not enqueue job %s now; the lifeline will", job["id"], exc_info=True)
