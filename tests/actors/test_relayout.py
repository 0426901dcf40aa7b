"""The relayout of a library filed under the old names (``<Restricted_Artist>/
<Restricted_Title>_[<extractor>-<id>].<ext>``) to the current ones, on real workers: a
dry run lists the moves and touches nothing; the run moves every file with its sidecars
and its row, leaves no old folder and loses no file; a worker SIGKILLed half-way is
recovered from; a second run moves nothing; each move resumes from any state a crash
can leave on disk."""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from yt_dlp.utils import sanitize_filename

from tests.actors.test_crashes import worker_process
from tests.support import wait_for, wait_for_job

#: (artist, title) of the issue's table: names that the old, ASCII-only names lost.
READABLE = [
    ("宇多田ヒカル", "First Love"),
    ("Мумий Тролль", "Владивосток 2000"),
    ("BLACKPINK", "뚜두뚜두 (DDU-DU DDU-DU) M/V"),
    ("Sigur Rós", "Hoppípolla"),
]
ARTISTS = ["Röyksopp", "Beyoncé", "The Knife", None]
SIDECARS = (".nfo", ".en.vtt", "-thumb.jpg")


def old_name(text: str, limit: int) -> str:
    """A name as the library filed it before readable names (``git show ab0494f^:media/
    library.py``)."""
    return sanitize_filename(text, restricted=True).strip("._-")[:limit] or "_"


def old_path(artist: str | None, title: str, extractor: str, video_id: str) -> str:
    folder = old_name(artist, 100) if artist else "Unknown_Artist"
    key = f"{old_name(extractor, 32)}-{old_name(video_id, 64)}"
    return f"{folder}/{old_name(title, 150)}_[{key}].mp4"


def add_old_video(
    settings: Any, number: int, artist: str | None, title: str, extractor: str, source_id: str
) -> int:
    """A row and its file under the old names; every tenth with an NFO, subtitles and
    a thumbnail beside it (and the subtitles in its row)."""
    from actors import stores
    from db import library
    from db.models import Video

    relative = old_path(artist, title, extractor, source_id)
    path = settings.media_root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(f"video {number}".encode())
    subtitles = None
    if number % 10 == 3:
        stem = path.name.removesuffix(".mp4")
        for suffix in SIDECARS:
            (path.parent / f"{stem}{suffix}").write_bytes(f"{suffix} of {number}".encode())
        subtitles = [
            {"lang": "en", "path": f"{path.parent.name}/{stem}.en.vtt", "automatic": False}
        ]
    with stores.sessions().begin() as session:
        video = Video(
            title=title, source_url=f"https://{extractor}.example/{source_id}",
            extractor=extractor, extractor_id=source_id, path=relative, size=path.stat().st_size,
            subtitles=subtitles,
        )  # fmt: skip
        if artist:
            video.artist_id = library.artist_named(session, artist).id
        session.add(video)
        session.flush()
        return int(video.id)


def old_library(settings: Any) -> dict[int, str]:
    """50 videos under the old names: the issue's table, two that the old names told
    apart by their site only (one new name: one of them gets ``(2)``), and 44 more."""
    ids = {}
    for number, (artist, title) in enumerate(READABLE):
        ids[add_old_video(settings, number, artist, title, "youtube", f"r{number}")] = title
    for number, site in ((4, "youtube"), (5, "vimeo")):
        ids[add_old_video(settings, number, "Sigur Rós", "Glósóli", site, "twin")] = "Glósóli"
    for number in range(6, 50):
        title = f"Song {number} – live"
        artist = ARTISTS[number % len(ARTISTS)]
        ids[add_old_video(settings, number, artist, title, "youtube", f"v{number:03}")] = title
    return ids


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root``: its path -> its content's checksum."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in root.rglob("*")
        if path.is_file()
    }


def rows() -> dict[int, tuple[str, Any]]:
    from actors import stores
    from db.models import Video

    with stores.sessions()() as session:
        return {
            video_id: (path, subtitles)
            for video_id, path, subtitles in session.execute(
                select(Video.id, Video.path, Video.subtitles)
            )
        }


