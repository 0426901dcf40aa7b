"""Hostile files in the library, through the analysis: each ends as a failed item with a
readable reason within its timeout, the worker keeps serving, and a file that crashes
its decoder is stopped by the poison-pill caps (an item's two tries, a job's attempts)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.media import isolated_targets
from tests.support import make_video, wait_for, wait_for_job


def add_file(settings: Any, name: str, data: bytes) -> int:
    from actors import stores
    from db.models import Video

    path = settings.media_root / "Hostile" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    with stores.sessions().begin() as session:
        video = Video(
            title=name, source_url=f"https://example.com/{name}", extractor="test",
            extractor_id=name, path=f"Hostile/{name}", size=len(data),
        )  # fmt: skip
        session.add(video)
        session.flush()
        return int(video.id)


def corpus(tmp_path: Path) -> dict[str, bytes]:
    clip = make_video(tmp_path / "clip.mp4", seconds=1, size="160x90", bitrate="200k").read_bytes()
    jpeg = tmp_path / "exif.jpg"
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription: an EXIF block near its 64 KB limit
    Image.new("RGB", (64, 64), (9, 9, 9)).save(jpeg, exif=exif)
    return {
        "good.mp4": clip,
        "empty.mp4": b"",
        "truncated.mp4": clip[:300],  # cut inside its index (moov): nothing to read
        "cut.mp4": clip[: len(clip) // 3],  # cut in its data: what is there may be read
        "text.mp4": b"this is not a video\n" * 100,
        "playlist.mp4": b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n",
        "concat.mp4": b"ffconcat version 1.0\nfile '/etc/passwd'\n",
        "exif.mp4": jpeg.read_bytes(),
        "polyglot.mp4": b"GIF89a<html><script>alert(1)</script></html>" + clip,
    }


def test_a_hostile_library_fails_item_by_item_and_the_worker_serves_on(
    api: httpx.Client, worker: Any, settings: Any, tmp_path: Path, media_server: Any
) -> None:
    ids = {name: add_file(settings, name, data) for name, data in corpus(tmp_path).items()}
    started = time.monotonic()
    bulk = api.post("/api/videos/bulk/thumbnails", json={"all": True}).json()
    done = wait_for_job(api, bulk["id"], timeout=120)
    assert time.monotonic() - started < 60  # each within its timeout, not stuck
    summary = done["result"]
    reasons = {failure["id"]: failure["reason"] for failure in summary["failed"]}
    by_name = {name: reasons.get(video_id) for name, video_id in ids.items()}
    assert by_name.pop("good.mp4") is None
    by_name.pop("cut.mp4")  # a failure with its reason, or the readable part analysed
    assert summary["done"] + summary["failed_count"] == len(ids)
    # The polyglot opens as a GIF: a picture, not a video. Every other is refused too.
    assert all(by_name.values()), {name: reason for name, reason in by_name.items() if not reason}
    assert not any(str(settings.data_dir) in reason for reason in reasons.values())  # no paths
    assert summary["done"] in (1, 2)
    # The worker is fine: the next job runs as usual.
    after = api.post("/api/videos/download", json={"url": media_server.url("/media/after.mp4")})
    assert wait_for_job(api, after.json()["id"])["status"] == "succeeded"


def test_a_file_that_crashes_its_decoder_is_stopped_by_the_poison_pill_caps(
    api: httpx.Client, worker: Any, settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from actors import analyze
    from actors.analyze import analyze_later

    monkeypatch.setattr(analyze, "analyze", isolated_targets.crash_like_a_decoder)
    video_id = add_file(settings, "crash.mp4", corpus(tmp_path)["good.mp4"])
    bulk = api.post("/api/videos/bulk/thumbnails", json={"ids": [video_id]}).json()
    summary = wait_for_job(api, bulk["id"], timeout=60)["result"]
    (failure,) = summary["failed"]
    assert "ended without an answer" in failure["reason"] and "2 tries" in failure["reason"]
    part = api.get(f"/api/jobs?parent_id={bulk['id']}").json()["items"][0]
    assert part["status"] == "succeeded" and part["attempts"] == 1  # the item, not the part

    analyze_later(video_id, after_job="no-such-job")
    failed = wait_for(
        lambda: next(
            (j for j in api.get("/api/jobs?kind=analyze").json()["items"] if j["finished_at"]),
            None,
        ),
        timeout=60,
        what="the analysis to give up",
    )
    assert failed["status"] == "failed" and failed["attempts"] == settings.max_attempts
    assert failed["error"]["type"] == "process_died"
