"""media/priority.py: media processes yield the CPU to the web, autogroup included."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from media.priority import niceness, yield_cpu
from tests.support import stop_process_group


def autogroup_nice(pid: int) -> int | None:
    """The nice value of ``pid``'s autogroup, None where the kernel has none."""
    try:
        return int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])
    except OSError:
        return None


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process in a session (and so an autogroup) of its own, as our media processes are."""
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield process
    stop_process_group(process)


def test_a_process_and_its_autogroup_are_made_nicer(sleeper: subprocess.Popen[bytes]) -> None:
    assert niceness(sleeper.pid) == niceness()
    yield_cpu(sleeper.pid, 7)
    assert niceness(sleeper.pid) == max(7, niceness())
    if autogroup_nice(sleeper.pid) is not None:  # sched_autogroup is on (as here and in CI)
        assert autogroup_nice(sleeper.pid) == 7


def test_never_less_nice_and_zero_changes_nothing(sleeper: subprocess.Popen[bytes]) -> None:
    yield_cpu(sleeper.pid, 12)
    yield_cpu(sleeper.pid, 5)  # would raise its priority: refused (as root it could)
    yield_cpu(sleeper.pid, 0)
    assert niceness(sleeper.pid) == max(12, niceness())
    if autogroup_nice(sleeper.pid) is not None:
        assert autogroup_nice(sleeper.pid) == 12


def test_a_process_that_is_gone_is_no_error() -> None:
    process = subprocess.Popen(["true"])
    process.wait()
    yield_cpu(process.pid, 10)  # nothing to change, nothing raised


def test_the_niceness_is_capped_at_19(sleeper: subprocess.Popen[bytes]) -> None:
    yield_cpu(sleeper.pid, 40)
    assert niceness(sleeper.pid) == 19
    assert os.getpriority(os.PRIO_PROCESS, 0) == niceness()  # this process untouched
