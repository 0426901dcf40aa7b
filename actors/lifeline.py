"""The lifeline: finds queued jobs whose message the broker no longer has (Redis lost
it, or the enqueue after the insert never happened) and sends them again.

The database is the truth; the broker's queues are rebuilt from it.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import dramatiq
from periodiq import cron
from sqlalchemy import select

from actors import stores
from actors.enqueue import enqueue_job
from actors.queues import Queue
from db.models import Job, JobStatus, utcnow

logger = logging.getLogger(__name__)

LOST_AFTER = timedelta(minutes=1)
BATCH = 500


def job_actors() -> dict[str, dramatiq.Actor]:
    broker = dramatiq.get_broker()
    actors = (broker.get_actor(name) for name in broker.get_declared_actors())
    return {actor.actor_name: actor for actor in actors if actor.options.get("job")}


def has_live_message(client: object, namespace: str, queue: str, message_id: str | None) -> bool:
    """Is the message still in the queue (or its delay queue) of the Redis broker?"""
    if not message_id:
        return False
    return any(
        client.hexists(f"{namespace}:{name}.msgs", message_id)  # type: ignore[attr-defined]
        for name in (queue, f"{queue}.DQ")
    )


def requeue_lost(older_than: timedelta = LOST_AFTER) -> int:
    """Re-enqueue queued jobs older than ``older_than`` that have no live message."""
    broker = dramatiq.get_broker()
    namespace = getattr(broker, "namespace", "dramatiq")
    client = stores.redis_client()
    actors = job_actors()
    actor_of_kind = {actor.options["job"]: actor for actor in actors.values()}
    cutoff = utcnow() - older_than
    with stores.sessions()() as session:
        lost = [
            (job.id, job.kind, job.queue)
            for job in session.scalars(
                select(Job)
                .where(Job.status == JobStatus.queued, Job.updated_at < cutoff)
                .limit(BATCH)
            )
            if not has_live_message(client, namespace, job.queue, job.message_id)
        ]
    for job_id, kind, queue in lost:
        actor = actor_of_kind.get(kind)
        if actor is None:
            logger.error("job %s has kind %r that no actor handles", job_id, kind)
            continue
        logger.warning("re-enqueueing job %s: the broker has no message for it", job_id)
        enqueue_job(actor, job_id, queue)
    return len(lost)


@dramatiq.actor(queue_name=Queue.maintenance, periodic=cron("* * * * *"), max_retries=0)
def requeue_lost_jobs() -> None:
    requeue_lost()
