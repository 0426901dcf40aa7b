"""JobReporter: the one way actors tell the world how a job is doing.

Every report goes to the Redis stream ``vf:events`` (``MAXLEN ~``) together with a
snapshot key of the job; progress is throttled per job (about 4/s), state changes
always go out. The database row follows state changes at once and progress at most
about once a second, so a busy download costs the database little.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from sqlalchemy.orm import sessionmaker

from db import jobs, live

logger = logging.getLogger(__name__)

STREAM_INTERVAL_S = 0.25
DB_INTERVAL_S = 1.0
DB_PROGRESS_FIELDS = ("progress", "stage", "message")


class JobReporter:
    """Publishes job events.

    Parameters:
      client: a Redis client (``decode_responses=True``).
      sessions: a sync session factory.
      stream_interval: the least time between two progress events of one job.
      db_interval: the least time between two progress writes of one job row.
    """

    def __init__(
        self,
        *,
        client: redis.Redis,
        sessions: sessionmaker,
        stream_interval: float = STREAM_INTERVAL_S,
        db_interval: float = DB_INTERVAL_S,
    ) -> None:
        self.client = client
        self.sessions = sessions
        self.stream_interval = stream_interval
        self.db_interval = db_interval
        self._last_sent: dict[str, float] = {}
        self._last_saved: dict[str, float] = {}
        self._lock = threading.Lock()

    def publish(self, job: dict[str, Any]) -> None:
        """Send a job's state now, whatever the throttle says (state changes)."""
        with self._lock:
            self._last_sent[job["id"]] = time.monotonic()
        self._send(job)
        if job["status"] in ("succeeded", "failed", "cancelled"):
            self.forget(job["id"])

    def progress(self, job: dict[str, Any]) -> None:
        """Send a running job's progress unless one went out very recently."""
        now = time.monotonic()
        job_id = job["id"]
        with self._lock:
            send = now - self._last_sent.get(job_id, 0.0) >= self.stream_interval
            save = now - self._last_saved.get(job_id, 0.0) >= self.db_interval
            if send:
                self._last_sent[job_id] = now
            if save:
                self._last_saved[job_id] = now
        if send:
            self._send(job)
        if save:
            with self.sessions.begin() as session:
                jobs.save_progress(session, job_id, {k: job[k] for k in DB_PROGRESS_FIELDS})

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._last_sent.pop(job_id, None)
            self._last_saved.pop(job_id, None)

    def _send(self, job: dict[str, Any]) -> None:
        try:
            with self.client.pipeline(transaction=False) as pipe:
                live.queue_publish(pipe, job)
                pipe.execute()
        except redis.RedisError:
            # Live progress is a convenience; the database row stays the truth.
            logger.warning("could not publish an event of job %s", job["id"], exc_info=True)
