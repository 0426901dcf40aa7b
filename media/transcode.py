"""What FFmpeg must do to stream a library file as a browser asked: copy its streams into
another container (remux) or re-encode them (transcode), and the command line for it.

Pure: a request and a probe in, a :class:`StreamPlan` out; ``web/`` runs the process.
Remuxing is chosen whenever the file's codecs suit the asked container and no smaller
picture is asked: it costs a fraction of a core and starts at once. Transcoding never
upscales: a ``quality`` above the source's height gives the source's height.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from media.errors import BadRequest
from media.mediainfo import MediaInfo

QUALITIES: dict[str, int | None] = {
    "360p": 360,
    "480p": 480,
    "720p": 720,
    "1080p": 1080,
    "source": None,
}
#: Codecs a container carries that browsers play: (video, audio).
FORMAT_CODECS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "mp4": (frozenset({"h264"}), frozenset({"aac", "mp3"})),
    "webm": (frozenset({"vp9", "vp8", "av1"}), frozenset({"opus", "vorbis"})),
}
CONTENT_TYPES = {"mp4": "video/mp4", "webm": "video/webm"}
#: A fragmented MP4 a browser can play while it is still being written.
MP4_FLAGS = "frag_keyframe+empty_moov+default_base_moof"
KEYFRAME_INTERVAL_S = 2
#: Video bit rate by output height (kbit/s), for the transcodes.
BITRATES = {360: 800, 480: 1_400, 720: 2_800, 1080: 5_000}


@dataclass(frozen=True)
class StreamRequest:
    """What the client asked for: ``quality`` (a key of :data:`QUALITIES`), ``format``
    (``mp4`` or ``webm``) and ``start`` (seconds into the file)."""

    quality: str = "source"
    format: str = "mp4"
    start: float = 0.0


@dataclass(frozen=True)
class StreamPlan:
    mode: str  # "remux" or "transcode"
    format: str
    height: int | None  # the output's height; None: the source's, unchanged
    start: float
    content_type: str


def parse_request(quality: str | None, format: str | None, start: str | None) -> StreamRequest:
    """The request's query values, checked.

    Raises:
      BadRequest: an unknown quality or format, or a start that is not a finite number of
        seconds ≥ 0; its ``field`` names the parameter.
    """
    quality = quality or "source"
    if quality not in QUALITIES:
        raise BadRequest(f"quality must be one of {', '.join(QUALITIES)}", field="quality")
    format = format or "mp4"
    if format not in FORMAT_CODECS:
        raise BadRequest(f"format must be one of {', '.join(FORMAT_CODECS)}", field="format")
    seconds = 0.0
    if start not in (None, ""):
        try:
            seconds = float(start)
        except ValueError:
            raise BadRequest("start must be a number of seconds", field="start") from None
        if not math.isfinite(seconds) or seconds < 0:
            raise BadRequest("start must be a number of seconds, 0 or more", field="start")
    return StreamRequest(quality=quality, format=format, start=seconds)


def plan_stream(info: MediaInfo, request: StreamRequest) -> StreamPlan:
    """Remux when the codecs suit ``request.format`` and no smaller picture is asked,
    else transcode to the asked height (never above the source's).

    Raises:
      BadRequest: ``start`` is at or past the end of the file.
    """
    if info.duration is not None and request.start >= info.duration:
        raise BadRequest(f"start must be before the end ({info.duration:.3f} s)", field="start")
    wanted = QUALITIES[request.quality]
    height = info.height
    if wanted is not None and height is not None and wanted < height:
        height = wanted
    video_codecs, audio_codecs = FORMAT_CODECS[request.format]
    codecs_fit = (info.vcodec is None or info.vcodec in video_codecs) and (
        info.acodec is None or info.acodec in audio_codecs
    )
    smaller = height is not None and info.height is not None and height < info.height
    mode = "remux" if codecs_fit and not smaller else "transcode"
    return StreamPlan(
        mode=mode,
        format=request.format,
        height=height if smaller else None,
        start=request.start,
        content_type=CONTENT_TYPES[request.format],
    )


def ffmpeg_argv(
    ffmpeg: str, source: Path, plan: StreamPlan, info: MediaInfo, output: str = "pipe:1"
) -> list[str]:
    """The command that writes ``plan``'s stream to ``output`` (stdout unless a file is
    given). Only a local file is read: ``file:`` and ``-protocol_whitelist file,pipe``,
    so a crafted file cannot make FFmpeg open anything else."""
    argv = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin"]
    argv += ["-protocol_whitelist", "file,pipe"]
    if plan.start:
        argv += ["-ss", f"{plan.start:.3f}"]  # on the input: seeks, does not decode up to it
    argv += ["-i", f"file:{source}", "-map", "0:v:0?", "-map", "0:a:0?", "-sn", "-dn"]
    if plan.mode == "remux":
        argv += ["-c", "copy"]
    elif plan.format == "mp4":
        argv += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
        argv += ["-c:a", "aac", "-b:a", "128k", "-ac", "2"]
    else:
        argv += ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-row-mt", "1"]
        argv += ["-c:a", "libopus", "-b:a", "96k", "-ac", "2"]
    if plan.mode == "transcode" and info.vcodec is not None:
        # A keyframe every 2 s: a fragmented MP4 goes out a keyframe interval at a time,
        # and x264's default (up to 10 s) would hold a player's first picture that long.
        argv += ["-force_key_frames", f"expr:gte(t,n_forced*{KEYFRAME_INTERVAL_S})"]
        height = plan.height or info.height or 720
        argv += ["-b:v", f"{BITRATES.get(height, _bitrate(height))}k"]
        if plan.height is not None:
            argv += ["-vf", f"scale=-2:{plan.height}"]
    if plan.format == "mp4":
        argv += ["-f", "mp4", "-movflags", MP4_FLAGS]
    else:
        argv += ["-f", "webm", "-live", "1"]
    return [*argv, output]


def _bitrate(height: int) -> int:
    """About 0.1 bit per pixel at 30 fps, for heights the table does not have."""
    return max(300, int(height * height * 16 / 9 * 30 * 0.1 / 1000))


HLS_SEGMENT_S = 6.0
HLS_CONTENT_TYPES = {"m3u8": "application/vnd.apple.mpegurl", "ts": "video/mp2t"}


def hls_segments(duration: float, length: float = HLS_SEGMENT_S) -> list[tuple[float, float]]:
    """``(start, length)`` of each segment of a file ``duration`` seconds long: fixed
    lengths (the last one shorter), each transcoded with a keyframe at its start."""
    count = max(1, math.ceil(duration / length - 1e-6))
    return [(n * length, min(length, duration - n * length)) for n in range(count)]


def hls_playlist(duration: float, length: float = HLS_SEGMENT_S) -> str:
    """A VOD media playlist of :func:`hls_segments`, segments named ``<n>.ts``."""
    segments = hls_segments(duration, length)
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{math.ceil(max(seconds for _, seconds in segments))}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
    ]
    for n, (_start, seconds) in enumerate(segments):
        lines += [f"#EXTINF:{seconds:.3f},", f"{n}.ts"]
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def hls_segment_argv(
    ffmpeg: str, source: Path, info: MediaInfo, quality: str, n: int, target: Path
) -> list[str]:
    """The command that makes segment ``n`` at ``quality`` into ``target`` (MPEG-TS,
    H.264/AAC): input seeking to its start, so no earlier segment is needed, and its
    timestamps where the playlist puts it, so segments play one after the other.

    Raises:
      BadRequest: ``n`` is not a segment of the file.
    """
    if info.duration is None:
        raise BadRequest("the file's duration is unknown", field="segment")
    segments = hls_segments(info.duration)
    if not 0 <= n < len(segments):
        raise BadRequest(f"segment must be 0 to {len(segments) - 1}", field="segment")
    start, seconds = segments[n]
    wanted = QUALITIES[quality]
    height = info.height if wanted is None or info.height is None else min(wanted, info.height)
    argv = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    argv += ["-protocol_whitelist", "file,pipe", "-ss", f"{start:.3f}", "-t", f"{seconds:.3f}"]
    argv += ["-i", f"file:{source}", "-map", "0:v:0?", "-map", "0:a:0?", "-sn", "-dn"]
    if info.vcodec is not None:
        argv += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
        argv += ["-force_key_frames", "expr:eq(n,0)", "-sc_threshold", "0"]
        if height is not None:
            argv += [
                "-vf",
                f"scale=-2:{height}",
                "-b:v",
                f"{BITRATES.get(height, _bitrate(height))}k",
            ]
    argv += ["-c:a", "aac", "-b:a", "128k", "-ac", "2"]
    argv += ["-output_ts_offset", f"{start:.3f}", "-muxdelay", "0", "-f", "mpegts", str(target)]
    return argv
