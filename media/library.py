"""Where a video lives in the library: ``<artist>/<title> [<id>].<ext>``, restricted
names (ASCII, no spaces or shell characters), always under the media root."""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath

from yt_dlp.utils import sanitize_filename

UNKNOWN_ARTIST = "Unknown_Artist"


def _name(text: str, limit: int) -> str:
    cleaned = sanitize_filename(text, restricted=True).strip("._-")
    return cleaned[:limit] or "_"


def library_path(*, artist: str | None, title: str, video_id: str, ext: str) -> PurePosixPath:
    """The path of a video relative to the media root."""
    folder = _name(artist, 100) if artist else UNKNOWN_ARTIST
    filename = f"{_name(title, 150)}_[{_name(video_id, 64)}].{_name(ext, 8)}"
    return PurePosixPath(folder, filename)


def place_in_library(source: Path, media_root: Path, relative: PurePosixPath) -> Path:
    """Move ``source`` to ``media_root/relative`` and return the final path.

    Raises:
      ValueError: the destination would lie outside the media root.
    """
    root = media_root.resolve()
    destination = (root / relative).resolve()
    if not destination.is_relative_to(root):
        raise ValueError(f"{relative} is outside the media root")
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(source, destination)
    return destination
