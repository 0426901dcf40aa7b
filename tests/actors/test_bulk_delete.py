"""Bulk delete on a real worker: each video goes whole (file, thumbnails, stream-cache
entries, row) and only from under the media root; the library forgets it, so its URL
can be downloaded again; cancelling a running batch stops its parts between items."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import dramatiq
import httpx
import pytest
from sqlalchemy import select

from tests.support import wait_for, wait_for_job


def add_video(settings: Any, relative: str, data: bytes | None = b"not really a video") -> int:
    """A library row at ``relative``, with a file there unless ``data`` is None."""
    from actors import stores
    from db.models import Video

    if data is not None:
        path = settings.media_root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    with stores.sessions().begin() as session:
        video = Video(
            title=relative, source_url=f"https://example.com/{relative}", extractor="test",
            extractor_id=relative, path=relative, size=len(data or b""),
        )  # fmt: skip
        session.add(video)
        session.flush()
        return int(video.id)


def add_leftovers(settings: Any, video_id: int) -> list[Path]:
    """Thumbnails and stream-cache entries (a whole transcode, an HLS segment) of a
    video, as its analysis and its plays would leave them."""
    paths = [
        settings.thumbnails_dir / str(video_id) / "320.webp",
        settings.stream_cache_dir / "streams" / f"{video_id}-1234-5678" / "720p.mp4",
        settings.stream_cache_dir / "hls" / f"{video_id}-1234-5678" / "480p" / "0.ts",
    ]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return paths


def library_ids() -> set[int]:
    from actors import stores
    from db.models import Video

    with stores.sessions()() as session:
        return set(session.scalars(select(Video.id)))


def analysis_finished(api: httpx.Client, video_id: int) -> dict[str, Any] | None:
    for job in api.get("/api/jobs?kind=analyze").json()["items"]:
        if job["params"] == {"video_id": video_id} and job["finished_at"]:
            return dict(job)
    return None


def test_fifty_videos_go_whole_and_their_urls_can_be_downloaded_again(
    api: httpx.Client, worker: Any, media_server: Any, settings: Any
) -> None:
    url = media_server.url("/media/deleted-then-back.mp4")
    first = wait_for_job(api, api.post("/api/videos/download", json={"url": url}).json()["id"])
    downloaded = first["result"]["video_id"]
    wait_for(lambda: analysis_finished(api, downloaded), what="the download's analysis")
    video = api.get(f"/api/videos/{downloaded}").json()
    assert video["thumbnail_widths"]  # its analysis left thumbnails to delete
    ids = [downloaded]
    for n in range(49):
        # Three rows whose files are gone already: deleting them is no error.
        ids.append(add_video(settings, f"Bulk/clip-{n}.mp4", None if n in (5, 17, 33) else b"x"))
    leftovers = [path for video_id in ids for path in add_leftovers(settings, video_id)]
    files = [settings.media_root / video["path"]] + [
        settings.media_root / f"Bulk/clip-{n}.mp4" for n in range(49)
    ]
    kept = add_video(settings, "Kept/other.mp4")
    kept_leftovers = add_leftovers(settings, kept)
    # The same names outside the media root (beside it, and one folder further out).
    outside = [settings.data_dir / "Bulk" / "clip-0.mp4", settings.data_dir / video["path"]]
    for path in outside:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not the library's")

    response = api.post("/api/videos/bulk/delete", json={"ids": ids})
    assert response.status_code == 202, response.text
    parent = response.json()
    assert parent["kind"] == "deletes" and parent["status"] == "running"
    parts = api.get(f"/api/jobs?parent_id={parent['id']}").json()["items"]
    assert sorted(len(part["params"]["items"]) for part in parts) == [10, 20, 20]
    assert {(part["kind"], part["queue"]) for part in parts} == {("delete_chunk", "bulk")}
    done = wait_for_job(api, parent["id"])

    assert done["status"] == "succeeded", done
    assert done["result"] == {
        "done": 50, "failed": [], "failed_count": 0, "skipped": 0, "cancelled": 0,
    }  # fmt: skip
    assert library_ids() == {kept}
    assert not any(path.exists() for path in files + leftovers)
    assert not any((settings.thumbnails_dir / str(video_id)).exists() for video_id in ids)
    assert all(path.exists() for path in kept_leftovers + [settings.media_root / "Kept/other.mp4"])
    assert all(path.read_bytes() == b"not the library's" for path in outside)
    assert api.get(f"/api/videos/{downloaded}").status_code == 404

    again = api.post("/api/videos/download", json={"url": url})
    assert again.status_code == 202, again.text  # no longer "already in the library"
    redone = wait_for_job(api, again.json()["id"])
    assert redone["status"] == "succeeded" and "already_in_library" not in redone["result"]
    back = api.get(f"/api/videos/{redone['result']['video_id']}").json()
    assert back["source_url"] == url and (settings.media_root / back["path"]).is_file()

    # Asked again, the deleted ids no longer exist: nothing to do.
    twice = api.post("/api/videos/bulk/delete", json={"ids": ids[1:]}).json()
    assert twice["status"] == "succeeded" and twice["params"]["not_found"] == 49


def test_a_row_leading_out_of_the_media_root_fails_alone_and_keeps_everything(
    api: httpx.Client, worker: Any, settings: Any
) -> None:
    elsewhere = settings.data_dir / "elsewhere"
    elsewhere.mkdir(parents=True, exist_ok=True)
    secret = elsewhere / "secret.mp4"
    secret.write_bytes(b"not the library's")
    (settings.media_root / "Links").mkdir(parents=True)
    (settings.media_root / "Links" / "out.mp4").symlink_to(secret)
    (settings.media_root / "Linked").symlink_to(elsewhere)
    hostile = [
        add_video(settings, "../elsewhere/secret.mp4", None),
        add_video(settings, "Links/out.mp4", None),
        add_video(settings, "Linked/secret.mp4", None),
        add_video(settings, str(secret), None),
    ]
    for video_id in hostile:
        add_leftovers(settings, video_id)
    fine = add_video(settings, "Fine/song.mp4")

    bulk = api.post("/api/videos/bulk/delete", json={"all": True}).json()
    summary = wait_for_job(api, bulk["id"])["result"]
    assert (summary["done"], summary["failed_count"], summary["skipped"]) == (1, 4, 0), summary
    assert [failure["id"] for failure in summary["failed"]] == hostile
    for failure in summary["failed"]:
        assert "outside the media root" in failure["reason"], failure
        assert str(settings.data_dir) not in failure["reason"]  # a reason, not a path
    assert secret.read_bytes() == b"not the library's"
    assert (settings.media_root / "Links" / "out.mp4").is_symlink()
    # Nothing of a refused video is deleted: its row, thumbnails and cache entries stay.
    assert library_ids() == set(hostile)
    assert all((settings.thumbnails_dir / str(video_id)).is_dir() for video_id in hostile)
    assert not (settings.media_root / "Fine" / "song.mp4").exists()
    assert api.get(f"/api/videos/{fine}").status_code == 404


def test_a_part_sent_again_skips_the_videos_already_deleted(
    api: httpx.Client, worker: Any, settings: Any
) -> None:
    from actors import stores
    from db import job_service
    from db.models import JobKind
    from db.queues import Queue

    gone = add_video(settings, "Gone/a.mp4")
    here = add_video(settings, "Here/b.mp4")
    first = wait_for_job(api, api.delete(f"/api/videos/{gone}").json()["id"])
    assert first["result"]["done"] == 1
    # A part retried after its worker died mid-way meets the same ids again.
    with stores.engine().connect() as connection:
        parent, outbox = job_service.submit_batch(
            connection, kind=JobKind.deletes, queue=Queue.bulk, params={}, owner="admin",
            max_attempts=3, children=[(JobKind.delete_chunk, Queue.bulk, {"items": [gone, here]})],
        )  # fmt: skip
    stores.courier().deliver(outbox)
    summary = wait_for_job(api, parent["id"])["result"]
    assert (summary["done"], summary["skipped"], summary["failed_count"]) == (1, 1, 0)
    assert library_ids() == set()


def test_cancelling_a_running_bulk_delete_stops_its_parts_and_counts_exactly(
    api: httpx.Client, settings: Any, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from actors import broker, bulk_delete
    from actors.job_tracking import JobTracking

    ids = [add_video(settings, f"Many/{n}.mp4", None) for n in range(45)]  # parts: 20, 20, 5
    real = bulk_delete.delete_video
    deleted: list[int] = []
    holding = threading.Event()

    def third_item_waits_for_the_cancel(job: Any, video_id: int) -> bool:
        done = real(job, video_id)
        deleted.append(video_id)
        if len(deleted) == 3:
            holding.set()
            # Held until the part hears its stop flag: the cancel is seen mid-item.
            job.cancel_requested.wait(30)
        return done

    monkeypatch.setattr(bulk_delete, "delete_video", third_item_waits_for_the_cancel)
    bulk = api.post("/api/videos/bulk/delete", json={"all": True}).json()
    # One thread: one part runs, the other two wait their turn (prefetched or queued).
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        assert holding.wait(30), "no part started"
        assert api.post(f"/api/jobs/{bulk['id']}/cancel").status_code == 202
        done = wait_for_job(api, bulk["id"])
        worker.join()
        tracking = next(m for m in broker.middleware if isinstance(m, JobTracking))
        assert tracking.running() == []  # the worker is idle
        # Every message acked (a consumer acks after the work, on its own thread).
        wait_for(lambda: not redis_client.hlen("dramatiq:bulk.msgs"), what="the acks")
    finally:
        worker.stop()

    assert done["status"] == "cancelled", done
    summary = done["result"]
    assert (summary["done"], summary["cancelled"], summary["failed_count"]) == (3, 42, 0)
    assert library_ids() == set(ids) - set(deleted) and len(deleted) == 3
    parts = api.get(f"/api/jobs?parent_id={bulk['id']}").json()["items"]
    assert all(part["status"] == "cancelled" for part in parts)
    (ran,) = [part for part in parts if part["started_at"]]
    assert ran["attempts"] == 1 and ran["result"]["done"] == 3
    assert ran["result"]["cancelled"] == len(ran["params"]["items"]) - 3
    assert all(part["attempts"] == 0 for part in parts if part is not ran)  # never started
    assert api.get("/api/jobs?status=running").json()["items"] == []
