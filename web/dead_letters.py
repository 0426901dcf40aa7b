"""The messages Dramatiq dead-lettered (it gave up on them: a job that failed for good,
a periodic task that raised), listed, brought back or purged.

- ``GET /api/system/dead-letters?queue=&limit=``: the newest first, of one queue or of
  all; each with its job when it is a job's message, and why it died (the job's error).
- ``POST /api/system/dead-letters/requeue`` ``{"queue", "message_ids": [...]}`` or
  ``{"queue", "all": true}`` (admin): each message is first taken out of the
  dead-letter queue in one atomic step (:data:`db.broker_keys.TAKE_DEAD_SCRIPT`), so
  of two requests only one acts on it, then the jobs service decides by the job's
  truth (:func:`db.job_service.revive`): a queued job's message is sent again, a
  failed or cancelled job is retried as a new job, a succeeded (or running) job's
  message is just dropped. A message of no job goes back onto its queue as it was.
  If the database cannot answer, the messages go back to the dead-letter queue.
- ``POST /api/system/dead-letters/purge``, the same body (admin): deleted.

Every message reports what became of it; an id that is not (or no longer) dead is
``not_found``, not an error.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from sqlalchemy import select
from starlette import status
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from db import broker_keys, job_service, jobs
from db.models import Job
from db.queues import ACTOR_OF_KIND, Queue
from web.apidoc import INT, STRING, array, choice, documented, obj, query, text
from web.errors import ApiError, read_json_object
from web.fleet import broker_of, moment
from web.jobs import LIMIT, job_owner, parse_limit

#: The most messages one request names, or takes with ``all`` (the oldest first; the
#: answer's ``remaining`` says how many are left for the next).
MAX_MESSAGES = 1000
MAX_MESSAGE_ID_LENGTH = 128
JOB_ACTORS = frozenset(ACTOR_OF_KIND.values())


DEAD_LETTER = obj(
    {
        "message_id": STRING,
        "queue": choice(Queue),
        "actor": {"type": ["string", "null"]},
        "dead_at": {"type": ["string", "null"]},
        "job_id": STRING,
        "reason": STRING,
    },
    required=["message_id", "queue", "actor", "dead_at"],
)
#: What :func:`_selection` takes: a queue and exactly one of the ids or ``all``.
SELECTION = {
    "oneOf": [
        obj(
            {
                "queue": choice(Queue),
                "message_ids": array(
                    text(1, MAX_MESSAGE_ID_LENGTH), minItems=1, maxItems=MAX_MESSAGES
                ),
                "all": {"not": {}},  # never both
            },
            required=["queue", "message_ids"],
        ),
        obj(
            {"queue": choice(Queue), "all": {"const": True}, "message_ids": {"not": {}}},
            required=["queue", "all"],
        ),
    ]
}
OUTCOMES = obj(
    {
        "queue": choice(Queue),
        "items": array(obj({"message_id": STRING, "outcome": STRING})),
        "counts": {"type": "object", "additionalProperties": INT},
        "remaining": INT,
    }
)


def _queue(raw: Any, *, required: bool) -> Queue | None:
    if raw is None and not required:
        return None
    if isinstance(raw, str) and raw in Queue.__members__:
        return Queue(raw)
    raise ApiError(
        status.HTTP_400_BAD_REQUEST,
        "invalid_queue",
        f"queue must be one of {', '.join(Queue)}",
        field="queue",
    )


def job_of(message: dict[str, Any]) -> str | None:
    """The job a message runs: the one argument of a job actor, a job id."""
    args = message.get("args")
    if message.get("actor_name") not in JOB_ACTORS or not isinstance(args, list) or not args:
        return None
    try:
        return str(uuid.UUID(str(args[0])))
    except ValueError:
        return None


def _reason(message: dict[str, Any], error: Any) -> str | None:
    """Why the message died: its job's error, else the last line of the traceback
    Dramatiq's retries kept on it."""
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    trace = (message.get("options") or {}).get("traceback")
    if isinstance(trace, str) and trace.strip():
        return trace.strip().splitlines()[-1]
    return None


