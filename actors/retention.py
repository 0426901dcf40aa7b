"""The job history's upkeep: ``prune_job_history`` (hourly, on ``maintenance``) deletes
the finished jobs past their retention (:mod:`db.retention`), one short transaction per
batch, until none is left or its time budget is spent; the next run goes on from there.

Hourly, so that a run usually has one hour of finished jobs to delete (a few batches)
and the history never grows far past its limit; at minute 41, away from the other
schedules (the lifeline every minute, the stream cache's janitor at :x0 and its warmer
at :17), so it does not add its writes to theirs.
"""

from __future__ import annotations

import logging
import time

from actors import stores
from actors.periodic import periodic_actor
from db.retention import BATCH_SIZE, RetentionPolicy, prune_batch
from db.settings import get_settings

logger = logging.getLogger(__name__)

#: Seconds one run may spend deleting: a backlog (the first run on a long history)
#: is spread over several runs rather than holding a maintenance thread for long.
BUDGET_S = 120.0
#: Seconds between two batches: on SQLite, other processes' writes waiting in its busy
#: handler get the lock in between rather than queueing behind the whole run.
PAUSE_S = 0.05


@periodic_actor(time_limit=int(BUDGET_S + 60) * 1000)
def prune_job_history() -> None:
    policy = RetentionPolicy.from_settings(get_settings())
    deadline = time.monotonic() + BUDGET_S
    removed = 0
    while True:
        # A connection per batch: on SQLite the process has one, which its other
        # threads (the job ledger's among them) need between our batches.
        with stores.engine().connect() as connection:
            batch = prune_batch(connection, policy, batch_size=BATCH_SIZE)
        removed += batch
        if not batch or time.monotonic() + PAUSE_S >= deadline:
            break
        time.sleep(PAUSE_S)
    logger.info(
        "job history: pruned %d finished jobs (kept %s days, failed ones %s days; 0: forever)",
        removed,
        policy.days,
        policy.failed_days,
    )
