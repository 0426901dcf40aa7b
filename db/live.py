"""The live side of a job, kept in Redis: the progress stream, the latest snapshot of
each job, heartbeats and cancel flags. All of it can be lost and rebuilt from the
database (DESIGN §4), so nothing here is the truth about a job.

Its clients are bounded: a connect and a socket timeout, so a command on a Redis that
is gone fails instead of waiting forever, and (where asked) few retries, so the failure
comes while a request can still answer with it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import redis
import redis.asyncio as aioredis
import redis.asyncio.retry
import redis.retry
from redis.backoff import ExponentialWithJitterBackoff

from db.settings import Settings, get_settings

EVENTS_STREAM = "vf:events"
#: Redis memory one stream entry of a running download's event takes (measured 750
#: bytes on Redis 7.0 for 20,000 such entries, MEMORY USAGE): what turns the stream's
#: budget (VIDFLEET_EVENTS_MAX_MB) into its length.
EVENT_BYTES = 800
SNAPSHOT_TTL_S = 24 * 3600
CANCEL_TTL_S = 24 * 3600
DOWNLOAD_SLOTS_KEY = "vf:slots:downloads"  # job id -> when its slot expires
TRANSCODE_SLOTS_KEY = "vf:slots:transcodes"  # stream session id -> when its slot expires
PLAYS_KEY = "vf:plays"  # "<video id>:<quality>:<format>" -> how often it was transcoded
FINISHED = frozenset({"succeeded", "failed", "cancelled"})
REDIS_TIMEOUT_S = 10.0
# Between retries of a command whose connection failed: enough for a restarted server's
# fresh connection, too little to hold a request long on a server that is gone.
RETRY_BACKOFF = {"base": 0.05, "cap": 0.5}


def snapshot_key(job_id: str) -> str:
    """The latest public fields of a job (what ``/api/jobs/{id}/progress`` reads)."""
    return f"vf:job:{job_id}"


def heartbeat_key(job_id: str) -> str:
    """Set (with a TTL) while a worker runs the job."""
    return f"vf:job:{job_id}:hb"


def cancel_key(job_id: str) -> str:
    """Set when someone asked a running job to stop; the worker polls it."""
    return f"vf:job:{job_id}:cancel"


def client_transcode_slots_key(client: str) -> str:
    """The transcode slots one client address holds."""
    return f"vf:slots:transcodes:client:{client}"


def stream_session_key(session_id: str) -> str:
    """A live stream session's public fields (``web.sessions``)."""
    return f"vf:stream:{session_id}"


def revoked_session_key(session_id: str) -> str:
    """Set (until the cookie would have expired anyway) when a session signed out."""
    return f"vf:session:{session_id}:revoked"


def auth_failures_key(client: str) -> str:
    """Failed credentials from one client address in the current minute."""
    return f"vf:auth:failures:{client}"


PROGRESS_FIELD = "progress_of"  # on a progress event only: the job's id


def encode_event(job: dict[str, Any], *, progress: bool = False) -> dict[str, str]:
    """A stream entry's fields. ``progress``: this event only reports how far a running
    job got (no state change), so a newer one of the same job supersedes it: a socket
    that falls behind may skip it (``web.hub``). State changes are never skipped."""
    fields = {"job": json.dumps(job, separators=(",", ":"), default=str)}
    if progress:
        fields[PROGRESS_FIELD] = str(job["id"])
    return fields


# One round trip for a state change: the stream entry, the snapshot, and the heartbeat
# (set while running; deleted, with any cancel request, when finished). A script rather
# than a pipeline of commands: the client's per-command overhead is most of the cost.
# A progress event carries the job's id in a field of its own (ARGV[6]), so the hub can
# conflate it without decoding the job.
PUBLISH_SCRIPT = """
local fields = {'job', ARGV[1]}
if ARGV[6] and ARGV[6] ~= '' then
  fields = {'job', ARGV[1], 'progress_of', ARGV[6]}
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[3])
if ARGV[4] == 'set' then
  redis.call('SET', KEYS[3], '1', 'EX', ARGV[5])
elseif ARGV[4] == 'del' then
  redis.call('DEL', KEYS[3], KEYS[4])
end
return id
"""


