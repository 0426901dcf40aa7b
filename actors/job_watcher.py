"""JobWatcher: one thread per worker process that keeps its running jobs alive and
listens for their cancel requests.

Every ``WATCH_EVERY_S`` it asks Redis whether anyone asked a running job to stop (the
web sets ``vf:cancel:<id>``; :class:`actors.job_context.JobContext` sees it at its next
``cancelled()``), and, a third of a heartbeat lifetime apart, refreshes the heartbeat
keys (and download slots) of the running jobs and of those whose finish waits for the
database: one late beat does not get a live job given up for dead. Nothing else runs on
this thread, so however long other work takes (the lifeline's scans run on a thread of
their own, :mod:`actors.lifeline_runner`), the beats are on time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from actors.job_context import JobContext
from actors.reporter import JobReporter
from actors.stores import redis_unavailable
from db import live

logger = logging.getLogger(__name__)

WATCH_EVERY_S = 0.5  # how often running jobs' cancel requests are polled


class JobWatcher:
    """Parameters:
    reporter: beats the heartbeats; its ``redis_outage`` is shared, so a worker logs
      one Redis outage once, whoever meets it.
    running: the contexts of the jobs running in this process now.
    ending: ids of jobs whose finish waits for the database (they keep beating: a
      database outage alone must not get them given up for dead).
    heartbeat_timeout: seconds a heartbeat lives.
    """

    def __init__(
        self,
        *,
        reporter: JobReporter,
        running: Callable[[], list[JobContext]],
        ending: Callable[[], list[str]],
        heartbeat_timeout: float,
    ) -> None:
        self.reporter = reporter
        self._running = running
        self._ending = ending
        # At least three beats per heartbeat lifetime. The loop wakes every
        # WATCH_EVERY_S, so beating that much early keeps a heartbeat never older than
        # a third of its lifetime.
        self.beat_every = max(WATCH_EVERY_S, heartbeat_timeout / 3 - WATCH_EVERY_S)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def ensure_running(self) -> None:
        """Start the thread unless one runs that is not stopping (cheap: every message
        asks). A stop event per thread: a worker started again right after a stop gets a
        new thread at once, not the old one that is about to end (its jobs would have
        had no heartbeat until the next message came)."""
        thread, stop = self._thread, self._stop
        if thread is not None and thread.is_alive() and not stop.is_set():
            return  # the case of every message but the first
        with self._lock:
            if self._thread is None or not self._thread.is_alive() or self._stop.is_set():
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._watch, args=(self._stop,), name="vidfleet-job-watcher", daemon=True
                )
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self, stop: threading.Event) -> None:
        last_beat = time.monotonic()
        while not stop.wait(WATCH_EVERY_S):
            try:
                if self.watch_once(beat=time.monotonic() - last_beat >= self.beat_every):
                    last_beat = time.monotonic()
            except Exception:
                logger.warning("the job watcher failed a round", exc_info=True)

    def watch_once(self, *, beat: bool) -> bool:
        """One round; True when it beat."""
        # Shared with the reporter's publishes: one Redis outage, one warning and one
        # info line per worker process, however many rounds it lasts.
        outage = self.reporter.redis_outage
        running = self._running()
        beating = [context.id for context in running] + self._ending()
        if not beating or not outage.due():
            return False
        beat = beat or outage.down  # at once after an outage: the keys may have expired
        try:
            if beat:
                self.reporter.beat(beating)
            if running:
                self._notice_cancel_requests(running)
        except redis.RedisError as exc:
            if not redis_unavailable(exc):
                raise
            outage.failed(exc)
            return False
        outage.answered()
        return beat

    def _notice_cancel_requests(self, running: list[JobContext]) -> None:
        flags = self.reporter.client.mget([live.cancel_key(context.id) for context in running])
        for context, flag in zip(running, flags, strict=True):
            if flag is not None and not context.cancel_requested.is_set():
                logger.info("job %s: cancel requested", context.id)
                context.cancel_requested.set()
