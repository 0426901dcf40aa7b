"""Fleet-wide slots: at most ``limit`` holders of a kind of work at once, across every
process and machine on one Redis. Downloads (``actors.limits``) and transcodes
(``web.sessions``) both take theirs here.

Written here rather than taken from Dramatiq's ConcurrentRateLimiter: that one counts
holders with one TTL for the whole counter, so a SIGKILLed holder's slot stays taken
until the counter expires, and work longer than the TTL frees its slot early. Here each
slot is a member of a sorted set scored with its expiry, renewed by the holder's
heartbeat and dropped once the holder stops beating.

One class for both kinds of client: with a ``redis.Redis`` the methods return their
results, with a ``redis.asyncio.Redis`` they return awaitables of the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

ACQUIRE_SCRIPT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
  return 1
end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
  return 1
end
return 0
"""


class Slots:
    """At most ``limit`` holders in the sorted set ``key`` at once.

    Parameters:
      client: a Redis client, sync or asyncio (``decode_responses=True``).
      key: the sorted set (holder -> when its slot expires).
      limit: how many slots there are.
      ttl_s: how long a slot outlives its holder's last renewal.
    """

    def __init__(self, client: Any, key: str, *, limit: int, ttl_s: float) -> None:
        self.client = client
        self.key = key
        self.limit = limit
        self.ttl_s = ttl_s
        self._acquire = client.register_script(ACQUIRE_SCRIPT)

    def acquire(self, holder: str) -> Any:
        """Take a slot (or renew the one ``holder`` has): true if it has one now.
        Expired slots are dropped first."""
        now = time.time()
        args = [now, now + self.ttl_s, holder, self.limit]
        return self._acquire(keys=[self.key], args=args)

    def release(self, holder: str) -> Any:
        return self.client.zrem(self.key, holder)

    def renew(self, holders: Iterable[str], *, on: Any = None) -> Any:
        """Push the expiry of slots that exist (``xx``: a lapsed slot is not retaken);
        ``on``: a pipeline to queue the command on instead of sending it."""
        client = self.client if on is None else on
        return client.zadd(self.key, dict.fromkeys(holders, time.time() + self.ttl_s), xx=True)

    def holders(self) -> Any:
        """The holders whose slots have not expired."""
        return self.client.zrangebyscore(self.key, time.time(), "+inf")


# The waiting line of FairSlots. KEYS: slots, line, alive. Free slots go to the head of
# the line, one each, and each waiter handed one is woken by a push onto its own list.
HANDOFF = """
local function handoff(slots, line, alive, now, expires, limit, wake_prefix, wake_ttl, me)
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
  for _, gone in ipairs(redis.call('ZRANGEBYSCORE', alive, '-inf', now)) do
    redis.call('ZREM', line, gone)
    redis.call('ZREM', alive, gone)
  end
  local got = 0
  local free = limit - redis.call('ZCARD', slots)
  while free > 0 do
    local head = redis.call('ZRANGE', line, 0, 0)[1]
    if not head then break end
    redis.call('ZREM', line, head)
    redis.call('ZREM', alive, head)
    redis.call('ZADD', slots, expires, head)
    if head == me then
      got = 1
    else
      redis.call('RPUSH', wake_prefix .. head, 'slot')
      redis.call('EXPIRE', wake_prefix .. head, wake_ttl)
    end
    free = free - 1
  end
  return got
end
"""

# ARGV: now, slot expiry, holder, limit, wake prefix, wake ttl, place (lower: sooner),
# alive until. -> {1} a slot; {0, 1 if it just joined the line, its place in line (0:
# first)}.
TAKE_OR_JOIN_SCRIPT = (
    HANDOFF
    + """
local slots, line, alive = KEYS[1], KEYS[2], KEYS[3]
local now, expires, me, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
if redis.call('ZSCORE', slots, me) then
  redis.call('ZADD', slots, expires, me)
  redis.call('ZREM', line, me)
  redis.call('ZREM', alive, me)
  return {1}
end
local joined = redis.call('ZADD', line, 'NX', ARGV[7], me)
redis.call('ZADD', alive, ARGV[8], me)
if handoff(slots, line, alive, now, expires, limit, ARGV[5], ARGV[6], me) == 1 then
  return {1}
end
return {0, joined, redis.call('ZRANK', line, me)}
"""
)

