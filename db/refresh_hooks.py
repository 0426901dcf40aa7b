"""What the refresh hooks keep in Redis: each target's pending library changes, whether
a send is due, and how its last call went (:mod:`actors.refresh_hooks` sends; the
system page reads :func:`statuses`).

Per target (``jellyfin``, ``plex``, ``webhook``):

- ``vf:hooks:<target>:changes``: a list of changes waiting for the next call, oldest
  first (JSON, :class:`VideoChange`), capped at :data:`MAX_PENDING` (the newest kept);
- ``vf:hooks:<target>:due``: set while a send is on its way (a delayed message), so
  that a burst of changes sends one message, not one per change; it expires after
  :data:`DUE_TTL_S` in case that message was lost with a Redis that lost its data;
- ``vf:hooks:<target>:state``: a hash of ``last_attempt``, ``last_ok`` (Unix times),
  ``last_outcome`` (``ok``, ``http 401``, ``error: ...``) and ``failures`` (failed
  calls in a row).

All of it is live state: lost, the next change starts again from nothing.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import redis
import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.jobs import iso
from db.models import Artist, Video

TARGETS = ("jellyfin", "plex", "webhook")
MAX_PENDING = 10_000
DUE_TTL_S = 3600


class ChangeEvent(enum.StrEnum):
    """What happened to a video, as the webhook names it."""

    added = "video.added"
    replaced = "video.replaced"
    removed = "video.removed"
    moved = "video.moved"


@dataclass(frozen=True)
class VideoChange:
    """One video's change: its id, title, artist and library path (relative to the
    media root; for a move, the new one) at the time."""

    event: ChangeEvent
    id: int
    title: str
    artist: str | None
    path: str

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "event": str(self.event)}, ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str) -> VideoChange:
        data = json.loads(raw)
        return cls(
            event=ChangeEvent(data["event"]),
            id=int(data["id"]),
            title=str(data["title"]),
            artist=data.get("artist"),
            path=str(data["path"]),
        )


def changes_key(target: str) -> str:
    return f"vf:hooks:{target}:changes"


def due_key(target: str) -> str:
    return f"vf:hooks:{target}:due"


def state_key(target: str) -> str:
    return f"vf:hooks:{target}:state"


def record(
    client: redis.Redis, targets: Iterable[str], changes: list[VideoChange]
) -> dict[str, float | None]:
    """Append ``changes`` to each target's pending list and mark a send due; returns,
    for each target that had none due (its caller sends one), the Unix time of its
    last call (None: never), and nothing for the others."""
    targets = list(targets)
    pipe = client.pipeline(transaction=False)
    for target in targets:
        pipe.rpush(changes_key(target), *(change.to_json() for change in changes))
        pipe.ltrim(changes_key(target), -MAX_PENDING, -1)
        pipe.set(due_key(target), "1", nx=True, ex=DUE_TTL_S)
        pipe.hget(state_key(target), "last_attempt")
    answers = pipe.execute()
    due: dict[str, float | None] = {}
    for index, target in enumerate(targets):
        became_due, last = answers[4 * index + 2], answers[4 * index + 3]
        if became_due:
            due[target] = float(last) if last else None
    return due


def keep_due(client: redis.Redis, target: str) -> None:
    """A send is under way: its flag lasts another :data:`DUE_TTL_S`."""
    client.set(due_key(target), "1", ex=DUE_TTL_S)


def pending(client: redis.Redis, target: str, limit: int = MAX_PENDING) -> list[VideoChange]:
    """The oldest ``limit`` pending changes."""
    raws = client.lrange(changes_key(target), 0, limit - 1)
    return [VideoChange.from_json(str(raw)) for raw in raws]  # the client decodes


def sent(client: redis.Redis, target: str, count: int) -> None:
    """The oldest ``count`` pending changes reached the target: forget them."""
    if count > 0:
        client.ltrim(changes_key(target), count, -1)


def attempted(client: redis.Redis, target: str, outcome: str, *, ok: bool, at: float) -> None:
    """Record a call to ``target`` made at ``at`` and how it went."""
    pipe = client.pipeline(transaction=False)
    pipe.hset(state_key(target), mapping={"last_attempt": at, "last_outcome": outcome})
    if ok:
        pipe.hset(state_key(target), mapping={"last_ok": at, "failures": 0})
    else:
        pipe.hincrby(state_key(target), "failures", 1)
    pipe.execute()


def release(client: redis.Redis, target: str, *, left: int) -> bool:
    """The send is over, with ``left`` changes it took still pending (a call that kept
    failing). True when changes came in meanwhile and the caller must send again (it
    holds the flag once more); the changes left wait for the next change.

    In this order: a change recorded before the flag is deleted is counted here; one
    recorded after it finds no flag and has its own send made."""
    client.delete(due_key(target))
    if client.llen(changes_key(target)) <= left:
        return False
    return bool(client.set(due_key(target), "1", nx=True, ex=DUE_TTL_S))


def _time(value: str | None) -> str | None:
    return iso(datetime.fromtimestamp(float(value), UTC)) if value else None


async def statuses(client: aioredis.Redis) -> dict[str, dict[str, Any]]:
    """Each target's ``last_attempt``, ``last_ok`` (ISO times or None), ``last_outcome``,
    ``failures`` and ``pending`` (changes waiting)."""
    pipe = client.pipeline(transaction=False)
    for target in TARGETS:
        pipe.hgetall(state_key(target))
        pipe.llen(changes_key(target))
    answers = await pipe.execute()
    report = {}
    for index, target in enumerate(TARGETS):
        state, waiting = answers[2 * index], answers[2 * index + 1]
        report[target] = {
            "last_attempt": _time(state.get("last_attempt")),
            "last_ok": _time(state.get("last_ok")),
            "last_outcome": state.get("last_outcome"),
            "failures": int(state.get("failures") or 0),
            "pending": int(waiting),
        }
    return report


def changes_of(session: Session, event: ChangeEvent, video_ids: Iterable[int]) -> list[VideoChange]:
    """The changes ``event`` makes to the videos ``video_ids`` as their rows stand now
    (read a removed video's before its row goes); ids without a row are left out."""
    rows = session.execute(
        select(Video.id, Video.title, Artist.name, Video.path)
        .outerjoin(Artist, Video.artist_id == Artist.id)
        .where(Video.id.in_(list(video_ids)))
        .order_by(Video.id)
    )
    return [
        VideoChange(event=event, id=id_, title=title, artist=artist, path=path)
        for id_, title, artist, path in rows
    ]
