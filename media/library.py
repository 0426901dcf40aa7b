"""Where a video lives in the library: ``<artist>/<title> [<id>].<ext>``, names people
can read in every script (:mod:`media.names`), always under the media root.

A video id is only unique within its site: two sites' videos with the same artist,
title and id get ``(2)`` in one of their names, since each stem is unique in its folder
(case-insensitively)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from media.disk import writing
from media.errors import MediaError
from media.names import MAX_COMPONENT_BYTES, component, unique_name

UNKNOWN_ARTIST = "Unknown Artist"

#: What a video's sidecars add to its file name without the extension, in the kodi and
#: jellyfin layouts: ``Title [id].nfo`` and ``Title [id]-thumb.jpg`` beside
#: ``Title [id].mp4`` (subtitles, ``Title [id].<lang>.vtt``, are in ``videos.subtitles``).
NFO_SUFFIX = ".nfo"
THUMB_SUFFIX = "-thumb.jpg"
VIDEO_SIDECARS = (NFO_SUFFIX, THUMB_SUFFIX)
#: The files an artist's folder holds besides its videos (Kodi's music library names).
ARTIST_NFO = "artist.nfo"
ARTIST_IMAGE = "folder.jpg"


def artist_folder(artist: str | None, taken: Collection[str] = ()) -> str:
    """The folder of an artist's videos: its name made safe (:mod:`media.names`),
    unique against ``taken``, the keys of other artists' folders."""
    return unique_name(component(artist or UNKNOWN_ARTIST, limit=MAX_COMPONENT_BYTES - 8), taken)


def library_path(*, folder: str, stem: str, ext: str) -> PurePosixPath:
    """The path of a video relative to the media root: ``<folder>/<stem>.<ext>``
    (the stem from :func:`media.names.video_stem`)."""
    return PurePosixPath(folder, f"{stem}.{component(ext, limit=8, fallback='bin')}")


def sidecar(video_path: str | PurePosixPath, suffix: str) -> PurePosixPath:
    """The path of one of a video's sidecars: the video's path with its extension
    replaced by ``suffix`` (``Artist/Title [id].mp4``, ``-thumb.jpg`` ->
    ``Artist/Title [id]-thumb.jpg``), the way Kodi and Jellyfin look for them."""
    video = PurePosixPath(video_path)
    return video.with_name(f"{video.stem}{suffix}")


def sidecars_of(video_path: str | PurePosixPath) -> list[PurePosixPath]:
    """Every sidecar a video at ``video_path`` (relative to the media root) may have
    beside it (they exist only in the kodi and jellyfin layouts): what a relayout moves
    and a delete removes together with the video."""
    return [sidecar(video_path, suffix) for suffix in VIDEO_SIDECARS]


def artist_sidecars(folder: str | PurePosixPath) -> list[PurePosixPath]:
    """The files an artist's folder may hold for its artist: ``artist.nfo`` and
    ``folder.jpg``."""
    return [PurePosixPath(folder, ARTIST_NFO), PurePosixPath(folder, ARTIST_IMAGE)]


@dataclass(frozen=True)
class StagedFile:
    """A file already on the library's filesystem, one rename away from its place."""

    partial: Path
    final: Path

    def publish(self) -> None:
        """Atomically rename the staged file to its final name.

        Raises:
          DiskFull: the directory could not grow (a full ext4 can refuse a rename).
        """
        with writing(self.partial, where="the library"):
            os.replace(self.partial, self.final)

    def discard(self) -> None:
        self.partial.unlink(missing_ok=True)


def stage_in_library(source: Path, media_root: Path, relative: PurePosixPath) -> StagedFile:
    """Move ``source`` next to ``media_root/relative`` under a hidden partial name.

    On one filesystem the move is a rename; onto another it is a copy, which may fill
    that disk part-way: whatever fails, the partial copy is removed before the error
    leaves (``source`` stays where it was). :meth:`StagedFile.publish` is then a
    rename, cheap enough to happen inside the database transaction.

    Raises:
      ValueError: the destination would lie outside the media root.
      DiskFull: the library's filesystem filled up during the copy.
    """
    root = media_root.resolve()
    final = (root / relative).resolve()
    if not final.is_relative_to(root):
        raise ValueError(f"{relative} is outside the media root")
    partial = final.with_name(f".{final.name}.partial")
    size = source.stat().st_size
    with writing(partial, needed=size, where="the library"):
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(source, partial)
            return StagedFile(partial=partial, final=final)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
        # Another filesystem (shutil.move would copy too, but leave its partial copy
        # behind when the copy fails).
        shutil.copy2(source, partial)
        source.unlink()
    return StagedFile(partial=partial, final=final)


class OutsideLibrary(MediaError):
    """A library row names a file that is not (or may not be) under the media root."""

    def __init__(self, why: str = "its file lies outside the media root") -> None:
        super().__init__(f"{why}: nothing was deleted", code="outside_library", retryable=False)


def library_entry(media_root: Path, relative: str | PurePosixPath) -> Path:
    """The directory entry a library path names: its folders resolved, its own name
    kept (a symlink is the entry, not what it points to).

    Raises:
      OutsideLibrary: the entry, or what it points to, is not under the media root
        (an absolute path, ``..``, a symlinked folder or file leading out of it), or
        the path cannot be resolved (a symlink loop, a NUL byte).
    """
    root = media_root.resolve()
    named = root / relative
    if named.name in ("", ".", ".."):
        raise OutsideLibrary()
    try:
        entry = named.parent.resolve() / named.name
        target = entry.resolve()
    except (OSError, RuntimeError, ValueError):  # RuntimeError: a symlink loop (3.11)
        raise OutsideLibrary("its library path cannot be resolved") from None
    if not entry.is_relative_to(root) or not target.is_relative_to(root) or target == root:
        raise OutsideLibrary()
    return entry


def delete_library_file(media_root: Path, relative: str | PurePosixPath) -> bool:
    """Delete a library file: True if it was there, False if it was gone already.

    Raises:
      OutsideLibrary: see :func:`library_entry`; nothing is deleted.
      MediaError: the entry is a folder (``not_a_file``).
    """
    entry = library_entry(media_root, relative)
    if entry.is_dir() and not entry.is_symlink():
        raise MediaError(
            "its library path is a folder, not a file", code="not_a_file", retryable=False
        )
    try:
        entry.unlink()
    except FileNotFoundError:
        return False
    return True


def remove_from_library(media_root: Path, relative: PurePosixPath) -> None:
    """Delete a library file (a no-op when it is gone or would lie outside the root)."""
    with contextlib.suppress(OutsideLibrary):
        delete_library_file(media_root, relative)
