"""The lifeline's periodic actor: the scheduler enqueues it every minute."""

from __future__ import annotations

import dramatiq
from periodiq import cron

from actors.recovery import run_lifeline
from db.queues import Queue


@dramatiq.actor(queue_name=Queue.maintenance, periodic=cron("* * * * *"), max_retries=0)
def lifeline_sweep() -> None:
    run_lifeline()