# ARGV: now, slot expiry, holder, limit, wake prefix, wake ttl. Gives up the holder's
# slot (if it has one) and its place in line; hands what is free to the line.
LEAVE_SCRIPT = (
    HANDOFF
    + """
local slots, line, alive = KEYS[1], KEYS[2], KEYS[3]
redis.call('ZREM', slots, ARGV[3])
redis.call('ZREM', line, ARGV[3])
redis.call('ZREM', alive, ARGV[3])
redis.call('DEL', ARGV[5] .. ARGV[3])
handoff(slots, line, alive, ARGV[1], ARGV[2], tonumber(ARGV[4]), ARGV[5], ARGV[6], '')
return 1
"""
)

# ARGV: holder, wake prefix, wake ttl. A waiter that must not wait any more (its job
# was cancelled): out of the line, and woken at once with "leave".
DISMISS_SCRIPT = """
if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('RPUSH', ARGV[2] .. ARGV[1], 'leave')
  redis.call('EXPIRE', ARGV[2] .. ARGV[1], ARGV[3])
  return 1
end
return 0
"""


class FairSlots(Slots):
    """Slots with a waiting line: a holder that finds none free joins the line and is
    handed the next free slot in its turn (``turn``: lower first; while anyone waits, a
    newcomer joins the line rather than take a slot freed meanwhile), woken by a push
    onto a list of its own that it blocks on.

    A waiter keeps its place by coming back at least every ``ALIVE_S``; one that stops
    (its process died) drops out of the line, so no slot is handed to the dead. A slot
    freed by a holder that died (it stopped renewing) goes to the line the next time
    anyone comes by, which every waiter does every ``poll_s``.

    Sync client only (the waiting blocks its thread).
    """

    ALIVE_S = 5.0
    WAKE_TTL_S = 60

    def __init__(self, client: Any, key: str, *, limit: int, ttl_s: float) -> None:
        super().__init__(client, key, limit=limit, ttl_s=ttl_s)
        self.line_key = f"{key}:line"
        self.alive_key = f"{key}:alive"
        self.wake_prefix = f"{key}:wake:"
        self.clock: Callable[[], float] = time.time  # seconds; a test may move it on
        self._take_or_join = client.register_script(TAKE_OR_JOIN_SCRIPT)
        self._leave = client.register_script(LEAVE_SCRIPT)
        self._dismiss = client.register_script(DISMISS_SCRIPT)

    @property
    def _keys(self) -> list[str]:
        return [self.key, self.line_key, self.alive_key]

    def take_or_join(self, holder: str, turn: float) -> tuple[bool, bool, int]:
        """A slot now, or a place in line: ``(has a slot, just joined, place in line)``.
        ``turn``: where it joins the line (lower goes first; an integer below 2**53)."""
        now = self.clock()
        args = [now, now + self.ttl_s, holder, self.limit, self.wake_prefix, self.WAKE_TTL_S]
        reply = self._take_or_join(keys=self._keys, args=[*args, turn, now + self.ALIVE_S])
        if reply[0] == 1:
            return True, False, 0
        return False, reply[1] == 1, int(reply[2])

    def wait(
        self,
        holder: str,
        turn: float,
        *,
        should_stop: Callable[[], bool],
        on_joined: Callable[[int], None] | None = None,
        poll_s: float = 1.0,
    ) -> bool:
        """Block until ``holder`` has a slot (True), or until it must stop waiting:
        ``should_stop()`` says so or it was dismissed (False, out of the line).
        ``on_joined(place)`` runs once, when it joins the line."""
        while True:
            has_slot, joined, place = self.take_or_join(holder, turn)
            if has_slot:
                return True
            if joined and on_joined is not None:
                on_joined(place)
            if should_stop():
                self.leave(holder)
                return False
            woken = self.client.blpop([self.wake_prefix + holder], timeout=poll_s)
            if woken is not None and woken[1] == "leave":
                self.leave(holder)
                return False

    def leave(self, holder: str) -> Any:
        """Give up the slot or the place in line of ``holder``; what is free goes to
        the line."""
        now = self.clock()
        args = [now, now + self.ttl_s, holder, self.limit, self.wake_prefix, self.WAKE_TTL_S]
        return self._leave(keys=self._keys, args=args)

    release = leave

    def dismiss(self, holder: str) -> Any:
        """Take ``holder`` out of the line and wake it to leave (works with an asyncio
        client too)."""
        return self._dismiss(keys=self._keys, args=[holder, self.wake_prefix, self.WAKE_TTL_S])
