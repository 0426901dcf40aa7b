"""The lifeline: finds queued jobs whose message the broker no longer has (Redis lost
it, or the enqueue after the insert never happened) and sends them again.

The database is the truth; the broker's queues are rebuilt from it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import timedelta

import dramatiq
import redis
from periodiq import cron
from sqlalchemy import select

from actors import stores
from actors.enqueue import enqueue_job, job_actors
from actors.queues import Queue
from db.models import Job, JobStatus, utcnow

logger = logging.getLogger(__name__)

LOST_AFTER = timedelta(minutes=1)
BATCH = 500


def jobs_with_messages(client: redis.Redis, namespace: str, queues: Iterable[str]) -> set[str]:
    """The job ids that have a message in the Redis broker: waiting, delayed, or
    delivered and not yet acked (a message stays in its queue's hash until the ack).

    A scan rather than a message id kept on each row: recording the id costs a database
    write per enqueue, and this runs once a minute."""
    found: set[str] = set()
    for queue in queues:
        for name in (queue, f"{queue}.DQ"):
            for _key, encoded in client.hscan_iter(f"{namespace}:{name}.msgs", count=1000):
                try:
                    message = json.loads(encoded)
                    found.add(str(message["args"][0]))
                except (ValueError, KeyError, IndexError, TypeError):
                    continue
    return found


def requeue_lost(older_than: timedelta = LOST_AFTER) -> int:
    """Re-enqueue queued jobs older than ``older_than`` that have no message."""
    broker = dramatiq.get_broker()
    actor_of_kind = job_actors()
    cutoff = utcnow() - older_than
    with stores.sessions()() as session:
        candidates = list(
            session.execute(
                select(Job.id, Job.kind, Job.queue)
                .where(Job.status == JobStatus.queued, Job.updated_at < cutoff)
                .limit(BATCH)
            )
        )
    if not candidates:
        return 0
    namespace = getattr(broker, "namespace", "dramatiq")
    present = jobs_with_messages(stores.redis_client(), namespace, broker.get_declared_queues())
    lost = [row for row in candidates if row.id not in present]
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
