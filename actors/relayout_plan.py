"""The plan of a relayout: where every video of the library goes under the current
names (:mod:`media.names`), and so which videos move.

Each video, in id order (the same library gives the same plan), gets the path a new
download of it would get (:func:`actors.library_places.place_video`): its artist's
folder under the current names (:func:`actors.library_places.artist_folders`, wherever
its files are now) and a stem unique in that folder, where its own current name does
not count as taken. What is taken in a folder is read once and grows as the plan goes:
the stems of the files on disk and of the rows there (old names stay taken until they
are moved, so no new name lands on a file not yet moved) and the stems planned so far,
so two old names that map to one new name get it and ``(2)``. A video already at its
place is not moved, so a relayout run again after it finished plans nothing.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from actors.library_places import artist_folders
from db.models import Artist, Video
from media.library import artist_folder
from media.names import name_key, stem_of, stems_in, video_stem


@dataclass(frozen=True)
class Move:
    """One video's file (and the files beside it) from one library path to another."""

    video_id: int
    source: str
    target: str

    def as_dict(self) -> dict[str, Any]:
        return {"video_id": self.video_id, "from": self.source, "to": self.target}


def plan_moves(
    session: Session, media_root: Path, *, check: Callable[[], None] = lambda: None
) -> list[Move]:
    """The moves that put every video of the library at its place, in id order.
    ``check`` runs before each video (a cancelled job raises there)."""
    rows = session.execute(
        select(Video.id, Video.path, Video.title, Video.extractor_id, Artist.name)
        .outerjoin(Artist, Video.artist_id == Artist.id)
        .order_by(Video.id)
    ).all()
    files_in: dict[str, list[str]] = defaultdict(list)  # folder -> its rows' file names
    for row in rows:
        folder, _, name = row.path.rpartition("/")
        files_in[folder].append(name)
    folders = artist_folders(session)
    taken: dict[str, set[str]] = {}
    moves = []
    for video_id, path, title, source_id, artist in rows:
        check()
        folder = folders[artist] if artist else artist_folder(None)
        if folder not in taken:
            taken[folder] = stems_in(_entries(media_root / folder)) | stems_in(files_in[folder])
        current = PurePosixPath(path)
        old_stem = stem_of(current.name)
        own = {name_key(old_stem)} if current.parent == PurePosixPath(folder) else set()
        stem = video_stem(title, source_id, taken[folder] - own)
        taken[folder].add(name_key(stem))
        # The file keeps its suffix (its extension), as each of its sidecars does.
        target = PurePosixPath(folder, stem + current.name[len(old_stem) :])
        if target != current:
            moves.append(Move(video_id=video_id, source=path, target=target.as_posix()))
    return moves


def _entries(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
