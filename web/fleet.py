"""The fleet as the system page shows it, read from Dramatiq's Redis broker and the
jobs table (the keys: :mod:`db.broker_keys`):

- ``GET /api/system/queues``: per queue, its messages ready to be taken, delayed
  (retries and postponed jobs waiting for their time) and dead-lettered, and how long
  the oldest ready one has waited; all queues in one pipeline.
- ``GET /api/system/workers``: the worker processes Dramatiq has a heartbeat of, who
  they are (their record, ``actors.worker_registry``), whether they beat within the
  broker's heartbeat timeout, and the running jobs they hold: a running job's row has
  the Redis id of the message its worker claimed it with, which sits in that worker's
  ack set until the job ends.

With the broker on RabbitMQ (``BROKER_URL``) the queues come from RabbitMQ's counts;
the workers' list (and the dead letters, :mod:`web.dead_letters`) answer 404
``not_available``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import select
from starlette import status
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from db import broker_keys, live
from db.job_service import PARENT_KINDS
from db.jobs import iso
from db.models import Job, JobStatus
from db.queues import Queue
from db.rabbitmq import UNAVAILABLE as RABBITMQ_UNAVAILABLE
from db.rabbitmq import BrokerSender, queue_counts
from web.apidoc import BOOL, INT, NUMBER, STRING, array, choice, documented, nullable, obj
from web.errors import ApiError, unavailable

#: The most running jobs the workers' list shows (the oldest first).
MAX_RUNNING = 500


RUNNING = obj({"id": STRING, "kind": STRING, "heartbeat": BOOL}, ["id", "kind", "heartbeat"])


def broker_of(request: Request) -> RedisBroker:
    """The web's own Redis broker (its sender's): the fleet's namespace and timeouts.

    Raises:
      ApiError: 404 ``not_available`` when the broker is on RabbitMQ: what the workers
        and dead-letter panels read (Dramatiq's heartbeats, ack sets and dead messages
        in Redis) has no counterpart there that could be read without taking messages
        off their queues; the page shows each such panel as not available on its own.
    """
    broker = request.app.state.courier.sender.broker
    if not isinstance(broker, RedisBroker):
        raise ApiError(
            status.HTTP_404_NOT_FOUND,
            "not_available",
            "not available with the broker on RabbitMQ (BROKER_URL)",
        )
    return broker


def moment(millis: float) -> str | None:
    return iso(datetime.fromtimestamp(millis / 1000, UTC))


@dataclass(frozen=True)
class QueueDepth:
    """One queue's messages: ready to be taken, delayed, dead-lettered, and the raw
    message at the head of the ready ones (None when there is none)."""

    queue: Queue
    ready: int
    delayed: int
    dead: int
    head: str | None


async def queue_depths(redis: Any, namespace: str) -> list[QueueDepth]:
    """Every queue's depth, in one pipeline (the system page and ``/metrics``)."""
    async with redis.pipeline(transaction=False) as pipe:
        for queue in Queue:
            pipe.llen(broker_keys.ready_key(namespace, queue))
            pipe.hlen(broker_keys.delayed_messages_key(namespace, queue))
            pipe.zcard(broker_keys.dead_key(namespace, queue))
            pipe.eval(
                broker_keys.HEAD_MESSAGE_SCRIPT,
                2,
                broker_keys.ready_key(namespace, queue),
                broker_keys.messages_key(namespace, queue),
            )
        replies = await pipe.execute()
    return [
        QueueDepth(queue, *replies[4 * index : 4 * index + 4]) for index, queue in enumerate(Queue)
    ]


async def rabbitmq_queues(sender: BrokerSender) -> JSONResponse:
    """The queues as RabbitMQ counts them: ready, delayed and dead messages (no age of
    the oldest: RabbitMQ does not show a queue's head without taking it)."""
    try:
        counts = await sender.call(lambda: queue_counts(sender.broker))
    except RABBITMQ_UNAVAILABLE as exc:  # an outage, as the other stores' (web/errors.py)
        raise unavailable("broker") from exc
    items = [
        {"queue": str(queue), "ready": ready, "delayed": delayed, "dead": dead}
        for queue, ready, delayed, dead in counts
    ]
    return JSONResponse({"items": items, "at": moment(time.time() * 1000)})


@documented(
    "Every queue's depth",
    {
        200: obj(
            {
                "items": array(
                    obj(
                        {
                            "queue": choice(Queue),
                            "ready": INT,
                            "delayed": INT,
                            "dead": INT,
                            "oldest_ready_age_s": NUMBER,
                        },
                        required=["queue", "ready", "delayed", "dead"],
                    )
                ),
                "at": nullable(STRING),
            }
        )
    },
)
async def system_queues(request: Request) -> JSONResponse:
    sender = request.app.state.courier.sender
    if isinstance(sender, BrokerSender):
        return await rabbitmq_queues(sender)
    depths = await queue_depths(request.app.state.redis, broker_of(request).namespace)
    now_ms = time.time() * 1000
    items = []
    for depth in depths:
        item: dict[str, Any] = {
            "queue": str(depth.queue),
            "ready": depth.ready,
            "delayed": depth.delayed,
            "dead": depth.dead,
        }
        message = broker_keys.decode_message(depth.head)
        enqueued = message.get("message_timestamp") if message else None
        if isinstance(enqueued, int | float):
            item["oldest_ready_age_s"] = round(max(0.0, now_ms - enqueued) / 1000, 1)
        items.append(item)
    return JSONResponse({"items": items, "at": moment(now_ms)})


