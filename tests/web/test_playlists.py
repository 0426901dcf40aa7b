"""``/api/playlists``: adding, reading, syncing and deleting playlists, and the 4xx of
every bad input (no worker here: the syncs these ask for stay queued)."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx

from tests.conftest import ADMIN_TOKEN, VIEWER_TOKEN
from tests.support import api_client, live_server
from tests.web.test_requests import assert_error


def add(api: httpx.Client, url: str, **fields: Any) -> httpx.Response:
    return api.post("/api/playlists", json={"url": url, "auto_download": True, **fields})


BAD_FIELDS = [
    ({"auto_download": True}, "url"),
    ({"url": "ftp://127.0.0.1/feed.xml", "auto_download": True}, "url"),
    ({"url": "file:///etc/passwd", "auto_download": True}, "url"),
    ({"url": "http://", "auto_download": True}, "url"),
    ({"url": 5, "auto_download": True}, "url"),
    ({"url": "http://127.0.0.1/feed.xml"}, "auto_download"),
    ({"url": "http://127.0.0.1/feed.xml", "auto_download": "yes"}, "auto_download"),
    ({"url": "http://127.0.0.1/feed.xml", "auto_download": True, "quality": "8k"}, "quality"),
    ({"url": "http://127.0.0.1/feed.xml", "auto_download": True, "name": ""}, "name"),
    ({"url": "http://127.0.0.1/feed.xml", "auto_download": True, "name": 7}, "name"),
]
BAD_SCHEDULES = [
    "* * * *",  # four fields
    "* * * * * *",  # six
    "@daily",
    "61 * * * *",
    "0 24 * * *",
    "0 0 0 * *",
    "0 0 * 13 *",
    "0 0 * * 8",
    "x * * * *",
    "5-1 * * * *",
    "*/0 * * * *",
    "0 0 31 2 *",  # never fires
    "",
    "* " * 60,
    5,
    ["*"],
]


def test_a_bad_field_or_schedule_is_a_400_naming_it_and_adds_nothing(
    api: httpx.Client, media_server: Any
) -> None:
    for body, field in BAD_FIELDS:
        assert_error(api.post("/api/playlists", json=body), 400, field)
    for schedule in BAD_SCHEDULES:
        response = add(api, media_server.url("/feed/x.xml"), schedule=schedule)
        assert assert_error(response, 400, "schedule")["code"] == "invalid_schedule", schedule
    assert_error(api.post("/api/playlists", content=b"[1]"), 400)
    assert api.get("/api/playlists").json()["items"] == []


def test_a_loopback_url_is_refused_when_private_urls_are_not_allowed(
    settings: Any, media_server: Any
) -> None:
    strict = dataclasses.replace(settings, allow_private_urls=False)
    from web.app import create_app

    with live_server(create_app(strict)) as server, api_client(server.url, ADMIN_TOKEN) as api:
        for url in (media_server.url("/feed/a.xml"), "http://localhost/feed", "http://[::1]/"):
            error = assert_error(add(api, url), 400, "url")
            assert "private" in error["message"]


def test_a_playlist_is_added_with_its_first_sync_and_a_second_url_copy_is_a_409(
    api: httpx.Client, media_server: Any
) -> None:
    url = media_server.url("/feed/first.xml")
    created = add(api, url, name="Mix", quality="720p", schedule=" 0  */6 * * * ")
    assert created.status_code == 201, created.text
    playlist = created.json()
    assert created.headers["location"] == f"/api/playlists/{playlist['id']}"
    assert playlist["url"] == url and playlist["name"] == "Mix"
    assert playlist["auto_download"] is True and playlist["quality"] == "720p"
    assert playlist["schedule"] == "0 */6 * * *"
    sync = playlist["sync_job"]
    assert sync["kind"] == "playlist_sync" and sync["queue"] == "bulk"
    assert sync["status"] == "queued" and sync["params"] == {"playlist_id": playlist["id"]}
    assert playlist["last_sync_job_id"] == sync["id"]
    assert playlist["entries"] == {"items": [], "next": None}

    again = add(api, url)
    error = assert_error(again, 409, "url")
    assert error["playlist_id"] == playlist["id"]
    # One sync per playlist: asking again answers the one still queued.
    same = api.post(f"/api/playlists/{playlist['id']}/sync")
    assert same.status_code == 200 and same.json()["id"] == sync["id"]

    listed = api.get("/api/playlists").json()
    assert [item["id"] for item in listed["items"]] == [playlist["id"]]
    assert listed["items"][0]["entries_by_state"] == {} and listed["next"] is None
    one = api.get(f"/api/playlists/{playlist['id']}")
    assert one.status_code == 200 and one.json()["name"] == "Mix"


def test_playlists_page_by_cursor_newest_first(api: httpx.Client, media_server: Any) -> None:
    ids = [add(api, media_server.url(f"/feed/page-{n}.xml")).json()["id"] for n in range(3)]
    first = api.get("/api/playlists?limit=2").json()
    assert [item["id"] for item in first["items"]] == ids[::-1][:2]
    rest = api.get(f"/api/playlists?limit=2&cursor={first['next']}").json()
    assert [item["id"] for item in rest["items"]] == ids[:1] and rest["next"] is None


def test_deleting_a_playlist_cancels_its_queued_sync_and_forgets_it(
    api: httpx.Client, media_server: Any
) -> None:
    playlist = add(api, media_server.url("/feed/gone.xml")).json()
    deleted = api.delete(f"/api/playlists/{playlist['id']}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"id": playlist["id"], "deleted": True, "entries_deleted": 0}
    assert api.get(f"/api/jobs/{playlist['sync_job']['id']}").json()["status"] == "cancelled"
    assert_error(api.get(f"/api/playlists/{playlist['id']}"), 404)
    assert_error(api.delete(f"/api/playlists/{playlist['id']}"), 404)
    # The URL may be followed again.
    assert add(api, media_server.url("/feed/gone.xml")).status_code == 201


def test_unknown_playlists_are_a_404_and_bad_cursors_and_limits_a_400(
    api: httpx.Client, media_server: Any
) -> None:
    for playlist_id in ("12345", "99999999999999999999"):
        assert_error(api.get(f"/api/playlists/{playlist_id}"), 404)
        assert_error(api.post(f"/api/playlists/{playlist_id}/sync"), 404)
        assert_error(api.delete(f"/api/playlists/{playlist_id}"), 404)
    playlist = add(api, media_server.url("/feed/cursor.xml")).json()
    for cursor in ("abc", "%C2%B2"):  # "²" is a digit to str.isdigit(), not to int()
        assert_error(api.get(f"/api/playlists?cursor={cursor}"), 400, "cursor")
    assert_error(api.get("/api/playlists?limit=0"), 400, "limit")
    for cursor in ("x", "1", "1.", ".1", "1.2.3", "9" * 11 + ".1", "%C2%B2.1"):
        assert_error(api.get(f"/api/playlists/{playlist['id']}?cursor={cursor}"), 400, "cursor")


def test_the_viewer_token_reads_playlists_but_cannot_change_them(
    api: httpx.Client, server: Any, media_server: Any
) -> None:
    playlist = add(api, media_server.url("/feed/viewer.xml")).json()
    with api_client(server.url, VIEWER_TOKEN) as viewer:
        assert viewer.get("/api/playlists").status_code == 200
        assert viewer.get(f"/api/playlists/{playlist['id']}").status_code == 200
        assert_error(add(viewer, media_server.url("/feed/v2.xml")), 403)
        assert_error(viewer.post(f"/api/playlists/{playlist['id']}/sync"), 403)
        assert_error(viewer.delete(f"/api/playlists/{playlist['id']}"), 403)
    with api_client(server.url, None) as anonymous:
        assert_error(anonymous.get("/api/playlists"), 401)
