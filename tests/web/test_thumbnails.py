"""``/thumbnails/{video_id}/{width}.{webp,jpg}`` on a real server, and the library's
quality filter: what the analysis stored is served with validators and caching, auth as
for ``/stream``; anything else is a JSON 4xx."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.conftest import VIEWER_TOKEN
from tests.support import api_client

WIDTHS = [160, 320, 640]


def add_video(settings: Any, name: str, **analysis: Any) -> int:
    from actors import stores
    from db.models import Video

    with stores.sessions().begin() as session:
        video = Video(
            title=name, source_url=f"https://example.com/{name}", extractor="test",
            extractor_id=name, path=f"{name}.mp4", size=1, **analysis,
        )  # fmt: skip
        session.add(video)
        session.flush()
        return int(video.id)


def write_thumbnails(settings: Any, video_id: int, widths: list[int]) -> None:
    folder = settings.thumbnails_dir / str(video_id)
    folder.mkdir(parents=True, exist_ok=True)
    for width in widths:
        image = Image.new("RGB", (width, width * 9 // 16), (200, 80, 40))
        image.save(folder / f"{width}.webp")
        image.save(folder / f"{width}.jpg")


@pytest.fixture
def analysed(settings: Any) -> int:
    quality = {"label": "good", "score": 72, "better_version": False}
    video_id = add_video(
        settings, "analysed", thumbnail_widths=WIDTHS, quality=quality,
        quality_label="good", quality_score=72, better_version=False,
    )  # fmt: skip
    write_thumbnails(settings, video_id, WIDTHS)
    return video_id


def test_every_stored_size_is_served_with_its_type_validators_and_caching(
    api: httpx.Client, analysed: int
) -> None:
    video = api.get(f"/api/videos/{analysed}").json()
    assert video["thumbnail_url"] == f"/thumbnails/{analysed}/320.webp"
    assert video["thumbnail_widths"] == WIDTHS and video["quality"]["label"] == "good"
    for width in WIDTHS:
        for ext, kind in (("webp", "image/webp"), ("jpg", "image/jpeg")):
            response = api.get(f"/thumbnails/{analysed}/{width}.{ext}")
            assert response.status_code == 200
            assert response.headers["content-type"] == kind
            assert response.headers["cache-control"] == "private, max-age=86400"
            assert response.headers["x-content-type-options"] == "nosniff"
            assert Image.open(io.BytesIO(response.content)).width == width
            again = api.get(
                f"/thumbnails/{analysed}/{width}.{ext}",
                headers={"If-None-Match": response.headers["etag"]},
            )
            assert again.status_code == 304 and again.content == b""
            since = {"If-Modified-Since": response.headers["last-modified"]}
            assert (
                api.get(f"/thumbnails/{analysed}/{width}.{ext}", headers=since).status_code == 304
            )
    assert api.head(f"/thumbnails/{analysed}/160.jpg").status_code == 200


def test_thumbnails_need_a_credential_and_a_viewer_may_see_them(server: Any, analysed: int) -> None:
    with api_client(server.url, None) as anonymous:
        assert anonymous.get(f"/thumbnails/{analysed}/320.webp").status_code == 401
    with api_client(server.url, VIEWER_TOKEN) as viewer:
        assert viewer.get(f"/thumbnails/{analysed}/320.webp").status_code == 200


@pytest.mark.parametrize(
    "name",
    ["1280.webp", "320.png", "320.webp.jpg", "..%2F..%2Fapp.db", "320", "99999.jpg", "-1.jpg"],
)
def test_a_size_or_name_it_does_not_have_is_a_json_404(
    api: httpx.Client, analysed: int, name: str
) -> None:
    response = api.get(f"/thumbnails/{analysed}/{name}")
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"


def test_a_video_not_analysed_yet_names_the_job_that_will_make_its_thumbnails(
    api: httpx.Client, settings: Any
) -> None:
    from actors import stores
    from db.models import Job

    video_id = add_video(settings, "fresh")
    assert api.get(f"/api/videos/{video_id}").json()["thumbnail_url"] is None
    waiting = api.get(f"/thumbnails/{video_id}/320.webp")
    assert waiting.status_code == 404
    assert waiting.json()["error"]["code"] == "not_ready"
    with stores.sessions().begin() as session:
        job = Job(
            kind="analyze", queue="media", params={"video_id": video_id},
            dedupe_key=f"analyze:video:{video_id}",
        )  # fmt: skip
        session.add(job)
        session.flush()
        job_id = job.id
    error = api.get(f"/thumbnails/{video_id}/320.webp").json()["error"]
    assert error["job_id"] == job_id and "under way" in error["message"]
    assert api.get("/thumbnails/999999/320.webp").json()["error"]["code"] == "not_found"
    assert api.get("/thumbnails/99999999999/320.webp").status_code == 404


def test_the_library_filters_on_the_quality_label_and_score(
    api: httpx.Client, settings: Any
) -> None:
    def grade(name: str, label: str, score: int) -> int:
        return add_video(settings, name, quality_label=label, quality_score=score)

    good, fair, poor = grade("g", "good", 75), grade("f", "fair", 55), grade("p", "poor", 20)
    unrated = add_video(settings, "u")

    def ids(query: str) -> list[int]:
        response = api.get(f"/api/videos{query}")
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert ids("") == [unrated, poor, fair, good]
    assert ids("?quality=good") == [good]
    assert ids("?min_score=50") == [fair, good]
    assert ids("?quality=fair&min_score=60") == []
    for bad in ("?quality=GOOD!", "?quality=" + "a" * 17, "?min_score=101", "?min_score=-1",
                "?min_score=x", "?min_score=%C2%B2", "?cursor=99999999999999"):  # fmt: skip
        response = api.get(f"/api/videos{bad}")
        assert response.status_code == 400, bad
        assert response.json()["error"]["field"] in ("quality", "min_score", "cursor")
