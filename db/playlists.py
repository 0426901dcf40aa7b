"""Playlists and channels: adding one, asking for its sync, what a sync found, queueing
its new entries' downloads, reading it back, deleting it.

A sync (``actors/playlists.py``) lists the playlist's entries, then
:func:`record_listing` compares them with the entries it had, in one transaction: new
ones are added, those no longer listed are marked ``removed`` (their files stay), and
each entry's state catches up with its download job. Then :func:`queue_downloads` asks
for the downloads of the entries still ``new`` (when the playlist downloads by itself)
through the jobs service, exactly as ``POST /api/videos/download`` does: an entry
already in the library or already being downloaded gets no second job.

Functions of one sync :class:`Connection` (or ORM session), committing what they change:
the web runs them through its database runner, the workers on their own engine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Row, Table, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db import job_service
from db.job_requests import Submission
from db.jobs import iso
from db.models import (
    ACTIVE,
    EntryState,
    Job,
    JobKind,
    JobStatus,
    Playlist,
    PlaylistEntry,
    utcnow,
)
from db.outbox import Outbox
from db.queues import Queue

PLAYLISTS: Table = Playlist.__table__  # type: ignore[assignment]
ENTRIES: Table = PlaylistEntry.__table__  # type: ignore[assignment]
JOBS: Table = Job.__table__  # type: ignore[assignment]

#: The most entries one sync lists; a longer playlist is cut there (``truncated``) and
#: none of its entries is marked removed, since the rest were not seen.
MAX_ENTRIES = 5_000

#: The longest name a playlist keeps (its column's size).
MAX_NAME = 300

_ENTRY_FIELDS = ("state", "reason", "position", "title", "source_id", "video_id", "removed_at")


class PlaylistGone(Exception):
    """No such playlist (it may have been deleted while its sync ran)."""


class ListedEntry(Protocol):
    """One entry a listing found (:class:`media.playlists.ListedEntry`)."""

    @property
    def url(self) -> str: ...
    @property
    def source_id(self) -> str | None: ...
    @property
    def title(self) -> str | None: ...
    @property
    def refused(self) -> str | None: ...


def url_hash(url: str) -> str:
    """What the unique indexes hold for a URL: a unique index on 2,048 characters of
    UTF-8 could pass PostgreSQL's limit on an index row."""
    return hashlib.sha256(url.encode()).hexdigest()


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes, which are UTC here."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def settled_state(state: str, job_status: str | None) -> str:
    """An entry's state once its download job's end is counted: a ``queued`` entry is
    ``downloaded`` when its job succeeded, ``failed`` when it failed or was cancelled."""
    if state != EntryState.queued or job_status is None:
        return state
    if job_status == JobStatus.succeeded:
        return EntryState.downloaded
    if job_status in (JobStatus.failed, JobStatus.cancelled):
        return EntryState.failed
    return state


# -- adding, syncing, deleting


def create_playlist(
    connection: Connection,
    *,
    url: str,
    name: str | None,
    auto_download: bool,
    quality: str,
    schedule: str | None,
    owner: str,
) -> tuple[int, bool]:
    """A new playlist's id, and True; or the id of the playlist that already has this
    URL, and False."""
    digest = url_hash(url)
    values = {
        "url": url,
        "url_hash": digest,
        "name": name,
        "auto_download": auto_download,
        "quality": quality,
        "schedule": schedule,
        "owner": owner,
        "created_at": utcnow(),
    }
    try:
        new_id = connection.scalar(insert(PLAYLISTS).values(values).returning(PLAYLISTS.c.id))
        connection.commit()
    except IntegrityError:
        connection.rollback()
        existing = connection.scalar(select(PLAYLISTS.c.id).where(PLAYLISTS.c.url_hash == digest))
        if existing is None:
            raise
        return int(existing), False
    assert new_id is not None
    return int(new_id), True


def request_sync(
    connection: Connection,
    playlist_id: int,
    *,
    owner: str,
    max_attempts: int,
    max_active: int,
    max_active_of_owner: int,
    requested_at: datetime | None = None,
) -> tuple[Submission, Outbox]:
    """A sync of the playlist, submitted through the jobs service on the ``bulk`` queue;
    a sync already queued or running is the one answered (one per playlist: the jobs'
    dedupe key). The playlist records the sync, and ``requested_at`` (now by default),
    as its last one asked for: the schedule's next run is counted from there.

    Raises:
      PlaylistGone: no such playlist.
    """
    if connection.scalar(select(PLAYLISTS.c.id).where(PLAYLISTS.c.id == playlist_id)) is None:
        raise PlaylistGone()
    submission, outbox = job_service.submit(
        connection,
        kind=JobKind.playlist_sync,
        queue=Queue.bulk,
        params={"playlist_id": playlist_id},
        owner=owner,
        max_attempts=max_attempts,
        max_active=max_active,
        max_active_of_owner=max_active_of_owner,
    )
    if submission.job is not None:
        connection.execute(
            update(PLAYLISTS)
            .where(PLAYLISTS.c.id == playlist_id)
            .values(
                last_sync_job_id=submission.job["id"],
                last_sync_requested_at=requested_at or utcnow(),
            )
        )
        connection.commit()
    return submission, outbox