def relayout(api: httpx.Client, *, dry_run: bool) -> dict[str, Any]:
    response = api.post("/api/library/relayout", json={"dry_run": dry_run})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["kind"] == "relayout" and job["queue"] == "bulk"
    return dict(job)


def assert_relaid(
    settings: Any, before: dict[str, str], before_rows: dict[int, Any], titles: dict[int, str]
) -> None:
    """Every file still there once (the same checksums), each row at its own file under
    the current names, the sidecars beside it with its new stem, no old folder left."""
    from actors import stores
    from actors.relayout_plan import plan_moves

    after = tree(settings.media_root)
    assert sorted(after.values()) == sorted(before.values())  # none lost, none doubled
    now = rows()
    assert set(now) == set(titles)
    for video_id, (path, subtitles) in now.items():
        name = PurePosixPath(path).name
        assert name.startswith(titles[video_id].replace("/", "⧸")), path
        assert "_[" not in name, path
        assert after[path] == before[before_rows[video_id][0]]  # its own file
        if subtitles:
            stem = name.removesuffix(".mp4")
            assert subtitles[0]["path"] == f"{PurePosixPath(path).parent}/{stem}.en.vtt"
            assert {f"{PurePosixPath(path).parent}/{stem}{suffix}" for suffix in SIDECARS} <= set(
                after
            )
    folders = {path.name for path in settings.media_root.iterdir()}
    assert folders == {
        *(artist for artist, _ in READABLE),
        *filter(None, ARTISTS),
        "Unknown Artist",
    }
    files_of = {PurePosixPath(path).name for path, _ in now.values()}
    assert {"Glósóli [twin].mp4", "Glósóli [twin] (2).mp4"} <= files_of
    with stores.sessions()() as session:
        assert plan_moves(session, settings.media_root) == []


def test_a_dry_run_lists_the_moves_then_the_run_makes_them_and_a_rerun_moves_nothing(
    api: httpx.Client, worker: Any, settings: Any
) -> None:
    titles = old_library(settings)
    before_tree, before_rows = tree(settings.media_root), rows()
    assert len(before_tree) == 50 + 5 * len(SIDECARS)

    dry = wait_for_job(api, relayout(api, dry_run=True)["id"])
    assert dry["status"] == "succeeded", dry
    assert dry["result"]["total"] == 50
    moves = dry["result"]["moves"]
    assert [move["video_id"] for move in moves] == sorted(titles)
    assert {move["from"] for move in moves} == {path for path, _ in before_rows.values()}
    assert {
        "宇多田ヒカル/First Love [r0].mp4",
        "Мумий Тролль/Владивосток 2000 [r1].mp4",
        "BLACKPINK/뚜두뚜두 (DDU-DU DDU-DU) M⧸V [r2].mp4",
        "Sigur Rós/Hoppípolla [r3].mp4",
        "Sigur Rós/Glósóli [twin].mp4",
        "Sigur Rós/Glósóli [twin] (2).mp4",
        "Unknown Artist/Song 7 – live [v007].mp4",
    } <= {move["to"] for move in moves}
    assert len({move["to"] for move in moves}) == 50
    # Nothing touched: the same files, the same rows, no part submitted.
    assert tree(settings.media_root) == before_tree
    assert rows() == before_rows
    assert api.get(f"/api/jobs?parent_id={dry['id']}").json()["items"] == []

    job = relayout(api, dry_run=False)
    done = wait_for_job(api, job["id"])
    assert done["status"] == "succeeded", done
    assert done["result"] == {
        "done": 50, "failed": [], "failed_count": 0, "skipped": 0, "cancelled": 0,
    }  # fmt: skip
    assert done["params"] == {"dry_run": False, "items": 50}
    parts = api.get(f"/api/jobs?parent_id={job['id']}").json()["items"]
    assert sorted(len(part["params"]["items"]) for part in parts) == [10, 20, 20]
    assert {(part["kind"], part["queue"]) for part in parts} == {("relayout_chunk", "bulk")}
    assert_relaid(settings, before_tree, before_rows, titles)

    moved_tree = tree(settings.media_root)
    again = wait_for_job(api, relayout(api, dry_run=False)["id"])
    assert again["status"] == "succeeded", again
    assert again["result"]["done"] == 0
    assert api.get(f"/api/jobs?parent_id={again['id']}").json()["items"] == []
    assert tree(settings.media_root) == moved_tree
    assert wait_for_job(api, relayout(api, dry_run=True)["id"])["result"] == {
        "moves": [], "total": 0,
    }  # fmt: skip


