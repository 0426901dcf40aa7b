"""The one retry policy: decided from the attempts the database counted, never from
Dramatiq's retry count, which every postponement and graceful shutdown also raises."""

from __future__ import annotations

from typing import Any
from unittest.mock import Mock

import pytest
from dramatiq.middleware import Shutdown, TimeLimitExceeded

from actors.job_context import JobContext, run_here
from actors.retry_policy import Postponed, describe_error, retry_when
from media.errors import Cancelled, MediaError

TRANSIENT = MediaError("HTTP Error 503", code="unavailable", retryable=True)
PERMANENT = MediaError("HTTP Error 404", code="not_found", retryable=False)


@pytest.fixture
def running() -> Any:
    def run(attempts: int, max_attempts: int = 3) -> None:
        job = {"id": "j", "attempts": attempts, "max_attempts": max_attempts, "params": {}}
        run_here(JobContext(job=job, reporter=Mock()))

    yield run
    run_here(None)


@pytest.mark.parametrize(
    ("attempts", "error", "again"),
    [
        (1, TRANSIENT, True),
        (2, TRANSIENT, True),
        (3, TRANSIENT, False),  # its attempts are used up
        (1, PERMANENT, False),  # fails at attempt 1
        (1, Cancelled(), False),
        (1, TimeLimitExceeded(), True),
        (1, RuntimeError("a bug"), True),
        (3, Postponed("waiting", 1000), True),  # not an attempt: always comes back
        (3, Shutdown(), True),
    ],
)
def test_another_attempt_follows_from_the_databases_count(
    running: Any, attempts: int, error: BaseException, again: bool
) -> None:
    running(attempts)
    decide = retry_when(max_attempts=3)
    # However many times Dramatiq delivered the message (postponements, shutdowns).
    for retries in (0, 7, 50):
        assert decide(retries, error) is again


def test_without_a_job_on_the_thread_dramatiqs_count_stands_in() -> None:
    decide = retry_when(max_attempts=3)
    assert decide(0, TRANSIENT) and decide(1, TRANSIENT) and not decide(2, TRANSIENT)


def test_an_error_is_described_for_the_api() -> None:
    assert describe_error(PERMANENT) == {
        "type": "not_found", "message": "HTTP Error 404", "retryable": False
    }  # fmt: skip
    assert describe_error(TimeLimitExceeded())["type"] == "time_limit"
    assert describe_error(KeyError("x"))["retryable"] is True
