"""JobReporter: the one way actors tell the world how a job is doing.

Every report goes to the Redis stream ``vf:events`` (``MAXLEN ~``) together with a
snapshot key of the job, in one round trip; a running job's heartbeat key rides along
with its state changes. Progress is throttled per job (about 4/s); state changes always
go out. The database row follows state changes at once (the transition wrote it) and
progress at most about once a second, so a busy download costs the database little.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from sqlalchemy import Engine

from db import jobs, live

logger = logging.getLogger(__name__)

STREAM_INTERVAL_S = 0.25
DB_INTERVAL_S = 1.0
DB_PROGRESS_FIELDS = ("progress", "stage", "message")


class JobReporter:
    """Publishes job events.

    Parameters:
      client: a Redis client (``decode_responses=True``).
      engine: the database the job rows live in.
      stream_interval: the least time between two progress events of one job.
      db_interval: the least time between two progress writes of one job row.
    """

    def __init__(
        self,
        *,
        client: redis.Redis,
        engine: Engine,
        stream_interval: float = STREAM_INTERVAL_S,
        db_interval: float = DB_INTERVAL_S,
    ) -> None:
        self.client = client
        self.engine = engine
        self.stream_interval = stream_interval
        self.db_interval = db_interval
        self._last_sent: dict[str, float] = {}
        self._last_saved: dict[str, float] = {}
        self._lock = threading.Lock()
        self._publish = client.register_script(live.PUBLISH_SCRIPT)

    def publish(self, job: dict[str, Any]) -> None:
        """Send a state change now, whatever the throttle says; its row is already
        written. Running jobs get a heartbeat, finished ones lose theirs."""
        job_id = job["id"]
        now = time.monotonic()
        with self._lock:
            if job["status"] in live.FINISHED:
                self._last_sent.pop(job_id, None)
                self._last_saved.pop(job_id, None)
            else:
                self._last_sent[job_id] = self._last_saved[job_id] = now
        self._send(job)

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
            with self.engine.begin() as connection:
                jobs.save_progress(connection, job_id, {k: job[k] for k in DB_PROGRESS_FIELDS})

    def beat(self, job_ids: list[str]) -> None:
        """Refresh the heartbeat keys of running jobs."""
        with self.client.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.set(live.heartbeat_key(job_id), "1", ex=live.HEARTBEAT_TTL_S)
            pipe.execute()

    def _send(self, job: dict[str, Any]) -> None:
        keys, args = live.publish_arguments(job)
        try:
            self._publish(keys=keys, args=args)
        except redis.RedisError:
            # Live progress is a convenience; the database row stays the truth.
            logger.warning("could not publish an event of job %s", job["id"], exc_info=True)
