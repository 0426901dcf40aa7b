"""Where a new video goes in the library: its artist's folder and a stem unique in it.

The names themselves are pure (:mod:`media.names`, :mod:`media.library`); what they must
be unique against lives here: the folder's entries on disk and the rows that name files
in it (a file gone missing still holds its name), and other artists' folders.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from sqlalchemy import func, select, true
from sqlalchemy.orm import Session

from db.models import Artist, Video
from media.library import artist_folder, library_path
from media.names import name_key, stem_of, stems_in, video_stem


def folder_of(session: Session, artist: str | None) -> str:
    """The folder of ``artist``'s videos: the one its videos are in already, else its
    name made safe, unique against the folders of the artists before it whose names
    differ only in case (``ABBA`` and ``Abba`` get two folders, not one)."""
    if not artist:
        return artist_folder(None)
    row = session.scalar(select(Artist).where(Artist.name == artist))
    if row is not None:
        used = session.scalar(
            select(Video.path).where(Video.artist_id == row.id).order_by(Video.id).limit(1)
        )
        if used is not None and "/" in used:
            return used.split("/", 1)[0]
    return named_folder(session, artist, row)


def named_folder(session: Session, artist: str | None, row: Artist | None = None) -> str:
    """The folder the current names give ``artist`` (``row``, its row if known),
    wherever its videos are now: its name made safe, unique against the folders of the
    artists before it whose names differ only in case."""
    if not artist:
        return artist_folder(None)
    if row is None:
        row = session.scalar(select(Artist).where(Artist.name == artist))
    earlier = session.scalars(
        select(Artist.name)
        .where(func.lower(Artist.name) == artist.lower(), Artist.name != artist)
        .where(Artist.id < row.id if row is not None else true())
        .order_by(Artist.id)
    ).all()
    taken: set[str] = set()
    for name in earlier:
        taken.add(name_key(artist_folder(name, taken)))
    return artist_folder(artist, taken)


def place_video(
    session: Session,
    media_root: Path,
    *,
    artist: str | None,
    title: str,
    video_id: str,
    ext: str,
    replacing: str | None = None,
) -> PurePosixPath:
    """The library path for a video: ``<artist folder>/<title> [<id>].<ext>``, its stem
    unique (case-insensitively) among the folder's entries and rows; ``replacing``, the
    path of the file a forced re-download replaces, does not count against it."""
    folder = folder_of(session, artist)
    try:
        entries = os.listdir(media_root / folder)
    except (FileNotFoundError, NotADirectoryError):
        entries = []
    in_folder = Video.path.startswith(f"{folder}/", autoescape=True)
    rows = session.scalars(select(Video.path).where(in_folder))
    taken = stems_in(entries) | stems_in([path.rsplit("/", 1)[-1] for path in rows])
    if replacing is not None:
        taken.discard(name_key(stem_of(PurePosixPath(replacing).name)))
    return library_path(folder=folder, stem=video_stem(title, video_id, taken), ext=ext)
