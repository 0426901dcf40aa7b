"""Bulk thumbnails across the fleet: a parent job whose parts (about 20 videos each) run
on every worker process; the parent's progress only grows and ends at 1, and its
summary counts a bad file as a failed item, with its reason, not a failed part."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx

from tests.support import make_video, procfile_workers, wait_for


def library_of(settings: Any, tmp_path: Path, count: int, bad: int) -> list[int]:
    """``count`` videos in the library, the ``bad``-th of which is text named .mp4."""
    from actors import stores
    from db.models import Video

    clip = make_video(tmp_path / "clip.mp4", seconds=1, size="160x90", bitrate="200k")
    ids = []
    with stores.sessions().begin() as session:
        for n in range(count):
            relative = f"Bulk/clip-{n}.mp4"
            path = settings.media_root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if n == bad:
                path.write_text("this is not a video\n" * 50)
            else:
                shutil.copyfile(clip, path)
            video = Video(
                title=f"clip {n}", source_url=f"https://example.com/{n}", extractor="test",
                extractor_id=str(n), path=relative, size=path.stat().st_size,
            )  # fmt: skip
            session.add(video)
            session.flush()
            ids.append(int(video.id))
    return ids


def test_bulk_thumbnails_spread_over_two_worker_processes_and_sum_up(
    api: httpx.Client, settings: Any, tmp_path: Path
) -> None:
    ids = library_of(settings, tmp_path, 60, bad=37)
    bulk = api.post("/api/videos/bulk/thumbnails", json={"all": True})
    assert bulk.status_code == 202, bulk.text
    parent = bulk.json()
    assert parent["status"] == "running" and parent["progress"] == 0
    children = api.get(f"/api/jobs?parent_id={parent['id']}").json()["items"]
    assert sorted(len(c["params"]["items"]) for c in children) == [20, 20, 20]
    assert {c["queue"] for c in children} == {"media"}

    seen: list[float] = []
    with procfile_workers(
        tmp_path / "workers.log",
        VIDFLEET_WORKER_PROCESSES="2",
        VIDFLEET_WORKER_THREADS="1",  # one part at a time each: the parts must spread
    ):

        def finished() -> dict[str, Any] | None:
            job = api.get(f"/api/jobs/{parent['id']}").json()
            seen.append(job["progress"])
            return job if job["finished_at"] else None

        done = wait_for(finished, timeout=120, interval=0.05, what="the bulk run to finish")
    assert seen == sorted(seen) and seen[-1] == 1.0, seen  # only ever grows
    assert done["status"] == "succeeded", done
    summary = done["result"]
    assert (summary["done"], summary["failed_count"], summary["skipped"]) == (59, 1, 0), summary
    (failure,) = summary["failed"]
    assert failure["id"] == ids[37] and "not" in failure["reason"]
    parts = api.get(f"/api/jobs?parent_id={parent['id']}").json()["items"]
    assert all(part["status"] == "succeeded" for part in parts)  # the bad file failed only itself
    assert len({part["result"]["worker"] for part in parts}) == 2  # both processes did parts
    video = api.get(f"/api/videos/{ids[0]}").json()
    assert video["thumbnail_widths"] and api.get(video["thumbnail_url"]).status_code == 200


def test_a_bulk_request_names_its_videos_clearly(api: httpx.Client, settings: Any) -> None:
    for body in ({}, {"all": True, "missing": True}, {"ids": []}, {"ids": ["1"]},
                 {"ids": [0]}, {"all": "yes"}, {"ids": list(range(1, 10_002))},
                 {"ids": [1], "extra": 1}):  # fmt: skip
        response = api.post("/api/videos/bulk/thumbnails", json=body)
        assert response.status_code == 400, body
        assert response.json()["error"]["code"] in ("invalid_selection", "invalid_ids")
    nothing = api.post("/api/videos/bulk/thumbnails", json={"missing": True})
    assert nothing.status_code == 202
    assert nothing.json()["status"] == "succeeded" and nothing.json()["result"]["done"] == 0
    unknown = api.post("/api/videos/bulk/thumbnails", json={"ids": [424242]}).json()
    assert unknown["params"]["not_found"] == 1 and unknown["status"] == "succeeded"
