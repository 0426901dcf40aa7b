"""Reads what a local media file holds with PyAV (FFmpeg's libraries), and decides
whether it is audio or video at all: :func:`probe_file` for the fields a library row
keeps, :func:`probe_details` for every stream (codec, profile, pixel format, frame rate,
bit rate, channels, language).

PyAV, not an ffprobe subprocess: ``imageio-ffmpeg`` bundles no ffprobe, and opening the
container in-process costs a few milliseconds instead of a process start.

A file counts as media only in a container of :data:`media.mediainfo.CONTAINERS` with
an audio or a (moving-picture) video stream. FFmpeg is told so before it reads a byte
(:data:`OPEN_OPTIONS`): only the ``file`` protocol, and only those demuxers, so a
playlist or a concat list (which would open other files, or the network) is refused
before it is parsed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import av
import av.container

from media.errors import NotMedia
from media.mediainfo import CONTAINERS, MediaInfo

#: Still-image codecs: a "video" stream in one of these is a picture, not a video.
IMAGE_CODECS = frozenset({"png", "mjpeg", "gif", "bmp", "tiff", "webp", "svg", "jpeg2000"})
#: The demuxers FFmpeg may use: one name of each of :data:`CONTAINERS` is enough
#: (FFmpeg matches any name of a demuxer's list).
FORMAT_WHITELIST = ",".join(sorted(name.split(",")[0] for name in CONTAINERS))
#: Options for every FFmpeg that opens a library file (PyAV here; the ffmpeg command
#: line takes them as ``-protocol_whitelist file -format_whitelist ...``).
OPEN_OPTIONS = {"protocol_whitelist": "file", "format_whitelist": FORMAT_WHITELIST}
PROBE_TIMEOUT_S = 30.0


def probe_file(path: Path, *, timeout: float = PROBE_TIMEOUT_S) -> MediaInfo:
    """Probe ``path``.

    Raises:
      NotMedia: FFmpeg cannot open it within ``timeout`` seconds, it is not in an
        audio/video container, or it has neither an audio nor a moving-picture video
        stream.
    """
    with open_media(path, timeout=timeout) as container:
        videos = [s for s in container.streams.video if not is_still_image(s)]
        video = videos[0] if videos else None
        audio = container.streams.audio[0] if container.streams.audio else None
        return MediaInfo(
            duration=_duration(container),
            width=video.codec_context.width if video else None,
            height=video.codec_context.height if video else None,
            vcodec=video.codec_context.name if video else None,
            acodec=audio.codec_context.name if audio else None,
            container=container.format.name,
        )


def probe_details(path: Path, *, timeout: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
    """Everything the probe sees of ``path``, ready for JSON.

    ``{"container", "duration", "bit_rate", "size", "streams": [...]}``; each stream is
    ``{"index", "type", "codec", "profile", "pix_fmt", "width", "height", "fps",
    "bit_rate", "channels", "sample_rate", "language", "still_image"}`` with None where
    FFmpeg does not know (or the field is not of that stream's type). ``still_image``
    marks a video stream that is a picture (cover art, an image codec): see
    :func:`main_video`.

    Raises:
      NotMedia: as :func:`probe_file`.
    """
    with open_media(path, timeout=timeout) as container:
        return {
            "container": container.format.name,
            "duration": _duration(container),
            "bit_rate": container.bit_rate or None,
            "size": path.stat().st_size,
            "streams": [_stream_details(stream) for stream in container.streams],
        }


def main_video(details: dict[str, Any]) -> dict[str, Any] | None:
    """The video stream of a :func:`probe_details` that moves, if any."""
    for stream in details["streams"]:
        if stream["type"] == "video" and not stream.get("still_image"):
            return dict(stream)
    return None


def main_audio(details: dict[str, Any]) -> dict[str, Any] | None:
    """The first audio stream of a :func:`probe_details`, if any."""
    for stream in details["streams"]:
        if stream["type"] == "audio":
            return dict(stream)
    return None


@contextmanager
def open_media(path: Path, *, timeout: float) -> Iterator[av.container.InputContainer]:
    """``path`` open for reading, once it is known to be audio or video.

    PyAV's timeout restarts for each step of FFmpeg's opening (reading the header,
    then finding the streams' parameters), so each step gets half of ``timeout``:
    the whole opening ends within it. Later reads (demuxing) get ``timeout`` each.

    Raises:
      NotMedia: FFmpeg cannot open it in time, it is not in an audio/video container,
        or it has neither an audio nor a moving-picture video stream; also for an
        FFmpeg or OS error while the caller reads it.
    """
    try:
        with av.open(str(path), options=OPEN_OPTIONS, timeout=(timeout / 2, timeout)) as container:
            name = container.format.name
            if name not in CONTAINERS:
                raise NotMedia(f"{path.name} is {name!r}, not an audio or video container")
            moving = [s for s in container.streams.video if not is_still_image(s)]
            if not moving and not container.streams.audio:
                raise NotMedia(f"{path.name} has no audio or video stream")
            yield container
    except av.error.ExitError:
        raise NotMedia(f"{path.name} could not be read within {timeout:g} s") from None
    except (av.error.FFmpegError, OSError) as exc:
        # FFmpeg's reason without the file name it quotes: no server path in an error.
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise NotMedia(
            f"{path.name} is not an audio or video container FFmpeg can read: {reason}"
        ) from None


def is_still_image(stream: av.stream.Stream) -> bool:
    """A video stream that is a picture: an image codec, or attached cover art."""
    codec = stream.codec_context.name if stream.codec_context else None
    return codec in IMAGE_CODECS or bool(stream.disposition & av.stream.Disposition.attached_pic)


def _duration(container: av.container.InputContainer) -> float | None:
    return round(container.duration / av.time_base, 3) if container.duration else None


def _stream_details(stream: av.stream.Stream) -> dict[str, Any]:
    context: Any = stream.codec_context  # None for a stream FFmpeg has no decoder for
    video = stream.type == "video"
    audio = stream.type == "audio"
    rate = (stream.average_rate or stream.guessed_rate or stream.base_rate) if video else None
    language = stream.metadata.get("language")
    return {
        "index": stream.index,
        "type": stream.type,
        "codec": context.name if context else None,
        "profile": context.profile if context else None,
        "pix_fmt": context.pix_fmt if context and video else None,
        "width": (context.width or None) if context and video else None,
        "height": (context.height or None) if context and video else None,
        "fps": round(float(rate), 3) if rate else None,
        "bit_rate": (context.bit_rate or None) if context else None,
        "channels": (context.channels or None) if context and audio else None,
        "sample_rate": (context.sample_rate or None) if context and audio else None,
        "language": language if language and language != "und" else None,
        "still_image": is_still_image(stream) if video else False,
    }
