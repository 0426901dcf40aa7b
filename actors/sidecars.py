"""The files beside the library's videos that Kodi and Jellyfin read, in the ``kodi``
and ``jellyfin`` layouts (``VIDFLEET_LIBRARY_LAYOUT``; the two write the same files):
``Title [id].nfo`` and ``Title [id]-thumb.jpg`` beside ``Title [id].mp4``, and
``artist.nfo`` and ``folder.jpg`` in each artist's folder (:mod:`media.library` names
them, :mod:`media.nfo` builds the XML).

Each actor whose work changes what a sidecar shows calls one function here: a download
that filed or replaced a video, an analysis that made its thumbnails
(:func:`write_video_sidecars`); an enrichment or an artist image
(:func:`write_artist_sidecars`); a delete (:func:`remove_video_sidecars`, in every
layout, so that a library whose layout changed still loses them with their video).

Nothing here raises: a sidecar that cannot be written (a full disk, a permission) is a
warning in the log, and the next rewrite puts it right; the job goes on. Each file is
written under a temporary name in its own folder and renamed over the old one, so a
media server never reads half of one; a file whose bytes would not change is left
alone (a server watching the folder rescans on every change).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from dataclasses import replace
from pathlib import Path, PurePosixPath

from sqlalchemy import select

from actors import stores
from db.models import Artist, Video
from db.settings import get_settings
from media.errors import MediaError
from media.library import (
    ARTIST_IMAGE,
    ARTIST_NFO,
    NFO_SUFFIX,
    THUMB_SUFFIX,
    artist_sidecars,
    delete_library_file,
    library_entry,
    sidecar,
    sidecars_of,
)
from media.nfo import ArtistInfo, MusicVideoInfo, artist_nfo, music_video_nfo

logger = logging.getLogger(__name__)
settings = get_settings()


def writes_sidecars() -> bool:
    return settings.library_layout != "default"


def write_video_sidecars(video_id: int) -> None:
    """Write (or bring up to date) a video's NFO and ``-thumb.jpg`` (once its analysis
    made thumbnails), and its artist's files in its folder. Never raises."""
    if not writes_sidecars():
        return
    try:
        _write_video(video_id)
    except Exception:
        logger.warning("could not write the sidecars of video %s", video_id, exc_info=True)


def write_artist_sidecars(artist_id: int) -> None:
    """Write (or bring up to date) ``artist.nfo`` and ``folder.jpg`` in every folder
    that holds the artist's videos. Never raises."""
    if not writes_sidecars():
        return
    try:
        with stores.sessions()() as session:
            artist = session.get(Artist, artist_id)
            if artist is None:
                return
            paths = session.scalars(select(Video.path).where(Video.artist_id == artist_id))
            folders = {path.split("/", 1)[0] for path in paths if "/" in path}
            for folder in sorted(folders):
                _write_artist(artist, folder)
    except Exception:
        logger.warning("could not write the files of artist %s", artist_id, exc_info=True)


def remove_video_sidecars(video_path: str) -> None:
    """Remove the sidecars of the video at ``video_path`` (relative to the media root);
    when no other video is in its folder, its artist's files and the folder too, if
    nothing else is left there. Never raises."""
    try:
        for path in sidecars_of(video_path):
            _remove(path)
        folder = PurePosixPath(video_path).parent
        if folder == PurePosixPath("."):
            return
        with stores.sessions()() as session:
            others = session.scalar(
                select(Video.id)
                .where(Video.path.startswith(f"{folder}/", autoescape=True))
                .where(Video.path != video_path)
                .limit(1)
            )
        if others is not None:
            return
        for path in artist_sidecars(folder):
            _remove(path)
        with contextlib.suppress(OSError):  # not empty: something else is kept there
            library_entry(settings.media_root, folder).rmdir()
    except Exception:
        logger.warning("could not remove the sidecars of %s", video_path, exc_info=True)


def _write_video(video_id: int) -> None:
    root = settings.media_root
    with stores.sessions()() as session:
        video = session.get(Video, video_id)
        if video is None:
            return
        relative, widths, artist = video.path, video.thumbnail_widths, video.artist
        if not library_entry(root, relative).is_file():
            return  # gone (a delete on its way): nothing to describe
        info = _video_info(video)
        if artist is not None and "/" in relative:
            _write_artist(artist, relative.split("/", 1)[0])
    thumb = sidecar(relative, THUMB_SUFFIX)
    picture = _largest_jpeg(settings.thumbnails_dir / str(video_id), widths)
    if picture is not None:
        _put(library_entry(root, thumb), picture.read_bytes())
        info = replace(info, thumb=thumb.name)
    _put(library_entry(root, sidecar(relative, NFO_SUFFIX)), music_video_nfo(info))


def _video_info(video: Video) -> MusicVideoInfo:
    artist = video.artist.name if video.artist is not None else None
    return MusicVideoInfo(
        title=video.title,
        extractor=video.extractor,
        video_id=video.extractor_id,
        source_url=video.source_url,
        artists=[name for name in [artist, *(video.artists or [])] if name],
        album=video.album,
        year=video.release_year,
        premiered=video.premiered,
        genres=video.genres or [],
        director=video.director,
        duration=video.duration,
        added=video.created_at,
    )


def _write_artist(artist: Artist, folder: str) -> None:
    root = settings.media_root
    picture = None
    if artist.image_version and artist.image_widths and "jpg" in (artist.image_formats or []):
        version = settings.artists_dir / str(artist.id) / artist.image_version
        picture = _largest_jpeg(version, artist.image_widths)
    if picture is not None:
        _put(library_entry(root, PurePosixPath(folder, ARTIST_IMAGE)), picture.read_bytes())
    info = ArtistInfo(
        name=artist.name,
        mbid=artist.mbid,
        disambiguation=artist.disambiguation,
        genres=artist.genres or [],
        country=artist.country,
        begin_year=artist.begin_year,
        thumb=ARTIST_IMAGE if picture is not None else None,
    )
    _put(library_entry(root, PurePosixPath(folder, ARTIST_NFO)), artist_nfo(info))


def _largest_jpeg(folder: Path, widths: list[int] | None) -> Path | None:
    """The widest ``<width>.jpg`` of a set of sizes (thumbnails, an artist's image)."""
    for width in sorted(widths or [], reverse=True):
        path = folder / f"{int(width)}.jpg"
        if path.is_file():
            return path
    return None


def _put(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically: a temporary file in the same folder,
    renamed over it (a rename replaces a symlink there, never what it points to)."""
    with contextlib.suppress(OSError):
        if not target.is_symlink() and target.read_bytes() == data:
            return
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _remove(relative: PurePosixPath) -> None:
    """Delete a sidecar; gone already, a folder or outside the media root: left alone."""
    with contextlib.suppress(FileNotFoundError, MediaError):
        delete_library_file(settings.media_root, relative)
