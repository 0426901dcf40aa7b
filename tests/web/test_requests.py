"""The HTTP contract: JSON errors for bad input, auth, dedupe, 404s."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, VIEWER_TOKEN
from tests.support import api_client, live_server, wait_for_job


def assert_error(response: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] and error["message"]
    if field is not None:
        assert error["field"] == field
    return error


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/video.mp4",
        "javascript:alert(1)",
        "",
        "   ",
        "http://" + "a" * 10_000 + ".example/video.mp4",
        "http://",
        "http://no-such-host.invalid/video.mp4",
        123,
        None,
    ],
)
def test_bad_download_urls_get_a_400_naming_the_url_field(api: httpx.Client, url: Any) -> None:
    assert_error(api.post("/api/videos/download", json={"url": url}), 400, "url")


def test_a_missing_url_is_a_400(api: httpx.Client) -> None:
    assert_error(api.post("/api/videos/download", json={}), 400, "url")


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"url"', b"\xff\xfe"])
def test_a_body_that_is_not_a_json_object_is_a_400(api: httpx.Client, body: bytes) -> None:
    assert_error(api.post("/api/videos/download", content=body), 400)


@pytest.mark.parametrize(
    ("field", "value"),
    [("quality", "8k"), ("priority", "urgent"), ("force", "yes"), ("artist", ""), ("title", 5)],
)
def test_bad_optional_fields_are_a_400_naming_them(
    api: httpx.Client, media_server: Any, field: str, value: Any
) -> None:
    body = {"url": media_server.url("/media/x.mp4"), field: value}
    assert_error(api.post("/api/videos/download", json=body), 400, field)


def test_loopback_urls_are_refused_when_private_urls_are_not_allowed(
    settings: Any, media_server: Any
) -> None:
    from web.app import create_app

    strict = dataclasses.replace(settings, allow_private_urls=False)
    with live_server(create_app(strict)) as server, api_client(server.url, ADMIN_TOKEN) as api:
        for url in (
            media_server.url("/media/a.mp4"),
            "http://localhost/a.mp4",
            "http://[::1]/a.mp4",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.1/a.mp4",
        ):
            error = assert_error(api.post("/api/videos/download", json={"url": url}), 400, "url")
            assert "private" in error["message"]


def test_every_protected_route_needs_a_credential(server: Any) -> None:
    with api_client(server.url, None) as anonymous:
        for method, path in [
            ("GET", "/api/jobs"),
            ("GET", "/api/videos"),
            ("POST", "/api/videos/download"),
            ("GET", "/stream/1"),
        ]:
            response = anonymous.request(method, path)
            assert_error(response, 401)
            assert response.headers["www-authenticate"] == "Bearer"
    with api_client(server.url, "wrong-token-wrong-token") as wrong:
        assert_error(wrong.get("/api/jobs"), 401)
    with api_client(server.url, None) as anonymous:
        assert anonymous.get("/healthz").status_code == 200


def test_the_viewer_token_reads_but_cannot_mutate(server: Any, media_server: Any) -> None:
    with api_client(server.url, VIEWER_TOKEN) as viewer:
        assert viewer.get("/api/jobs").status_code == 200
        body = {"url": media_server.url("/media/v.mp4")}
        assert_error(viewer.post("/api/videos/download", json=body), 403)


def test_unknown_ids_are_404(api: httpx.Client) -> None:
    assert_error(api.get("/api/jobs/8f14e45f-ceea-467a-9a4f-1f7b2c4e0c11"), 404)
    assert_error(api.get("/api/jobs/not-a-uuid"), 404)
    assert_error(api.get("/api/jobs/8f14e45f-ceea-467a-9a4f-1f7b2c4e0c11/progress"), 404)
    assert_error(api.get("/api/videos/12345"), 404)
    assert_error(api.get("/api/videos/99999999999999999999"), 404)
    assert_error(api.get("/api/videos/abc"), 404)
    assert_error(api.get("/stream/12345"), 404)
    assert_error(api.get("/api/nothing-here"), 404)


def test_bad_list_parameters_are_400(api: httpx.Client) -> None:
    assert_error(api.get("/api/jobs", params={"limit": "0"}), 400, "limit")
    assert_error(api.get("/api/jobs", params={"limit": "lots"}), 400, "limit")
    assert_error(api.get("/api/jobs", params={"status": "sleeping"}), 400, "status")
    assert_error(api.get("/api/jobs", params={"cursor": "%%%"}), 400, "cursor")


def test_the_same_url_while_active_is_one_job(api: httpx.Client, media_server: Any) -> None:
    url = media_server.url("/media/twice.mp4")
    first = api.post("/api/videos/download", json={"url": url})
    second = api.post("/api/videos/download", json={"url": "  " + url + " "})
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert [job["id"] for job in api.get("/api/jobs").json()["items"]] == [first.json()["id"]]


def test_a_url_already_in_the_library_is_a_409_unless_forced(
    api: httpx.Client, worker: Any, media_server: Any, settings: Any
) -> None:
    url = media_server.url("/media/again.mp4")
    job = api.post("/api/videos/download", json={"url": url}).json()
    done = wait_for_job(api, job["id"])
    assert done["status"] == "succeeded"
    error = assert_error(api.post("/api/videos/download", json={"url": url}), 409, "url")
    assert error["video_id"] == done["result"]["video_id"]
    hits = media_server.hits["/media/again.mp4"]
    forced = api.post(
        "/api/videos/download", json={"url": url, "force": True, "title": "Again, renamed"}
    )
    assert forced.status_code == 202
    again = wait_for_job(api, forced.json()["id"])
    # Downloaded again; the same extractor id keeps one row, now with the new file.
    assert again["status"] == "succeeded"
    assert media_server.hits["/media/again.mp4"] > hits
    assert again["result"]["video_id"] == done["result"]["video_id"]
    videos = api.get("/api/videos").json()["items"]
    assert len(videos) == 1 and videos[0]["title"] == "Again, renamed"
    assert api.get(f"/stream/{videos[0]['id']}").status_code == 200
    files = sorted(p.name for p in settings.media_root.rglob("*") if p.is_file())
    assert files == ["Again, renamed [again].mp4"]


def test_job_lists_page_newest_first(api: httpx.Client, media_server: Any) -> None:
    ids = [
        api.post("/api/videos/download", json={"url": media_server.url(f"/media/p{n}.mp4")}).json()[
            "id"
        ]
        for n in range(5)
    ]
    first = api.get("/api/jobs", params={"limit": 2}).json()
    second = api.get("/api/jobs", params={"limit": 2, "cursor": first["next"]}).json()
    third = api.get("/api/jobs", params={"limit": 2, "cursor": second["next"]}).json()
    seen = [job["id"] for page in (first, second, third) for job in page["items"]]
    assert seen == ids[::-1]
    assert third["next"] is None
    queued = api.get("/api/jobs", params={"status": "queued", "kind": "download"}).json()
    assert len(queued["items"]) == 5


def test_progress_falls_back_to_the_database_when_redis_has_no_snapshot(
    api: httpx.Client, media_server: Any, redis_client: Any
) -> None:
    job = api.post("/api/videos/download", json={"url": media_server.url("/media/f.mp4")}).json()
    assert api.get(f"/api/jobs/{job['id']}/progress").json()["status"] == "queued"
    redis_client.flushall()
    progress = api.get(f"/api/jobs/{job['id']}/progress")
    assert progress.status_code == 200
    assert progress.json()["id"] == job["id"]
    assert progress.json()["status"] == "queued"


def test_health_and_readiness_answer(api: httpx.Client) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz").json()
    assert ready["status"] == "ok" and ready["checks"] == {"database": "ok", "redis": "ok"}
