"""Cron expressions: five fields (minute, hour, day of month, month, day of week), read
by cronsim, for the processes that may not load periodiq.

The scheduler runs periodiq, which sends each periodic actor on its cron; the web lists
the schedules with their next run (``GET /api/system/schedules``) and checks playlist
schedules, and must not import periodiq (DESIGN §1: its one module also loads
``dramatiq.cli``, ``pdb``, ``multiprocessing`` and pendulum). cronsim is a small,
maintained cron iterator (forwards and backwards, aware of time zones and DST) with
standard cron rules: Sunday is 0 or 7, and a day matching either the day of month or the
day of week runs when both are restricted. For the fleet's own schedules
(:mod:`db.schedules`) it gives the minutes periodiq runs: ``tests/db/test_cron.py``
checks both agree minute by minute on each of them.
"""

from __future__ import annotations

from datetime import datetime

from cronsim import CronSim, CronSimError

#: The longest cron text accepted.
MAX_LENGTH = 100
FIELDS = 5


class InvalidCron(ValueError):
    """Not a cron expression we run: the message says why."""


def checked(text: object) -> str:
    """``text`` with single spaces between its five fields, once it is known to be a
    cron expression that fires (``0 0 30 2 *`` never does).

    Raises:
      InvalidCron: anything else.
    """
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_LENGTH:
        raise InvalidCron(f"a schedule is cron text of at most {MAX_LENGTH} characters")
    fields = text.split()
    if len(fields) != FIELDS:
        raise InvalidCron(
            "a schedule has five cron fields: minute hour day-of-month month day-of-week"
        )
    normal = " ".join(fields)
    try:
        CronSim(normal, datetime.now().astimezone())
    except CronSimError as exc:
        raise InvalidCron(f"schedule {normal!r} is not a cron expression we run: {exc}") from None
    return normal


def next_run(text: str, after: datetime) -> datetime | None:
    """The first time after ``after`` (an aware datetime, in the zone the cron is read
    in) at which ``text`` fires; None if it never does."""
    return next(iter(CronSim(text, after)), None)


def previous_run(text: str, at: datetime) -> datetime | None:
    """The last time at or before ``at`` (aware) at which ``text`` fired."""
    at = at.replace(second=0, microsecond=0)
    # cronsim's backward walk starts before its start: a fire at ``at`` itself counts.
    return next(iter(CronSim(text, at.replace(second=1), reverse=True)), None)


def is_due(text: str, *, since: datetime, now: datetime) -> bool:
    """Has ``text`` fired after ``since``, up to ``now``?"""
    fired = previous_run(text, now)
    return fired is not None and fired > since
