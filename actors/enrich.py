"""enrich_artists: one part of a bulk artist enrichment (``POST /api/artists/bulk/enrich``),
about 20 artists looked up on MusicBrainz one after another.

Per artist (:func:`media.musicbrainz.MusicBrainz.enrich`): search by name and pick, then
store what a match found (MBID, disambiguation, country, begin year, genres, picture
URL) and the outcome in ``artists.enrichment`` (``matched``, ``ambiguous`` or
``not_found`` with the candidates, or ``failed`` with its reason). A match with a
picture, for an artist without an image set, has the picture fetched in a child process
guarded like a download (:mod:`media.egress`, capped at ``VIDFLEET_MAX_UPLOAD_BYTES``,
checked from its header) and handed to an ``artist_image`` job, as an upload is; a
picture that cannot be had is noted in ``enrichment.image`` and the artist still counts
as done.

Requests take the fleet's turn (:mod:`actors.musicbrainz_turns`). A malformed or refused
answer fails its artist alone (:func:`actors.batch_part.run_part`); MusicBrainz busy or
unreachable for longer than a call may wait fails the part's attempt instead, so that
the part is retried later rather than each artist waiting in vain; a retried part does
not ask again for the artists it already did.
"""

from __future__ import annotations

import sys
import uuid
from datetime import datetime
from functools import lru_cache, partial
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from sqlalchemy import select, update

from actors import stores
from actors.batch_part import run_part
from actors.broker import broker as _broker  # noqa: F401  (set before any actor)
from actors.job_context import JobContext, current_job
from actors.job_tracking import job_actor
from actors.musicbrainz_turns import musicbrainz_turn
from actors.sidecars import write_artist_sidecars
from db import job_service
from db.models import Artist, Job, JobKind, utcnow
from db.queues import Queue
from db.settings import get_settings
from media.egress import install_egress_guard
from media.errors import Cancelled, MediaError
from media.images import fetch_picture
from media.isolation import run_isolated
from media.musicbrainz import Enrichment, MusicBrainz, user_agent

settings = get_settings()

#: A part waits its turn for each request with every other part in the fleet: an hour
#: is 20 artists' two requests each behind about 90 other threads doing the same.
PART_TIME_LIMIT_MS = 60 * 60_000
#: Outcomes that a retried part need not ask for again.
SETTLED = frozenset({"matched", "ambiguous", "not_found"})


class MusicBrainzDown(Exception):
    """MusicBrainz stayed busy or unreachable: the part's attempt fails and is retried
    later (with backoff, while attempts remain), instead of each artist failing."""


@job_actor(kind=JobKind.enrich_chunk, queue_name=Queue.bulk, time_limit=PART_TIME_LIMIT_MS)
def enrich_artists(job_id: str) -> None:
    job = current_job()
    with _musicbrainz(job) as musicbrainz:
        run_part(
            job, lambda artist_id: _enrich(job, musicbrainz, int(artist_id)), stage="enriching"
        )


@lru_cache(maxsize=1)
def _user_agent() -> str:
    try:
        ours = version("vidfleet")
    except PackageNotFoundError:
        ours = "0"
    return user_agent(ours, settings.musicbrainz_contact)


def _musicbrainz(job: JobContext) -> MusicBrainz:
    def wait(seconds: float) -> None:  # a retry's wait, cut short by a cancel
        if job.cancel_requested.wait(seconds):
            raise Cancelled()

    return MusicBrainz(
        base_url=settings.musicbrainz_url,
        user_agent=_user_agent(),
        pace=lambda: musicbrainz_turn(job.cancelled),
        sleep=wait,
    )


