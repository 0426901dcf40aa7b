"""db.cron reads cron specs as periodiq does, without periodiq: what it matches is what
periodiq's ``CronSpec.validate`` (which decides each tick's sends) matches, and its next
run is the first such minute."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pendulum
import periodiq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from db.cron import Cron, CronError
from db.schedules import SCHEDULES

MOMENTS = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2040, 12, 31))


def field(low: int, high: int, names: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    value = st.integers(low, high)
    ranged = st.tuples(value, value).map(lambda pair: f"{min(pair)}-{max(pair)}")
    stepped = st.tuples(st.sampled_from(["*", f"{low}-{high}"]), st.integers(1, high)).map(
        lambda pair: f"{pair[0]}/{pair[1]}"
    )
    one = st.one_of(value.map(str), ranged, stepped, *(st.sampled_from(names),) * bool(names))
    return st.one_of(st.just("*"), st.lists(one, min_size=1, max_size=3).map(",".join))


SPECS = st.tuples(
    field(0, 59),
    field(0, 23),
    field(1, 31),
    field(1, 12),
    field(0, 7, ("mon", "tue", "wed", "thu", "fri", "sat", "sun")),
).map(" ".join)


def reference_next(cron: Cron, after: datetime) -> datetime | None:
    """The first matching minute after ``after``, day by day, then through each hour
    and minute the spec names: plain enumeration, nothing skipped."""
    day = after.replace(hour=0, minute=0, second=0, microsecond=0)
    for _ in range(5 * 366):
        if cron.runs_on(day):
            for hour in sorted(cron.hours):
                for minute in sorted(cron.minutes):
                    moment = day.replace(hour=hour, minute=minute)
                    if moment > after and cron.matches(moment):
                        return moment
        day += timedelta(days=1)
    return None


@settings(max_examples=100, deadline=None)
@given(spec=SPECS, moment=MOMENTS)
def test_a_spec_matches_the_minutes_periodiq_would_send_at(spec: str, moment: datetime) -> None:
    ours = Cron.parse(spec)
    theirs = periodiq.cron(spec)
    minute = moment.replace(second=0, microsecond=0)
    # This minute, the next ones, the next hours, days, and weeks.
    for offset in (*range(0, 5), *range(60, 60 * 24, 97), *range(60 * 24, 60 * 24 * 40, 1_441)):
        at = minute + timedelta(minutes=offset)
        assert ours.matches(at) == theirs.validate(pendulum.instance(at)), (spec, at)


@settings(max_examples=100, deadline=None)
@given(spec=SPECS, moment=MOMENTS)
def test_the_next_run_is_the_first_matching_minute_after_now(spec: str, moment: datetime) -> None:
    cron = Cron.parse(spec)
    found = cron.next_run(moment)
    assert found == reference_next(cron, moment), spec
    if found is not None:
        assert found > moment and cron.matches(found)
        assert periodiq.cron(spec).validate(pendulum.instance(found))


def test_every_declared_schedule_parses_and_runs_within_a_day() -> None:
    now = datetime.now(UTC)
    for schedule in SCHEDULES:
        found = schedule.parsed.next_run(now)
        assert found is not None and found.tzinfo is not None, schedule
        assert now < found <= now + timedelta(days=1), schedule


def test_next_runs_keep_the_time_zone_they_were_asked_in() -> None:
    now = datetime(2030, 5, 17, 10, 30, 45, tzinfo=UTC)
    every_ten = Cron.parse("*/10 * * * *").next_run(now)
    assert every_ten is not None and every_ten.tzinfo is not None
    assert every_ten.astimezone(UTC).minute % 10 == 0 and every_ten > now
    assert every_ten - now <= timedelta(minutes=10)
    assert Cron.parse("@hourly").next_run(datetime(2030, 5, 17, 10, 0)) == datetime(
        2030, 5, 17, 11, 0
    )
    assert Cron.parse("0 0 30 2 *").next_run(now) is None  # February has no 30th


@pytest.mark.parametrize(
    "spec",
    ["", "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *",
     "* * * * 8", "*/0 * * * *", "5-1 * * * *", "a * * * *", "@often"],
)  # fmt: skip
def test_a_spec_periodiq_could_not_read_is_refused(spec: str) -> None:
    with pytest.raises(CronError):
        Cron.parse(spec)
