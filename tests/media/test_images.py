"""An artist's image set from a large photo: every width in every format asked for, each
size made from the next larger one and still as sharp as one made from the decoded
picture directly, a JPEG decoded at a reduced scale that is never below the widest
size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from media.images import ARTIST_WIDTHS, OUTPUTS, make_image_set


def photo(path: Path, size: tuple[int, int] = (2560, 2048)) -> Path:
    """A JPEG with fine detail everywhere (noise over a gradient), where a poor reduction
    would show."""
    rng = np.random.default_rng(7)
    gradient = np.linspace(0, 200, size[0], dtype=np.float32)[None, :, None]
    noise = rng.integers(0, 56, (size[1], size[0], 3)).astype(np.float32)
    Image.fromarray((gradient + noise).astype(np.uint8)).save(path, quality=92)
    return path


def psnr(a: Image.Image, b: Image.Image) -> float:
    difference = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return float(10 * np.log10(255**2 / max(np.mean(difference**2), 1e-9)))


def test_a_large_photo_becomes_every_width_in_every_format(tmp_path: Path) -> None:
    made = make_image_set(str(photo(tmp_path / "photo.jpg")), str(tmp_path / "set"))

    assert made["widths"] == sorted(ARTIST_WIDTHS)
    assert made["formats"] == list(OUTPUTS)
    # Decoded at half scale (1280x1024): at a quarter (640x512) it would be too small.
    assert (made["width"], made["height"]) == (1280, 1024)
    for width in ARTIST_WIDTHS:
        for ext in OUTPUTS:
            with Image.open(tmp_path / "set" / f"{width}.{ext}") as written:
                assert written.size == (width, round(width * 4 / 5))


def test_each_size_made_from_the_next_is_as_good_as_one_made_directly(tmp_path: Path) -> None:
    source = photo(tmp_path / "photo.jpg")
    make_image_set(str(source), str(tmp_path / "set"), outputs=("webp",))

    assert sorted(p.name for p in (tmp_path / "set").iterdir()) == sorted(
        f"{width}.webp" for width in ARTIST_WIDTHS
    )
    with Image.open(source) as opened:
        opened.draft("RGB", (max(ARTIST_WIDTHS),) * 2)
        decoded = opened.convert("RGB")
    for width in ARTIST_WIDTHS:
        direct = decoded.resize((width, round(width * 4 / 5)), Image.Resampling.LANCZOS)
        with Image.open(tmp_path / "set" / f"{width}.webp") as written:
            chained = written.convert("RGB")
        # Lossy WebP of a chained reduction, still close to the direct reduction.
        assert psnr(direct, chained) > 30, width
