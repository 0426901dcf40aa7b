"""The scale-out proof (``make scale-demo``) with a small batch: two web processes, two
worker processes and the scheduler on one Redis and one database (PostgreSQL when
127.0.0.1:5432 or ``TEST_DATABASE_URL`` answers, in a schema of this test's own; else
SQLite). Downloads spread over both workers, a client on each web sees every event, a
SIGKILLed worker loses no job and a SIGKILLed web's client resumes on the other web
without a gap. The checks themselves are :func:`tests.scale_demo.run_demo`'s."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.scale_demo import DemoError, run_demo, scale_fleet


# Timing-sensitive: a worker must be caught mid-download, and recovery is bounded.
@pytest.mark.serial
def test_two_webs_and_two_workers_share_the_work_and_a_killed_one_of_each_loses_nothing(
    tmp_path: Path,
) -> None:
    # Media at the suite's niceness (tests/conftest.py), not the default 19: at 19 any
    # normal-priority load on the machine (here the suite's own) starves the fleet's
    # downloads and analyses past the demo's deadlines.
    nice = {"VIDFLEET_MEDIA_NICE": os.environ["VIDFLEET_MEDIA_NICE"]}
    with scale_fleet(tmp_path, settings=nice) as fleet:
        try:
            report = run_demo(fleet, jobs=4)
        except DemoError as exc:
            pytest.fail(f"{exc}\n{fleet.log_tails()}")
    assert report.problems == [], "\n".join(report.lines() + report.problems)
    assert report.downloads_by_worker == {"worker1": 2, "worker2": 2}
    assert report.killed_worker_jobs >= 1
    # The killed worker's downloads took a second attempt; nothing took a third.
    assert 1 <= sum(1 for n in report.attempts.values() if n == 2) <= 2  # its two threads
    assert max(report.attempts.values()) <= 2
    assert report.library_rows == 8
    assert report.connections == {"A": 1, "B": 2}
    for delivery in report.deliveries.values():
        assert delivery.received + delivery.coalesced == report.stream_events


def stream_entry(job_id: str, status: str, *, progress: bool = False) -> dict[str, str]:
    from db import live

    return live.encode_event({"id": job_id, "status": status}, progress=progress)


def test_the_delivery_check_allows_only_a_conflated_progress_event_to_be_missing() -> None:
    from tests.scale_demo import check_delivery

    stream = [
        ("1-0", stream_entry("a", "running")),
        ("2-0", stream_entry("a", "running", progress=True)),
        ("3-0", stream_entry("a", "running", progress=True)),
        ("4-0", stream_entry("a", "succeeded")),
    ]

    def got(*ids: str) -> list[dict[str, Any]]:
        jobs = {stream_id: json.loads(fields["job"]) for stream_id, fields in stream}
        return [{"type": "job", "id": stream_id, "job": jobs[stream_id]} for stream_id in ids]

    everything = check_delivery(stream, got("1-0", "2-0", "3-0", "4-0"))
    assert (everything.problems, everything.state_changes, everything.coalesced) == ([], 2, 0)
    conflated = check_delivery(stream, got("1-0", "3-0", "4-0"))
    assert (conflated.problems, conflated.coalesced) == ([], 1)
    assert check_delivery(stream, got("1-0", "2-0", "3-0")).problems  # a state change lost
    assert check_delivery(stream[:3], got("1-0", "2-0")).problems  # the last progress lost
    assert check_delivery(stream, got("1-0", "2-0", "2-0", "3-0", "4-0")).problems  # twice
    assert check_delivery(stream, got("1-0", "3-0", "2-0", "4-0")).problems  # out of order
