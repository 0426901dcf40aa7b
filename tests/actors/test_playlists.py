"""Playlist syncs against a real feed (an RSS channel on the tests' media server, read by
yt-dlp's generic extractor), a real worker and real downloads; the schedule driven
through the periodic actor's function with a given "now"."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from tests.support import wait_for, wait_for_job


def downloads_of(api: httpx.Client) -> list[dict[str, Any]]:
    return [
        job
        for job in api.get("/api/jobs?kind=download&limit=200").json()["items"]
        if job["params"].get("playlist_id") is not None
    ]


def all_downloaded(api: httpx.Client, count: int) -> list[dict[str, Any]]:
    """The playlists' downloads, once ``count`` of them succeeded and none is active."""

    def done() -> list[dict[str, Any]] | None:
        jobs = downloads_of(api)
        finished = [job for job in jobs if job["status"] == "succeeded"]
        if any(job["status"] in ("failed", "cancelled") for job in jobs):
            raise AssertionError(f"a download did not succeed: {jobs}")
        return jobs if len(finished) == count and len(jobs) == count else None

    return wait_for(done, timeout=90, interval=0.2, what=f"{count} downloads to succeed")


def sync(api: httpx.Client, playlist_id: int) -> dict[str, Any]:
    """Ask for a sync and wait for it; its job, which must have succeeded."""
    started = api.post(f"/api/playlists/{playlist_id}/sync")
    assert started.status_code == 202, started.text
    job = wait_for_job(api, started.json()["id"])
    assert job["status"] == "succeeded", job
    return job


def entries_by_url(api: httpx.Client, playlist_id: int) -> dict[str, dict[str, Any]]:
    playlist = api.get(f"/api/playlists/{playlist_id}?limit=200").json()
    return {entry["url"]: entry for entry in playlist["entries"]["items"]}


def test_a_sync_queues_only_new_entries_and_marks_the_vanished_ones_removed(
    api: httpx.Client, worker: Any, media_server: Any, settings: Any
) -> None:
    videos = {name: media_server.url(f"/media/channel-{name}.mp4") for name in "abcde"}
    media_server.feeds["channel"] = [videos["a"], videos["b"], videos["c"]]
    created = api.post(
        "/api/playlists",
        json={"url": media_server.url("/feed/channel.xml"), "auto_download": True},
    )
    assert created.status_code == 201, created.text
    playlist = created.json()
    first = wait_for_job(api, playlist["sync_job"]["id"])
    assert first["status"] == "succeeded", first
    assert first["queue"] == "bulk"
    assert {k: first["result"][k] for k in ("added", "queued", "removed", "unchanged")} == {
        "added": 3,
        "queued": 3,
        "removed": 0,
        "unchanged": 0,
    }
    queued = all_downloaded(api, 3)
    assert {job["queue"] for job in queued} == {"downloads"}
    assert {job["params"]["url"] for job in queued} == {videos["a"], videos["b"], videos["c"]}

    # Two entries added, one gone.
    media_server.feeds["channel"] = [videos["b"], videos["c"], videos["d"], videos["e"]]
    second = sync(api, playlist["id"])
    assert {k: second["result"][k] for k in ("added", "queued", "removed", "unchanged")} == {
        "added": 2,
        "queued": 2,
        "removed": 1,
        "unchanged": 2,
    }
    jobs = all_downloaded(api, 5)
    assert sorted(job["params"]["url"] for job in jobs) == sorted(videos.values())
    entries = entries_by_url(api, playlist["id"])
    assert {url: entry["state"] for url, entry in entries.items()} == {
        videos["a"]: "removed",
        videos["b"]: "downloaded",
        videos["c"]: "downloaded",
        videos["d"]: "downloaded",
        videos["e"]: "downloaded",
    }
    assert [entries[videos[name]]["position"] for name in "bcde"] == [1, 2, 3, 4]
    # The removed entry's video (and file) stay in the library.
    removed_video = entries[videos["a"]]["video_id"]
    video = api.get(f"/api/videos/{removed_video}")
    assert video.status_code == 200, video.text
    assert (settings.media_root / video.json()["path"]).is_file()

    # The removed one is back: it is in the library already, so nothing is downloaded.
    media_server.feeds["channel"] = list(videos.values())
    third = sync(api, playlist["id"])
    assert {k: third["result"][k] for k in ("added", "queued", "removed", "already")} == {
        "added": 1,
        "queued": 0,
        "removed": 0,
        "already": 1,
    }
    assert entries_by_url(api, playlist["id"])[videos["a"]]["state"] == "downloaded"
    assert len(downloads_of(api)) == 5
    listed = api.get("/api/playlists").json()["items"]
    assert [item["entries_by_state"] for item in listed] == [{"downloaded": 5}]
    assert listed[0]["name"] == "channel"  # the feed's own title
    assert listed[0]["entry_count"] == 5


def test_a_playlist_that_does_not_download_by_itself_only_lists_its_entries(
    api: httpx.Client, worker: Any, media_server: Any
) -> None:
    media_server.feeds["listed"] = [media_server.url(f"/media/listed-{n}.mp4") for n in range(2)]
    created = api.post(
        "/api/playlists",
        json={"url": media_server.url("/feed/listed.xml"), "auto_download": False, "name": "L"},
    ).json()
    job = wait_for_job(api, created["sync_job"]["id"])
    assert job["result"]["added"] == 2 and job["result"]["queued"] == 0
    playlist = api.get(f"/api/playlists/{created['id']}").json()
    assert playlist["name"] == "L"
    assert [entry["state"] for entry in playlist["entries"]["items"]] == ["new", "new"]
    assert downloads_of(api) == []


