"""Functions the isolation tests run in a child process (they must be importable)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

from media.errors import NotMedia
from media.ffmpeg import ffmpeg_path


def run_ffmpeg_forever(on_started: Callable[[int], None]) -> None:
    """An endless FFmpeg step: real-time encoding of a test source to nowhere."""
    ffmpeg = subprocess.Popen(
        [ffmpeg_path(), "-hide_banner", "-loglevel", "quiet", "-re", "-f", "lavfi",
         "-i", "testsrc=rate=25", "-f", "null", "-"],
    )  # fmt: skip
    on_started(ffmpeg.pid)
    ffmpeg.wait()


def ask_and_add(a: int, b: int, double: Callable[[int], int]) -> int:
    return double(a) + b


def refuse() -> None:
    raise NotMedia("not a video at all")


def die() -> None:
    os._exit(9)
