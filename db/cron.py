"""Cron expressions as periodiq reads them, for the processes that may not load periodiq.

The scheduler (:mod:`actors.scheduler`) runs periodiq: on every tick it sends each
periodic actor whose cron ``CronSpec.validate`` accepts for that minute, and the
lifeline's every-minute schedule wakes it every minute. The web lists the schedules
with their next run (``GET /api/system/schedules``) but must not import periodiq
(DESIGN §1; ``tests/web/test_dispatch.py``): periodiq is one module whose import also
loads ``dramatiq.cli``, ``pdb``, ``multiprocessing``, ``argparse`` and pendulum, none of
which a web process needs. So this module is hand-written: :class:`Cron` parses a
spec with periodiq's rules and :meth:`Cron.next_run` finds the first minute after a
time that periodiq's ``validate`` would accept; ``tests/db/test_cron.py`` checks it
against periodiq's own ``validate``, minute by minute, on generated specs.

periodiq's rules, which differ from some crons: ``a/step`` is ``a`` alone (not ``a``
to the maximum); a day of week is matched against ISO weekdays (Monday 1 ... Sunday 7,
so ``0`` never matches, write Sunday as ``7``); when both the day of month and the day
of week are restricted, a day matching either runs. Times are the wall clock of the
machine's time zone, as periodiq's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

NAMED = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
#: How far ahead :meth:`Cron.next_run` looks before it decides a spec never runs
#: (``0 0 30 2 *``): past a leap day's four-year cycle.
HORIZON = timedelta(days=5 * 366)


class CronError(ValueError):
    """A cron spec that periodiq could not read, or that names a value out of range."""


def _expand(field: str, low: int, high: int) -> frozenset[int]:
    """The values of one field, as periodiq's ``expand_valid`` makes them."""
    values: set[int] = set()
    for part in field.replace("*", f"{low}-{high}").split(","):
        span, _, step_text = part.partition("/")
        start_text, _, end_text = span.partition("-")
        try:
            step = int(step_text) if step_text else 1
            start = int(start_text)
            end = int(end_text) if end_text else start
        except ValueError:
            raise CronError(f"{field!r} is not a cron field") from None
        if step < 1 or not low <= start <= end <= high:
            raise CronError(f"{field!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    """A parsed cron spec.

    Parameters:
      spec: five fields (minute, hour, day of month, month, day of week) or a name
        such as ``@daily``.

    Raises:
      CronError: the spec is not five valid fields.
    """

    spec: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]

    @classmethod
    def parse(cls, spec: str) -> Cron:
        text = spec.strip()
        fields = NAMED.get(text, text).split()
        if len(fields) != 5:
            raise CronError(f"{spec!r} has not the five fields of a cron spec")
        weekday_field = fields[4].lower()
        for number, name in enumerate(WEEKDAYS):
            weekday_field = weekday_field.replace(name, str(number))
        return cls(
            spec=spec,
            minutes=_expand(fields[0], 0, 59),
            hours=_expand(fields[1], 0, 23),
            days=_expand(fields[2], 1, 31),
            months=_expand(fields[3], 1, 12),
            weekdays=_expand(weekday_field, 0, 7),
        )

    def runs_on(self, moment: datetime) -> bool:
        """Does the spec run on ``moment``'s day (its month and day)?"""
        # As periodiq's CronSpec.validate: "restricted" means fewer values than a week
        # or a month has; ISO weekdays.
        if moment.month not in self.months:
            return False
        in_month = moment.day in self.days
        in_week = moment.isoweekday() in self.weekdays
        if len(self.days) < 31 and len(self.weekdays) < 7:
            return in_month or in_week
        return in_month and in_week

    def matches(self, moment: datetime) -> bool:
        """Would the scheduler send the actor on the tick at ``moment``'s minute?"""
        return moment.minute in self.minutes and moment.hour in self.hours and self.runs_on(moment)

    def next_run(self, after: datetime) -> datetime | None:
        """The first minute later than ``after`` at which the spec runs, in ``after``'s
        time zone (the machine's when ``after`` is naive); None if none comes within
        :data:`HORIZON`. Skips whole months, days and hours that cannot match."""
        zone = after.tzinfo
        local = after.astimezone() if zone is not None else after
        moment = local.replace(tzinfo=None, second=0, microsecond=0) + timedelta(minutes=1)
        end = moment + HORIZON
        while moment < end:
            if moment.month not in self.months:
                moment = _next_month(moment)
            elif not self.runs_on(moment):
                moment = moment.replace(hour=0, minute=0) + timedelta(days=1)
            elif moment.hour not in self.hours:
                moment = moment.replace(minute=0) + timedelta(hours=1)
            elif moment.minute not in self.minutes:
                moment += timedelta(minutes=1)
            elif zone is None:
                return moment
            else:
                return moment.astimezone().astimezone(zone)  # a wall-clock time made aware
        return None


def _next_month(moment: datetime) -> datetime:
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return datetime(year, month, 1)
