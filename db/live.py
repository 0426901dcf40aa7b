"""The live side of a job, kept in Redis: the progress stream, the latest snapshot of
each job, heartbeats and cancel flags. All of it can be lost and rebuilt from the
database (DESIGN §4), so nothing here is the truth about a job.
"""

from __future__ import annotations

import json
from typing import Any

import redis
import redis.asyncio as aioredis

EVENTS_STREAM = "vf:events"
EVENTS_MAXLEN = 100_000
SNAPSHOT_TTL_S = 24 * 3600
CANCEL_TTL_S = 24 * 3600
DOWNLOAD_SLOTS_KEY = "vf:slots:downloads"  # job id -> when its slot expires
FINISHED = frozenset({"succeeded", "failed", "cancelled"})


def snapshot_key(job_id: str) -> str:
    """The latest public fields of a job (what ``/api/jobs/{id}/progress`` reads)."""
    return f"vf:job:{job_id}"


def heartbeat_key(job_id: str) -> str:
    """Set (with a TTL) while a worker runs the job."""
    return f"vf:job:{job_id}:hb"


def cancel_key(job_id: str) -> str:
    """Set when someone asked a running job to stop; the worker polls it."""
    return f"vf:job:{job_id}:cancel"


def revoked_session_key(session_id: str) -> str:
    """Set (until the cookie would have expired anyway) when a session signed out."""
    return f"vf:session:{session_id}:revoked"


def auth_failures_key(client: str) -> str:
    """Failed credentials from one client address in the current minute."""
    return f"vf:auth:failures:{client}"


def encode_event(job: dict[str, Any]) -> dict[str, str]:
    return {"job": json.dumps(job, separators=(",", ":"), default=str)}


# One round trip for a state change: the stream entry, the snapshot, and the heartbeat
# (set while running; deleted, with any cancel request, when finished). A script rather
# than a pipeline of commands: the client's per-command overhead is most of the cost.
PUBLISH_SCRIPT = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'job', ARGV[1])
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[3])
if ARGV[4] == 'set' then
  redis.call('SET', KEYS[3], '1', 'EX', ARGV[5])
elseif ARGV[4] == 'del' then
  redis.call('DEL', KEYS[3], KEYS[4])
end
return id
"""


def publish_arguments(
    job: dict[str, Any], *, heartbeat_ttl: int = 0
) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of :data:`PUBLISH_SCRIPT` for ``job``; a running job's heartbeat
    lives ``heartbeat_ttl`` seconds."""
    status = job.get("status")
    heartbeat = "set" if status == "running" and heartbeat_ttl else ""
    heartbeat = "del" if status in FINISHED else heartbeat
    job_id = job["id"]
    keys = [EVENTS_STREAM, snapshot_key(job_id), heartbeat_key(job_id), cancel_key(job_id)]
    encoded = encode_event(job)["job"]
    return keys, [encoded, EVENTS_MAXLEN, SNAPSHOT_TTL_S, heartbeat, heartbeat_ttl]


def decode_event(stream_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """A stream entry as the WebSocket event ``{"type": "job", "id": ..., "job": {...}}``."""
    return {"type": "job", "id": stream_id, "job": json.loads(fields["job"])}


def sync_client(url: str, **options: Any) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, **options)


def async_client(url: str, **options: Any) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, decode_responses=True, **options)
