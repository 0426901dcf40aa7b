"""How good a library file is: resolution class, bits per pixel, sharpness, black,
blank and frozen pictures, audio and its loudness, folded into a 0-100 ``score``, a
``label``, and whether a better version may exist.

Everything comes from the probe (:func:`media.probe.probe_details`), the sampled
keyframes (:mod:`media.keyframes`, measured by :mod:`media.frame_scores`) and the
loudness (:func:`measure_audio`); nothing here decodes the file again.

Resolution is classed by the lines of the 16:9 frame the picture fills,
``lines = max(short side, long side * 9 / 16)``, so that a 1920x800 film crop or a
1080x1920 portrait video is FHD: SD below 720, HD from 720, FHD from 1080, UHD from 2160.

Sharpness is the median variance of the Laplacian of the samples that show something
(neither black nor blank), each measured at about 640x360 pixels whatever the source's
size (never upscaled): at one scale, a 4K source is not sharper for its pixel count.

The score of a video, each part between 0 and 1::

    R = min(1, lines / 1080)                        resolution
    B = min(1, bits_per_pixel * efficiency / 0.1)   bit rate; efficiency 1 for H.264,
                                                    1.5 for HEVC and VP9, 2 for AV1,
                                                    0.6 for older codecs; 0.5 if unknown
    S = clamp(log(sharpness / 10) / log(50), 0, 1)  10 -> 0, 500 -> 1; 0 if none
    A = 1 if audio with loudness >= -40 LUFS, 0.5 if its loudness is unknown, else 0
    score = 100 * (0.35 R + 0.20 B + 0.35 S + 0.10 A)
            * (1 - black_fraction / 2) * (0.5 if frozen)
    and at most 10 if blank (no sample shows anything).

The score of an audio-only file: ``100 * (0.6 Q + 0.4 A)``, with Q = 1 for a lossless
codec, else ``min(1, bit rate / 256 kbit/s)``, 0.5 if unknown.

Labels: ``excellent`` from 80, ``good`` from 60, ``fair`` from 40, else ``poor``. A
better version may exist below 720 lines, under a score of 50, for a frozen picture (a
still image over a song) or with no video at all (this is a music-video library).
"""

from __future__ import annotations

import math
import re
import signal
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from media.errors import MediaError, NotMedia
from media.ffmpeg import run_to_end
from media.frame_scores import same_picture
from media.keyframes import Keyframe
from media.probe import FORMAT_WHITELIST, PROBE_TIMEOUT_S, main_audio, main_video, open_media

#: (lines from which, class), highest first.
RESOLUTION_CLASSES = ((2160, "UHD"), (1080, "FHD"), (720, "HD"), (0, "SD"))
#: (score from which, label), highest first.
LABELS = ((80, "excellent"), (60, "good"), (40, "fair"), (0, "poor"))
GOOD_LINES = 1080
BETTER_VERSION_BELOW_LINES = 720
BETTER_VERSION_BELOW_SCORE = 50
#: Bits per pixel at which an H.264 picture has all it needs.
GOOD_BITS_PER_PIXEL = 0.1
CODEC_EFFICIENCY = {"h264": 1.0, "hevc": 1.5, "vp9": 1.5, "av1": 2.0}
OLD_CODEC_EFFICIENCY = 0.6
#: Laplacian variances (at the analysis scale) scored 0 and 1.
BLURRED_VARIANCE, SHARP_VARIANCE = 10.0, 500.0
#: Integrated loudness below which the audio is as good as silent.
AUDIBLE_LUFS = -40.0
GOOD_AUDIO_BIT_RATE = 256_000
LOSSLESS_AUDIO = frozenset({"flac", "alac", "wavpack", "ape", "tta", "truehd", "mlp"})
#: At most this much audio is measured: integrated loudness over ten minutes says it.
AUDIO_SECONDS = 600.0
MIN_FROZEN_SAMPLES = 3

_LOUDNESS = re.compile(r"Summary:.*?\bI:\s+(-?[\d.]+) LUFS.*?\bLRA:\s+([\d.]+) LU", re.S)


def assess(
    probe: dict[str, Any], frames: Sequence[Keyframe], audio: dict[str, Any] | None
) -> dict[str, Any]:
    """The quality of a probed file from its sampled keyframes and its loudness
    (:func:`measure_audio`; None without audio). Video fields are None for an
    audio-only file; the formula is the module's."""
    video = main_video(probe)
    has_audio = main_audio(probe) is not None
    loudness = audio.get("loudness") if audio else None
    audible = _audible(has_audio, loudness)
    if video is None:
        score = 100 * (0.6 * _audio_quality(main_audio(probe)) + 0.4 * audible)
        return _result(score=score, audio=has_audio, loudness=loudness, better_version=True)
    lines = _lines(video)
    bits_per_pixel = _bits_per_pixel(probe, video)
    black = [f.score.black for f in frames]
    showing = [f for f in frames if not f.score.black and not f.score.blank]
    sharpness = statistics.median(f.score.sharpness for f in showing) if showing else None
    black_fraction = sum(black) / len(black) if black else 0.0
    blank = bool(frames) and not showing
    frozen = len(showing) >= MIN_FROZEN_SAMPLES and all(
        same_picture(a.picture, b.picture) for a, b in zip(showing, showing[1:], strict=False)
    )
    score = 100 * (
        0.35 * min(1.0, lines / GOOD_LINES)
        + 0.20 * _bit_rate_quality(bits_per_pixel, video["codec"])
        + 0.35 * _sharpness_quality(sharpness)
        + 0.10 * audible
    )
    score *= (1 - black_fraction / 2) * (0.5 if frozen else 1.0)
    if blank:
        score = min(score, 10.0)
    return _result(
        score=score,
        resolution_class=next(name for floor, name in RESOLUTION_CLASSES if lines >= floor),
        bits_per_pixel=round(bits_per_pixel, 4) if bits_per_pixel is not None else None,
        sharpness=round(sharpness, 1) if sharpness is not None else None,
        black_fraction=round(black_fraction, 3),
        blank=blank,
        frozen=frozen,
        audio=has_audio,
        loudness=loudness,
        better_version=lines < BETTER_VERSION_BELOW_LINES or frozen,
    )


