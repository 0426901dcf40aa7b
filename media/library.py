"""Where a video lives in the library: ``<artist>/<title>_[<extractor>-<id>].<ext>``,
restricted names (ASCII, no spaces or shell characters), always under the media root.

The extractor is part of the name because a video id is only unique within its site:
two sites' videos with the same artist, title and id must not share one file."""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from yt_dlp.utils import sanitize_filename

from media.disk import writing

UNKNOWN_ARTIST = "Unknown_Artist"


def _name(text: str, limit: int) -> str:
    cleaned = sanitize_filename(text, restricted=True).strip("._-")
    return cleaned[:limit] or "_"


def library_path(
    *, artist: str | None, title: str, extractor: str, video_id: str, ext: str
) -> PurePosixPath:
    """The path of a video relative to the media root."""
    folder = _name(artist, 100) if artist else UNKNOWN_ARTIST
    key = f"{_name(extractor, 32)}-{_name(video_id, 64)}"
    filename = f"{_name(title, 150)}_[{key}].{_name(ext, 8)}"
    return PurePosixPath(folder, filename)


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


def remove_from_library(media_root: Path, relative: PurePosixPath) -> None:
    """Delete a library file (a no-op when it is gone or would lie outside the root)."""
    root = media_root.resolve()
    path = (root / relative).resolve()
    if path.is_relative_to(root):
        path.unlink(missing_ok=True)
