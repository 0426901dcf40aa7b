"""SQLAlchemy 2 models: the job history and the library.

The ``jobs`` row is the one truth about a job (DESIGN §4). Every state change is a
conditional UPDATE (see :mod:`db.jobs`), so two workers can never both claim one job.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy import Enum as SqlEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class JobStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})
ACTIVE = (JobStatus.queued, JobStatus.running)


class JobKind(enum.StrEnum):
    download = "download"
    #: Probe, quality and thumbnails of a video, after its download (actors/analyze.py).
    analyze = "analyze"
    #: An artist's image set from an uploaded picture (actors/artist_images.py).
    artist_image = "artist_image"
    #: Bulk thumbnails: a parent (no actor) whose children are thumbnail_chunk jobs.
    thumbnails = "thumbnails"
    #: Bulk analysis (the quality sweep): a parent whose children are thumbnail_chunk jobs.
    analyses = "analyses"
    #: About 20 videos' analyses and thumbnails, one part of a bulk (actors/bulk_thumbnails.py).
    thumbnail_chunk = "thumbnail_chunk"
    #: Bulk delete: a parent (no actor) whose children are delete_chunk jobs.
    deletes = "deletes"
    #: About 20 videos deleted, file, thumbnails, stream cache and row (actors/bulk_delete.py).
    delete_chunk = "delete_chunk"
    #: Bulk artist enrichment: a parent (no actor) whose children are enrich_chunk jobs.
    enrichments = "enrichments"
    #: About 20 artists looked up on MusicBrainz, one part of a bulk (actors/enrich.py).
    enrich_chunk = "enrich_chunk"
    #: A playlist's entries listed again, its new ones queued (actors/playlists.py).
    playlist_sync = "playlist_sync"
    #: The library renamed to the current names (actors/relayout.py): plans on a worker,
    #: then (unless a dry run) the parent of relayout_chunk jobs.
    relayout = "relayout"
    #: About 20 videos moved to their planned names with their sidecars (actors/relayout.py).
    relayout_chunk = "relayout_chunk"


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(
        SqlEnum(
            JobStatus, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]
        ),
        default=JobStatus.queued,
    )
    queue: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    progress: Mapped[float | None] = mapped_column(Float, default=None)
    stage: Mapped[str | None] = mapped_column(String(32), default=None)
    message: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"), default=None)
    retry_of: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"), default=None)
    message_id: Mapped[str | None] = mapped_column(String(64), default=None)
    #: The credential that asked for the job (``user:<id>`` for a user's session or API
    #: token, else the bootstrap token's role), for per-credential caps.
    owner: Mapped[str | None] = mapped_column(String(64), default=None)
    # Set while the job is queued/running and there must be only one such job for it
    # (e.g. "download:<url>"); a partial unique index enforces that under races.
    dedupe_key: Mapped[str | None] = mapped_column(String(2100), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        # The job list is newest first: each of its filters has an index that ends in
        # the list's order, so a page is read in order, never sorted. Kept in this
        # order: SQLite (no statistics) takes the index created last among equals, and
        # a filter on a parent or a status is more selective than one on a kind.
        Index("ix_jobs_created_at_id", "created_at", "id"),
        Index("ix_jobs_kind_created_at_id", "kind", "created_at", "id"),
        Index("ix_jobs_status_created_at_id", "status", "created_at", "id"),
        # Children only: a top-level job (most of them) is no entry here, and SQLite,
        # whose statistics count all those NULLs as one value, cannot mistake this
        # index for a quick way to the top-level jobs retention looks for.
        Index(
            "ix_jobs_parent_id_created_at_id",
            "parent_id",
            "created_at",
            "id",
            sqlite_where=text("parent_id IS NOT NULL"),
            postgresql_where=text("parent_id IS NOT NULL"),
        ),
        # Retention (db.retention) walks the finished top-level jobs by when they ended.
        Index(
            "ix_jobs_root_status_finished_at",
            "status",
            "finished_at",
            sqlite_where=text("parent_id IS NULL"),
            postgresql_where=text("parent_id IS NULL"),
        ),
        # Deleting a job looks up the jobs that retry it (the foreign key, and
        # retention unlinking them): without an index, a scan of the table per row.
        Index(
            "ix_jobs_retry_of",
            "retry_of",
            sqlite_where=text("retry_of IS NOT NULL"),
            postgresql_where=text("retry_of IS NOT NULL"),
        ),
        Index(
            "uq_jobs_active_dedupe_key",
            "dedupe_key",
            unique=True,
            sqlite_where=text("status IN ('queued', 'running')"),
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
        Index(
            "ix_jobs_active_owner",
            "owner",
            sqlite_where=text("status IN ('queued', 'running')"),
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )


class Artist(Base):
    __tablename__ = "artists"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(300), unique=True)
    image_path: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: The image set in $VIDFLEET_DATA_DIR/artists/<id>/<version>/ (actors/artist_images.py):
    #: its widths and formats, and when its source was uploaded (a later one wins).
    image_version: Mapped[str | None] = mapped_column(String(36), default=None)
    image_widths: Mapped[list[int] | None] = mapped_column(JSON, default=None)
    image_formats: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    image_uploaded_at: Mapped[datetime | None] = mapped_column(default=None)
    # What MusicBrainz knows of the artist (actors/enrich.py); set by a match only.
    mbid: Mapped[str | None] = mapped_column(String(36), default=None)
    disambiguation: Mapped[str | None] = mapped_column(Text, default=None)
    country: Mapped[str | None] = mapped_column(String(8), default=None)
    begin_year: Mapped[int | None] = mapped_column(Integer, default=None)
    genres: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    #: The picture the match links to (the image set is made from it unless one was
    #: uploaded).
    image_url: Mapped[str | None] = mapped_column(Text, default=None)
    #: The last enrichment: ``{status: matched|ambiguous|not_found|failed, candidates:
    #: [{mbid, name, score, disambiguation, country}], at, job, reason?, image?}``.
    enrichment: Mapped[dict[str, Any] | None] = mapped_column(default=None)

    videos: Mapped[list[Video]] = relationship(back_populates="artist")


class Video(Base):
    __tablename__ = "videos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(500))
    artist_id: Mapped[int | None] = mapped_column(
        ForeignKey("artists.id"), default=None, index=True
    )
    duration: Mapped[float | None] = mapped_column(Float, default=None)
    width: Mapped[int | None] = mapped_column(Integer, default=None)
    height: Mapped[int | None] = mapped_column(Integer, default=None)
    vcodec: Mapped[str | None] = mapped_column(String(64), default=None)
    acodec: Mapped[str | None] = mapped_column(String(64), default=None)
    #: FFmpeg's name for the container the file was probed as: it gives the content type.
    container: Mapped[str | None] = mapped_column(String(64), default=None)
    source_url: Mapped[str] = mapped_column(String(2048), index=True)
    extractor: Mapped[str] = mapped_column(String(64))
    extractor_id: Mapped[str] = mapped_column(String(256))
    path: Mapped[str] = mapped_column(Text)  # relative to the media root
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # What the analysis found (actors/analyze.py); None until it ran.
    #: Container, duration and every stream (media.probe.probe_details) ...
    probe: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    #: ... taken at this size and mtime of the file: reused while they are unchanged.
    probed_size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    probed_mtime_ns: Mapped[int | None] = mapped_column(BigInteger, default=None)
    #: media.quality.assess's findings; its label and score are columns of their own.
    quality: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    quality_label: Mapped[str | None] = mapped_column(String(16), default=None)
    quality_score: Mapped[int | None] = mapped_column(Integer, default=None)
    better_version: Mapped[bool | None] = mapped_column(Boolean, default=None)
    #: The nominal widths of the thumbnails under $VIDFLEET_DATA_DIR/thumbnails/<id>/.
    thumbnail_widths: Mapped[list[int] | None] = mapped_column(JSON, default=None)
    analyzed_at: Mapped[datetime | None] = mapped_column(default=None)
    # What media servers read (the NFO in the kodi/jellyfin layouts) and the player
    # shows, from the source's metadata; None where it said nothing.
    #: Every artist the source names, the first one being ``artist``'s.
    artists: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    album: Mapped[str | None] = mapped_column(String(500), default=None)
    release_year: Mapped[int | None] = mapped_column(Integer, default=None)
    #: ``YYYY-MM-DD``: the release date, else the upload date.
    premiered: Mapped[str | None] = mapped_column(String(10), default=None)
    genres: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    director: Mapped[str | None] = mapped_column(String(500), default=None)
    #: ``[{start, end, title, source}]``, source ``chapters`` or ``sponsorblock``.
    chapters: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=None)
    #: ``[{lang, path, automatic}]``: WebVTT files beside the video (paths relative to
    #: the media root).
    subtitles: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=None)

    artist: Mapped[Artist | None] = relationship(back_populates="videos")

    __table_args__ = (
        Index("uq_videos_extractor_id", "extractor", "extractor_id", unique=True),
        Index("uq_videos_path", "path", unique=True),
        Index("ix_videos_quality_label_id", "quality_label", "id"),
        Index("ix_videos_quality_score_id", "quality_score", "id"),
    )


class EntryState(enum.StrEnum):
    """Where a playlist entry stands (db/playlists.py keeps it up to date)."""

    #: Listed, not queued (the playlist does not download by itself, or the job caps
    #: were full: the next sync queues it).
    new = "new"
    #: Its download job is queued or running.
    queued = "queued"
    #: In the library (its download succeeded, or it was there already).
    downloaded = "downloaded"
    #: Its download failed or was cancelled; later syncs leave it (retry the job).
    failed = "failed"
    #: Its URL is one a download may not fetch (form, or a non-public host).
    rejected = "rejected"
    #: No longer listed; its file, if any, stays in the library.
    removed = "removed"


class Playlist(Base):
    """A playlist or channel whose entries vidfleet follows."""

    __tablename__ = "playlists"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    #: sha256 of ``url``, unique: a unique index on 2,048 characters of UTF-8 could pass
    #: PostgreSQL's limit on an index row.
    url_hash: Mapped[str] = mapped_column(String(64))
    #: Given when it was added, else the title its first sync found.
    name: Mapped[str | None] = mapped_column(String(300), default=None)
    auto_download: Mapped[bool] = mapped_column(Boolean, default=False)
    quality: Mapped[str] = mapped_column(String(16), default="best")
    #: Five cron fields (UTC), or None: synced only when asked.
    schedule: Mapped[str | None] = mapped_column(String(100), default=None)
    owner: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: The last sync asked for (by a person or the schedule) and when: the schedule's
    #: next run is its first fire time after that.
    last_sync_job_id: Mapped[str | None] = mapped_column(String(36), default=None)
    last_sync_requested_at: Mapped[datetime | None] = mapped_column(default=None)
    #: When a sync last finished listing the entries.
    last_synced_at: Mapped[datetime | None] = mapped_column(default=None)
    #: How many entries that sync listed (``None`` before the first).
    entry_count: Mapped[int | None] = mapped_column(Integer, default=None)

    __table_args__ = (Index("uq_playlists_url_hash", "url_hash", unique=True),)


class PlaylistEntry(Base):
    """One entry of a playlist, as its syncs found it."""

    __tablename__ = "playlist_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    playlist_id: Mapped[int] = mapped_column(ForeignKey("playlists.id", ondelete="CASCADE"))
    #: sha256 of ``url``: one row per URL and playlist.
    url_hash: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2048))
    #: The site's id of the video, when the listing gave one.
    source_id: Mapped[str | None] = mapped_column(String(256), default=None)
    title: Mapped[str | None] = mapped_column(String(500), default=None)
    position: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(
        SqlEnum(
            EntryState,
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        ),
        default=EntryState.new,
    )
    #: Why the entry was rejected, or why its download failed.
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column(default=None)
    #: Plain references, no foreign keys: job history is pruned (db/retention.py) and
    #: videos deleted while the entry stays.
    download_job_id: Mapped[str | None] = mapped_column(String(36), default=None)
    video_id: Mapped[int | None] = mapped_column(Integer, default=None)

    __table_args__ = (
        UniqueConstraint("playlist_id", "url_hash", name="uq_playlist_entries_url"),
        Index("ix_playlist_entries_playlist_position", "playlist_id", "position", "id"),
    )


class RunOutcome(enum.StrEnum):
    ok = "ok"
    failed = "failed"
    #: Not run: the message was dropped (older than periodiq's skip delay when a worker
    #: took it: the workers were busy or down at the tick).
    skipped = "skipped"


class ScheduleRun(Base):
    """The last run of each schedule (:mod:`db.schedules`): one row per name, replaced
    by every run (:mod:`db.schedule_runs`)."""

    __tablename__ = "schedule_runs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column()
    finished_at: Mapped[datetime] = mapped_column()
    outcome: Mapped[str] = mapped_column(String(16))
    message_id: Mapped[str | None] = mapped_column(String(64), default=None)
    #: The job the run created (a batch's parent), if any. No foreign key: retention
    #: deletes old jobs, and this row outlives them.
    job_id: Mapped[str | None] = mapped_column(String(36), default=None)
    #: ``{"type", "message"}`` of a failed run.
    error: Mapped[dict[str, Any] | None] = mapped_column(default=None)


class Role(enum.StrEnum):
    """What a credential may do: an admin anything, a viewer only read."""

    admin = "admin"
    viewer = "viewer"


class User(Base):
    """A person who signs in with a name and password (db/users.py)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: As given; unique through ``name_key``.
    name: Mapped[str] = mapped_column(String(64))
    #: ``name.casefold()``: names compare case-insensitively. A column of its own, not an
    #: index on lower(name): SQLite's lower() folds ASCII only, Python's casefold all of
    #: Unicode, the same on every database.
    name_key: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(
        SqlEnum(Role, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])
    )
    password_hash: Mapped[str] = mapped_column(String(512))
    #: Bumped by a password change: every session cookie made before it no longer counts.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("uq_users_name_key", "name_key", unique=True),
        # Never an id again once removed (SQLite would reuse the highest): a removed
        # user's cookie names its id, and must not become a new user's session.
        {"sqlite_autoincrement": True},
    )


class ApiToken(Base):
    """A bearer token that acts as its user; only its sha256 is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (
        Index("uq_api_tokens_token_hash", "token_hash", unique=True),
        {"sqlite_autoincrement": True},  # a revoked token's id never names another
    )