def delete_playlist(connection: Connection, playlist_id: int) -> tuple[int | None, Outbox]:
    """Delete a playlist and its entries (the files of their videos stay in the
    library), cancelling its sync if one is queued or running; the number of entries
    deleted, or None for an unknown playlist."""
    sync_job = connection.execute(
        select(PLAYLISTS.c.last_sync_job_id).where(PLAYLISTS.c.id == playlist_id)
    ).first()
    if sync_job is None:
        return None, Outbox()
    outbox = Outbox()
    job_id = sync_job.last_sync_job_id
    if job_id and connection.scalar(select(JOBS.c.status).where(JOBS.c.id == job_id)) in ACTIVE:
        _, outbox = job_service.cancel(connection, job_id)
    entries = connection.execute(delete(ENTRIES).where(ENTRIES.c.playlist_id == playlist_id))
    connection.execute(delete(PLAYLISTS).where(PLAYLISTS.c.id == playlist_id))
    connection.commit()
    return entries.rowcount, outbox


@dataclass
class SyncPlan:
    """What :func:`record_listing` found, and the entries whose downloads to ask for."""

    playlist_id: int
    quality: str
    owner: str
    added: int = 0
    removed: int = 0
    unchanged: int = 0
    rejected: int = 0
    #: (entry id, URL) of each entry to download, in the playlist's order.
    to_queue: list[tuple[int, str]] = field(default_factory=list)


def record_listing(
    connection: Connection,
    playlist_id: int,
    *,
    title: str | None,
    entries: Sequence[ListedEntry],
    truncated: bool,
) -> SyncPlan:
    """Compare what a sync listed with the playlist's entries, in one transaction:
    add the new ones (``new``, or ``rejected`` with the reason when a download may not
    fetch their URL), mark those no longer listed ``removed`` (unless the listing was
    ``truncated``), give those listed again after a removal a new start, and settle each
    ``queued`` entry whose download ended. The entries still ``new`` are to be queued
    when the playlist downloads by itself.

    Raises:
      PlaylistGone: the playlist was deleted.
    """
    now = utcnow()
    # The first statement writes: SQLite takes its write lock here (BEGIN IMMEDIATE)
    # and PostgreSQL locks the row, so a delete of the playlist waits for this
    # transaction or has already happened.
    playlist = connection.execute(
        update(PLAYLISTS)
        .where(PLAYLISTS.c.id == playlist_id)
        .values(
            last_synced_at=now,
            entry_count=len(entries),
            name=func.coalesce(PLAYLISTS.c.name, title[:MAX_NAME] if title else None),
        )
        .returning(PLAYLISTS.c.quality, PLAYLISTS.c.owner, PLAYLISTS.c.auto_download)
    ).first()
    if playlist is None:
        connection.rollback()
        raise PlaylistGone()
    plan = SyncPlan(playlist_id=playlist_id, quality=playlist.quality, owner=playlist.owner)
    listed = {url_hash(entry.url): (number, entry) for number, entry in enumerate(entries, 1)}
    known = connection.execute(
        select(ENTRIES, JOBS.c.status.label("job_status"), JOBS.c.result, JOBS.c.error)
        .outerjoin(JOBS, JOBS.c.id == ENTRIES.c.download_job_id)
        .where(ENTRIES.c.playlist_id == playlist_id)
    ).all()
    changed: list[dict[str, Any]] = []
    still_new: list[tuple[int, int, str]] = []  # (position, entry id, URL)
    for row in known:
        before = {name: getattr(row, name) for name in _ENTRY_FIELDS}
        after = _caught_up(row, before)
        found = listed.pop(row.url_hash, None)
        if found is None:
            if row.state != EntryState.removed and not truncated:
                after.update(state=EntryState.removed, removed_at=now)
                plan.removed += 1
        else:
            number, entry = found
            if row.state == EntryState.removed:
                after.update(state=EntryState.new, reason=None, removed_at=None)
                plan.added += 1
            else:
                plan.unchanged += 1
            after.update(
                position=number,
                title=entry.title or row.title,
                source_id=entry.source_id or row.source_id,
            )
            _apply_verdict(after, entry.refused)
            plan.rejected += after["state"] == EntryState.rejected
            if after["state"] == EntryState.new:
                still_new.append((number, row.id, row.url))
        if after != before:
            changed.append({"entry_id": row.id, **{f"new_{k}": v for k, v in after.items()}})
    if changed:
        # Bind names apart from the columns' (SQLAlchemy reserves those for its own).
        connection.execute(
            update(ENTRIES)
            .where(ENTRIES.c.id == bindparam("entry_id"))
            .values({name: bindparam(f"new_{name}") for name in _ENTRY_FIELDS}),
            changed,
        )
    fresh = [
        {
            "playlist_id": playlist_id,
            "url_hash": digest,
            "url": entry.url,
            "source_id": entry.source_id,
            "title": entry.title,
            "position": number,
            "state": EntryState.rejected if entry.refused else EntryState.new,
            "reason": entry.refused,
            "first_seen_at": now,
        }
        for digest, (number, entry) in listed.items()
    ]
    if fresh:
        plan.added += len(fresh)
        plan.rejected += sum(1 for row in fresh if row["state"] == EntryState.rejected)
        inserted = connection.execute(
            insert(ENTRIES).returning(ENTRIES.c.id, ENTRIES.c.position, ENTRIES.c.url), fresh
        )
        still_new += [
            (row.position, row.id, row.url)
            for row in inserted
            if not listed[url_hash(row.url)][1].refused
        ]
    connection.commit()
    if playlist.auto_download:
        plan.to_queue = [(entry_id, url) for _, entry_id, url in sorted(still_new)]
    return plan


