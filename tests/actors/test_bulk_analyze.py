"""The quality sweep: ``POST /api/videos/bulk/analyze`` analyses the videos it names on a
real worker, and the library then lists the ones worth a better version."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx

from tests.support import library_row, make_clip, wait_for_job


def test_a_quality_sweep_flags_a_240p_clip_as_worth_a_better_version(
    api: httpx.Client, worker: Any, settings: Any, tmp_path: Path
) -> None:
    ids = {}
    for name, size in (("low", "426x240"), ("hd", "1280x720")):
        clip = make_clip(tmp_path / f"{name}.mp4", video=f"testsrc2=size={size}:rate=25", seconds=1)
        (settings.media_root / "Sweep").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(clip, settings.media_root / "Sweep" / f"{name}.mp4")
        ids[name] = library_row(settings, f"Sweep/{name}.mp4")
    assert api.get("/api/videos", params={"better_version": "true"}).json()["items"] == []

    response = api.post("/api/videos/bulk/analyze", json={"unanalyzed": True})
    assert response.status_code == 202, response.text
    sweep = response.json()
    assert sweep["kind"] == "analyses" and sweep["params"]["selection"] == "unanalyzed"
    (part,) = api.get(f"/api/jobs?parent_id={sweep['id']}").json()["items"]
    assert (part["kind"], part["queue"], part["params"]["items"]) == (
        "thumbnail_chunk", "media", sorted(ids.values()),
    )  # fmt: skip
    done = wait_for_job(api, sweep["id"])
    assert done["status"] == "succeeded"
    assert (done["result"]["done"], done["result"]["failed_count"]) == (2, 0), done["result"]

    low = api.get(f"/api/videos/{ids['low']}").json()
    hd = api.get(f"/api/videos/{ids['hd']}").json()
    assert low["quality"]["better_version"] is True and low["analyzed_at"]
    assert (
        hd["quality"]["better_version"] is False
        and hd["quality"]["score"] > low["quality"]["score"]
    )
    flagged = api.get("/api/videos", params={"better_version": "true"}).json()["items"]
    assert [video["id"] for video in flagged] == [ids["low"]]
    label = low["quality"]["label"]
    assert ids["low"] in [v["id"] for v in api.get(f"/api/videos?quality={label}").json()["items"]]

    again = api.post("/api/videos/bulk/analyze", json={"unanalyzed": True}).json()
    assert again["status"] == "succeeded" and again["params"]["items"] == 0  # all analysed
