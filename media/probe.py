"""Reads duration, size and codecs of a local media file with PyAV (FFmpeg's libraries),
and decides whether it is audio or video at all.

PyAV, not an ffprobe subprocess: ``imageio-ffmpeg`` bundles no ffprobe, and opening the
container in-process costs a few milliseconds instead of a process start.

FFmpeg opens far more than audio and video (images, SVG, SWF, playlists, subtitles),
so a file counts as media only in a container of :data:`CONTAINERS` with an audio or a
(moving-picture) video stream; that container, not the file's extension, gives the
content type it is served with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import av

from media.errors import NotMedia

#: FFmpeg demuxer name -> (content type with video, content type audio-only).
CONTAINERS: dict[str, tuple[str, str]] = {
    "mov,mp4,m4a,3gp,3g2,mj2": ("video/mp4", "audio/mp4"),
    "matroska,webm": ("video/x-matroska", "audio/x-matroska"),
    "flv": ("video/x-flv", "video/x-flv"),
    "mpegts": ("video/mp2t", "video/mp2t"),
    "avi": ("video/x-msvideo", "video/x-msvideo"),
    "ogg": ("video/ogg", "audio/ogg"),
    "mp3": ("audio/mpeg", "audio/mpeg"),
    "aac": ("audio/aac", "audio/aac"),
    "flac": ("audio/flac", "audio/flac"),
    "wav": ("audio/wav", "audio/wav"),
}
WEBM_CODECS = frozenset({"vp8", "vp9", "av1", "opus", "vorbis"})
#: Still-image codecs: a "video" stream in one of these is a picture, not a video.
IMAGE_CODECS = frozenset({"png", "mjpeg", "gif", "bmp", "tiff", "webp", "svg", "jpeg2000"})


class Probed(Protocol):
    """Anything that keeps a probe's fields (a library row)."""

    duration: float | None
    width: int | None
    height: int | None
    vcodec: str | None
    acodec: str | None
    container: str | None


@dataclass(frozen=True)
class MediaInfo:
    duration: float | None
    width: int | None
    height: int | None
    vcodec: str | None
    acodec: str | None
    container: str

    @classmethod
    def of(cls, probed: Probed) -> MediaInfo:
        """The probe a library row keeps."""
        return cls(
            duration=probed.duration,
            width=probed.width,
            height=probed.height,
            vcodec=probed.vcodec,
            acodec=probed.acodec,
            container=probed.container or "",
        )


def content_type(container: str | None, vcodec: str | None, acodec: str | None) -> str:
    """The content type to serve a probed file with (``application/octet-stream`` for a
    container we do not know: never a type a browser would render as a page)."""
    types = CONTAINERS.get(container or "")
    if types is None:
        return "application/octet-stream"
    if container == "matroska,webm" and {vcodec, acodec} - {None} <= WEBM_CODECS:
        return "video/webm" if vcodec else "audio/webm"
    return types[0] if vcodec else types[1]


def probe_file(path: Path) -> MediaInfo:
    """Probe ``path``.

    Raises:
      NotMedia: FFmpeg cannot open it, it is not in an audio/video container, or it has
        neither an audio nor a moving-picture video stream.
    """
    try:
        # protocol_whitelist: a crafted playlist/concat file must not reach the network.
        with av.open(str(path), options={"protocol_whitelist": "file"}, timeout=30) as container:
            name = container.format.name
            if name not in CONTAINERS:
                raise NotMedia(f"{path.name} is {name!r}, not an audio or video container")
            videos = [
                s
                for s in container.streams.video
                if s.codec_context.name not in IMAGE_CODECS
                and not s.disposition & av.stream.Disposition.attached_pic
            ]
            video = videos[0] if videos else None
            audio = container.streams.audio[0] if container.streams.audio else None
            if video is None and audio is None:
                raise NotMedia(f"{path.name} has no audio or video stream")
            duration = container.duration / av.time_base if container.duration else None
            return MediaInfo(
                duration=round(duration, 3) if duration else None,
                width=video.codec_context.width if video else None,
                height=video.codec_context.height if video else None,
                vcodec=video.codec_context.name if video else None,
                acodec=audio.codec_context.name if audio else None,
                container=name,
            )
    except (av.error.FFmpegError, OSError) as exc:
        raise NotMedia(f"{path.name} is not a media file FFmpeg can read: {exc}") from None
