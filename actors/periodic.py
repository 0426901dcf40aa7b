"""``periodic_actor``: declares a periodic actor from its schedule (:mod:`db.schedules`).

The schedule table gives its name, queue and cron (parsed here by periodiq, which the
scheduler runs); the web lists the same table. Periodic actors are never retried by
Dramatiq: the next tick is their retry. Each run is recorded as the schedule's last run
(:mod:`actors.schedule_runs`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
from periodiq import cron

from actors.broker import broker as _broker  # noqa: F401  (set before any actor)
from db.schedules import schedule_of


def periodic_actor(**options: Any) -> Callable[[Callable[[], None]], dramatiq.Actor]:
    """Declare the function as the periodic actor of the schedule named like it.

    Parameters:
      options: further actor options (``time_limit``).

    Raises:
      KeyError: :data:`db.schedules.SCHEDULES` has no schedule of that name.
    """

    def declare(fn: Callable[[], None]) -> dramatiq.Actor:
        schedule = schedule_of(fn.__name__)
        return dramatiq.actor(
            actor_name=schedule.name,
            queue_name=schedule.queue,
            periodic=cron(schedule.cron),
            max_retries=0,
            **options,
        )(fn)

    return declare