def test_entries_a_download_may_not_fetch_are_rejected_and_never_queued(
    api: httpx.Client, worker: Any, media_server: Any
) -> None:
    good = media_server.url("/media/fine.mp4")
    media_server.feeds["hostile"] = [
        "file:///etc/passwd",
        "ftp://127.0.0.1/a.mp4",
        "/media/relative.mp4",
        good,
    ]
    created = api.post(
        "/api/playlists",
        json={"url": media_server.url("/feed/hostile.xml"), "auto_download": True},
    ).json()
    job = wait_for_job(api, created["sync_job"]["id"])
    assert job["status"] == "succeeded", job
    assert job["result"]["rejected"] == 3 and job["result"]["queued"] == 1
    entries = entries_by_url(api, created["id"])
    assert {url for url, entry in entries.items() if entry["state"] == "rejected"} == {
        "file:///etc/passwd",
        "ftp://127.0.0.1/a.mp4",
        "/media/relative.mp4",
    }
    assert all(entry["reason"] for entry in entries.values() if entry["state"] == "rejected")
    assert [job["params"]["url"] for job in all_downloaded(api, 1)] == [good]


@pytest.fixture
def strict_sync(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The sync actor with private URLs not allowed (it reads its module's settings)."""
    from actors import playlists

    strict = dataclasses.replace(settings, allow_private_urls=False)
    monkeypatch.setattr(playlists, "settings", strict)
    yield strict


def add_playlist(
    url: str, *, schedule: str | None = None, created_at: datetime | None = None
) -> int:
    """A playlist row as the web adds one (without its first sync)."""
    from actors import stores
    from db import playlists
    from db.models import Playlist

    with stores.engine().connect() as connection:
        playlist_id, created = playlists.create_playlist(
            connection,
            url=url,
            name=None,
            auto_download=True,
            quality="best",
            schedule=schedule,
            owner="admin",
        )
        assert created
        if created_at is not None:
            connection.execute(
                update(Playlist).where(Playlist.id == playlist_id).values(created_at=created_at)
            )
            connection.commit()
    return playlist_id


def request_sync(playlist_id: int) -> str:
    from actors import stores
    from db import playlists

    with stores.engine().connect() as connection:
        submission, outbox = playlists.request_sync(
            connection,
            playlist_id,
            owner="admin",
            max_attempts=3,
            max_active=1000,
            max_active_of_owner=1000,
        )
    stores.courier().deliver(outbox)
    assert submission.job is not None
    return str(submission.job["id"])


def test_a_playlist_url_that_reaches_a_private_address_fails_its_sync_unretried(
    api: httpx.Client, worker: Any, media_server: Any, strict_sync: Any
) -> None:
    """The listing runs under the egress guard: a loopback feed is never read."""
    media_server.feeds["private"] = [media_server.url("/media/private.mp4")]
    before = media_server.hits.get("/feed/private.xml", 0)
    playlist_id = add_playlist(media_server.url("/feed/private.xml"))
    job = wait_for_job(api, request_sync(playlist_id))
    assert job["status"] == "failed", job
    assert job["error"]["type"] == "private_address" and not job["error"]["retryable"]
    assert job["attempts"] == 1
    assert media_server.hits.get("/feed/private.xml", 0) == before
    assert downloads_of(api) == []


def test_a_url_of_one_video_fails_its_sync_as_not_a_playlist(
    api: httpx.Client, worker: Any, media_server: Any
) -> None:
    playlist_id = add_playlist(media_server.url("/media/just-one.mp4"))
    job = wait_for_job(api, request_sync(playlist_id))
    assert job["status"] == "failed", job
    assert job["error"]["type"] == "not_playlist" and not job["error"]["retryable"]
    assert downloads_of(api) == []


def active_syncs(playlist_id: int) -> int:
    from actors import stores
    from db.models import Job

    with stores.sessions()() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Job)
                .where(
                    Job.kind == "playlist_sync",
                    Job.status.in_(("queued", "running")),
                    Job.params["playlist_id"].as_integer() == playlist_id,
                )
            )
            or 0
        )


def test_the_schedule_asks_for_a_sync_once_per_fire_time_and_never_two_at_once(
    media_server: Any,
) -> None:
    from actors.playlists import submit_due_syncs

    start = datetime(2026, 3, 2, 10, 30, 20, tzinfo=UTC)  # a Monday
    hourly = add_playlist(
        media_server.url("/feed/hourly.xml"), schedule="0 * * * *", created_at=start
    )
    weekdays = add_playlist(
        media_server.url("/feed/weekdays.xml"), schedule="15 9 * * mon-fri", created_at=start
    )
    add_playlist(media_server.url("/feed/by-hand.xml"), created_at=start)

    assert submit_due_syncs(start + timedelta(minutes=29)) == []  # 10:59: nothing fired
    at_eleven = submit_due_syncs(start + timedelta(minutes=29, seconds=45))  # 11:00:05
    assert len(at_eleven) == 1 and active_syncs(hourly) == 1
    assert submit_due_syncs(start + timedelta(minutes=30)) == []  # 11:00:20: served
    # Noon: the hourly one fired again while its sync still waits (no worker here):
    # that sync is the answer, not a second one.
    assert submit_due_syncs(start + timedelta(hours=1, minutes=30)) == at_eleven
    assert active_syncs(hourly) == 1
    # The next day at 09:15 the weekday one fires too (and the hourly one's 09:00).
    tuesday = submit_due_syncs(datetime(2026, 3, 3, 9, 15, 30, tzinfo=UTC))
    assert len(tuesday) == 2 and active_syncs(weekdays) == 1
    assert submit_due_syncs(datetime(2026, 3, 3, 9, 16, tzinfo=UTC)) == []