@lru_cache(maxsize=1)
def events_maxlen() -> int:
    """How many entries the event stream keeps (``XADD MAXLEN ~``): its memory budget
    over an entry's size. A client that reconnects can resume from any of them."""
    return max(1_000, get_settings().events_max_mb * 1024**2 // EVENT_BYTES)


def publish_arguments(
    job: dict[str, Any], *, heartbeat_ttl: int = 0, progress: bool = False
) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of :data:`PUBLISH_SCRIPT` for ``job``; a running job's heartbeat
    lives ``heartbeat_ttl`` seconds; ``progress`` as in :func:`encode_event`."""
    status = job.get("status")
    heartbeat = "set" if status == "running" and heartbeat_ttl else ""
    heartbeat = "del" if status in FINISHED else heartbeat
    job_id = job["id"]
    keys = [EVENTS_STREAM, snapshot_key(job_id), heartbeat_key(job_id), cancel_key(job_id)]
    encoded = encode_event(job)["job"]
    progress_of = str(job_id) if progress else ""
    maxlen = events_maxlen()
    return keys, [encoded, maxlen, SNAPSHOT_TTL_S, heartbeat, heartbeat_ttl, progress_of]


# Several state changes in one script call: :data:`PUBLISH_SCRIPT` itself, run once per
# job on that job's share of KEYS and ARGV. ARGV starts with the number of jobs and each
# job's count of keys and of arguments. The one way anything publishes job events:
# workers (``actors.reporter``) and the jobs service's courier (``db.outbox``) alike.
PUBLISH_MANY_SCRIPT = (
    "local function publish(KEYS, ARGV)\n"
    + PUBLISH_SCRIPT
    + """
end
local jobs = tonumber(ARGV[1])
local ids, key, arg = {}, 0, 2 * jobs + 1
for job = 1, jobs do
  local key_count, arg_count = tonumber(ARGV[2 * job]), tonumber(ARGV[2 * job + 1])
  ids[job] = publish(
    {unpack(KEYS, key + 1, key + key_count)}, {unpack(ARGV, arg + 1, arg + arg_count)})
  key, arg = key + key_count, arg + arg_count
end
return ids
"""
)


def publish_many_arguments(
    jobs: list[dict[str, Any]], *, heartbeat_ttl: int = 0, progress: bool = False
) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of :data:`PUBLISH_MANY_SCRIPT` for ``jobs``, in their order
    (arguments as in :func:`publish_arguments`)."""
    keys: list[str] = []
    counts: list[int] = []
    args: list[str | int] = []
    for job in jobs:
        job_keys, job_args = publish_arguments(job, heartbeat_ttl=heartbeat_ttl, progress=progress)
        keys += job_keys
        args += job_args
        counts += (len(job_keys), len(job_args))
    return keys, [len(jobs), *counts, *args]


def decode_event(stream_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """A stream entry as the WebSocket event ``{"type": "job", "id": ..., "job": {...}}``."""
    return {"type": "job", "id": stream_id, "job": json.loads(fields["job"])}


def event_wire(stream_id: str, fields: dict[str, str]) -> str:
    """A stream entry as the WebSocket event's JSON text, without decoding its job.

    The entry's ``job`` is already the compact JSON that :func:`encode_event` wrote, so
    splicing it in gives exactly the text ``json.dumps(decode_event(...),
    separators=(",", ":"))`` would, at the cost of a concatenation instead of a parse
    and an encode per socket.
    """
    return '{"type":"job","id":' + json.dumps(stream_id) + ',"job":' + fields["job"] + "}"


def _bounded(options: dict[str, Any], timeout: float) -> dict[str, Any]:
    options.setdefault("socket_timeout", timeout)
    options.setdefault("socket_connect_timeout", timeout)
    return options


def sync_client(
    url: str, *, timeout: float = REDIS_TIMEOUT_S, retries: int = 1, **options: Any
) -> redis.Redis:
    """A client whose connects and replies wait at most ``timeout`` seconds (unless
    ``options`` set ``socket_timeout`` / ``socket_connect_timeout`` themselves).

    ``retries``: how often a command is retried on a failed connection. One retry is
    what lets the first command after a Redis restart succeed on a fresh connection
    (redis-py's own default fails it); more would only hold the caller longer on a
    server that is gone (each try may wait ``timeout``).
    """
    options.setdefault(
        "retry", redis.retry.Retry(ExponentialWithJitterBackoff(**RETRY_BACKOFF), retries)
    )
    return redis.Redis.from_url(url, decode_responses=True, **_bounded(options, timeout))


def broker_pool(settings: Settings) -> redis.ConnectionPool:
    """The connection pool of a Dramatiq Redis broker: bytes, as Dramatiq expects, and
    bounded by ``VIDFLEET_REDIS_TIMEOUT`` like every other client."""
    return redis.ConnectionPool.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
    )


def async_client(
    url: str, *, timeout: float = REDIS_TIMEOUT_S, retries: int = 1, **options: Any
) -> aioredis.Redis:
    """The asyncio form of :func:`sync_client`."""
    options.setdefault(
        "retry", redis.asyncio.retry.Retry(ExponentialWithJitterBackoff(**RETRY_BACKOFF), retries)
    )
    return aioredis.Redis.from_url(url, decode_responses=True, **_bounded(options, timeout))
