"""Playlist schedules: five cron fields, read by periodiq's cron parser, run in UTC.

periodiq parses a spec into the values each field allows, but checks no bounds (``99``
is taken as a minute) and raises whatever its parsing meets (an IndexError for four
fields, a ValueError for ``x``): :func:`parse_schedule` turns all that into one
:class:`InvalidSchedule`. A playlist's sync is due when the schedule's last fire time
(:func:`previous_run`) is later than the last sync asked for.

The fire times are worked out here from periodiq's parsed fields, not with its
``next_valid_date``, which keeps the time of day when it moves on to another day
(``*/15 9-17 * * mon-fri`` from a Sunday at 10:00 gives Monday 10:15, not 09:00) and
returns dates that never match (``0 0 31 2 *`` gives a 3rd of March); nor with its
``validate``, which reads Sunday as 7 where its parser stores 0.

Importing this module loads periodiq: the web imports it only when it checks a schedule
(a web process otherwise never loads it).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from periodiq import CronSpec, cron

#: The longest schedule text accepted.
MAX_LENGTH = 100
#: Each field's name and the values it may hold (cron's; day of week 0-7, Sunday 0 or 7).
FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
#: How far a fire time is looked for: a leap-year cycle (``0 0 29 2 *`` fires once in it).
SEARCH_DAYS = 4 * 366


class InvalidSchedule(ValueError):
    """Not a schedule we run: the message says why."""


def parse_schedule(text: object) -> CronSpec:
    """The cron spec of ``text``: five fields (minute, hour, day of month, month, day of
    week), each a ``*``, a number, a range, a list or a ``/`` step; days of the week
    may be named (``mon``). A spec that never fires (``0 0 31 2 *``) is refused.

    Raises:
      InvalidSchedule: anything else.
    """
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_LENGTH:
        raise InvalidSchedule(f"schedule must be cron text of at most {MAX_LENGTH} characters")
    fields = text.split()
    if len(fields) != len(FIELDS):
        raise InvalidSchedule(
            "schedule must have five cron fields: minute hour day-of-month month day-of-week"
        )
    try:
        spec = cron(" ".join(fields))
    except (ValueError, IndexError, KeyError):
        raise InvalidSchedule(f"schedule {text!r} is not a cron expression") from None
    for (name, low, high), values in zip(FIELDS, spec.astuple(), strict=True):
        if not values or values[0] < low or values[-1] > high:
            raise InvalidSchedule(f"the {name} of a schedule must be within {low}-{high}")
    if previous_run(spec, datetime.now(UTC)) is None:
        raise InvalidSchedule(f"schedule {text!r} never fires")
    return spec


def _fires_on(spec: CronSpec, day: date) -> bool:
    """cron's rule: the month must match, and the day of the month or of the week; when
    one of those two is ``*``, the other must match."""
    if day.month not in spec.month:
        return False
    weekday = day.isoweekday() % 7  # Sunday 0 ...
    by_week = weekday in spec.dow or (weekday == 0 and 7 in spec.dow)  # ... or 7
    by_month = day.day in spec.dom
    if spec.is_dom_restricted and spec.is_dow_restricted:
        return by_month or by_week
    return by_month and by_week


def _minute(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def previous_run(spec: CronSpec, at: datetime) -> datetime | None:
    """The last time at or before ``at`` at which ``spec`` fired (UTC), if it did in the
    :data:`SEARCH_DAYS` before."""
    at = _minute(at)
    for back in range(SEARCH_DAYS):
        day = at.date() - timedelta(days=back)
        if not _fires_on(spec, day):
            continue
        for hour in reversed(spec.hour):
            for minute in reversed(spec.minute):
                fire = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
                if fire <= at:
                    return fire
    return None


def next_run(spec: CronSpec, after: datetime) -> datetime | None:
    """The first time after ``after`` at which ``spec`` fires (UTC), if it does in the
    :data:`SEARCH_DAYS` after."""
    after = _minute(after)
    for ahead in range(SEARCH_DAYS):
        day = after.date() + timedelta(days=ahead)
        if not _fires_on(spec, day):
            continue
        for hour in spec.hour:
            for minute in spec.minute:
                fire = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
                if fire > after:
                    return fire
    return None


def is_due(spec: CronSpec, *, since: datetime, now: datetime) -> bool:
    """Has ``spec`` fired after ``since``, up to ``now``?"""
    fired = previous_run(spec, now)
    return fired is not None and fired > since
