"""A video's thumbnails: the best of its sampled keyframes (:mod:`media.keyframes`),
written at :data:`THUMBNAIL_WIDTHS` in each of :data:`THUMBNAIL_FORMATS`.

The choice is a chain, each step handing on what it does not reject: black pictures
(a fade, a black intro) go, then blank ones (one flat colour), and the sharpest of what
is left wins (:mod:`media.frame_scores`); when nothing is left, the brightest sample.

Each size is made from the next larger one with Pillow's LANCZOS (so every step is a
reduction by about two), never upscaled: a width above the source's is written at the
source's width, under its nominal name, so that every name of the set exists. Each
file is written to a temporary name in its directory and renamed over the old one, so
a reader sees the old thumbnail or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

if TYPE_CHECKING:  # only a type here: the web (artist images) imports no decoder
    from media.keyframes import Keyframe

THUMBNAIL_WIDTHS = (160, 320, 640, 1280)
#: File extension -> Pillow's save arguments.
THUMBNAIL_FORMATS: Mapping[str, Mapping[str, Any]] = {
    "webp": {"format": "WEBP", "quality": 80, "method": 4},
    "jpg": {"format": "JPEG", "quality": 85, "optimize": True, "progressive": True},
}
FILE_MODE = 0o644


def choose_frame(frames: Sequence[Keyframe]) -> Keyframe:
    """The keyframe to make the thumbnails from.

    Raises:
      ValueError: ``frames`` is empty.
    """
    if not frames:
        raise ValueError("no keyframe to choose from")
    showing = [f for f in frames if not f.score.black and not f.score.blank]
    if showing:
        return max(showing, key=lambda f: f.score.sharpness)
    return max(frames, key=lambda f: f.score.luma)


def write_thumbnails(
    picture: Image.Image,
    directory: Path,
    *,
    widths: Sequence[int] = THUMBNAIL_WIDTHS,
    formats: Mapping[str, Mapping[str, Any]] = THUMBNAIL_FORMATS,
) -> list[int]:
    """Write ``<directory>/<width>.<ext>`` for every width and format; the widths
    written, ascending (all of ``widths``: those above the picture's are written at its
    width).

    Raises:
      OSError: a file could not be written (those written before it stay, whole).
    """
    directory.mkdir(parents=True, exist_ok=True)
    source = picture.convert("RGB") if picture.mode != "RGB" else picture
    current = source
    for width in sorted(widths, reverse=True):
        current = _reduced(current, min(width, source.width), source)
        for extension, options in formats.items():
            _save_atomically(current, directory / f"{width}.{extension}", options)
    return sorted(widths)


def _reduced(current: Image.Image, width: int, source: Image.Image) -> Image.Image:
    """``current`` (the source or a reduction of it) at ``width``, with the source's
    aspect ratio."""
    height = max(1, round(source.height * width / source.width))
    if current.size == (width, height):
        return current
    return current.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=2.0)


def _save_atomically(image: Image.Image, target: Path, options: Mapping[str, Any]) -> None:
    descriptor, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    try:
        os.fchmod(descriptor, FILE_MODE)  # mkstemp's is 0600: the web must read it
        with os.fdopen(descriptor, "wb") as file:
            image.save(file, **options)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def thumbnails_missing(
    directory: Path,
    widths: Sequence[int],
    formats: Mapping[str, Mapping[str, Any]] = THUMBNAIL_FORMATS,
) -> bool:
    """Is any file :func:`write_thumbnails` wrote for ``widths`` gone from ``directory``?"""
    try:
        present = set(os.listdir(directory))
    except OSError:
        return True
    return any(f"{width}.{extension}" not in present for width in widths for extension in formats)
