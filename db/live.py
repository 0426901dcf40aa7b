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
#: Held by the worker thread whose turn it is to ask MusicBrainz (actors/musicbrainz_turns.py).
MUSICBRAINZ_TURN_KEY = "vf:turn:musicbrainz"
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


def login_failures_key(name_digest: str) -> str:
    """Wrong passwords for one user name (the sha256 of its casefold) in its window."""
    return f"vf:auth:login-failures:{name_digest}"


PROGRESS_FIELD = "progress_of"  # on a progress event only: the job's id


def job_json(job: dict[str, Any]) -> str:
    """A job as its events carry it: compact JSON."""
    return json.dumps(job, separators=(",", ":"), default=str)


def encode_event(job: dict[str, Any], *, progress: bool = False) -> dict[str, str]:
    """A stream entry's fields. ``progress``: this event only reports how far a running
    job got (no state change), so a newer one of the same job supersedes it: a socket
    that falls behind may skip it (``web.hub``). State changes are never skipped."""
    fields = {"job": job_json(job)}
    if progress:
        fields[PROGRESS_FIELD] = str(job["id"])
    return fields


# One round trip for any number of state changes (and progress events): per job, the
# stream entry, the snapshot, and the heartbeat (set while running; deleted, with any
# cancel request, when finished). A script rather than a pipeline of commands: the
# client's per-command overhead is most of the cost, and so is its per-argument packing:
# per job 3 keys and 3 arguments, the stream and its limits once per call. A progress
# event carries the job's id in a field of its own, so the hub can conflate it without
# decoding the job. The one way anything publishes job events: workers
# (``actors.reporter``) and the jobs service's courier (``db.outbox``) alike.
#
# KEYS: the stream, then per job its snapshot, heartbeat and cancel keys. ARGV: per job
# its event (:func:`job_json`), what to do with its heartbeat ('set',
# 'del' or '') and its id if the event is a progress event (else ''); then the stream's
# MAXLEN, the snapshot TTL and the heartbeat TTL. Returns the entries' ids.
PUBLISH_SCRIPT = """
local maxlen, snapshot_ttl, heartbeat_ttl = ARGV[#ARGV - 2], ARGV[#ARGV - 1], ARGV[#ARGV]
local ids = {}
for job = 1, (#ARGV - 3) / 3 do
  local event, heartbeat, progress_of = ARGV[3 * job - 2], ARGV[3 * job - 1], ARGV[3 * job]
  if progress_of ~= '' then
    ids[job] = redis.call(
      'XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'job', event, 'progress_of', progress_of)
  else
    ids[job] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'job', event)
  end
  redis.call('SET', KEYS[3 * job - 1], event, 'EX', snapshot_ttl)
  if heartbeat == 'set' then
    redis.call('SET', KEYS[3 * job], '1', 'EX', heartbeat_ttl)
  elseif heartbeat == 'del' then
    redis.call('DEL', KEYS[3 * job], KEYS[3 * job + 1])
  end
end
return ids
"""


@lru_cache(maxsize=1)
def events_maxlen() -> int:
    """How many entries the event stream keeps (``XADD MAXLEN ~``): its memory budget
    over an entry's size. A client that reconnects can resume from any of them."""
    return max(1_000, get_settings().events_max_mb * 1024**2 // EVENT_BYTES)


def publish_many_arguments(
    jobs: list[dict[str, Any]], *, heartbeat_ttl: int = 0, progress: bool = False
) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of :data:`PUBLISH_SCRIPT` for ``jobs``, in their order. A running
    job's heartbeat lives ``heartbeat_ttl`` seconds (none is set without one);
    ``progress`` as in :func:`encode_event`."""
    keys: list[str] = [EVENTS_STREAM]
    args: list[str | int] = []
    for job in jobs:
        status = job.get("status")
        job_id = job["id"]
        if status in FINISHED:
            heartbeat = "del"
        else:
            heartbeat = "set" if status == "running" and heartbeat_ttl else ""
        keys += (snapshot_key(job_id), heartbeat_key(job_id), cancel_key(job_id))
        args += (job_json(job), heartbeat, str(job_id) if progress else "")
    args += (events_maxlen(), SNAPSHOT_TTL_S, heartbeat_ttl)
    return keys, args


def publish_arguments(
    job: dict[str, Any], *, heartbeat_ttl: int = 0, progress: bool = False
) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of :data:`PUBLISH_SCRIPT` for one job (its event is ARGV's first)."""
    return publish_many_arguments([job], heartbeat_ttl=heartbeat_ttl, progress=progress)


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