def _caught_up(row: Row[Any], entry: dict[str, Any]) -> dict[str, Any]:
    """``entry`` (its fields) once its download job's end is counted; a ``queued``
    entry whose job is gone (pruned from the history) starts again as ``new``."""
    entry = dict(entry)
    if row.state != EntryState.queued:
        return entry
    if row.job_status is None:
        entry.update(state=EntryState.new)
        return entry
    state = settled_state(row.state, row.job_status)
    if state == EntryState.downloaded:
        entry.update(state=state, reason=None, video_id=(row.result or {}).get("video_id"))
    elif state == EntryState.failed:
        entry.update(state=state, reason=(row.error or {}).get("message"))
    return entry


def _apply_verdict(entry: dict[str, Any], refused: str | None) -> None:
    """A listed entry not downloaded yet whose URL a download may not fetch is
    ``rejected``; a rejected one whose URL now passes is ``new`` again."""
    if refused and entry["state"] in (EntryState.new, EntryState.rejected):
        entry.update(state=EntryState.rejected, reason=refused)
    elif not refused and entry["state"] == EntryState.rejected:
        entry.update(state=EntryState.new, reason=None)


@dataclass
class Queueing:
    """What :func:`queue_downloads` did: downloads queued, entries found in the
    library or already being downloaded, and entries left ``new`` because the job caps
    were full (the next sync queues them)."""

    queued: int = 0
    already: int = 0
    waiting: int = 0


def queue_downloads(
    connection: Connection,
    plan: SyncPlan,
    entries: Sequence[tuple[int, str]],
    *,
    max_attempts: int,
    max_active: int,
    max_active_of_owner: int,
) -> tuple[Queueing, Outbox]:
    """Ask for the download of each of ``entries`` (entry id, URL) on the ``downloads``
    queue, for the playlist's owner, as ``POST /api/videos/download`` does (the same
    jobs service, caps and dedupe); then record each entry's job or video."""
    done = Queueing()
    outbox = Outbox()
    updates: list[dict[str, Any]] = []
    for entry_id, url in entries:
        submission, sent = job_service.submit(
            connection,
            kind=JobKind.download,
            queue=Queue.downloads,
            params={
                "url": url,
                "quality": plan.quality,
                "artist": None,
                "title": None,
                "force": False,
                "playlist_id": plan.playlist_id,
            },
            owner=plan.owner,
            max_attempts=max_attempts,
            max_active=max_active,
            max_active_of_owner=max_active_of_owner,
            library_url=url,
        )
        outbox.add(sent)
        if submission.over_cap is not None:
            done.waiting = len(entries) - len(updates)
            break
        if submission.video_id is not None:
            done.already += 1
            state, job_id, video_id = EntryState.downloaded, None, submission.video_id
        else:
            assert submission.job is not None
            done.queued += submission.created
            done.already += not submission.created
            state, job_id, video_id = EntryState.queued, submission.job["id"], None
        updates.append(
            {"entry_id": entry_id, "new_state": state, "new_job": job_id, "new_video": video_id}
        )
    if updates:
        connection.execute(
            update(ENTRIES)
            .where(ENTRIES.c.id == bindparam("entry_id"), ENTRIES.c.state == EntryState.new)
            .values(
                state=bindparam("new_state"),
                download_job_id=bindparam("new_job"),
                video_id=bindparam("new_video"),
            ),
            updates,
        )
        connection.commit()
    return done, outbox


