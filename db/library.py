"""Adds a downloaded video to the library tables."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Artist, Video


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


def find_video(session: Session, extractor: str, extractor_id: str) -> Video | None:
    return session.scalar(
        select(Video).where(Video.extractor == extractor, Video.extractor_id == extractor_id)
    )


def artist_named(session: Session, name: str) -> Artist:
    artist = session.scalar(select(Artist).where(Artist.name == name))
    if artist is None:
        artist = Artist(name=name)
        session.add(artist)
        session.flush()
    return artist


def add_video(session: Session, new: NewVideo) -> Video:
    """Insert the ``Video`` row (and its artist); the caller commits."""
    artist = artist_named(session, new.artist) if new.artist else None
    video = Video(
        title=new.title,
        artist_id=artist.id if artist else None,
        source_url=new.source_url,
        extractor=new.extractor,
        extractor_id=new.extractor_id,
        path=new.path,
        size=new.size,
        duration=new.duration,
        width=new.width,
        height=new.height,
        vcodec=new.vcodec,
        acodec=new.acodec,
    )
    session.add(video)
    session.flush()
    return video