def test_a_relayout_whose_worker_is_sigkilled_half_way_ends_with_every_file_and_row_in_place(
    api: httpx.Client, settings: Any
) -> None:
    titles = old_library(settings)
    before, before_rows = tree(settings.media_root), rows()
    job = relayout(api, dry_run=False)

    def moved() -> int:
        return sum("_[" not in path for path, _ in rows().values())

    # tests.slow_moves makes each move take a while, so the kill lands in the middle;
    # a thread for each part, so none is only prefetched when the worker dies (Dramatiq
    # gives a dead worker's prefetched messages back only after a minute).
    with worker_process("tests.slow_moves", threads=4) as first:
        wait_for(lambda: moved() >= 20, timeout=60, interval=0.05, what="20 videos moved")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    cut = moved()
    assert 20 <= cut < 50, cut
    assert api.get(f"/api/jobs/{job['id']}").json()["status"] == "running"
    # The parts lost their worker; the relayout, a parent now, has none to lose.
    fleet = api.get("/api/system/workers").json()
    held = [item["id"] for worker in fleet["items"] for item in worker["jobs"]]
    assert len(held + fleet["unassigned"]) >= 3, fleet  # the parts, with or without it
    assert job["id"] not in held + [item["id"] for item in fleet["unassigned"]]
    with worker_process():
        done = wait_for_job(api, job["id"], timeout=120)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1  # planned once: the lifeline leaves a parent alone
    assert done["result"]["done"] + done["result"]["skipped"] == 50, done["result"]
    assert done["result"]["failed_count"] == 0, done["result"]
    parts = api.get(f"/api/jobs?parent_id={job['id']}").json()["items"]
    assert any(part["attempts"] == 2 for part in parts), parts  # taken back from the dead
    assert_relaid(settings, before, before_rows, titles)


@pytest.fixture
def one_video(settings: Any) -> tuple[int, Path, Path]:
    """A video under its old name with its sidecars: its id, old and new paths."""
    video_id = add_old_video(settings, 3, "Sigur Rós", "Hoppípolla", "youtube", "r3")
    old = settings.media_root / old_path("Sigur Rós", "Hoppípolla", "youtube", "r3")
    return video_id, old, settings.media_root / "Sigur Rós" / "Hoppípolla [r3].mp4"


def move_now(video_id: int, old: Path, new: Path, settings: Any) -> bool:
    from actors.job_context import JobContext
    from actors.relayout import move_video

    job = JobContext(job={"id": "test", "params": {}}, reporter=None)  # type: ignore[arg-type]
    move = {
        "video_id": video_id,
        "from": old.relative_to(settings.media_root).as_posix(),
        "to": new.relative_to(settings.media_root).as_posix(),
    }
    return move_video(job, move)


