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
HEARTBEAT_TTL_S = 30


def snapshot_key(job_id: str) -> str:
    """The latest public fields of a job (what ``/api/jobs/{id}/progress`` reads)."""
    return f"vf:job:{job_id}"


def heartbeat_key(job_id: str) -> str:
    return f"vf:job:{job_id}:hb"


def encode_event(job: dict[str, Any]) -> dict[str, str]:
    return {"job": json.dumps(job, separators=(",", ":"), default=str)}


def queue_publish(pipe: Any, job: dict[str, Any]) -> None:
    """Add the commands that publish ``job`` to a (sync or asyncio) pipeline: one stream
    entry for the WebSocket hubs and the snapshot that ``/progress`` reads."""
    fields = encode_event(job)
    pipe.xadd(EVENTS_STREAM, fields, maxlen=EVENTS_MAXLEN, approximate=True)
    pipe.set(snapshot_key(job["id"]), fields["job"], ex=SNAPSHOT_TTL_S)


def decode_event(stream_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """A stream entry as the WebSocket event ``{"type": "job", "id": ..., "job": {...}}``."""
    return {"type": "job", "id": stream_id, "job": json.loads(fields["job"])}


def sync_client(url: str, **options: Any) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, **options)


def async_client(url: str, **options: Any) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, decode_responses=True, **options)
