"""Pictures from outside (an artist's image, uploaded or found by enrichment): checked
without decoding, then made into a set of sizes.

Only Pillow's JPEG, PNG, WebP, GIF and AVIF decoders are used (``Image.open(formats=)``):
every other format Pillow knows (and its parsers' bugs) stays out of reach. A picture
of more than :data:`MAX_PIXELS` is refused from its header, before a pixel is decoded
(Pillow's own decompression-bomb check would only warn below twice its limit). The
EXIF orientation is applied and nothing of the source's metadata is written (no EXIF,
no XMP, no ICC profile: the sizes are sRGB). The sizes are written as a video's
thumbnails are (:func:`media.thumbnails.write_thumbnails`): each from the next larger
one, never upscaled, each file to a temporary name and renamed, so a half-written size
is never visible.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError, features

from media.errors import MediaError
from media.thumbnails import write_thumbnails

#: Pillow's format names of the decoders we let run.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "AVIF")
#: Larger pictures are refused from their header (a 50 MP photo is 0.2 GB of RGBA).
MAX_PIXELS = 50_000_000
#: The widths of an artist's image set (square sources give squares).
ARTIST_WIDTHS = (128, 256, 512, 1024)
#: What each size is written as: AVIF only where the installed Pillow encodes it.
OUTPUTS = ("webp", "jpg", *(("avif",) if features.check("avif") else ()))
SAVE_OPTIONS: dict[str, dict[str, object]] = {
    "webp": {"format": "WEBP", "quality": 82, "method": 4},
    "jpg": {"format": "JPEG", "quality": 85, "optimize": True, "progressive": True},
    "avif": {"format": "AVIF", "quality": 60, "speed": 8},
}


class BadImage(MediaError):
    def __init__(self, message: str, *, code: str = "invalid_image") -> None:
        super().__init__(message, code=code, retryable=False)


@dataclass(frozen=True)
class ImageFacts:
    format: str  # one of FORMATS
    width: int
    height: int


def inspect_image(data: bytes) -> ImageFacts:
    """The format and size of a picture, read from its header only.

    Raises:
      BadImage: not a picture of an allowed format, or more than MAX_PIXELS.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as image:
                facts = ImageFacts(image.format or "", image.width, image.height)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImage(
            f"a picture of too many pixels: at most {MAX_PIXELS // 1_000_000} megapixels "
            "are accepted",
            code="image_too_large",
        ) from None
    except UnidentifiedImageError:
        raise BadImage(f"not a picture in one of {', '.join(FORMATS)}") from None
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's parse errors
        raise BadImage(f"a damaged picture: {exc}") from None
    if facts.width < 1 or facts.height < 1:
        raise BadImage("a picture with no pixels")
    if facts.width * facts.height > MAX_PIXELS:
        raise BadImage(
            f"a picture of {facts.width}x{facts.height} pixels: at most "
            f"{MAX_PIXELS // 1_000_000} megapixels are accepted",
            code="image_too_large",
        )
    return facts


def make_image_set(
    source: str,
    out_dir: str,
    widths: tuple[int, ...] = ARTIST_WIDTHS,
    outputs: Sequence[str] = OUTPUTS,
) -> dict:
    """Write ``<out_dir>/<width>.<ext>`` for every width and each of ``outputs`` (keys
    of :data:`SAVE_OPTIONS`), from the picture at ``source``; returns ``{"widths":
    [...], "formats": [...], "width": w, "height": h}`` (the upright picture as decoded,
    which for a JPEG may be a reduced scale of it, never below the widest size). Paths
    as ``str``: it runs in a child process (:func:`media.isolation.run_isolated`).

    Raises:
      BadImage: as :func:`inspect_image`, or the picture does not decode.
    """
    data = Path(source).read_bytes()
    inspect_image(data)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as opened:
            # JPEG: decode at the smallest scale (1/2, 1/4, 1/8) that still leaves both
            # sides as long as the widest size (either may be the width once upright).
            largest = max(widths)
            opened.draft("RGB", (largest, largest))
            image = ImageOps.exif_transpose(opened)  # upright; drops the orientation tag
            image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise BadImage(f"the picture does not decode: {exc}") from None
    image = _rgb(image)
    formats = {ext: SAVE_OPTIONS[ext] for ext in outputs}
    made = write_thumbnails(image, folder, widths=widths, formats=formats)
    return {"widths": made, "formats": list(outputs), "width": image.width, "height": image.height}


def _rgb(image: Image.Image) -> Image.Image:
    """Plain RGB (the first frame of an animation); transparency on white."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return image.convert("RGB")
