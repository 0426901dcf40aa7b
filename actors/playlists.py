"""Playlist syncs: ``sync_playlist`` (a ``playlist_sync`` job on the ``bulk`` queue) and
``sync_due_playlists`` (every minute on ``maintenance``), which asks for the sync of
each playlist whose schedule fired since its last sync.

A sync lists the playlist with yt-dlp's flat extraction in a child process under the
egress guard, as a download runs (:func:`media.playlists.list_playlist`): the listing
connects only where a download may, and each entry's URL is checked as a pasted one.
Then :func:`db.playlists.record_listing` compares the entries with those the playlist
had, and the new ones are queued as downloads on the ``downloads`` queue, a chunk at a
time (:func:`db.playlists.queue_downloads`), through the jobs service: the library and
the active downloads already hold what must not be fetched twice. Its result is
``{added, queued, removed, unchanged, rejected, already, waiting, entries, truncated}``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import partial

from sqlalchemy import select

from actors import stores
from actors.broker import broker as _broker  # noqa: F401  (set before any actor)
from actors.job_context import current_job
from actors.job_tracking import job_actor
from actors.periodic import periodic_actor
from db import cron, playlists
from db.models import JobKind, Playlist, utcnow
from db.queues import Queue
from db.settings import get_settings
from media.egress import install_egress_guard
from media.errors import MediaError
from media.isolation import run_isolated
from media.playlists import PlaylistListing, list_playlist

logger = logging.getLogger(__name__)
settings = get_settings()

SYNC_TIME_LIMIT_MS = 15 * 60_000
#: Downloads asked for per transaction; progress, cancel and delivery between chunks.
QUEUE_CHUNK = 50


def _gone(playlist_id: int) -> MediaError:
    return MediaError(f"playlist {playlist_id} was deleted", code="not_found", retryable=False)


@job_actor(
    kind=JobKind.playlist_sync,
    queue_name=Queue.bulk,
    time_limit=SYNC_TIME_LIMIT_MS,
    notify_shutdown=True,
)
def sync_playlist(job_id: str) -> None:
    job = current_job()
    playlist_id = int(job.params["playlist_id"])
    with job.sessions() as session:
        url = session.scalar(select(Playlist.url).where(Playlist.id == playlist_id))
    if url is None:
        raise _gone(playlist_id)
    job.report(stage="listing", progress=None)
    listing: PlaylistListing = run_isolated(
        list_playlist,
        kwargs={
            "url": url,
            "allow_generic": settings.enable_generic_extractor,
            "allow_private": settings.allow_private_urls,
            "max_entries": playlists.MAX_ENTRIES,
        },
        should_cancel=job.cancelled,
        setup=partial(install_egress_guard, allow_private=settings.allow_private_urls),
        memory_limit=settings.download_memory_limit,
    )
    job.raise_if_cancelled()
    job.report(stage="comparing", progress=None, message=f"{len(listing.entries)} entries listed")
    try:
        with stores.engine().connect() as connection:
            plan = playlists.record_listing(
                connection,
                playlist_id,
                title=listing.title,
                entries=listing.entries,
                truncated=listing.truncated,
            )
    except playlists.PlaylistGone:
        raise _gone(playlist_id) from None
    queued = already = 0
    for start in range(0, len(plan.to_queue), QUEUE_CHUNK):
        job.raise_if_cancelled()
        job.report(
            stage="queueing",
            progress=start / len(plan.to_queue),
            message=f"{start} of {len(plan.to_queue)} new entries queued",
        )
        with stores.engine().connect() as connection:
            done, outbox = playlists.queue_downloads(
                connection,
                plan,
                plan.to_queue[start : start + QUEUE_CHUNK],
                max_attempts=settings.max_attempts,
                max_active=settings.max_active_jobs,
                max_active_of_owner=settings.max_active_jobs_per_credential,
            )
        # Not delivered (Redis away): the downloads are queued in the database, and
        # the lifeline sends their messages.
        stores.courier().deliver(outbox)
        queued += done.queued
        already += done.already
        if done.waiting:
            break  # the job caps are full: the next sync queues the rest
    job.result = {
        "added": plan.added,
        "queued": queued,
        "removed": plan.removed,
        "unchanged": plan.unchanged,
        "rejected": plan.rejected,
        "already": already,
        "waiting": len(plan.to_queue) - queued - already,
        "entries": len(listing.entries),
        "truncated": listing.truncated,
    }


@periodic_actor()
def sync_due_playlists() -> None:
    submit_due_syncs(utcnow())


def submit_due_syncs(now: datetime) -> list[str]:
    """Ask for the sync of every playlist whose schedule fired after its last sync was
    asked for, up to ``now``; the ids of those syncs (one already queued or running
    counts: a playlist never has two). A sync the job caps refuse is asked for again
    next minute."""
    with stores.engine().connect() as connection:
        scheduled = playlists.scheduled_playlists(connection)
    syncs = []
    for playlist in scheduled:
        try:
            schedule = cron.checked(playlist.schedule)
        except cron.InvalidCron as exc:  # checked when it was set: only a hand-edited row
            logger.warning("playlist %s: %s", playlist.playlist_id, exc)
            continue
        # Playlist schedules are in UTC: both times are aware UTC.
        if not cron.is_due(schedule, since=playlist.since, now=now):
            continue
        with stores.engine().connect() as connection:
            submission, outbox = playlists.request_sync(
                connection,
                playlist.playlist_id,
                owner=playlist.owner,
                max_attempts=settings.max_attempts,
                max_active=settings.max_active_jobs,
                max_active_of_owner=settings.max_active_jobs_per_credential,
                requested_at=now,
            )
        stores.courier().deliver(outbox)
        if submission.job is not None:
            syncs.append(str(submission.job["id"]))
        else:
            logger.info("playlist %s: its sync waits for the job caps", playlist.playlist_id)
    return syncs
