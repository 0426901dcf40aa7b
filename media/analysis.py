"""A library file analysed in one call: its probe, its quality and its thumbnails, the
work of an ``analyze`` job (run in a process of its own by :mod:`media.isolation`, so
arguments and result are plain, picklable data).

Audio-only files are analysed too: no thumbnails, and a quality without its video
fields. Audio that cannot be measured (undecodable, too slow) leaves the loudness
unknown instead of failing the thumbnails.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from media.errors import MediaError
from media.keyframes import Keyframe, full_picture, sample_keyframes
from media.probe import main_audio, main_video, probe_details
from media.quality import assess, measure_audio
from media.thumbnails import choose_frame, write_thumbnails

logger = logging.getLogger(__name__)

ANALYSIS_TIMEOUT_S = 120.0


def analyze(
    path: str,
    thumbnails_dir: str,
    ffmpeg_location: str,
    *,
    previous_probe: dict[str, Any] | None = None,
    timeout: float = ANALYSIS_TIMEOUT_S,
) -> dict[str, Any]:
    """Probe, assess and make the thumbnails of the file at ``path``.

    ``{"probe": probe_details(...), "quality": assess(...), "thumbnails": {"widths":
    [160, 320, 640, 1280], "frame_time": seconds}}``; for an audio-only file
    ``{"widths": [], "frame_time": None}``. The thumbnails are written into
    ``thumbnails_dir`` (created if need be) as ``<width>.webp`` and ``<width>.jpg``.

    Parameters:
      ffmpeg_location: the ffmpeg binary that measures the loudness.
      previous_probe: this file's :func:`media.probe.probe_details`, still valid: it is
        used instead of probing again.
      timeout: seconds for each of its steps (the probe, the sampling, the loudness,
        the chosen picture's decoding); the whole takes at most about four times this.

    Raises:
      NotMedia: the file is not audio or video, its video cannot be decoded, or (an
        audio-only file) its audio cannot.
      MediaError: measuring an audio-only file's loudness timed out (retryable).
    """
    source = Path(path)
    started = time.monotonic()
    probe = previous_probe or probe_details(source, timeout=timeout)
    frames: list[Keyframe] = []
    if main_video(probe) is not None:
        frames = sample_keyframes(source, timeout=timeout).frames
    audio = None
    if main_audio(probe) is not None:
        try:
            audio = measure_audio(source, ffmpeg_location, timeout=timeout)
        except MediaError as exc:
            if not frames:
                raise  # audio-only: the audio is all there is
            # A video with a broken or slow soundtrack still gets its thumbnails.
            logger.warning("the loudness of %s is unknown: %s", source.name, exc.message)
            audio = {"loudness": None, "loudness_range": None}
    thumbnails: dict[str, Any] = {"widths": [], "frame_time": None}
    if frames:
        chosen = choose_frame(frames)
        picture = full_picture(source, chosen, timeout=timeout)
        widths = write_thumbnails(picture, Path(thumbnails_dir))
        thumbnails = {"widths": widths, "frame_time": chosen.time}
    logger.debug("analysed %s in %.2f s", source.name, time.monotonic() - started)
    return {"probe": probe, "quality": assess(probe, frames, audio), "thumbnails": thumbnails}
