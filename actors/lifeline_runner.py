"""LifelineRunner: every worker process runs the lifeline (:mod:`actors.recovery`) on a
thread of its own, once at boot (the check at start) and then every
``VIDFLEET_LIFELINE_INTERVAL`` seconds; a Redis lease lets one worker at a time across
the fleet do a round.

Its own thread, not the job watcher's: a round's queries may wait out a database
outage (connect and statement timeouts), and its scan of the broker's messages takes
longer the longer the backlog; the watcher's heartbeats must wait for neither. A
round's usual cost grows with the running jobs (their heartbeats); the scan for lost
messages, which grows with the queued ones, runs at most once a minute fleet-wide.
"""

from __future__ import annotations

import logging
import threading

import dramatiq
from dramatiq.middleware import Middleware

from actors.recovery import run_lifeline_if_due
from db.settings import get_settings

logger = logging.getLogger(__name__)


class LifelineRunner(Middleware):
    def __init__(self) -> None:
        self._stop: threading.Event | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # A stop event per thread: a worker booted again in the same process gets a new
        # thread even while the old one finishes its round.
        self._stop = stop = threading.Event()
        every_s = get_settings().lifeline_interval
        threading.Thread(
            target=self._run, args=(every_s, stop), name="vidfleet-lifeline", daemon=True
        ).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self._stop is not None:
            self._stop.set()

    @staticmethod
    def _run(every_s: float, stop: threading.Event) -> None:
        while True:
            try:
                run_lifeline_if_due(every_s)  # rides out store outages by itself
            except Exception:
                logger.warning("the lifeline failed a round", exc_info=True)
            if stop.wait(every_s):
                return
