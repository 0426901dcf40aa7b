"""Dramatiq's Redis broker as the system page reads it from outside: its keys, and the
scripts that take dead-lettered messages out of it.

The layout is Dramatiq's (dramatiq/brokers/redis/dispatch.lua, 2.2; setup.cfg pins it
below 2.3), under the broker's namespace:

- ``<ns>:<queue>``: the ids of the messages ready to be taken, oldest first (a list);
- ``<ns>:<queue>.msgs``: every message of the queue not yet acked, id -> its JSON;
- ``<ns>:<queue>.DQ`` and ``<ns>:<queue>.DQ.msgs``: the same for its delayed messages
  (retries waiting out their backoff, postponed jobs);
- ``<ns>:<queue>.XQ``: the dead-lettered ids, by when they died (a sorted set of
  milliseconds), and ``<ns>:<queue>.XQ.msgs`` their JSON; Dramatiq drops them after
  its dead-message TTL (7 days);
- ``<ns>:__heartbeats__``: each broker (one per worker process, and one per web
  process, which sends) by the last time it called Redis, in milliseconds;
- ``<ns>:__acks__.<broker id>.<queue>``: the ids a worker took and has not acked.

Plus one key of ours: :data:`WORKERS_KEY`, where each worker process says who it is
(``actors.worker_registry``): the heartbeats know only a random id.
"""

from __future__ import annotations

import json
from typing import Any

#: Broker id -> ``{"host", "pid", "started_at", "queues"}`` (JSON) of each worker process.
WORKERS_KEY = "vf:workers"


def ready_key(namespace: str, queue: str) -> str:
    return f"{namespace}:{queue}"


def messages_key(namespace: str, queue: str) -> str:
    return f"{namespace}:{queue}.msgs"


def delayed_messages_key(namespace: str, queue: str) -> str:
    return f"{namespace}:{queue}.DQ.msgs"


def dead_key(namespace: str, queue: str) -> str:
    return f"{namespace}:{queue}.XQ"


def dead_messages_key(namespace: str, queue: str) -> str:
    return f"{namespace}:{queue}.XQ.msgs"


def heartbeats_key(namespace: str) -> str:
    return f"{namespace}:__heartbeats__"


def acks_key(namespace: str, broker_id: str, queue: str) -> str:
    return f"{namespace}:__acks__.{broker_id}.{queue}"


def decode_message(data: str | bytes | None) -> dict[str, Any] | None:
    """A message's JSON as a dict, or None for one that is missing or not a message."""
    if data is None:
        return None
    try:
        message = json.loads(data)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


# The message at the head of a queue (the oldest ready one), or nil: two reads that
# depend on each other, in the one round trip of the queues' pipeline.
# KEYS: the queue's list, its messages.
HEAD_MESSAGE_SCRIPT = """
local head = redis.call('LINDEX', KEYS[1], 0)
if not head then return false end
return redis.call('HGET', KEYS[2], head)
"""

# Take dead messages out of a dead-letter queue: each id that was still there is
# removed from both keys and answered, in one step, so of two callers only one gets a
# message (and acts on it), and a message is never both acted on and still dead.
# ARGV: the ids. Returns, per id, ``{when it died, its JSON}`` or false (not there).
# KEYS: the dead set, its messages.
TAKE_DEAD_SCRIPT = """
local taken = {}
for i, id in ipairs(ARGV) do
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score then
    redis.call('ZREM', KEYS[1], id)
    taken[i] = {score, redis.call('HGET', KEYS[2], id) or ''}
    redis.call('HDEL', KEYS[2], id)
  else
    taken[i] = false
  end
end
return taken
"""

# Put taken messages back where they were (what could not be acted on: the database
# refused). ARGV: per message its id, its score (when it died) and its JSON.
# KEYS: the dead set, its messages.
RETURN_DEAD_SCRIPT = """
for i = 1, #ARGV, 3 do
  redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
end
return #ARGV / 3
"""

# Move taken messages that belong to no job onto their queue again, as Dramatiq's
# enqueue writes them. ARGV: per message its id and JSON.
# KEYS: the queue's list, its messages.
ENQUEUE_SCRIPT = """
for i = 1, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  redis.call('RPUSH', KEYS[1], ARGV[i])
end
return #ARGV / 2
"""

# Purge a whole dead-letter queue; returns how many messages it held. UNLINK: a week
# of dead messages is freed in the background, not while Redis serves nobody else.
# KEYS: the dead set, its messages.
PURGE_DEAD_SCRIPT = """
local count = redis.call('ZCARD', KEYS[1])
redis.call('UNLINK', KEYS[1], KEYS[2])
return count
"""