@documented(
    "The dead-lettered messages, newest first",
    {200: obj({"items": array(DEAD_LETTER), "total": INT})},
    errors=(400,),
    parameters=(query("queue", choice(Queue)), LIMIT),
)
async def list_dead_letters(request: Request) -> JSONResponse:
    queue = _queue(request.query_params.get("queue"), required=False)
    limit = parse_limit(request)
    namespace = broker_of(request).namespace
    queues = [queue] if queue is not None else list(Queue)
    redis = request.app.state.redis
    async with redis.pipeline(transaction=False) as pipe:
        for name in queues:
            pipe.zrevrange(broker_keys.dead_key(namespace, name), 0, limit - 1, withscores=True)
            pipe.zcard(broker_keys.dead_key(namespace, name))
        replies = await pipe.execute()
    newest = sorted(
        (
            (score, str(queue_name), message_id)
            for queue_name, dead in zip(queues, replies[::2], strict=True)
            for message_id, score in dead
        ),
        reverse=True,
    )[:limit]
    async with redis.pipeline(transaction=False) as pipe:
        for _, dead_queue, message_id in newest:
            pipe.hget(broker_keys.dead_messages_key(namespace, dead_queue), message_id)
        bodies = await pipe.execute()
    messages = [broker_keys.decode_message(body) or {} for body in bodies]
    job_ids = {job_id for message in messages if (job_id := job_of(message))}
    errors: dict[str, Any] = {}
    if job_ids:
        async with request.app.state.db() as session:
            rows = await session.execute(select(Job.id, Job.error).where(Job.id.in_(job_ids)))
            errors = {row.id: row.error for row in rows}
    items = []
    for (score, dead_queue, message_id), message in zip(newest, messages, strict=True):
        job_id = job_of(message)
        item: dict[str, Any] = {
            "message_id": message_id,
            "queue": dead_queue,
            "actor": message.get("actor_name"),
            "dead_at": moment(score),
        }
        if job_id is not None:
            item["job_id"] = job_id
        reason = _reason(message, errors.get(job_id or ""))
        if reason is not None:
            item["reason"] = reason
        items.append(item)
    return JSONResponse({"items": items, "total": sum(replies[1::2])})


async def _selection(request: Request) -> tuple[Queue, list[str] | None]:
    """The body's queue and message ids (None: ``all``)."""
    body = await read_json_object(request)
    queue = _queue(body.get("queue"), required=True)
    assert queue is not None
    ids, everything = body.get("message_ids"), body.get("all")
    if (ids is None) == (everything is None):
        raise ApiError(
            status.HTTP_400_BAD_REQUEST,
            "invalid_selection",
            'give either "message_ids" or "all": true',
        )
    if everything is not None:
        if everything is not True:
            raise ApiError(
                status.HTTP_400_BAD_REQUEST, "invalid_selection", '"all" must be true', field="all"
            )
        return queue, None
    if (
        not isinstance(ids, list)
        or not 1 <= len(ids) <= MAX_MESSAGES
        or not all(isinstance(i, str) and 0 < len(i) <= MAX_MESSAGE_ID_LENGTH for i in ids)
    ):
        raise ApiError(
            status.HTTP_400_BAD_REQUEST,
            "invalid_message_ids",
            f"message_ids must be 1 to {MAX_MESSAGES} message ids",
            field="message_ids",
        )
    return queue, list(dict.fromkeys(ids))


def _dead_keys(namespace: str, queue: Queue) -> list[str]:
    return [broker_keys.dead_key(namespace, queue), broker_keys.dead_messages_key(namespace, queue)]


async def _take(
    request: Request, queue: Queue, ids: list[str] | None
) -> tuple[list[str], list[Any]]:
    """Take messages out of ``queue``'s dead letters: the ids asked for (or the oldest
    :data:`MAX_MESSAGES` of them) and, per id, ``[score, JSON]`` or None."""
    namespace = broker_of(request).namespace
    redis = request.app.state.redis
    if ids is None:
        ids = await redis.zrange(broker_keys.dead_key(namespace, queue), 0, MAX_MESSAGES - 1)
    if not ids:
        return [], []
    keys = _dead_keys(namespace, queue)
    taken = await redis.eval(broker_keys.TAKE_DEAD_SCRIPT, 2, *keys, *ids)
    return ids, taken


async def _put_back(request: Request, queue: Queue, back: list[tuple[str, Any]]) -> None:
    if not back:
        return
    namespace = broker_of(request).namespace
    keys = _dead_keys(namespace, queue)
    args = [part for message_id, (score, body) in back for part in (message_id, score, body)]
    await request.app.state.redis.eval(broker_keys.RETURN_DEAD_SCRIPT, 2, *keys, *args)


