"""WorkerRegistry: each worker process says who it is, for the system page.

Dramatiq's heartbeats (``<namespace>:__heartbeats__``) know a worker only by its
broker's random id, and every process that sends messages (the web too) beats there.
So a worker process records its host, pid, start and queues under that id in
:data:`db.broker_keys.WORKERS_KEY` when it boots, again every ``every_s`` seconds (a
Redis that lost its data learns it back), and removes it when it stops. A killed
worker's record stays until Dramatiq drops its heartbeat; the next worker to boot
removes records whose heartbeat is gone.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware

from actors import stores
from db import broker_keys
from db.models import utcnow

logger = logging.getLogger(__name__)

REGISTER_EVERY_S = 30.0


class WorkerRegistry(Middleware):
    """Keeps this worker process's record in :data:`db.broker_keys.WORKERS_KEY`.

    Parameters:
      every_s: seconds between two writes of the record while the worker runs.
    """

    def __init__(self, *, every_s: float = REGISTER_EVERY_S) -> None:
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if not isinstance(broker, RedisBroker):
            return
        record = json.dumps(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started_at": utcnow().isoformat(),
                "queues": sorted(q for q in broker.get_declared_queues() if not q.endswith(".DQ")),
            }
        )
        self._prune(broker)
        self._stop = stop = threading.Event()
        self._thread = threading.Thread(
            target=self._keep, args=(broker.broker_id, record, stop), daemon=True,
            name="vidfleet-worker-registry",
        )  # fmt: skip
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if not isinstance(broker, RedisBroker):
            return
        self._stop.set()
        try:
            stores.redis_client().hdel(broker_keys.WORKERS_KEY, broker.broker_id)
        except Exception as exc:
            logger.info("could not remove this worker's record (%s)", stores.describe(exc))

    def _keep(self, broker_id: str, record: str, stop: threading.Event) -> None:
        while True:
            try:
                stores.redis_client().hset(broker_keys.WORKERS_KEY, broker_id, record)
            except Exception as exc:  # Redis away: the next round writes it
                logger.debug("could not record this worker (%s)", stores.describe(exc))
            if stop.wait(self.every_s):
                return

    @staticmethod
    def _prune(broker: RedisBroker) -> None:
        """Remove the records of workers Dramatiq no longer has a heartbeat of."""
        client = stores.redis_client()
        try:
            ids = client.hkeys(broker_keys.WORKERS_KEY)
            if not ids:
                return
            heartbeats = broker_keys.heartbeats_key(broker.namespace)
            with client.pipeline(transaction=False) as pipe:
                for worker_id in ids:
                    pipe.zscore(heartbeats, worker_id)
                beats = pipe.execute()
            gone = [
                worker_id
                for worker_id, beat in zip(ids, beats, strict=True)
                if beat is None and worker_id != broker.broker_id
            ]
            if gone:
                client.hdel(broker_keys.WORKERS_KEY, *gone)
        except Exception as exc:
            logger.info("could not prune the workers' records (%s)", stores.describe(exc))
