"""A picture found by enrichment is a URL from outside: fetched at most
``max_bytes``, checked from its header as an upload is, written whole or not at all,
and, in a child with the egress guard, never fetched from a loopback address."""

from __future__ import annotations

import io
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from PIL import Image

from media.egress import install_egress_guard
from media.errors import MediaError
from media.images import fetch_picture
from media.isolation import run_isolated
from tests.fake_musicbrainz import FakeMusicBrainz
from tests.web.test_artists import png_claiming


def png(size: tuple[int, int] = (300, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def pictures() -> Iterator[FakeMusicBrainz]:
    server = FakeMusicBrainz().start()
    server.images.update(
        {"red.png": png(), "text.png": b"not a picture at all\n" * 10,
         "bomb.png": png_claiming(60_000, 60_000)}
    )  # fmt: skip
    yield server
    server.stop()


def fetch(url: str, dest: Path, max_bytes: int = 1_000_000) -> dict:
    return fetch_picture(url, str(dest), max_bytes=max_bytes, user_agent="vidfleet/test")


def test_a_picture_is_fetched_checked_and_written_whole(
    pictures: FakeMusicBrainz, tmp_path: Path
) -> None:
    dest = tmp_path / "artist" / "upload-1"
    facts = fetch(pictures.url + "/images/red.png", dest)
    assert facts == {"format": "PNG", "width": 300, "height": 200, "bytes": len(png())}
    assert dest.read_bytes() == png() and [p.name for p in dest.parent.iterdir()] == ["upload-1"]


@pytest.mark.parametrize(
    ("path", "max_bytes", "code"),
    [
        ("/images/red.png", 100, "too_large"),
        ("/images/text.png", 1_000_000, "invalid_image"),
        ("/images/bomb.png", 1_000_000, "image_too_large"),
        ("/images/none.png", 1_000_000, "image_unavailable"),
    ],
)
def test_what_is_not_a_sane_picture_is_refused_and_nothing_written(
    pictures: FakeMusicBrainz, tmp_path: Path, path: str, max_bytes: int, code: str
) -> None:
    with pytest.raises(MediaError) as refused:
        fetch(pictures.url + path, tmp_path / "upload-1", max_bytes)
    assert refused.value.code == code and not refused.value.retryable
    assert list(tmp_path.iterdir()) == []


def test_a_url_that_is_not_http_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MediaError) as refused:
        fetch("file:///etc/passwd", tmp_path / "upload-1")
    assert refused.value.code == "bad_url"


def test_the_guarded_child_never_fetches_from_loopback(
    pictures: FakeMusicBrainz, tmp_path: Path
) -> None:
    dest = tmp_path / "upload-1"
    with pytest.raises(MediaError) as refused:
        run_isolated(
            fetch_picture,
            kwargs={"url": pictures.url + "/images/red.png", "dest": str(dest),
                    "max_bytes": 1_000_000, "user_agent": "vidfleet/test"},
            setup=partial(install_egress_guard, allow_private=False),
        )  # fmt: skip
    assert refused.value.code == "private_address" and not refused.value.retryable
    assert pictures.arrivals == [] and not dest.exists()
