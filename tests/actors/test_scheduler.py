"""The scheduler's Redis lease: two schedulers enqueue each periodic message once per
tick, and the standby takes over when the holder dies."""

from __future__ import annotations

from typing import Any

import pendulum

from tests.support import wait_for


def maintenance_messages(redis_client: Any) -> int:
    return int(redis_client.hlen("dramatiq:maintenance.msgs"))


def schedulers(ttl_ms: int) -> tuple[Any, Any, list[Any]]:
    from actors import lifeline_sweep, stores
    from actors.scheduler import LeasedScheduler, SchedulerLease

    periodic = [lifeline_sweep]
    one = LeasedScheduler(periodic, lease=SchedulerLease(stores.redis_client(), ttl_ms=ttl_ms))
    two = LeasedScheduler(periodic, lease=SchedulerLease(stores.redis_client(), ttl_ms=ttl_ms))
    return one, two, periodic


def test_two_schedulers_enqueue_each_periodic_message_once_per_tick(redis_client: Any) -> None:
    one, two, periodic = schedulers(ttl_ms=90_000)
    for tick in range(3):
        now = pendulum.now().add(minutes=tick)
        two.send_actors(periodic, now)
        one.send_actors(periodic, now)
        assert maintenance_messages(redis_client) == tick + 1


def test_the_standby_takes_over_when_the_holder_dies(redis_client: Any) -> None:
    holder, standby, periodic = schedulers(ttl_ms=1_000)
    holder.send_actors(periodic, pendulum.now())
    standby.send_actors(periodic, pendulum.now())
    assert maintenance_messages(redis_client) == 1
    # The holder dies: it stops renewing. Its lease runs out and the standby's next
    # tick enqueues.
    wait_for(standby.lease.hold, timeout=5, what="the lease to pass to the standby")
    standby.send_actors(periodic, pendulum.now().add(minutes=1))
    assert maintenance_messages(redis_client) == 2
    assert not holder.lease.hold()