async def _answer(
    request: Request, queue: Queue, items: list[dict[str, Any]], purged: int = 0
) -> JSONResponse:
    namespace = broker_of(request).namespace
    remaining = await request.app.state.redis.zcard(broker_keys.dead_key(namespace, queue))
    counts = Counter(item["outcome"] for item in items)
    if purged:
        counts["purged"] += purged
    return JSONResponse(
        {"queue": str(queue), "items": items, "counts": dict(counts), "remaining": remaining}
    )


async def _revive_jobs(
    request: Request, job_ids: list[str]
) -> tuple[dict[str, job_service.Revival], Any]:
    settings = request.app.state.settings
    owner = job_owner(request)
    async with request.app.state.db() as session:
        in_all, of_owner = (await session.execute(jobs.active_jobs_query(owner))).one()
        room = min(
            settings.max_active_jobs - in_all, settings.max_active_jobs_per_credential - of_owner
        )
        return await session.run_sync(
            lambda s: job_service.revive(s, job_ids, owner=owner, room=room)
        )


@documented(
    "Bring dead messages back by their job's truth (admin)",
    {200: OUTCOMES},
    errors=(400,),
    body=SELECTION,
)
async def requeue_dead_letters(request: Request) -> JSONResponse:
    queue, asked = await _selection(request)
    ids, taken = await _take(request, queue, asked)
    outcomes: dict[str, dict[str, Any]] = {}
    held: dict[str, tuple[Any, str, dict[str, Any]]] = {}  # id -> (score, JSON, message)
    for message_id, entry in zip(ids, taken, strict=True):
        if not entry:
            outcomes[message_id] = {"message_id": message_id, "outcome": "not_found"}
            continue
        score, body = entry
        held[message_id] = (score, body, broker_keys.decode_message(body) or {})
    by_job = {i: job_id for i, (_, _, m) in held.items() if (job_id := job_of(m)) is not None}
    try:
        revivals, outbox = (
            await _revive_jobs(request, list(dict.fromkeys(by_job.values())))
            if by_job
            else ({}, None)
        )
    except Exception:
        # The database did not answer: nothing was decided; they stay dead.
        await _put_back(request, queue, [(i, (s, b)) for i, (s, b, _) in held.items()])
        raise
    back: list[tuple[str, Any]] = []
    raw: list[tuple[str, str]] = []
    for message_id, (score, body, message) in held.items():
        item: dict[str, Any] = {"message_id": message_id}
        job_id = by_job.get(message_id)
        if job_id is not None:
            revival = revivals[job_id]
            item.update(job_id=job_id, job_status=revival.status, outcome=revival.outcome)
            if revival.retry_id is not None:
                item["retry_id"] = revival.retry_id
            if revival.outcome in ("too_many_jobs", "unavailable"):
                back.append((message_id, (score, body)))
        elif message.get("actor_name") in JOB_ACTORS or not message:
            item["outcome"] = "purged"  # a job's message whose job is unreadable
        else:
            item["outcome"] = "requeued"
            raw.append((message_id, body))
        outcomes[message_id] = item
    items = [outcomes[message_id] for message_id in ids]  # in the order asked
    await _put_back(request, queue, back)
    if raw:
        namespace = broker_of(request).namespace
        keys = [broker_keys.ready_key(namespace, queue), broker_keys.messages_key(namespace, queue)]
        args = [part for pair in raw for part in pair]
        await request.app.state.redis.eval(broker_keys.ENQUEUE_SCRIPT, 2, *keys, *args)
    if outbox:
        await request.app.state.courier.deliver_async(outbox)
    return await _answer(request, queue, items)


@documented("Delete dead messages (admin)", {200: OUTCOMES}, errors=(400,), body=SELECTION)
async def purge_dead_letters(request: Request) -> JSONResponse:
    queue, asked = await _selection(request)
    namespace = broker_of(request).namespace
    if asked is None:
        keys = _dead_keys(namespace, queue)
        purged = await request.app.state.redis.eval(broker_keys.PURGE_DEAD_SCRIPT, 2, *keys)
        return await _answer(request, queue, [], purged=int(purged))
    ids, taken = await _take(request, queue, asked)
    items = [
        {"message_id": message_id, "outcome": "purged" if entry else "not_found"}
        for message_id, entry in zip(ids, taken, strict=True)
    ]
    return await _answer(request, queue, items)


routes = [
    Route("/api/system/dead-letters", list_dead_letters, methods=["GET"]),
    Route("/api/system/dead-letters/requeue", requeue_dead_letters, methods=["POST"]),
    Route("/api/system/dead-letters/purge", purge_dead_letters, methods=["POST"]),
]