def test_a_move_cut_after_the_files_only_fixes_the_row_and_moves_what_is_left(
    settings: Any, one_video: tuple[int, Path, Path]
) -> None:
    video_id, old, new = one_video
    before = tree(settings.media_root)
    # Cut short after the video's file and one sidecar moved (another half-linked).
    new.parent.mkdir()
    old.rename(new)
    old.with_suffix(".nfo").rename(new.with_suffix(".nfo"))
    stem = old.name.removesuffix(".mp4")
    os.link(old.parent / f"{stem}-thumb.jpg", new.parent / "Hoppípolla [r3]-thumb.jpg")

    assert move_now(video_id, old, new, settings) is True
    assert rows()[video_id][0] == "Sigur Rós/Hoppípolla [r3].mp4"
    assert rows()[video_id][1][0]["path"] == "Sigur Rós/Hoppípolla [r3].en.vtt"
    assert sorted(tree(settings.media_root).values()) == sorted(before.values())
    assert not old.parent.exists()
    # Done again (a part retried after its commit): nothing left to do.
    assert move_now(video_id, old, new, settings) is False


def test_a_new_name_held_by_another_file_fails_the_item_and_nothing_is_overwritten(
    settings: Any, one_video: tuple[int, Path, Path]
) -> None:
    from media.errors import MediaError

    video_id, old, new = one_video
    new.parent.mkdir()
    new.write_bytes(b"someone else's")
    with pytest.raises(MediaError, match="another file already has the name") as failed:
        move_now(video_id, old, new, settings)
    assert failed.value.code == "name_taken"
    assert new.read_bytes() == b"someone else's"
    assert old.read_bytes() == b"video 3"
    assert rows()[video_id][0] == old.relative_to(settings.media_root).as_posix()


def test_a_video_moved_or_deleted_since_the_plan_is_failed_or_skipped(
    settings: Any, one_video: tuple[int, Path, Path]
) -> None:
    from actors import stores
    from db.models import Video
    from media.errors import MediaError

    video_id, old, new = one_video
    with stores.sessions().begin() as session:
        session.get(Video, video_id).path = "Elsewhere/x.mp4"  # type: ignore[union-attr]
    with pytest.raises(MediaError, match="moved since the relayout was planned"):
        move_now(video_id, old, new, settings)
    with stores.sessions().begin() as session:
        session.delete(session.get(Video, video_id))
    assert move_now(video_id, old, new, settings) is False
    assert old.exists() and not new.exists()


def test_one_relayout_that_moves_files_at_a_time_and_a_bad_body_is_a_400(
    api: httpx.Client,
) -> None:
    first = relayout(api, dry_run=False)
    again = api.post("/api/library/relayout", json={"dry_run": False})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first["id"]
    # Dry runs touch nothing: each is a job of its own, beside the one that moves.
    assert relayout(api, dry_run=True)["id"] != relayout(api, dry_run=True)["id"]
    for body in ({}, {"dry_run": "yes"}, {"dry_run": True, "all": True}):
        refused = api.post("/api/library/relayout", json=body)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "invalid_dry_run"


def test_in_the_jellyfin_layout_a_move_rewrites_the_nfo_and_takes_the_artist_files_along(
    settings: Any, one_video: tuple[int, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses
    import xml.etree.ElementTree as ET

    from actors import sidecars
    from db.refresh_hooks import ChangeEvent, VideoChange

    monkeypatch.setattr(
        sidecars, "settings", dataclasses.replace(settings, library_layout="jellyfin")
    )
    announced: list[VideoChange] = []
    monkeypatch.setattr("actors.relayout.announce", announced.extend)
    video_id, old, new = one_video
    for name in ("artist.nfo", "folder.jpg"):  # the old folder's artist files
        (old.parent / name).write_bytes(b"old " + name.encode())

    assert move_now(video_id, old, new, settings) is True
    written = ET.fromstring((new.parent / "Hoppípolla [r3].nfo").read_bytes())
    assert written.findtext("title") == "Hoppípolla"  # rewritten, not the old stub moved
    assert written.find("uniqueid") is not None and written.findtext("uniqueid") == "r3"
    assert ET.fromstring((new.parent / "artist.nfo").read_bytes()).findtext("name") == "Sigur Rós"
    assert not old.parent.exists()  # its last video left: its artist files went too
    assert [(change.event, change.id, change.path) for change in announced] == [
        (ChangeEvent.moved, video_id, "Sigur Rós/Hoppípolla [r3].mp4")
    ]
