"""db.cron: cron text checked and walked by cronsim. For the fleet's own schedules, the
minutes it gives are those periodiq sends at (periodiq's ``CronSpec.validate`` decides
each tick's sends), so the web's next runs are the scheduler's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pendulum
import periodiq
import pytest

from db import cron
from db.schedules import SCHEDULES


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda schedule: schedule.name)
def test_each_schedule_runs_at_the_minutes_periodiq_sends_it(schedule: object) -> None:
    text = schedule.cron  # type: ignore[attr-defined]
    theirs = periodiq.cron(text)
    start = datetime(2031, 3, 30, 22, 0, tzinfo=UTC)  # over a month's and a weekday's end
    ours, moment = [], start
    while (moment := cron.next_run(text, moment)) is not None and moment < start + timedelta(
        days=2
    ):
        ours.append(moment)
    expected = [
        start + timedelta(minutes=minute)
        for minute in range(1, 2 * 24 * 60)
        if theirs.validate(pendulum.instance(start + timedelta(minutes=minute)))
    ]
    assert ours == expected


def test_next_and_previous_runs() -> None:
    at = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)  # a Sunday
    assert cron.next_run("0 10 * * *", at) == at + timedelta(days=1)
    assert cron.previous_run("0 10 * * *", at) == at  # a fire at the minute itself counts
    assert cron.previous_run("0 10 * * *", at + timedelta(seconds=59)) == at
    assert cron.previous_run("1 10 * * *", at) == at - timedelta(days=1) + timedelta(minutes=1)
    assert cron.next_run("*/15 9-17 * * mon-fri", at) == datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    assert cron.next_run("0 0 * * 0", at) == cron.next_run("0 0 * * 7", at)  # Sunday both
    assert cron.next_run("0 0 29 2 *", at) == datetime(2028, 2, 29, tzinfo=UTC)


def test_a_schedule_is_due_once_it_fired_after_the_last_sync() -> None:
    now = datetime(2026, 12, 6, 12, 5, tzinfo=UTC)
    assert cron.is_due("0 */6 * * *", since=now - timedelta(hours=1), now=now)  # fired at 12:00
    assert not cron.is_due("0 */6 * * *", since=now - timedelta(minutes=4), now=now)
    # A scheduler down for days catches up with one sync: one answer, not one per fire.
    assert cron.is_due("0 * * * *", since=now - timedelta(days=3), now=now)


@pytest.mark.parametrize(
    "text",
    [None, 5, "", "   ", "* * * *", "* * * * * *", "61 * * * *", "x * * * *", "0 0 30 2 *",
     "@daily", "* * * * " + "1," * 60 + "1"],
)  # fmt: skip
def test_anything_but_five_fields_that_fire_is_refused_with_a_reason(text: object) -> None:
    with pytest.raises(cron.InvalidCron) as refused:
        cron.checked(text)
    assert str(refused.value)


def test_a_schedule_is_kept_with_single_spaces() -> None:
    assert cron.checked("  0   */6 * *  mon-fri ") == "0 */6 * * mon-fri"
