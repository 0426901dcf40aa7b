"""Recovery: the database is the truth, and the broker's queues and the running jobs'
workers are checked against it.

- A ``queued`` job whose message the broker no longer has (Redis lost it, or the
  enqueue after the insert never happened) is sent again. On Redis the lifeline reads
  the broker's messages to know; on RabbitMQ, which cannot be asked, it decides from
  the job's age, the download line and the queue's backlog
  (:func:`requeue_lost_on_rabbitmq`).
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
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from sqlalchemy import Row, select

from actors import stores
from actors.limits import download_slots
from actors.retry_policy import RETRY_MAX_BACKOFF_MS
from actors.stores import Outage, database_unavailable, redis_unavailable
from db import job_service, live
from db.models import Job, JobStatus, utcnow
from db.outbox import Outbox
from db.rabbitmq import UNAVAILABLE as RABBITMQ_UNAVAILABLE
from db.rabbitmq import queue_counts
from db.settings import get_settings

logger = logging.getLogger(__name__)

LOST_AFTER = timedelta(minutes=1)
BATCH = 500
LEASE_KEY = "vf:lifeline:lease"
#: The scan for lost messages reads every message of the queues that hold old queued
#: jobs (its cost grows with the backlog): at most once a minute fleet-wide.
SCAN_LEASE_KEY = "vf:lifeline:scan-lease"
SCAN_EVERY_S = 60

REDIS_OUTAGE = Outage("lifeline", "Redis", logger=logger)
DATABASE_OUTAGE = Outage("lifeline", "the database", logger=logger)
BROKER_OUTAGE = Outage("lifeline", "RabbitMQ", logger=logger)


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


def _stale(
    status: JobStatus,
    since: Any,
    cutoff: datetime,
    *columns: Any,
    not_kinds: Any = (),
    not_parents: bool = False,
) -> list[Row[Any]]:
    """Up to a batch of jobs in ``status`` whose ``since`` time is before ``cutoff``
    (and whose kind is none of ``not_kinds``; with ``not_parents``, that have no
    children)."""
    with stores.sessions()() as session:
        query = select(*columns).where(Job.status == status, since < cutoff)
        if not_kinds:
            query = query.where(Job.kind.not_in(not_kinds))
        if not_parents:
            child = Job.__table__.alias("child")
            query = query.where(~select(child.c.id).where(child.c.parent_id == Job.id).exists())
        return list(session.execute(query.limit(BATCH)))


def requeue_lost(older_than: timedelta = LOST_AFTER) -> int:
    """Re-enqueue queued jobs older than ``older_than`` that have no message."""
    broker = dramatiq.get_broker()
    if isinstance(broker, RabbitmqBroker):
        return requeue_lost_on_rabbitmq(broker, older_than)
    candidates = _stale(
        JobStatus.queued, Job.updated_at, utcnow() - older_than, Job.id, Job.kind, Job.queue
    )
    if not candidates:
        return 0
    present = jobs_with_messages(
        stores.redis_client(),
        getattr(broker, "namespace", "dramatiq"),
        {row.queue for row in candidates},  # a job's messages stay on its own queue
        dead_after_ms=getattr(broker, "heartbeat_timeout", 60_000),
    )
    lost = [row._asdict() for row in candidates if row.id not in present]
    return _resend(lost, "the broker has no message for it")


def requeue_lost_on_rabbitmq(broker: RabbitmqBroker, older_than: timedelta = LOST_AFTER) -> int:
    """Re-enqueue queued jobs that look lost, without asking RabbitMQ for their messages
    (it cannot be asked about one message without taking it).

    A queued job is sent again when, for ``older_than``, nothing changed it (nor, if it
    was tried before, for the longest retry backoff too: its next attempt may wait in a
    worker's delay queue that long), it is not waiting in the download slots' line (a
    live worker thread holds its message there), and its queue has no ready message (a
    backlog explains the wait: RabbitMQ hands a queue's messages out in order, and the
    job is sent again, if still queued, once the backlog has drained). Sending a job
    again that still had its message is harmless: of the two, the second finds the job
    taken (the claim is conditional on ``queued``) and is dropped.
    """
    now = utcnow()
    candidates = _stale(
        JobStatus.queued, Job.updated_at, now - older_than,
        Job.id, Job.kind, Job.queue, Job.attempts, Job.updated_at,
    )  # fmt: skip
    retried_cutoff = now - older_than - timedelta(milliseconds=RETRY_MAX_BACKOFF_MS)
    candidates = [
        row for row in candidates if row.attempts == 0 or _aware(row.updated_at) < retried_cutoff
    ]
    if not candidates:
        return 0
    waiting = stores.redis_client().zmscore(
        download_slots().line_key, [row.id for row in candidates]
    )
    candidates = [row for row, place in zip(candidates, waiting, strict=True) if place is None]
    if not candidates:
        return 0
    counts = queue_counts(broker)
    BROKER_OUTAGE.answered()
    backlog = {queue for queue, ready, _, _ in counts if ready}
    lost = [
        {"id": row.id, "kind": row.kind, "queue": row.queue}
        for row in candidates
        if row.queue not in backlog
    ]
    return _resend(lost, "nothing took it, and its queue has no backlog")


def _aware(moment: datetime) -> datetime:
    """SQLite keeps UTC without the zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _resend(lost: list[dict[str, Any]], why: str) -> int:
    for job in lost:
        logger.warning("re-enqueueing job %s: %s", job["id"], why)
    stores.courier().deliver(job_service.resend(lost))
    return len(lost)


def recover_abandoned(heartbeat_timeout: float | None = None) -> int:
    """Queue again (or fail, when out of attempts) running jobs whose heartbeat expired
    (:func:`db.job_service.give_up_lost_workers`). Nothing is given up while Redis has
    been up for less than a heartbeat lifetime (see :func:`_heartbeats_trustworthy`)."""
    timeout = heartbeat_timeout or get_settings().heartbeat_timeout
    cutoff = utcnow() - timedelta(seconds=timeout)
    running = _stale(
        JobStatus.running, Job.started_at, cutoff, Job.id, Job.attempts, Job.max_attempts,
        not_kinds=job_service.PARENT_KINDS,  # no worker of their own: their parts beat
        not_parents=True,  # a planning kind handed to its parts (job_service.hand_to_parts)
    )  # fmt: skip
    if not running:
        return 0
    client = stores.redis_client()
    if not _heartbeats_trustworthy(client, timeout):
        return 0
    beats = client.mget([live.heartbeat_key(row.id) for row in running])
    dead = [row for row, beat in zip(running, beats, strict=True) if beat is None]
    if not dead:
        return 0
    with stores.engine().connect() as connection:
        outbox = job_service.give_up_lost_workers(connection, dead)
    for job in outbox.publish:
        logger.warning("job %s lost its worker: now %s", job["id"], job["status"])
    stores.courier().deliver(outbox)
    return len(outbox.publish)


def settle_parents() -> int:
    """End the batches whose parts all ended but whose last roll-up was lost."""
    with stores.engine().connect() as connection:
        parents = job_service.unsettled_parents(connection)
        outbox = Outbox()
        for parent in parents:
            outbox.add(job_service.roll_up(connection, parent))
    for job in outbox.publish:
        logger.warning("batch %s had all its parts done: now %s", job["id"], job["status"])
    stores.courier().deliver(outbox)
    return len(outbox.publish)


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
        if isinstance(exc, RABBITMQ_UNAVAILABLE):
            BROKER_OUTAGE.failed(exc)
        elif redis_unavailable(exc):
            REDIS_OUTAGE.failed(exc)
        elif database_unavailable(exc):
            DATABASE_OUTAGE.failed(exc)
        else:
            raise
        return False
    # Every step reads the database first: it answered.
    DATABASE_OUTAGE.answered()
    return True


def run_lifeline(*, scan: bool = True) -> None:
    """Both checks, each on its own: one that cannot reach a store does not keep the
    other from running. Without ``scan``, only the running jobs are checked."""
    done = [_ride_out(recover_abandoned), _ride_out(settle_parents)]
    if scan:
        done.append(_ride_out(requeue_lost))
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
    (or Redis, which holds that lease, is unavailable); its scan for lost messages only
    if none ran in the last :data:`SCAN_EVERY_S`."""
    client = stores.redis_client()
    answered, taken = _ask_redis(
        lambda: client.set(LEASE_KEY, "1", nx=True, ex=max(1, int(every_s)))
    )
    if not (answered and taken):
        return False
    _, scan = _ask_redis(lambda: client.set(SCAN_LEASE_KEY, "1", nx=True, ex=SCAN_EVERY_S))
    run_lifeline(scan=bool(scan))
    return True