def _enrich(job: JobContext, musicbrainz: MusicBrainz, artist_id: int) -> bool:
    """One artist: True when done, False when it is gone."""
    with job.sessions() as session:
        artist = session.get(Artist, artist_id)
        if artist is None:
            return False
        name, earlier, image_set = artist.name, artist.enrichment, artist.image_version
    if earlier and earlier.get("job") == job.id and earlier.get("status") in SETTLED:
        return True  # done by an earlier attempt of this part
    at = utcnow()
    record: dict[str, Any] = {"at": at.isoformat(), "job": job.id}
    try:
        found = musicbrainz.enrich(name)
    except Cancelled:
        raise
    except MediaError as exc:
        if exc.retryable:
            raise MusicBrainzDown(exc.message) from exc
        _store(artist_id, {"enrichment": {**record, "status": "failed", "reason": exc.message}})
        raise
    _store(artist_id, _values(job, artist_id, found, record, fetch_image=image_set is None, at=at))
    write_artist_sidecars(artist_id)  # artist.nfo, in the kodi and jellyfin layouts
    return True


def _values(
    job: JobContext,
    artist_id: int,
    found: Enrichment,
    record: dict[str, Any],
    *,
    fetch_image: bool,
    at: datetime,
) -> dict[str, Any]:
    """The artist's new column values for what MusicBrainz said."""
    enrichment = {
        **record,
        "status": found.status,
        "candidates": [candidate.to_dict() for candidate in found.candidates],
    }
    values: dict[str, Any] = {"enrichment": enrichment}
    facts = found.facts
    if facts is None:  # nothing is guessed: what an earlier match found stays
        return values
    values.update(
        mbid=facts.mbid,
        disambiguation=facts.disambiguation,
        country=facts.country,
        begin_year=facts.begin_year,
        genres=facts.genres,
        image_url=facts.image_url,
    )
    if facts.image_url and fetch_image:
        enrichment["image"] = _fetch_image(job, artist_id, facts.image_url, at)
    return values


def _store(artist_id: int, values: dict[str, Any]) -> None:
    with stores.sessions().begin() as session:
        session.execute(update(Artist).where(Artist.id == artist_id).values(**values))


def _fetch_image(job: JobContext, artist_id: int, url: str, at: datetime) -> dict[str, Any]:
    """Fetch the picture at ``url`` and queue its image set; what happened, for
    ``enrichment.image``: ``{url, job}`` or ``{url, error}``."""
    folder = settings.artists_dir / str(artist_id)
    upload = f"upload-{uuid.uuid4()}"
    try:
        run_isolated(
            fetch_picture,
            kwargs={
                "url": url,
                "dest": str(folder / upload),
                "max_bytes": settings.max_upload_bytes,
                "user_agent": _user_agent(),
            },
            should_cancel=job.cancelled,
            setup=partial(install_egress_guard, allow_private=settings.allow_private_urls),
            memory_limit=settings.download_memory_limit,
        )
    except Cancelled:
        raise
    except MediaError as exc:
        return {"url": url, "error": exc.message}
    try:
        image_job = _queue_image(job, artist_id, upload, at)
    except BaseException:
        (folder / upload).unlink(missing_ok=True)
        raise
    return {"url": url, "job": image_job}


def _queue_image(job: JobContext, artist_id: int, upload: str, at: datetime) -> str:
    """An ``artist_image`` job for the fetched picture, as an upload at ``at`` (the
    time the artist had no image set: a picture uploaded since wins)."""
    with stores.engine().connect() as connection:
        owner = connection.scalar(select(Job.owner).where(Job.id == job.id))
        submission, outbox = job_service.submit(
            connection,
            kind=JobKind.artist_image,
            queue=Queue.media,
            params={"artist_id": artist_id, "upload": upload, "uploaded_at": at.isoformat()},
            owner=owner or "system",
            max_attempts=settings.max_attempts,
            # Part of a batch already admitted: the caps do not apply.
            max_active=sys.maxsize,
            max_active_of_owner=sys.maxsize,
        )
    stores.courier().deliver(outbox)
    assert submission.job is not None  # no dedupe key, no caps: always created
    return str(submission.job["id"])
