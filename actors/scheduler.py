"""The scheduler process: periodiq's scheduler behind a Redis lease.

Run exactly one and it simply enqueues each periodic actor on its ticks. Run two (a
rolling deploy, a standby) and only the lease holder enqueues; the other stays on
standby and takes over once the holder stops renewing (it died). periodiq itself has no
such guard, so ``python -m actors.scheduler`` replaces its ``periodiq`` command.

A Redis outage does not end the process (under honcho, one process that exits stops
them all): a tick that cannot reach Redis for the lease or the enqueue tries again with
backoff for up to ``send_patience`` seconds (less than PeriodiqMiddleware's 30 s skip
delay, after which a worker would drop the message anyway) and then lets the tick go;
the next tick comes a minute later. One warning when the outage starts, one info line
when Redis answers again.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from typing import Any

import dramatiq
import periodiq
import redis

from actors.stores import Outage, redis_unavailable
from db.logs import configure_logging
from db.settings import get_settings

LEASE_KEY = "vf:scheduler:lease"
LEASE_TTL_MS = 90_000  # above the one-minute tick: the holder renews on every tick
SEND_PATIENCE_S = 20.0  # how long one tick keeps trying through a Redis outage

logger = logging.getLogger(__name__)

# Renew when we hold it, take it when nobody does; 1 when this owner holds it now.
HOLD_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
"""


class SchedulerLease:
    """One scheduler at a time.

    Parameters:
      client: Redis.
      ttl_ms: how long the lease outlives its holder's last renewal.
    """

    def __init__(self, client: redis.Redis, *, ttl_ms: int = LEASE_TTL_MS) -> None:
        self.owner = str(uuid.uuid4())
        self.ttl_ms = ttl_ms
        self._hold = client.register_script(HOLD_SCRIPT)

    def hold(self) -> bool:
        """Take or renew the lease; False while another scheduler holds it."""
        return bool(self._hold(keys=[LEASE_KEY], args=[self.owner, self.ttl_ms]))


class LeasedScheduler(periodiq.Scheduler):
    """periodiq's scheduler, enqueueing only while it holds the lease.

    Parameters:
      actors: the periodic actors.
      lease: the lease it must hold to enqueue.
      send_patience: seconds one tick keeps retrying while Redis is unavailable.
    """

    def __init__(
        self,
        actors: list[dramatiq.Actor],
        *,
        lease: SchedulerLease,
        send_patience: float = SEND_PATIENCE_S,
    ) -> None:
        super().__init__(actors=actors)
        self.lease = lease
        self.send_patience = send_patience
        self.outage = Outage("scheduler", "Redis", logger=logger, first_delay=0.5, max_delay=5.0)

    def send_actors(self, actors: list[dramatiq.Actor], now: Any) -> None:
        # periodiq calls this from schedule(), which sets the alarm for the next tick
        # only after it returns: an exception here would end the loop, and the process.
        deadline = time.monotonic() + self.send_patience
        unsent = list(actors)
        while True:
            try:
                self._send(unsent, now)
            except Exception as exc:
                if not redis_unavailable(exc):
                    raise
                delay = self.outage.failed(exc)
                if time.monotonic() + delay > deadline:
                    logger.info("letting the tick at %s go: Redis is still unavailable", now)
                    return
                time.sleep(delay)  # the backoff; no alarm is pending while we send
                continue
            self.outage.answered()
            return

    def _send(self, unsent: list[dramatiq.Actor], now: Any) -> None:
        """Take or renew the lease and enqueue what is still unsent (removing each
        from ``unsent`` once sent, so a retry sends nothing twice)."""
        if not self.lease.hold():
            if unsent:
                logger.info("standby: another scheduler holds the lease")
            unsent.clear()
            return
        while unsent:
            actor = unsent[0]
            logger.info("Scheduling %s at %s.", actor, now)
            actor.send_with_options(scheduled_at=str(now))
            unsent.pop(0)


def main() -> int:
    configure_logging(get_settings(), text_format=periodiq.LOGFORMAT)
    import actors  # noqa: F401  (the broker and every actor)
    from actors import stores

    broker = dramatiq.get_broker()
    periodic = [actor for actor in broker.actors.values() if "periodic" in actor.options]
    periodiq.print_periodic_actors(periodic)
    scheduler = LeasedScheduler(periodic, lease=SchedulerLease(stores.redis_client()))
    scheduler.schedule()
    scheduler.loop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
