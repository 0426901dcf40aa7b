"""JobReporter: the one way actors tell the world how a job is doing.

Every report goes to the Redis stream ``vf:events`` (``MAXLEN ~``) together with a
snapshot key of the job, in one round trip; a running job's heartbeat key rides along
with its state changes. Progress is throttled per job (about 2/s); state changes always
go out. The database row follows state changes at once (the transition wrote it) and
progress at most about once a second, so a busy download costs the database little.

Neither store being unavailable stops a job: events and progress are conveniences next
to the row a transition wrote. While Redis does not answer, state changes are still
tried each time and progress is skipped until the backoff is over; while the database
does not answer, progress rows are skipped the same way. Each store's outage is logged
once when it starts and once when it ends (:class:`actors.stores.Outage`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from sqlalchemy import Engine

from actors.stores import Outage, database_unavailable, redis_unavailable
from db import jobs, live

logger = logging.getLogger(__name__)

STREAM_INTERVAL_S = 0.5  # at most about 2 progress events a second per job
DB_INTERVAL_S = 1.0
DB_PROGRESS_FIELDS = ("progress", "stage", "message")
REDIS_MAX_BACKOFF_S = 2.0


class JobReporter:
    """Publishes job events.

    Parameters:
      client: a Redis client (``decode_responses=True``).
      engine: the database the job rows live in.
      heartbeat_ttl: seconds a running job's heartbeat key lives unless refreshed.
      stream_interval: the least time between two progress events of one job.
      db_interval: the least time between two progress writes of one job row.

    Attributes ``redis_outage`` and ``database_outage`` track the two stores' outages;
    JobTracking's watcher reports its heartbeats and cancel polls to ``redis_outage``
    too, so a worker logs a Redis outage once.
    """

    def __init__(
        self,
        *,
        client: redis.Redis,
        engine: Engine,
        heartbeat_ttl: int = 30,
        stream_interval: float = STREAM_INTERVAL_S,
        db_interval: float = DB_INTERVAL_S,
    ) -> None:
        self.client = client
        self.heartbeat_ttl = heartbeat_ttl
        self.engine = engine
        self.stream_interval = stream_interval
        self.db_interval = db_interval
        self._last_sent: dict[str, float] = {}
        self._last_saved: dict[str, float] = {}
        self._lock = threading.Lock()
        self._script_sha: str | None = None
        # Backoff under a third of the heartbeat lifetime (the watcher beats that often),
        # so heartbeats resume before any expires once Redis is back.
        self.redis_outage = Outage(
            "job events and heartbeats",
            "Redis",
            logger=logger,
            max_delay=min(REDIS_MAX_BACKOFF_S, heartbeat_ttl / 3),
        )
        self.database_outage = Outage(
            "job progress", "the database", logger=logger, first_delay=1.0, max_delay=10.0
        )

    def publish(self, job: dict[str, Any]) -> None:
        """Send a state change now, whatever the throttle says; its row is already
        written. Running jobs get a heartbeat, finished ones lose theirs."""
        self.publish_many([job])

    def publish_many(self, changed: list[dict[str, Any]]) -> None:
        """Send several state changes in one round trip."""
        now = time.monotonic()
        with self._lock:
            for job in changed:
                if job["status"] in live.FINISHED:
                    self._last_sent.pop(job["id"], None)
                    self._last_saved.pop(job["id"], None)
                else:
                    self._last_sent[job["id"]] = self._last_saved[job["id"]] = now
        self._deliver(changed)

    def _deliver(self, changed: list[dict[str, Any]], *, progress: bool = False) -> None:
        try:
            try:
                self._send(changed, progress)
            except redis.exceptions.NoScriptError:  # Redis restarted and forgot it
                self._script_sha = None
                self._send(changed, progress)
        except redis.RedisError as exc:
            # Live progress is a convenience; the database row stays the truth.
            if redis_unavailable(exc):
                self.redis_outage.failed(exc)
            else:
                logger.warning("could not publish %d job events", len(changed), exc_info=True)
        else:
            self.redis_outage.answered()

    def _send(self, changed: list[dict[str, Any]], progress: bool) -> None:
        # One EVALSHA for the whole batch: in a pipeline of one call per job, redis-py's
        # parsing of each reply cost more than Redis's running of the scripts. (EVALSHA
        # rather than a Script object, which asks Redis whether the script exists first.)
        if self._script_sha is None:
            self._script_sha = str(self.client.script_load(live.PUBLISH_SCRIPT))
        keys, args = live.publish_many_arguments(
            changed, heartbeat_ttl=self.heartbeat_ttl, progress=progress
        )
        self.client.evalsha(self._script_sha, len(keys), *keys, *args)

    def progress(self, job: dict[str, Any], *, announced: threading.Event | None = None) -> None:
        """Send a running job's progress unless one went out very recently.

        ``announced``: set once the job's ``running`` event is out. Until then that event
        is the one on its way, and a report is throttled behind it like one sent just
        after it (which is also what keeps a progress event from overtaking it)."""
        if announced is not None and not announced.is_set():
            return
        now = time.monotonic()
        job_id = job["id"]
        with self._lock:
            send = now - self._last_sent.get(job_id, 0.0) >= self.stream_interval
            save = now - self._last_saved.get(job_id, 0.0) >= self.db_interval
            if send:
                self._last_sent[job_id] = now
            if save:
                self._last_saved[job_id] = now
        # While a store is out, wait out its backoff: a try against a host that vanished
        # costs its connect timeout, on the thread of the job that reports.
        if send and self.redis_outage.due():
            self._deliver([job], progress=True)  # marked: a lagging socket may skip it
        if save and self.database_outage.due():
            self._save(job)

    def _save(self, job: dict[str, Any]) -> None:
        try:
            with self.engine.begin() as connection:
                fields = {name: job[name] for name in DB_PROGRESS_FIELDS}
                jobs.save_progress(connection, job["id"], fields)
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            self.database_outage.failed(exc)
        else:
            self.database_outage.answered()

    def beat(self, job_ids: list[str]) -> None:
        """Refresh the heartbeat keys of running jobs, and the download slots they hold
        (``xx``: only slots that exist)."""
        expires = time.time() + self.heartbeat_ttl
        with self.client.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.set(live.heartbeat_key(job_id), "1", ex=self.heartbeat_ttl)
            pipe.zadd(live.DOWNLOAD_SLOTS_KEY, dict.fromkeys(job_ids, expires), xx=True)
            pipe.execute()
