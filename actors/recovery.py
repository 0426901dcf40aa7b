"""Recovery: the database is the truth, and the broker's queues and the running jobs'
workers are checked against it.

- A ``queued`` job whose message the broker no longer has (Redis lost it, or the
  enqueue after the insert never happened) is sent again.
- A ``running`` job whose heartbeat expired lost its worker (killed, out of memory, cut
  off): it is queued again while attempts remain, else it fails with that reason. This
  is how a job that kills its worker every time (a poison pill) ends after
  ``max_attempts``: attempts are counted in the database when a job is claimed.

The scheduler runs this every minute and every worker every 15 s (one at a time across
the fleet, under a Redis lease) and once when it starts.

It rides out store outages: :func:`run_lifeline` and :func:`run_lifeline_if_due` never
raise because the database or Redis is unavailable. A run that cannot reach a store
skips what it cannot do and the next run (15 s later from a worker) is the retry; it
never sleeps in between (a worker runs it on a thread of its own, so however long its
queries wait, the watcher's heartbeats go on). One warning when an outage starts, one
info line when it ends, per store and process. A ``running`` job is not given up while
Redis is younger than a heartbeat lifetime: a Redis restart (or a wipe) loses heartbeat
keys that expired while it was down, and live workers need one lifetime to beat again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import dramatiq
import redis
from sqlalchemy import Row, select

from actors import stores
from actors.enqueue import enqueue_job, job_actors
from actors.reporter import JobReporter
from actors.stores import Outage, database_unavailable, redis_unavailable
from db import jobs, live
from db.models import Job, JobStatus, utcnow
from db.settings import get_settings

logger = logging.getLogger(__name__)

LOST_AFTER = timedelta(minutes=1)
BATCH = 500
LEASE_KEY = "vf:lifeline:lease"

REDIS_OUTAGE = Outage("lifeline", "Redis", logger=logger)
DATABASE_OUTAGE = Outage("lifeline", "the database", logger=logger)


@lru_cache(maxsize=1)
def _reporter() -> JobReporter:
    # One per process, so a Redis outage is logged once, not once per lifeline run.
    return JobReporter(client=stores.redis_client(), engine=stores.engine())


def jobs_with_messages(
    client: redis.Redis, namespace: str, queues: Iterable[str], *, dead_after_ms: int
) -> set[str]:
    """The job ids that have a live message in the Redis broker: waiting, delayed, or
    delivered to a worker that is alive (a message stays in its queue's hash until the
    ack). A message held by a worker whose Dramatiq heartbeat is older than
    ``dead_after_ms`` does not count: Dramatiq gives such messages back only in its
    occasional maintenance (about one broker call in a thousand), which can take many
    minutes; the lifeline sends the job again instead, and whichever message comes
    second finds the job taken and is dropped. A live worker's message counts however
    long it is held (a download runs for minutes, a retry waits in a delay queue): only
    that worker knows whether it really has it, and it gives back those it fetched but
    never received itself (:mod:`actors.orphans`).

    A scan rather than a message id kept on each row: recording the id costs a database
    write per enqueue, and this runs a few times a minute."""
    queue_names = [name for queue in queues for name in (queue, f"{queue}.DQ")]
    now_ms = int(time.time() * 1000)
    dead_workers: list[str] = client.zrangebyscore(  # type: ignore[assignment]
        f"{namespace}:__heartbeats__", 0, now_ms - dead_after_ms
    )
    held_by_dead: set[str] = set()
    for worker in dead_workers:
        for name in queue_names:
            members: set[str] = client.smembers(  # type: ignore[assignment]
                f"{namespace}:__acks__.{worker}.{name}"
            )
            held_by_dead |= members
    found: set[str] = set()
    for name in queue_names:
        for redis_id, encoded in client.hscan_iter(f"{namespace}:{name}.msgs", count=1000):
            if redis_id in held_by_dead:
                continue
            try:
                message = json.loads(encoded)
                found.add(str(message["args"][0]))
            except (ValueError, KeyError, IndexError, TypeError):
                continue
    return found


def _stale(status: JobStatus, since: Any, cutoff: datetime, *columns: Any) -> list[Row[Any]]:
    """Up to a batch of jobs in ``status`` whose ``since`` time is before ``cutoff``."""
    with stores.sessions()() as session:
        query = select(*columns).where(Job.status == status, since < cutoff).limit(BATCH)
        return list(session.execute(query))


def requeue_lost(older_than: timedelta = LOST_AFTER) -> int:
    """Re-enqueue queued jobs older than ``older_than`` that have no message."""
    candidates = _stale(
        JobStatus.queued, Job.updated_at, utcnow() - older_than, Job.id, Job.kind, Job.queue
    )
    if not candidates:
        return 0
    broker = dramatiq.get_broker()
    actor_of_kind = job_actors()
    present = jobs_with_messages(
        stores.redis_client(),
        getattr(broker, "namespace", "dramatiq"),
        broker.get_declared_queues(),
        dead_after_ms=getattr(broker, "heartbeat_timeout", 60_000),
    )
    lost = [row for row in candidates if row.id not in present]
    for job_id, kind, queue in lost:
        actor = actor_of_kind.get(kind)
        if actor is None:
            logger.error("job %s has kind %r that no actor handles", job_id, kind)
            continue
        logger.warning("re-enqueueing job %s: the broker has no message for it", job_id)
        enqueue_job(actor, job_id, queue)
    return len(lost)


def recover_abandoned(heartbeat_timeout: float | None = None) -> int:
    """Queue again (or fail, when out of attempts) running jobs whose heartbeat expired.

    Each change is fenced by the attempt it saw, so a slow worker that comes back
    cannot also finish the job. Nothing is given up while Redis has been up for less
    than a heartbeat lifetime (see :func:`_heartbeats_trustworthy`)."""
    timeout = heartbeat_timeout or get_settings().heartbeat_timeout
    cutoff = utcnow() - timedelta(seconds=timeout)
    running = _stale(
        JobStatus.running, Job.started_at, cutoff, Job.id, Job.attempts, Job.max_attempts
    )
    if not running:
        return 0
    client = stores.redis_client()
    if not _heartbeats_trustworthy(client, timeout):
        return 0
    beats = client.mget([live.heartbeat_key(row.id) for row in running])
    dead = [row for row, beat in zip(running, beats, strict=True) if beat is None]
    changed: list[dict[str, Any]] = []
    with stores.engine().begin() as connection:
        for row in dead:
            if row.attempts < row.max_attempts:
                error = {
                    "type": "worker_lost",
                    "message": "its worker stopped (killed, out of memory or cut off)",
                    "retryable": True,
                }
                outcome = jobs.requeue(connection, row.id, error=error, attempt=row.attempts)
            else:
                error = {
                    "type": "worker_lost",
                    "message": f"its worker died on each of its {row.attempts} attempts",
                    "retryable": False,
                }
                outcome = jobs.finish(
                    connection, row.id, JobStatus.failed, error=error, attempt=row.attempts
                )
            if outcome is not None:
                logger.warning("job %s lost its worker: now %s", row.id, outcome["status"])
                changed.append(outcome)
    if changed:
        _reporter().publish_many(changed)
        actors = job_actors()
        for job in changed:
            if job["status"] == JobStatus.queued:
                enqueue_job(actors[job["kind"]], job["id"], job["queue"])
    return len(changed)


def _heartbeats_trustworthy(client: redis.Redis, timeout: float) -> bool:
    """False while Redis has been up for less than a heartbeat lifetime: it restarted,
    and a heartbeat that expired while it was down (or that a wipe lost) says nothing
    about its worker yet."""
    try:
        info: dict[str, Any] = client.info("server")
        uptime = float(info["uptime_in_seconds"])
    except (redis.ResponseError, KeyError, TypeError, ValueError):
        return True  # a server that does not tell: no grace period
    if uptime >= timeout:
        return True
    logger.info(
        "Redis restarted %.0f s ago: running jobs get %.0f s to beat again before the "
        "lifeline gives any up",
        uptime,
        timeout,
    )
    return False


def _ride_out(step: Callable[[], int]) -> bool:
    """Run one lifeline step; False when a store was unavailable (logged once per
    outage). Any other error is a bug and is raised."""
    try:
        step()
    except Exception as exc:
        if redis_unavailable(exc):
            REDIS_OUTAGE.failed(exc)
        elif database_unavailable(exc):
            DATABASE_OUTAGE.failed(exc)
        else:
            raise
        return False
    # Every step reads the database first: it answered.
    DATABASE_OUTAGE.answered()
    return True


def run_lifeline() -> None:
    """Both checks, each on its own: one that cannot reach a store does not keep the
    other from running."""
    done = [_ride_out(recover_abandoned), _ride_out(requeue_lost)]
    if all(done) and REDIS_OUTAGE.down:
        # The steps may not have needed Redis (nothing to check): ask it whether the
        # outage is over.
        _ask_redis(lambda: stores.redis_client().ping())


def _ask_redis(call: Callable[[], Any]) -> tuple[bool, Any]:
    """``(True, what call returned)``, or ``(False, None)`` when Redis is unavailable."""
    try:
        answer = call()
    except redis.RedisError as exc:
        if not redis_unavailable(exc):
            raise
        REDIS_OUTAGE.failed(exc)
        return False, None
    REDIS_OUTAGE.answered()
    return True, answer


def run_lifeline_if_due(every_s: float) -> bool:
    """Run the lifeline unless another process ran it in the last ``every_s`` seconds
    (or Redis, which holds that lease, is unavailable)."""
    answered, taken = _ask_redis(
        lambda: stores.redis_client().set(LEASE_KEY, "1", nx=True, ex=max(1, int(every_s)))
    )
    if not (answered and taken):
        return False
    run_lifeline()
    return True
