"""The stream cache's janitor and warmer, run as the scheduler would run them."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import av
import pytest

from media.stream_cache import partial_name, source_key, stream_entry
from tests.support import library_row, make_video


def library_video(settings: Any, relative: str) -> tuple[int, str]:
    """A small H.264/AAC file in the library, with its row; its id and cache key."""
    path = settings.media_root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    make_video(path, seconds=2, size="320x240", bitrate="300k")
    video_id = library_row(settings, relative)
    return video_id, source_key(video_id, path.stat())


def cache_file(path: Path, size: int, age_s: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


@pytest.fixture
def capped_settings(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    import actors.stream_cache

    capped = dataclasses.replace(settings, stream_cache_max_bytes=1_500)
    monkeypatch.setattr(actors.stream_cache, "get_settings", lambda: capped)
    return capped


def test_the_janitor_evicts_the_least_recently_used_beyond_the_cap_and_what_is_gone(
    capped_settings: Any,
) -> None:
    from actors.stream_cache import sweep_stream_cache

    root = capped_settings.stream_cache_dir
    _video_id, key = library_video(capped_settings, "a/kept.mp4")
    newest = cache_file(stream_entry(root, key, "360p", "webm"), 1_000, age_s=10)
    older = cache_file(stream_entry(root, key, "720p", "webm"), 1_000, age_s=100)
    segment = cache_file(root / "hls" / key / "360p" / "3.ts", 400, age_s=50)
    # A deleted video's entries, and ones of a file that was replaced since.
    gone = cache_file(stream_entry(root, "99-1-1", "360p", "mp4"), 10, age_s=1)
    replaced = cache_file(root / "hls" / f"{key}0" / "360p" / "0.ts", 10, age_s=1)
    abandoned = cache_file(partial_name(newest), 10, age_s=7_200)
    writing = cache_file(partial_name(older), 10, age_s=5)

    sweep_stream_cache()

    assert newest.is_file() and segment.is_file() and writing.is_file()  # 1,400 bytes <= cap
    for path in (older, gone, replaced, abandoned):
        assert not path.exists(), path
    assert not (root / "streams" / "99-1-1").exists()  # empty folders go too


def test_the_warmer_transcodes_the_most_watched_into_the_cache(
    settings: Any, redis_client: Any
) -> None:
    from actors.stream_cache import warm_stream_cache
    from db import live

    video_id, key = library_video(settings, "a/warm.mp4")
    redis_client.zadd(
        live.PLAYS_KEY,
        {
            f"{video_id}:source:webm": 5,  # a transcode: warmed
            f"{video_id}:source:mp4": 9,  # H.264/AAC as mp4 is a remux: nothing to warm
            "424242:360p:webm": 7,  # no such video: forgotten
            "junk": 3,
        },
    )
    warm_stream_cache()
    entry = stream_entry(settings.stream_cache_dir, key, "source", "webm")
    with av.open(str(entry)) as warmed:
        assert warmed.streams.video[0].codec_context.name == "vp9"
    assert not stream_entry(settings.stream_cache_dir, key, "source", "mp4").exists()
    assert set(redis_client.zrange(live.PLAYS_KEY, 0, -1)) == {
        f"{video_id}:source:webm",
        f"{video_id}:source:mp4",
    }
    assert not redis_client.zcard(live.TRANSCODE_SLOTS_KEY)  # its slot was given back
    assert [p.name for p in entry.parent.iterdir()] == ["source.webm"]
