"""Reads duration, size and codecs of a local media file with PyAV (FFmpeg's libraries),
and decides whether it is audio or video at all.

PyAV, not an ffprobe subprocess: ``imageio-ffmpeg`` bundles no ffprobe, and opening the
container in-process costs a few milliseconds instead of a process start.

A file counts as media only in a container of :data:`media.mediainfo.CONTAINERS` with
an audio or a (moving-picture) video stream.
"""

from __future__ import annotations

from pathlib import Path

import av

from media.errors import NotMedia
from media.mediainfo import CONTAINERS, MediaInfo

#: Still-image codecs: a "video" stream in one of these is a picture, not a video.
IMAGE_CODECS = frozenset({"png", "mjpeg", "gif", "bmp", "tiff", "webp", "svg", "jpeg2000"})


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
