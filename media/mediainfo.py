"""What we know of a local media file once it is probed (:mod:`media.probe`), and the
content type it is served with.

FFmpeg opens far more than audio and video (images, SVG, SWF, playlists, subtitles),
so a file counts as media only in a container of :data:`CONTAINERS`; that container,
not the file's extension, gives the content type. Apart from the probe itself, so that
the web (which serves files and plans streams from what a row keeps) never loads PyAV.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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
