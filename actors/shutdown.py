"""GroupSignals: a group-wide SIGTERM stops a worker gracefully.

Heroku, honcho (``make run``) and most supervisors signal the whole process group; the
``dramatiq`` main process then forwards the same SIGTERM to its worker processes, which
so receive it twice, and Dramatiq reads a second SIGTERM as "kill now". A worker
process therefore ignores a repeat that arrives within a moment of the first, so that
one stop request means a graceful stop: running downloads are interrupted and go back
to the queue. A later SIGTERM still kills at once.
"""

from __future__ import annotations

import signal
import time
from types import FrameType
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

REPEAT_WINDOW_S = 2.0


class GroupSignals(Middleware):
    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        # Runs in each worker process after Dramatiq installed its own handler.
        dramatiq_handler: Any = signal.getsignal(signal.SIGTERM)
        if not callable(dramatiq_handler):
            return
        first_at: float | None = None

        def handler(signum: int, frame: FrameType | None) -> None:
            nonlocal first_at
            now = time.monotonic()
            if first_at is not None and now - first_at < REPEAT_WINDOW_S:
                return  # the same stop request, forwarded by the main process
            first_at = first_at or now
            dramatiq_handler(signum, frame)

        signal.signal(signal.SIGTERM, handler)
