"""Resource caps on jobs: queued-plus-running jobs in total and per credential are
bounded, and the answer past the cap is a 429 with ``Retry-After`` and the JSON error."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx

from tests.conftest import ADMIN_TOKEN
from tests.support import api_client, live_server


def capped_api(settings: Any, **caps: int) -> Any:
    from web.app import create_app

    return live_server(create_app(dataclasses.replace(settings, **caps)))


def download(api: httpx.Client, media_server: Any, name: str) -> httpx.Response:
    return api.post("/api/videos/download", json={"url": media_server.url(f"/media/{name}.mp4")})


def assert_capped(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "too_many_jobs"
    assert int(response.headers["Retry-After"]) > 0


def test_a_credential_may_have_only_so_many_active_jobs(settings: Any, media_server: Any) -> None:
    with (
        capped_api(settings, max_active_jobs_per_credential=2) as server,
        api_client(server.url, ADMIN_TOKEN) as api,
    ):
        assert [download(api, media_server, f"c{n}").status_code for n in range(2)] == [202, 202]
        assert_capped(download(api, media_server, "c2"))
        # Asking again for work already queued is not a new job: still answered.
        assert download(api, media_server, "c0").status_code == 200
        first = api.get("/api/jobs").json()["items"][-1]
        assert api.post(f"/api/jobs/{first['id']}/cancel").status_code == 202
        assert download(api, media_server, "c3").status_code == 202  # room again
        # A retry is a new job too.
        assert_capped(api.post(f"/api/jobs/{first['id']}/retry"))
        assert len(api.get("/api/jobs", params={"status": "queued"}).json()["items"]) == 2


def test_the_fleet_may_have_only_so_many_active_jobs(settings: Any, media_server: Any) -> None:
    with (
        capped_api(settings, max_active_jobs=3) as server,
        api_client(server.url, ADMIN_TOKEN) as api,
    ):
        assert [download(api, media_server, f"f{n}").status_code for n in range(3)] == [202] * 3
        assert_capped(download(api, media_server, "f3"))