def _job_title(params: Any) -> str | None:
    """What a person calls a job: the title asked for, else its URL."""
    if not isinstance(params, dict):
        return None
    title = params.get("title") or params.get("url") or params.get("name")
    return title if isinstance(title, str) else None


async def _running_jobs(request: Request) -> list[dict[str, Any]]:
    # A parent has no worker: neither a batch nor a relayout handed to its parts.
    child = Job.__table__.alias("child")
    query = (
        select(Job.id, Job.kind, Job.params, Job.stage, Job.progress, Job.message_id)
        .where(Job.status == JobStatus.running, Job.kind.not_in(PARENT_KINDS))
        .where(~select(child.c.id).where(child.c.parent_id == Job.id).exists())
        .order_by(Job.started_at)
        .limit(MAX_RUNNING)
    )
    async with request.app.state.db() as session:
        rows = (await session.execute(query)).all()
    return [row._asdict() for row in rows]


def _worker_record(raw: str | None) -> dict[str, Any]:
    record = broker_keys.decode_message(raw) or {}
    return {key: record[key] for key in ("host", "pid") if key in record}


async def _holders(redis: Any, namespace: str, worker_ids: list[str]) -> dict[str, str]:
    """Redis message id -> the worker whose ack sets hold it (every queue and delay
    queue of each); a web process, which only sends, holds none."""
    queue_names = [name for queue in Queue for name in (str(queue), f"{queue}.DQ")]
    async with redis.pipeline(transaction=False) as pipe:
        for worker_id in worker_ids:
            for name in queue_names:
                pipe.smembers(broker_keys.acks_key(namespace, worker_id, name))
        acks = await pipe.execute()
    holder: dict[str, str] = {}
    for index, worker_id in enumerate(worker_ids):
        for held in acks[index * len(queue_names) : (index + 1) * len(queue_names)]:
            holder.update(dict.fromkeys(held, worker_id))
    return holder


def _shown_job(job: dict[str, Any], snapshot: str | None, beating: int) -> dict[str, Any]:
    """A running job as the workers' list shows it: its stage and progress from the
    snapshot its worker last published (fresher than the row), else the row."""
    published = broker_keys.decode_message(snapshot) or {}
    return {
        "id": job["id"],
        "kind": job["kind"],
        "title": _job_title(job["params"]),
        "stage": published.get("stage", job["stage"]),
        "progress": published.get("progress", job["progress"]),
        "heartbeat": bool(beating),
    }


@documented(
    "The worker processes and the jobs they run",
    {
        200: obj(
            {
                "items": array(
                    obj(
                        {
                            "id": STRING,
                            "last_seen": nullable(STRING),
                            "alive": BOOL,
                            "jobs": array(RUNNING),
                        },
                    )
                ),
                "unassigned": array(RUNNING),
                "at": nullable(STRING),
            }
        )
    },
)
async def system_workers(request: Request) -> JSONResponse:
    broker = broker_of(request)
    redis = request.app.state.redis
    running = await _running_jobs(request)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrange(broker_keys.heartbeats_key(broker.namespace), 0, -1, withscores=True)
        pipe.hgetall(broker_keys.WORKERS_KEY)
        for job in running:
            pipe.get(live.snapshot_key(job["id"]))
            pipe.exists(live.heartbeat_key(job["id"]))
        beats, records, *live_replies = await pipe.execute()
    holder = await _holders(redis, broker.namespace, [worker_id for worker_id, _ in beats])
    held_jobs: dict[str, list[dict[str, Any]]] = {}
    unassigned = []
    for job, snapshot, beating in zip(running, live_replies[::2], live_replies[1::2], strict=True):
        shown = _shown_job(job, snapshot, beating)
        worker_id = holder.get(job["message_id"] or "")
        if worker_id is None:
            unassigned.append(shown)
        else:
            held_jobs.setdefault(worker_id, []).append(shown)
    now_ms = time.time() * 1000
    items = [
        {
            "id": worker_id,
            **_worker_record(records.get(worker_id)),
            "last_seen": moment(score),
            "alive": now_ms - score < broker.heartbeat_timeout,
            "jobs": held_jobs.get(worker_id, []),
        }
        for worker_id, score in beats
        # A process that only sends (a web process) has no record and holds no job.
        if worker_id in records or worker_id in held_jobs
    ]
    items.sort(key=lambda item: (not item["alive"], str(item.get("host", "")), item["id"]))
    return JSONResponse({"items": items, "unassigned": unassigned, "at": moment(now_ms)})


routes = [
    Route("/api/system/queues", system_queues, methods=["GET"]),
    Route("/api/system/workers", system_workers, methods=["GET"]),
]
