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
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import dramatiq
import redis
from sqlalchemy import Row, select

from actors import stores
from actors.enqueue import enqueue_job, job_actors
from actors.reporter import JobReporter
from db import jobs, live
from db.models import Job, JobStatus, utcnow
from db.settings import get_settings

logger = logging.getLogger(__name__)

LOST_AFTER = timedelta(minutes=1)
BATCH = 500
LEASE_KEY = "vf:lifeline:lease"


def jobs_with_messages(
    client: redis.Redis, namespace: str, queues: Iterable[str], *, dead_after_ms: int
) -> set[str]:
    """The job ids that have a live message in the Redis broker: waiting, delayed, or
    delivered to a worker that is alive (a message stays in its queue's hash until the
    ack). A message held by a worker whose Dramatiq heartbeat is older than
    ``dead_after_ms`` does not count: Dramatiq gives such messages back only in its
    occasional maintenance (about one broker call in a thousand), which can take many
    minutes; the lifeline sends the job again instead, and whichever message comes
    second finds the job taken and is dropped.

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
    cannot also finish the job."""
    timeout = heartbeat_timeout or get_settings().heartbeat_timeout
    cutoff = utcnow() - timedelta(seconds=timeout)
    running = _stale(
        JobStatus.running, Job.started_at, cutoff, Job.id, Job.attempts, Job.max_attempts
    )
    if not running:
        return 0
    client = stores.redis_client()
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
        JobReporter(client=client, engine=stores.engine()).publish_many(changed)
        actors = job_actors()
        for job in changed:
            if job["status"] == JobStatus.queued:
                enqueue_job(actors[job["kind"]], job["id"], job["queue"])
    return len(changed)


def run_lifeline() -> None:
    recover_abandoned()
    requeue_lost()


def run_lifeline_if_due(every_s: float) -> bool:
    """Run the lifeline unless another process ran it in the last ``every_s`` seconds."""
    if not stores.redis_client().set(LEASE_KEY, "1", nx=True, ex=max(1, int(every_s))):
        return False
    run_lifeline()
    return True
