"""Each video's move in a relayout made slow, so that a crash test can kill the worker
half-way through (``dramatiq actors tests.slow_moves`` loads it next to the actors)."""

from __future__ import annotations

import time
from typing import Any

from actors import relayout
from actors.job_context import JobContext

_move_video = relayout.move_video


def _slow_move_video(job: JobContext, move: dict[str, Any]) -> bool:
    time.sleep(0.1)  # the work a real move's disk takes: what the test kills in the middle
    return _move_video(job, move)


relayout.move_video = _slow_move_video
