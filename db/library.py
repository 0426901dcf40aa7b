"""The library's rows: a downloaded video added (with its artist), one removed, and the
library listed a page at a time in one of its orders (a keyset per order)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.orm import InstrumentedAttribute, Session, contains_eager

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
    # What media servers read (db.models.Video); None/empty where the source said nothing.
    artists: tuple[str, ...] = ()
    album: str | None = None
    release_year: int | None = None
    premiered: str | None = None
    genres: tuple[str, ...] = ()
    director: str | None = None
    #: ``[{start, end, title, source}]`` (db.models.Video.chapters).
    chapters: tuple[dict[str, Any], ...] = ()


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
    video.artists = list(new.artists) or None
    video.album = new.album
    video.release_year = new.release_year
    video.premiered = new.premiered
    video.genres = list(new.genres) or None
    video.director = new.director
    video.chapters = list(new.chapters) or None
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


class VideoSort(enum.Enum):
    """The orders the library lists in (``GET /api/videos?sort=``)."""

    newest = "newest"
    oldest = "oldest"
    title = "title"
    artist = "artist"
    duration = "duration"


def _no_artist() -> ColumnElement[int]:
    return case((Video.artist_id.is_(None), 1), else_=0)


def _no_duration() -> ColumnElement[int]:
    return case((Video.duration.is_(None), 1), else_=0)


#: How much of a title or a name sorts: a cursor carries the key, and a title can be
#: long (SQLite does not hold it to its column's length), so titles that share their
#: first 200 characters sort by id instead.
KEY_CHARS = 200


def _text_key(column: ColumnElement[str] | InstrumentedAttribute[str]) -> ColumnElement[str]:
    return func.substr(func.lower(column), 1, KEY_CHARS)


#: Each sort's key, most significant first, always ending with the id so that it is
#: unique (a keyset cursor needs a total order). NULLs never take part in a comparison
#: (a row value with a NULL compares as unknown and the row would drop out of every
#: page): a 0/1 flag sorts the videos without an artist or a duration last, the way
#: both SQLite and PostgreSQL do it, and the value beside it is coalesced.
SORT_KEYS: dict[VideoSort, Callable[[], list[ColumnElement[Any]]]] = {
    VideoSort.newest: lambda: [Video.id.expression],
    VideoSort.oldest: lambda: [Video.id.expression],
    VideoSort.title: lambda: [_text_key(Video.title), Video.id.expression],
    VideoSort.artist: lambda: [
        _no_artist(),
        _text_key(func.coalesce(Artist.name, "")),
        _text_key(Video.title),
        Video.id.expression,
    ],
    VideoSort.duration: lambda: [
        _no_duration(),
        func.coalesce(Video.duration, 0.0),
        Video.id.expression,
    ],
}
#: The Python type of each part of a sort's key, as a cursor carries it.
KEY_TYPES: dict[VideoSort, tuple[type, ...]] = {
    VideoSort.newest: (int,),
    VideoSort.oldest: (int,),
    VideoSort.title: (str, int),
    VideoSort.artist: (int, str, str, int),
    VideoSort.duration: (int, float, int),
}


@dataclass(frozen=True)
class LibraryQuery:
    """What a page of the library asks for: its order, a case-insensitive substring of
    the title or the artist's name, one artist, and the key of the last video of the
    page before (``after``, as :func:`library_page` returned it)."""

    sort: VideoSort = VideoSort.newest
    search: str | None = None
    artist_id: int | None = None
    after: tuple[Any, ...] | None = None


def library_page(query: LibraryQuery, limit: int) -> Select[tuple[Any, ...]]:
    """The statement for one page of ``limit`` videos (ask for one more to learn that
    another page follows). Each row is the video, then the parts of its sort key: the
    last row's key is the next page's ``after``.

    The key is compared as a row value, ``(k1, k2, id) > (:k1, :k2, :id)``, which both
    SQLite (3.15+) and PostgreSQL evaluate with the collation ORDER BY uses, so a page
    starts exactly after the previous one whatever the titles hold. The search is
    ``LIKE`` with its wildcards escaped (``50%`` finds "50%", not "50 and anything")."""
    keys = SORT_KEYS[query.sort]()
    descending = query.sort is VideoSort.newest
    statement = (
        select(Video, *keys)
        .outerjoin(Artist, Video.artist_id == Artist.id)
        .options(contains_eager(Video.artist))
    )
    if query.search is not None:
        statement = statement.where(
            or_(
                Video.title.icontains(query.search, autoescape=True),
                Artist.name.icontains(query.search, autoescape=True),
            )
        )
    if query.artist_id is not None:
        statement = statement.where(Video.artist_id == query.artist_id)
    if query.after is not None:
        mark = tuple_(*keys)
        after = tuple_(*(literal(value) for value in query.after))
        statement = statement.where(mark < after if descending else mark > after)
    order = [key.desc() for key in keys] if descending else keys
    return statement.order_by(*order).limit(limit)
