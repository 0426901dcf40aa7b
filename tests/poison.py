"""A job actor that kills the worker process running it: a poison pill for the crash
tests (``dramatiq actors tests.poison`` loads it next to the real actors)."""

from __future__ import annotations

import os
import signal

from actors import broker  # noqa: F401  (the broker must exist before the actor)
from actors.job_tracking import job_actor


@job_actor(kind="poison", queue_name="bulk")
def swallow_poison(job_id: str) -> None:
    os.kill(os.getpid(), signal.SIGKILL)
