"""The library's rows: a downloaded video added (with its artist), one removed."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from db.models import Artist, PlaylistEntry, Video


@dataclass(frozen=True)
class NewVideo:
    title: str
    artist: str | None
    source_url: str
    extractor: str
    extractor_id: str
    path: str
    size: int
    duration: float | None
    width: int | None
    height: int | None
    vcodec: str | None
    acodec: str | None
    container: str | None


def find_video(session: Session, extractor: str, extractor_id: str) -> Video | None:
    return session.scalar(
        select(Video).where(Video.extractor == extractor, Video.extractor_id == extractor_id)
    )


def video_at(session: Session, path: str) -> Video | None:
    """The video whose file is ``path`` (relative to the media root), if any."""
    return session.scalar(select(Video).where(Video.path == path))


def artist_named(session: Session, name: str) -> Artist:
    artist = session.scalar(select(Artist).where(Artist.name == name))
    if artist is None:
        artist = Artist(name=name)
        session.add(artist)
        session.flush()
    return artist


def save_video(session: Session, new: NewVideo, *, replacing: Video | None = None) -> Video:
    """Insert the ``Video`` row (and its artist), or update ``replacing`` with a fresh
    download of the same video; the caller commits."""
    artist = artist_named(session, new.artist) if new.artist else None
    video = replacing or Video()
    video.title = new.title
    video.artist_id = artist.id if artist else None
    video.source_url = new.source_url
    video.extractor = new.extractor
    video.extractor_id = new.extractor_id
    video.path = new.path
    video.size = new.size
    video.duration = new.duration
    video.width = new.width
    video.height = new.height
    video.vcodec = new.vcodec
    video.acodec = new.acodec
    video.container = new.container
    session.add(video)
    session.flush()
    return video


def remove_video(session: Session, video_id: int) -> bool:
    """Delete a video's row; the playlist entries that filed it keep their state
    (``downloaded``: a sync does not bring it back) but no longer name it, since SQLite
    may give its id to a later video. The caller commits. False when the row was gone
    already. The download archive is the library (:func:`find_video`), so the video can
    be downloaded again at once, on request; its artist stays."""
    session.execute(
        update(PlaylistEntry).where(PlaylistEntry.video_id == video_id).values(video_id=None)
    )
    removed = session.execute(delete(Video).where(Video.id == video_id))
    return bool(removed.rowcount)  # type: ignore[attr-defined]