def measure_audio(
    path: Path, ffmpeg: str, *, timeout: float, seconds: float = AUDIO_SECONDS
) -> dict[str, Any] | None:
    """The loudness of the first audio stream of ``path`` (its first ``seconds``), by
    FFmpeg's EBU R128 scanner: ``{"loudness": LUFS, "loudness_range": LU}`` (None where
    the audio is too short to say); None without an audio stream. FFmpeg reads only
    that local file (protocol and demuxer whitelists) and is killed past ``timeout``.

    Raises:
      NotMedia: ``path`` is not audio or video, or FFmpeg cannot decode its audio.
      MediaError: FFmpeg did not finish within ``timeout`` (``timeout``, retryable).
    """
    with open_media(path, timeout=min(timeout, PROBE_TIMEOUT_S)) as container:
        if not container.streams.audio:
            return None
    argv = [
        ffmpeg, "-hide_banner", "-nostdin", "-nostats",
        "-protocol_whitelist", "file", "-format_whitelist", FORMAT_WHITELIST,
        "-i", f"file:{path}",
        "-map", "0:a:0", "-vn", "-sn", "-dn", "-t", f"{seconds:g}",
        "-af", "ebur128=framelog=verbose", "-f", "null", "-",
    ]  # fmt: skip
    code, stderr = run_to_end(argv, timeout=timeout)
    if code == -signal.SIGKILL:
        raise MediaError(
            f"measuring the loudness of {path.name} took more than {timeout:g} s",
            code="timeout",
            retryable=True,
        )
    if code != 0:
        reason = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit code {code}"
        raise NotMedia(f"the audio of {path.name} cannot be decoded: {reason}")
    found = _LOUDNESS.search(stderr)
    if found is None:
        return {"loudness": None, "loudness_range": None}
    return {"loudness": float(found[1]), "loudness_range": float(found[2])}


def _result(
    *,
    score: float,
    audio: bool,
    loudness: float | None,
    better_version: bool,
    resolution_class: str | None = None,
    bits_per_pixel: float | None = None,
    sharpness: float | None = None,
    black_fraction: float | None = None,
    blank: bool | None = None,
    frozen: bool | None = None,
) -> dict[str, Any]:
    score = round(max(0.0, min(100.0, score)), 1)
    return {
        "resolution_class": resolution_class,
        "bits_per_pixel": bits_per_pixel,
        "sharpness": sharpness,
        "black_fraction": black_fraction,
        "blank": blank,
        "frozen": frozen,
        "audio": audio,
        "loudness": loudness,
        "score": score,
        "label": next(label for floor, label in LABELS if score >= floor),
        "better_version": better_version or score < BETTER_VERSION_BELOW_SCORE,
    }


def _lines(video: dict[str, Any]) -> float:
    width, height = video.get("width") or 0, video.get("height") or 0
    return max(min(width, height), max(width, height) * 9 / 16)


def _bits_per_pixel(probe: dict[str, Any], video: dict[str, Any]) -> float | None:
    """The video's bit rate per pixel and frame; without a bit rate of its own (as in
    most Matroska files), the file's less that of its other streams."""
    width, height, fps = video.get("width"), video.get("height"), video.get("fps")
    if not (width and height and fps):
        return None
    bit_rate = video.get("bit_rate")
    if not bit_rate:
        total = probe.get("bit_rate")
        if not total and probe.get("duration") and probe.get("size"):
            total = probe["size"] * 8 / probe["duration"]
        others = sum(
            s.get("bit_rate") or 0 for s in probe["streams"] if s["index"] != video["index"]
        )
        bit_rate = total - others if total and total > others else None
    return bit_rate / (width * height * fps) if bit_rate else None


def _bit_rate_quality(bits_per_pixel: float | None, codec: str | None) -> float:
    if bits_per_pixel is None:
        return 0.5
    efficiency = CODEC_EFFICIENCY.get(codec or "", OLD_CODEC_EFFICIENCY)
    return min(1.0, bits_per_pixel * efficiency / GOOD_BITS_PER_PIXEL)


def _sharpness_quality(sharpness: float | None) -> float:
    if not sharpness or sharpness <= BLURRED_VARIANCE:
        return 0.0
    position = math.log(sharpness / BLURRED_VARIANCE) / math.log(SHARP_VARIANCE / BLURRED_VARIANCE)
    return min(1.0, position)


def _audible(has_audio: bool, loudness: float | None) -> float:
    if not has_audio:
        return 0.0
    if loudness is None:
        return 0.5
    return 1.0 if loudness >= AUDIBLE_LUFS else 0.0


def _audio_quality(audio: dict[str, Any] | None) -> float:
    if audio is None:
        return 0.0
    if audio["codec"] in LOSSLESS_AUDIO or (audio["codec"] or "").startswith("pcm_"):
        return 1.0
    bit_rate = audio.get("bit_rate")
    return min(1.0, bit_rate / GOOD_AUDIO_BIT_RATE) if bit_rate else 0.5
