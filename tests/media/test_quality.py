"""media.quality.assess on probes and pictures made up for each verdict."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from media.keyframes import Keyframe
from media.quality import assess


def probe(width: int | None, height: int | None, *, audio: bool = True) -> dict[str, Any]:
    streams: list[dict[str, Any]] = []
    if width and height:
        streams.append(
            {"index": 0, "type": "video", "codec": "h264", "width": width, "height": height,
             "fps": 25.0, "bit_rate": int(0.1 * width * height * 25), "still_image": False}
        )  # fmt: skip
    if audio:
        streams.append(
            {"index": len(streams), "type": "audio", "codec": "aac", "bit_rate": 192_000}
        )
    return {"container": "mov,mp4,m4a,3gp,3g2,mj2", "duration": 200.0, "bit_rate": None,
            "size": 1, "streams": streams}  # fmt: skip


def frames(*pictures: np.ndarray) -> list[Keyframe]:
    return [
        Keyframe(time=float(n), pts=n, picture=p.astype(np.uint8)) for n, p in enumerate(pictures)
    ]


def noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (360, 640, 3))


LOUD = {"loudness": -14.0, "loudness_range": 6.0}


@pytest.mark.parametrize(
    ("size", "expected"),
    [((640, 480), "SD"), ((1280, 720), "HD"), ((1920, 1080), "FHD"), ((1920, 800), "FHD"),
     ((1080, 1920), "FHD"), ((1440, 1080), "FHD"), ((3840, 2160), "UHD"), ((3840, 1600), "UHD")],
)  # fmt: skip
def test_resolution_classes_go_by_the_lines_of_a_16_9_frame(
    size: tuple[int, int], expected: str
) -> None:
    assert assess(probe(*size), frames(noise(1)), LOUD)["resolution_class"] == expected


def test_a_sharp_full_hd_video_is_excellent() -> None:
    quality = assess(probe(1920, 1080), frames(noise(1), noise(2), noise(3)), LOUD)

    assert quality["label"] == "excellent" and not quality["better_version"]
    assert quality["black_fraction"] == 0 and not quality["frozen"] and not quality["blank"]
    assert quality["bits_per_pixel"] == pytest.approx(0.1)


def test_the_same_picture_throughout_is_frozen_and_scores_half() -> None:
    moving = assess(probe(1920, 1080), frames(noise(1), noise(2), noise(3)), LOUD)
    still = assess(probe(1920, 1080), frames(noise(1), noise(1), noise(1)), LOUD)

    assert still["frozen"] and still["score"] == pytest.approx(moving["score"] / 2, abs=0.1)
    assert still["better_version"]


def test_nothing_but_black_and_flat_pictures_is_blank_and_poor() -> None:
    black, grey = np.zeros((360, 640, 3)), np.full((360, 640, 3), 128)
    quality = assess(probe(1920, 1080), frames(black, grey, black, grey), LOUD)

    assert quality["blank"] and quality["black_fraction"] == 0.5
    assert quality["score"] <= 10 and quality["label"] == "poor" and quality["better_version"]


def test_an_audio_only_file_has_no_video_verdicts_and_may_have_a_video() -> None:
    quality = assess(probe(None, None), [], LOUD)

    assert quality["resolution_class"] is None and quality["bits_per_pixel"] is None
    assert quality["audio"] and quality["loudness"] == -14.0
    assert quality["better_version"]


def test_a_matroska_video_without_its_own_bit_rate_gets_the_files_less_its_audio() -> None:
    details = probe(1280, 720) | {"bit_rate": 2_496_000}
    details["streams"][0]["bit_rate"] = None

    quality = assess(details, frames(noise(1)), LOUD)

    assert quality["bits_per_pixel"] == pytest.approx(2_304_000 / (1280 * 720 * 25), abs=1e-4)
