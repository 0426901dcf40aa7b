"""Pictures from outside (an artist's image, uploaded or found by enrichment): fetched
(:func:`fetch_picture`, in a guarded child), checked without decoding, then made into
a set of sizes.

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
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image, ImageOps, UnidentifiedImageError, features

from media import egress
from media.errors import MediaError
from media.thumbnails import write_thumbnails
from media.urls import parse_url

#: Pillow's format names of the decoders we let run.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "AVIF")
#: Larger pictures are refused from their header (a 50 MP photo is 0.2 GB of RGBA).
MAX_PIXELS = 50_000_000
#: The widths of an artist's image set (square sources give squares).
ARTIST_WIDTHS = (128, 256, 512, 1024)
#: Redirects a picture's URL may take (a Commons file path redirects once).
MAX_REDIRECTS = 5
#: Seconds a picture's download may take in all.
FETCH_TIMEOUT_S = 60.0
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


def fetch_picture(url: str, dest: str, *, max_bytes: int, user_agent: str) -> dict:
    """Download the picture at ``url`` (a URL from outside: hostile) to ``dest``, at
    most ``max_bytes``, checked from its header as an upload is (:func:`inspect_image`);
    returns its format, width, height and bytes. The file appears complete or not at
    all. Run it in a child guarded by :func:`media.egress.install_egress_guard`: every
    connection, after each redirect and each name resolution, is checked there.

    Raises:
      MediaError: a bad URL, a refused address (``private_address``), an answer that is
        not 200 (a 5xx or a network failure is retryable), more than ``max_bytes``.
      BadImage: not a picture we accept, or too many pixels.
    """
    url = parse_url(url)
    deadline = time.monotonic() + FETCH_TIMEOUT_S
    data = bytearray()
    try:
        # trust_env off: no proxy or .netrc credentials from the environment for a URL
        # someone else chose.
        with (
            httpx.Client(
                follow_redirects=True,
                max_redirects=MAX_REDIRECTS,
                timeout=FETCH_TIMEOUT_S / 4,
                trust_env=False,
                headers={"User-Agent": user_agent, "Accept": "image/*"},
            ) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != httpx.codes.OK:
                raise MediaError(
                    f"the picture's server answered {response.status_code}",
                    code="image_unavailable",
                    retryable=response.status_code >= 500,
                )
            declared = response.headers.get("content-length", "")
            if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
                raise _too_large(max_bytes)
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > max_bytes:
                    raise _too_large(max_bytes)
                if time.monotonic() > deadline:
                    raise MediaError(
                        f"the picture took more than {FETCH_TIMEOUT_S:g} s to arrive",
                        code="timeout",
                        retryable=True,
                    )
    except httpx.HTTPError as exc:
        if egress.refusals():
            raise MediaError(
                "the picture's URL leads to a private, loopback or otherwise non-public "
                "address; it was refused",
                code="private_address",
                retryable=False,
            ) from None
        retryable = isinstance(exc, httpx.TransportError) and not isinstance(
            exc,
            httpx.UnsupportedProtocol,  # a redirect to ftp: or the like
        )
        raise MediaError(
            f"the picture could not be fetched: {exc}",
            code="image_unavailable",
            retryable=retryable,
        ) from None
    facts = inspect_image(bytes(data))
    target = Path(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}")
    partial.write_bytes(data)
    os.replace(partial, target)
    return {
        "format": facts.format,
        "width": facts.width,
        "height": facts.height,
        "bytes": len(data),
    }


def _too_large(max_bytes: int) -> MediaError:
    return MediaError(
        f"the picture is larger than {max_bytes} bytes", code="too_large", retryable=False
    )


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
