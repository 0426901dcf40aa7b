"""Playlists in the database (db/playlists.py, migration 0005): SQLite always, PostgreSQL
when ``TEST_DATABASE_URL`` is set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, select, update

from db import playlists
from db.models import EntryState, Job, JobStatus, PlaylistEntry, Video

CAPS = {"max_attempts": 3, "max_active": 1000, "max_active_of_owner": 1000}


@dataclass(frozen=True)
class Listed:
    url: str
    source_id: str | None = None
    title: str | None = None
    refused: str | None = None


def new_playlist(engine: Engine, url: str = "https://example.com/list", **fields: Any) -> int:
    options = {"name": None, "auto_download": True, "quality": "720p", "schedule": None}
    with engine.connect() as connection:
        playlist_id, created = playlists.create_playlist(
            connection, url=url, owner="admin", **(options | fields)
        )
    assert created
    return playlist_id


def record(engine: Engine, playlist_id: int, *entries: Listed, truncated: bool = False) -> Any:
    with engine.connect() as connection:
        return playlists.record_listing(
            connection, playlist_id, title="The list", entries=entries, truncated=truncated
        )


def states(engine: Engine, playlist_id: int) -> dict[str, str]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(PlaylistEntry.url, PlaylistEntry.state).where(
                PlaylistEntry.playlist_id == playlist_id
            )
        ).all()
    return {url: str(state) for url, state in rows}


def finish(engine: Engine, job_id: str, status: JobStatus, **fields: Any) -> None:
    with engine.begin() as connection:
        connection.execute(update(Job).where(Job.id == job_id).values(status=status, **fields))


def test_the_migration_makes_both_tables(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert {"playlists", "playlist_entries"} <= tables


def test_a_url_is_followed_once(engine: Engine) -> None:
    first = new_playlist(engine)
    with engine.connect() as connection:
        again = playlists.create_playlist(
            connection,
            url="https://example.com/list",
            name="other",
            auto_download=False,
            quality="best",
            schedule=None,
            owner="admin",
        )
    assert again == (first, False)


def test_syncs_add_remove_settle_and_queue_entries(engine: Engine) -> None:
    a, b, c, d = (f"https://example.com/v/{name}" for name in "abcd")
    playlist_id = new_playlist(engine)
    plan = record(engine, playlist_id, Listed(a), Listed(b, title="B"), Listed(c, refused="no"))
    assert (plan.added, plan.removed, plan.unchanged, plan.rejected) == (3, 0, 0, 1)
    assert [url for _, url in plan.to_queue] == [a, b]
    with engine.connect() as connection:
        done, outbox = playlists.queue_downloads(connection, plan, plan.to_queue, **CAPS)
    assert (done.queued, done.already, done.waiting) == (2, 0, 0)
    assert [job["params"]["url"] for job in outbox.send] == [a, b]
    assert {job["queue"] for job in outbox.send} == {"downloads"}
    assert {job["params"]["quality"] for job in outbox.send} == {"720p"}
    assert states(engine, playlist_id) == {a: "queued", b: "queued", c: "rejected"}
    job_of = {job["params"]["url"]: job["id"] for job in outbox.send}

    # a's download succeeded, b's failed; the next listing drops a and adds d.
    finish(engine, job_of[a], JobStatus.succeeded, result={"video_id": 7})
    finish(engine, job_of[b], JobStatus.failed, error={"message": "gone", "type": "x"})
    plan = record(engine, playlist_id, Listed(b), Listed(d), Listed(c))
    assert (plan.added, plan.removed, plan.unchanged, plan.rejected) == (1, 1, 2, 0)
    assert [url for _, url in plan.to_queue] == [d, c]  # c passes now; b failed: left
    assert states(engine, playlist_id) == {a: "removed", b: "failed", c: "new", d: "new"}
    with engine.connect() as connection:
        entry_a = connection.execute(select(PlaylistEntry).where(PlaylistEntry.url == a)).one()
        entry_b = connection.execute(select(PlaylistEntry).where(PlaylistEntry.url == b)).one()
    assert entry_a.video_id == 7 and entry_a.removed_at is not None
    assert entry_b.reason == "gone"

    # d is in the library already; the caps leave room for nothing else.
    with engine.begin() as connection:
        connection.execute(
            Video.__table__.insert().values(
                title="d", source_url=d, extractor="x", extractor_id="d", path="d.mp4", size=1
            )
        )
    with engine.connect() as connection:
        caps = CAPS | {"max_active_of_owner": 0}
        done, _ = playlists.queue_downloads(connection, plan, plan.to_queue[:1], **caps)
        assert (done.queued, done.already, done.waiting) == (0, 1, 0)
        done, outbox = playlists.queue_downloads(connection, plan, plan.to_queue[1:], **caps)
        assert (done.queued, done.already, done.waiting) == (0, 0, 1) and not outbox.send
    assert states(engine, playlist_id)[d] == "downloaded"
    assert states(engine, playlist_id)[c] == "new"

    # a comes back: a fresh start, not a removal any more.
    plan = record(engine, playlist_id, Listed(a), Listed(b), Listed(c), Listed(d))
    assert (plan.added, plan.removed, plan.unchanged) == (1, 0, 3)
    assert [url for _, url in plan.to_queue] == [a, c]


def test_a_truncated_listing_removes_nothing(engine: Engine) -> None:
    playlist_id = new_playlist(engine)
    record(engine, playlist_id, Listed("https://e.com/1"), Listed("https://e.com/2"))
    plan = record(engine, playlist_id, Listed("https://e.com/1"), truncated=True)
    assert plan.removed == 0
    assert set(states(engine, playlist_id).values()) == {"new"}


def test_one_sync_per_playlist_and_deleting_cancels_it_and_takes_the_entries(
    engine: Engine,
) -> None:
    playlist_id = new_playlist(engine, auto_download=False)
    with engine.connect() as connection:
        first, outbox = playlists.request_sync(connection, playlist_id, owner="admin", **CAPS)
        second, _ = playlists.request_sync(connection, playlist_id, owner="admin", **CAPS)
    assert first.created and outbox.send
    assert first.job is not None and second.job is not None
    assert not second.created and second.job["id"] == first.job["id"]
    plan = record(engine, playlist_id, Listed("https://e.com/1"))
    assert plan.to_queue == []  # it does not download by itself
    with engine.connect() as connection:
        deleted, outbox = playlists.delete_playlist(connection, playlist_id)
        assert deleted == 1
        assert [job["status"] for job in outbox.publish] == ["cancelled"]
        assert connection.scalar(select(PlaylistEntry.id)) is None
        assert playlists.delete_playlist(connection, playlist_id)[0] is None
        with pytest.raises(playlists.PlaylistGone):
            playlists.request_sync(connection, playlist_id, owner="admin", **CAPS)
    with pytest.raises(playlists.PlaylistGone):
        record(engine, playlist_id, Listed("https://e.com/1"))


def test_a_playlist_reads_back_with_its_entries_settled_and_paged(engine: Engine) -> None:
    playlist_id = new_playlist(engine)
    urls = [f"https://e.com/{n}" for n in range(3)]
    plan = record(engine, playlist_id, *(Listed(url) for url in urls))
    with engine.connect() as connection:
        _, outbox = playlists.queue_downloads(connection, plan, plan.to_queue[:1], **CAPS)
    finish(engine, outbox.send[0]["id"], JobStatus.succeeded, result={"video_id": 3})
    with engine.connect() as connection:
        page = playlists.playlist_details(connection, playlist_id, after=None, limit=2)
        assert page is not None
        assert page["name"] == "The list" and page["entry_count"] == 3
        assert page["entries_by_state"] == {"downloaded": 1, "new": 2}
        items = page["entries"]["items"]
        assert [(e["url"], e["state"], e["video_id"]) for e in items] == [
            (urls[0], "downloaded", 3),
            (urls[1], "new", None),
        ]
        position, entry_id = map(int, page["entries"]["next"].split("."))
        rest = playlists.playlist_details(
            connection, playlist_id, after=(position, entry_id), limit=2
        )
        assert rest is not None
        assert [e["url"] for e in rest["entries"]["items"]] == urls[2:]
        assert rest["entries"]["next"] is None
        assert EntryState.queued in {
            state for (state,) in connection.execute(select(PlaylistEntry.state)).all()
        }  # settled when read, stored as it was until the next sync


def test_a_listing_names_an_unnamed_playlist_within_its_column(engine: Engine) -> None:
    unnamed = new_playlist(engine)
    named = new_playlist(engine, url="https://example.com/named", name="Mine")
    for playlist_id in (unnamed, named):
        with engine.connect() as connection:
            playlists.record_listing(
                connection, playlist_id, title="T" * 500, entries=[], truncated=False
            )
    with engine.connect() as connection:
        found = [
            playlists.playlist_details(connection, playlist_id, after=None, limit=1)
            for playlist_id in (unnamed, named)
        ]
    assert [playlist and playlist["name"] for playlist in found] == [
        "T" * playlists.MAX_NAME,
        "Mine",
    ]


def test_a_deleted_video_is_no_longer_named_by_the_entry_that_filed_it(engine: Engine) -> None:
    from sqlalchemy.orm import Session

    from db.library import remove_video

    playlist_id = new_playlist(engine)
    record(engine, playlist_id, Listed("https://e.com/kept"))
    with Session(engine) as session:
        video = Video(title="t", source_url="https://e.com/kept", extractor="generic",
                      extractor_id="kept", path="a/kept.mp4", size=1)  # fmt: skip
        session.add(video)
        session.flush()
        session.execute(
            update(PlaylistEntry).values(state=EntryState.downloaded, video_id=video.id)
        )
        assert remove_video(session, video.id)
        session.commit()
    with engine.connect() as connection:
        (entry,) = connection.execute(select(PlaylistEntry.state, PlaylistEntry.video_id)).all()
    assert tuple(entry) == (EntryState.downloaded, None)  # not downloaded again by a sync
