"""The library's mutating routes: ``DELETE /api/videos/{id}`` (a batch of one),
``POST /api/videos/bulk/{delete,analyze}`` and the ``better_version`` filter answer
bad input with a JSON 4xx, and only the admin token may delete."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import VIEWER_TOKEN
from tests.support import api_client, wait_for_job


def add_video(settings: Any, name: str, **analysis: Any) -> int:
    from actors import stores
    from db.models import Video

    path = settings.media_root / "Routes" / f"{name}.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    with stores.sessions().begin() as session:
        video = Video(
            title=name, source_url=f"https://example.com/{name}", extractor="test",
            extractor_id=name, path=f"Routes/{name}.mp4", size=1, **analysis,
        )  # fmt: skip
        session.add(video)
        session.flush()
        return int(video.id)


def test_deleting_one_video_is_a_job_and_an_unknown_one_is_a_404(
    api: httpx.Client, worker: Any, settings: Any
) -> None:
    video_id = add_video(settings, "one")
    response = api.delete(f"/api/videos/{video_id}")
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["kind"] == "deletes" and response.headers["location"] == f"/api/jobs/{job['id']}"
    done = wait_for_job(api, job["id"])
    assert done["status"] == "succeeded"
    assert (done["result"]["done"], done["result"]["failed_count"]) == (1, 0)
    assert not (settings.media_root / "Routes" / "one.mp4").exists()
    for gone in (video_id, 424242, 2**31, 10**30):
        missing = api.delete(f"/api/videos/{gone}")
        assert missing.status_code == 404, gone
        assert missing.json()["error"]["code"] == "not_found"
    assert api.delete("/api/videos/nope").status_code == 404


def test_only_the_admin_token_deletes(server: Any, settings: Any) -> None:
    video_id = add_video(settings, "kept")
    with api_client(server.url, VIEWER_TOKEN) as viewer:
        for response in (
            viewer.delete(f"/api/videos/{video_id}"),
            viewer.post("/api/videos/bulk/delete", json={"all": True}),
            viewer.post("/api/videos/bulk/analyze", json={"all": True}),
        ):
            assert response.status_code == 403
            assert response.json()["error"]["code"] == "forbidden"
        assert viewer.get(f"/api/videos/{video_id}").status_code == 200
        assert viewer.get("/api/jobs").json()["items"] == []
    assert (settings.media_root / "Routes" / "kept.mp4").exists()


@pytest.mark.parametrize(
    ("route", "subset", "other"),
    [("delete", None, "missing"), ("analyze", "unanalyzed", "missing")],
)
def test_a_bulk_request_names_its_videos_clearly(
    api: httpx.Client, route: str, subset: str | None, other: str
) -> None:
    path = f"/api/videos/bulk/{route}"
    bad: list[Any] = [
        {}, {"all": True, "ids": [1]}, {"ids": []}, {"ids": ["1"]}, {"ids": [0]},
        {"ids": [True]}, {"all": "yes"}, {"all": False}, {"ids": list(range(1, 10_002))},
        {"ids": [1], "extra": 1}, {other: True},
    ]  # fmt: skip
    for body in bad:
        response = api.post(path, json=body)
        assert response.status_code == 400, body
        assert response.json()["error"]["code"] in ("invalid_selection", "invalid_ids")
    assert api.post(path, content=b"[1, 2]").status_code == 400
    assert api.post(path, json={"ids": list(range(1, 10_001))}).status_code == 202  # the cap
    if subset is not None:
        nothing = api.post(path, json={subset: True})
        assert nothing.status_code == 202 and nothing.json()["status"] == "succeeded"


def test_better_version_is_true_or_false(api: httpx.Client, settings: Any) -> None:
    low = add_video(settings, "low", better_version=True, quality_label="good", quality_score=70)
    high = add_video(settings, "high", better_version=False, quality_label="excellent")
    add_video(settings, "never-analysed")
    for value in ("yes", "1", "TRUE", "", "true,false"):
        response = api.get("/api/videos", params={"better_version": value})
        assert response.status_code == 400, value
        assert response.json()["error"]["field"] == "better_version"

    def listed(**params: Any) -> list[int]:
        return [video["id"] for video in api.get("/api/videos", params=params).json()["items"]]

    assert listed(better_version="true") == [low]
    assert listed(better_version="false") == [high]
    assert listed(better_version="true", quality="excellent") == []
