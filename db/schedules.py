"""The fleet's schedules: which periodic actor runs when, on which queue.

One table serves both sides: the workers declare each periodic actor from its entry
(:func:`actors.periodic.periodic_actor` gives periodiq the cron), and the web lists
them (``GET /api/system/schedules``) without importing an actor module. A periodic
actor therefore cannot exist without its entry here; ``tests/actors/test_schedules.py``
checks that the broker's periodic actors and this table agree.

The minutes are spread so that the hourly and nightly work does not start together
(the lifeline runs every minute, the stream-cache janitor at :x0).
"""

from __future__ import annotations

from dataclasses import dataclass

from db.queues import Queue


@dataclass(frozen=True)
class Schedule:
    """One periodic actor.

    Parameters:
      name: the actor's name.
      cron: when the scheduler sends it (periodiq's cron, in the machine's time zone).
      does: what a run does, for people.
      queue: the queue its messages go to.
    """

    name: str
    cron: str
    does: str
    queue: Queue = Queue.maintenance


SCHEDULES: tuple[Schedule, ...] = (
    Schedule(
        "lifeline_sweep",
        "* * * * *",
        "re-sends queued jobs whose message is lost, requeues jobs whose worker died",
    ),
    Schedule(
        "sweep_stream_cache",
        "*/10 * * * *",
        "deletes stream-cache entries of deleted videos, then the least recently used",
    ),
    Schedule("warm_stream_cache", "17 * * * *", "transcodes the most watched streams ahead"),
    Schedule("sweep_temp_downloads", "29 * * * *", "removes dead downloads' work folders"),
    Schedule("prune_job_history", "41 * * * *", "deletes finished jobs past their retention"),
    Schedule(
        "sync_due_playlists",
        "* * * * *",
        "asks for the sync of each playlist whose own schedule fired since its last sync",
    ),
    Schedule(
        "analyze_unanalysed_videos",
        "23 3 * * *",
        "one batch analysing every video not analysed yet",
    ),
    Schedule(
        "sweep_missing_thumbnails",
        "53 4 * * *",
        "one batch remaking the thumbnails that are missing",
    ),
)

BY_NAME = {schedule.name: schedule for schedule in SCHEDULES}


def schedule_of(name: str) -> Schedule:
    """The schedule of the periodic actor ``name``.

    Raises:
      KeyError: no schedule has that name.
    """
    return BY_NAME[name]
