"""The scheduler process: periodiq's scheduler behind a Redis lease.

Run exactly one and it simply enqueues each periodic actor on its ticks. Run two (a
rolling deploy, a standby) and only the lease holder enqueues; the other stays on
standby and takes over once the holder stops renewing (it died). periodiq itself has no
such guard, so ``python -m actors.scheduler`` replaces its ``periodiq`` command.
"""

from __future__ import annotations

import logging
import sys
import uuid
from typing import Any

import dramatiq
import periodiq
import redis

LEASE_KEY = "vf:scheduler:lease"
LEASE_TTL_MS = 90_000  # above the one-minute tick: the holder renews on every tick

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
    """periodiq's scheduler, enqueueing only while it holds the lease."""

    def __init__(self, actors: list[dramatiq.Actor], *, lease: SchedulerLease) -> None:
        super().__init__(actors=actors)
        self.lease = lease

    def send_actors(self, actors: list[dramatiq.Actor], now: Any) -> None:
        try:
            holding = self.lease.hold()
        except redis.RedisError:
            logger.warning("cannot reach Redis for the scheduler lease; skipping this tick")
            return
        if holding:
            super().send_actors(actors, now)
        elif actors:
            logger.info("standby: another scheduler holds the lease")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format=periodiq.LOGFORMAT)
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
