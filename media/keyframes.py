"""Pictures sampled from a video without decoding it: about ten keyframes spread over
its duration, each found by a seek and decoded alone.

The decoder skips every frame that is not a keyframe (``skip_frame = "NONKEY"``), and
after each seek (to the first keyframe at or after the position) only the first
keyframe packet is decoded, then the decoder is drained: one decoded picture per
position, whatever the file's length. The pictures are kept at the analysis scale of
:mod:`media.frame_scores` (about 640x360, converted by one reused swscale context), so
memory stays small for a 4K source; the one picture a thumbnail is made from is
decoded again at full size by :func:`full_picture`.

A sample's time is in seconds from the start of its stream; its ``pts`` is where
:func:`full_picture` finds it again.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from itertools import islice
from pathlib import Path

import av
import av.container
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image

from media.errors import NotMedia
from media.frame_scores import ANALYSIS_PIXELS, FrameScore, Picture, score_frame
from media.probe import PROBE_TIMEOUT_S, is_still_image, open_media

SAMPLE_COUNT = 10
#: Packets read after a seek while looking for a keyframe (a 20 s GOP at 30 fps).
MAX_PACKETS_AFTER_SEEK = 600


@dataclass(frozen=True, eq=False)
class Keyframe:
    time: float  # seconds from the start of the stream
    pts: int  # in the stream's time base
    picture: Picture  # RGB, at the analysis scale, upright and at its display aspect

    @cached_property
    def score(self) -> FrameScore:
        return score_frame(self.picture)


@dataclass(frozen=True)
class KeyframeSamples:
    frames: list[Keyframe] = field(default_factory=list)
    decoded: int = 0  # pictures the decoder made: about one per position


def sample_keyframes(
    path: Path, *, count: int = SAMPLE_COUNT, timeout: float = PROBE_TIMEOUT_S
) -> KeyframeSamples:
    """Up to ``count`` distinct keyframes spread over the video of ``path`` (none for an
    audio-only file). Past ``timeout`` seconds it stops with the keyframes it has; a
    position whose keyframe cannot be decoded is left out.

    Raises:
      NotMedia: ``path`` cannot be opened as audio or video, or it has a video of
        which no keyframe can be decoded.
    """
    deadline = time.monotonic() + timeout
    with open_media(path, timeout=timeout) as container:
        stream = _moving_video(container)
        if stream is None:
            return KeyframeSamples()
        _decode_keyframes_only(stream)
        reformatter = VideoReformatter()
        start = stream.start_time or 0
        time_base = _time_base(stream)
        duration = _duration(container, stream)
        positions = [duration * (n + 0.5) / count for n in range(count)] if duration else [0.0]
        frames: list[Keyframe] = []
        seen: set[int] = set()
        decoded = 0
        for position in positions:
            if time.monotonic() > deadline:
                break
            target = start + int(position / time_base)
            try:
                found = _decode_keyframe(container, stream, target, forward=True)
            except av.error.FFmpegError:
                continue  # a damaged part of the file: the other positions may do
            decoded += found[1]
            frame = found[0]
            if frame is None or frame.pts is None or frame.pts in seen:
                continue  # a long GOP: the next keyframe is one we have
            seen.add(frame.pts)
            frames.append(
                Keyframe(
                    time=round(float((frame.pts - start) * time_base), 3),
                    pts=frame.pts,
                    picture=_analysis_picture(frame, stream, reformatter),
                )
            )
        if not frames and time.monotonic() <= deadline:
            raise NotMedia(f"{path.name}: no keyframe of its video can be decoded")
        return KeyframeSamples(frames=frames, decoded=decoded)


def full_picture(
    path: Path, keyframe: Keyframe, *, timeout: float = PROBE_TIMEOUT_S
) -> Image.Image:
    """The picture of ``keyframe`` at the source's full size (upright, at its display
    aspect), as an RGB Pillow image.

    Raises:
      NotMedia: ``path`` cannot be opened, or that keyframe cannot be decoded again.
    """
    with open_media(path, timeout=timeout) as container:
        stream = _moving_video(container)
        if stream is None:
            raise NotMedia(f"{path.name} has no video")
        _decode_keyframes_only(stream)
        frame, _decoded = _decode_keyframe(container, stream, keyframe.pts, forward=False)
        if frame is None:
            raise NotMedia(f"{path.name}: the keyframe at {keyframe.time} s cannot be decoded")
        width, height = _display_size(frame, stream)
        return Image.fromarray(_rgb(frame, width, height, "LANCZOS", VideoReformatter()))


def _moving_video(container: av.container.InputContainer) -> av.VideoStream | None:
    videos = [s for s in container.streams.video if not is_still_image(s)]
    return videos[0] if videos else None


def _decode_keyframes_only(stream: av.VideoStream) -> None:
    stream.codec_context.skip_frame = "NONKEY"
    # One core per analysis (a keyframe decoded alone gains little from threads);
    # batches use the cores by running several analyses at once.
    stream.codec_context.thread_count = 1


def _decode_keyframe(
    container: av.container.InputContainer, stream: av.VideoStream, target: int, *, forward: bool
) -> tuple[av.VideoFrame | None, int]:
    """The first keyframe at or after (``forward``) or at or before ``target`` (in the
    stream's time base), and how many pictures the decoder made to get it."""
    try:
        container.seek(target, stream=stream, backward=not forward)
    except av.error.FFmpegError:
        if not forward:
            raise
        container.seek(target, stream=stream)  # past the last keyframe: the one before
    for packet in islice(container.demux(stream), MAX_PACKETS_AFTER_SEEK):
        if not packet.is_keyframe or packet.size == 0:
            continue
        # A decoder with a reordering delay holds its picture back until it is
        # drained; the seek that comes next resets it.
        frames = stream.codec_context.decode(packet) or stream.codec_context.decode(None)
        return (frames[0] if frames else None), len(frames)
    return None, 0


def _time_base(stream: av.VideoStream) -> Fraction:
    if stream.time_base is None:
        raise NotMedia("its video stream has no time base")
    return stream.time_base


def _duration(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base if container.duration else None


def _display_size(frame: av.VideoFrame, stream: av.VideoStream) -> tuple[int, int]:
    """The frame's size once its pixels are square (an anamorphic DVD's are not)."""
    aspect = stream.sample_aspect_ratio
    ratio = float(aspect) if aspect else 1.0
    return max(2, round(frame.width * ratio)), frame.height


def _analysis_picture(
    frame: av.VideoFrame, stream: av.VideoStream, reformatter: VideoReformatter
) -> Picture:
    width, height = _display_size(frame, stream)
    scale = min(1.0, math.sqrt(ANALYSIS_PIXELS / (width * height)))
    return _rgb(
        frame, max(2, round(width * scale)), max(2, round(height * scale)), "AREA", reformatter
    )


def _rgb(
    frame: av.VideoFrame,
    width: int,
    height: int,
    interpolation: str,
    reformatter: VideoReformatter,
) -> Picture:
    """The frame in RGB at ``width`` x ``height``, turned as its display matrix says (a
    phone's portrait video)."""
    converted = reformatter.reformat(
        frame, width=width, height=height, format="rgb24", interpolation=interpolation
    )
    picture = np.asarray(converted.to_ndarray(), dtype=np.uint8)
    turns = round(frame.rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(picture, turns)) if turns else picture