@dataclass(frozen=True)
class Scheduled:
    """A playlist with a schedule, and when its last sync was asked for (its creation,
    before any)."""

    playlist_id: int
    schedule: str
    owner: str
    since: datetime


def scheduled_playlists(connection: Connection) -> list[Scheduled]:
    rows = connection.execute(
        select(
            PLAYLISTS.c.id,
            PLAYLISTS.c.schedule,
            PLAYLISTS.c.owner,
            func.coalesce(PLAYLISTS.c.last_sync_requested_at, PLAYLISTS.c.created_at),
        ).where(PLAYLISTS.c.schedule.is_not(None))
    ).all()
    return [
        Scheduled(playlist_id=row[0], schedule=row[1], owner=row[2], since=_aware(row[3]))
        for row in rows
    ]


# -- reading


def _state_counts(
    connection: Connection | Session, playlist_ids: list[int]
) -> dict[int, dict[str, int]]:
    """Each playlist's entries by state (a finished download counted as it ended)."""
    rows = connection.execute(
        select(ENTRIES.c.playlist_id, ENTRIES.c.state, JOBS.c.status, func.count())
        .outerjoin(JOBS, JOBS.c.id == ENTRIES.c.download_job_id)
        .where(ENTRIES.c.playlist_id.in_(playlist_ids))
        .group_by(ENTRIES.c.playlist_id, ENTRIES.c.state, JOBS.c.status)
    ).all()
    counts: dict[int, dict[str, int]] = {playlist_id: {} for playlist_id in playlist_ids}
    for playlist_id, state, job_status, count in rows:
        settled = str(settled_state(state, job_status))
        counts[playlist_id][settled] = counts[playlist_id].get(settled, 0) + count
    return counts


def playlist_to_dict(row: Any, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "id": row.id,
        "url": row.url,
        "name": row.name,
        "auto_download": row.auto_download,
        "quality": row.quality,
        "schedule": row.schedule,
        "created_at": iso(row.created_at),
        "last_sync_job_id": row.last_sync_job_id,
        "last_sync_requested_at": iso(row.last_sync_requested_at),
        "last_synced_at": iso(row.last_synced_at),
        "entry_count": row.entry_count,
        "entries_by_state": counts,
    }


def list_playlists(
    connection: Connection, *, after: int | None, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of playlists, newest first (``after``: the last id of the page before);
    and the cursor of the next page, if any."""
    query = select(PLAYLISTS).order_by(PLAYLISTS.c.id.desc()).limit(limit + 1)
    if after is not None:
        query = query.where(PLAYLISTS.c.id < after)
    rows = connection.execute(query).all()
    page, more = rows[:limit], len(rows) > limit
    counts = _state_counts(connection, [row.id for row in page])
    items = [playlist_to_dict(row, counts[row.id]) for row in page]
    return items, page[-1].id if more else None


def entry_to_dict(row: Any) -> dict[str, Any]:
    state = settled_state(row.state, row.job_status)
    video_id = row.video_id
    if video_id is None and state == EntryState.downloaded and row.state == EntryState.queued:
        video_id = (row.result or {}).get("video_id")
    return {
        "id": row.id,
        "url": row.url,
        "source_id": row.source_id,
        "title": row.title,
        "position": row.position,
        "state": str(state),
        "reason": row.reason,
        "first_seen_at": iso(row.first_seen_at),
        "removed_at": iso(row.removed_at),
        "download_job_id": row.download_job_id,
        "download_status": None if row.job_status is None else str(row.job_status),
        "video_id": video_id,
    }


def playlist_details(
    connection: Connection, playlist_id: int, *, after: tuple[int, int] | None, limit: int
) -> dict[str, Any] | None:
    """A playlist with a page of its entries in the playlist's order (``after``: the
    (position, id) of the last entry of the page before); None when unknown."""
    row = connection.execute(select(PLAYLISTS).where(PLAYLISTS.c.id == playlist_id)).first()
    if row is None:
        return None
    query = (
        select(ENTRIES, JOBS.c.status.label("job_status"), JOBS.c.result)
        .outerjoin(JOBS, JOBS.c.id == ENTRIES.c.download_job_id)
        .where(ENTRIES.c.playlist_id == playlist_id)
        .order_by(ENTRIES.c.position, ENTRIES.c.id)
        .limit(limit + 1)
    )
    if after is not None:
        position, entry_id = after
        query = query.where(
            (ENTRIES.c.position > position)
            | ((ENTRIES.c.position == position) & (ENTRIES.c.id > entry_id))
        )
    entries = connection.execute(query).all()
    page, more = entries[:limit], len(entries) > limit
    data = playlist_to_dict(row, _state_counts(connection, [playlist_id])[playlist_id])
    data["entries"] = {
        "items": [entry_to_dict(entry) for entry in page],
        "next": f"{page[-1].position}.{page[-1].id}" if more else None,
    }
    return data
