"""media.thumbnails: the choice of the frame and the atomic writing of the set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from media.keyframes import Keyframe
from media.thumbnails import THUMBNAIL_FORMATS, THUMBNAIL_WIDTHS, choose_frame, write_thumbnails

ALL_NAMES = {f"{w}.{ext}" for w in THUMBNAIL_WIDTHS for ext in THUMBNAIL_FORMATS}


def keyframe(time: float, picture: np.ndarray) -> Keyframe:
    return Keyframe(time=time, pts=int(time * 1000), picture=picture.astype(np.uint8))


def flat(level: int) -> np.ndarray:
    return np.full((90, 160, 3), level)


def pattern(cell: int, low: int = 40, high: int = 220) -> np.ndarray:
    """A checkerboard: the smaller its cells, the more edges (the sharper)."""
    y, x = np.indices((90, 160))
    board = ((y // cell + x // cell) % 2).astype(bool)
    return np.repeat(np.where(board, high, low)[:, :, None], 3, axis=2)


def test_black_and_blank_frames_go_and_the_sharpest_of_the_rest_wins() -> None:
    frames = [
        keyframe(1, flat(5)),  # black
        keyframe(2, flat(128)),  # blank: one flat grey
        keyframe(3, pattern(16)),
        keyframe(4, pattern(2)),  # the sharpest that shows something
        keyframe(5, pattern(8)),
    ]
    assert choose_frame(frames).time == 4


def test_when_everything_is_black_the_brightest_frame_wins() -> None:
    frames = [keyframe(1, flat(3)), keyframe(2, flat(12)), keyframe(3, flat(0))]
    assert choose_frame(frames).time == 2


def test_a_4k_picture_is_reduced_to_every_width_in_both_formats(tmp_path: Path) -> None:
    picture = Image.fromarray(np.tile(pattern(4), (24, 24, 1)).astype(np.uint8))  # 3840x2160

    assert write_thumbnails(picture, tmp_path) == [160, 320, 640, 1280]

    assert {p.name for p in tmp_path.iterdir()} == ALL_NAMES
    for name in ALL_NAMES:
        with Image.open(tmp_path / name) as image:
            width = int(name.split(".")[0])
            assert image.size == (width, width * 9 // 16)
            assert (tmp_path / name).stat().st_mode & 0o044 == 0o044  # the web reads them


def test_a_failure_midway_leaves_whole_files_and_no_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "640.jpg").write_bytes(b"the old thumbnail")
    real_save = Image.Image.save
    saves: list[int] = []

    def save_that_fails_on_the_fourth_file(image: Image.Image, file: Any, **options: Any) -> None:
        saves.append(1)
        if len(saves) == 4:  # 1280.webp, 1280.jpg, 640.webp, then 640.jpg
            file.write(b"\xff\xd8half a jpeg")
            raise OSError("disk full")
        real_save(image, file, **options)

    monkeypatch.setattr(Image.Image, "save", save_that_fails_on_the_fourth_file)
    with pytest.raises(OSError, match="disk full"):
        write_thumbnails(Image.new("RGB", (1920, 1080), "navy"), tmp_path)

    assert {p.name for p in tmp_path.iterdir()} == {"1280.webp", "1280.jpg", "640.webp", "640.jpg"}
    assert (tmp_path / "640.jpg").read_bytes() == b"the old thumbnail"
    for name in ("1280.webp", "1280.jpg", "640.webp"):
        with Image.open(tmp_path / name) as image:
            image.load()  # whole
