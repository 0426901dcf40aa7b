"""Reads duration, size and codecs of a local media file with PyAV (FFmpeg's libraries).

PyAV, not an ffprobe subprocess: ``imageio-ffmpeg`` bundles no ffprobe, and opening the
container in-process costs a few milliseconds instead of a process start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av

from media.errors import NotMedia


@dataclass(frozen=True)
class MediaInfo:
    duration: float | None
    width: int | None
    height: int | None
    vcodec: str | None
    acodec: str | None
    container: str


def probe_file(path: Path) -> MediaInfo:
    """Probe ``path``.

    Raises:
      NotMedia: FFmpeg cannot open it, or it has neither audio nor video.
    """
    try:
        # protocol_whitelist: a crafted playlist/concat file must not reach the network.
        with av.open(str(path), options={"protocol_whitelist": "file"}, timeout=30) as container:
            video = container.streams.video[0] if container.streams.video else None
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
                container=container.format.name,
            )
    except (av.error.FFmpegError, OSError) as exc:
        raise NotMedia(f"{path.name} is not a media file FFmpeg can read: {exc}") from None
