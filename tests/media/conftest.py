"""Clips for the analysis tests, generated once per session from FFmpeg's lavfi
sources (each in well under a second)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import make_clip

SHARP = "testsrc2=size=640x360:rate=25"
#: 3 s black, 3 s blurred pattern, 4 s sharp fractal; 480 pixels wide.
BLACK_THEN_SHARP = (
    "color=c=black:s=480x270:r=25:d=3[black];"
    "testsrc2=s=480x270:r=25:d=3,boxblur=6[blurred];"
    "mandelbrot=s=480x270:r=25,trim=duration=4[sharp];"
    "[black][blurred][sharp]concat=n=3[out0]"
)


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def black_then_sharp(clips: Path) -> Path:
    return make_clip(clips / "black_then_sharp.mp4", video=BLACK_THEN_SHARP, seconds=10, gop=25)


@pytest.fixture(scope="session")
def sharp_clip(clips: Path) -> Path:
    return make_clip(clips / "sharp.mp4", video=SHARP, seconds=4, gop=25)


@pytest.fixture(scope="session")
def blurred_clip(clips: Path, sharp_clip: Path) -> Path:
    """``sharp_clip``, blurred."""
    video = f"movie={sharp_clip},boxblur=4"
    return make_clip(clips / "blurred.mp4", video=video, seconds=4, gop=25)


@pytest.fixture(scope="session")
def low_res_clip(clips: Path) -> Path:
    return make_clip(clips / "240p.mp4", video="testsrc2=size=426x240:rate=25", seconds=3)


@pytest.fixture(scope="session")
def silent_clip(clips: Path) -> Path:
    return make_clip(clips / "silent.mp4", video=SHARP, seconds=3, tone=False)


@pytest.fixture(scope="session")
def minute_clip(clips: Path) -> Path:
    """60 s with a keyframe every second (25 frames)."""
    return make_clip(
        clips / "minute.mp4", video="testsrc2=size=160x90:rate=25", seconds=60, gop=25, tone=False
    )


@pytest.fixture(scope="session")
def audio_only(clips: Path) -> Path:
    return make_clip(clips / "tone.m4a", video=None, seconds=3)
